/* The cost of the event bus on apply (lib/state events): commands applied per
 * second to a state.db with event recording off and on (a /v2/events subscriber
 * attached), each command a task.assign or a task.status of one task, with the
 * events taken after each as the daemon does. Median of three runs; prints
 *   bench: events_apply_cmds_per_s: off=N on=N ratio=R
 * Usage: events_apply [TASKS] (default 5000, two commands each). The database
 * lives in /dev/shm when there is one (the disk is not what is measured). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "state/db.h"

static size_t event_bytes;

static void take_cb(void *data, const struct cm_state_event *ev)
{
    (void)data;
    event_bytes += ev->len;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void must(int rv, const char *what, const struct cm_errbuf *eb)
{
    if (rv != 0) {
        fprintf(stderr, "events_apply: %s: %s\n", what, eb != NULL ? eb->msg : "");
        exit(1);
    }
}

/* Commands per second for @n tasks (2 commands each). */
static double run(bool record, int n)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "%s/events-bench-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    char path[96];
    snprintf(path, sizeof(path), "%s/state.db", dir);
    struct cm_state *s;
    struct cm_errbuf eb;
    must(cm_state_open(path, &s, &eb), "open", &eb);
    must(cm_state_events_record(s, record), "record", NULL);
    uint64_t idx = 0;
    char cmd[512];
    static const char put[] =
        "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":"
        "\"/web\",\"cmd\":\"sleep 1000\",\"instances\":2}}";
    must(cm_state_apply(s, ++idx, put, strlen(put), &eb), "app.put", &eb);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        int len = snprintf(cmd, sizeof(cmd),
                           "{\"type\":\"task.assign\",\"at\":%d,\"tasks\":[{\"id\":"
                           "\"web.%d\",\"app\":\"/web\",\"version\":\"v1\",\"node\":"
                           "\"n1\",\"host\":\"10.0.0.1\",\"ports\":[31000]}]}",
                           i, i);
        must(cm_state_apply(s, ++idx, cmd, (size_t)len, &eb), "task.assign", &eb);
        len = snprintf(cmd, sizeof(cmd),
                       "{\"type\":\"task.status\",\"at\":%d,\"id\":\"web.%d\","
                       "\"state\":\"running\"}",
                       i, i);
        must(cm_state_apply(s, ++idx, cmd, (size_t)len, &eb), "task.status", &eb);
        cm_state_take_events(s, take_cb, NULL);
    }
    double rate = 2.0 * n / (now_s() - t0);
    cm_state_close(s);
    static const char *const files[] = {"state.db", "state.db-wal", "state.db-shm"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5000;
    if (n <= 0) {
        fprintf(stderr, "usage: events_apply [TASKS]\n");
        return 2;
    }
    double off[3], on[3];
    for (int r = 0; r < 3; r++) {
        off[r] = run(false, n);
        on[r] = run(true, n);
    }
    qsort(off, 3, sizeof(double), cmp_double);
    qsort(on, 3, sizeof(double), cmp_double);
    printf("events: %zu bytes of events per run\n", event_bytes / 3);
    printf("bench: events_apply_cmds_per_s: off=%.0f on=%.0f ratio=%.2f\n", off[1], on[1],
           on[1] / off[1]);
    return 0;
}
