/* Committed placements per second: the C1M-shaped workload of sched_core.c,
 * where every sched_place batch becomes one task.assign command in the raft log
 * (a real raft_host: raft.db with fsync, one voter) applied to a real state.db.
 * A placement counts only once its entry is durable and applied. Then, on the
 * idle cluster, submit -> placed latency: place one task, commit it, repeat.
 *
 *   sched_commit --dir DIR [--nodes N] [--apps A] [--tasks T] [--batch B]
 *                [--idle K]
 * Prints key=value lines (see tests/bench/sched). */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "raft/raft.h"
#include "sched/sched.h"
#include "sched_gen.h"
#include "state/db.h"

struct bench {
    struct ev_loop *loop;
    struct cm_state *state;
    struct raft_host *host;
    size_t committed;
    size_t outstanding;
    int failures;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fsm_apply(void *data, raft_index index, uint8_t type, const void *buf,
                     size_t len)
{
    struct bench *b = data;
    struct cm_errbuf eb;
    return type == RAFT_COMMAND ? cm_state_apply(b->state, index, buf, len, &eb)
                                : cm_state_apply_noop(b->state, index, &eb);
}

static int fsm_snapshot(void *data, const char *path, struct cm_errbuf *eb)
{
    return cm_state_snapshot(((struct bench *)data)->state, path, eb);
}

static int fsm_restore(void *data, const char *path, raft_index index,
                       struct cm_errbuf *eb)
{
    (void)index;
    return cm_state_restore(((struct bench *)data)->state, path, eb);
}

static raft_index fsm_applied(void *data)
{
    return cm_state_applied_index(((struct bench *)data)->state);
}

struct batch {
    struct bench *b;
    size_t n;
};

static void committed(void *data, int status, raft_index index)
{
    (void)index;
    struct batch *bt = data;
    bt->b->outstanding--;
    if (status == 0) {
        bt->b->committed += bt->n;
    } else {
        bt->b->failures++;
    }
    free(bt);
}

static void propose(struct bench *b, const char *cmd, size_t n)
{
    struct batch *bt = malloc(sizeof(*bt));
    bt->b = b;
    bt->n = n;
    int rv = raft_host_propose(b->host, cmd, strlen(cmd), committed, bt);
    if (rv != 0) {
        gen_die("raft_host_propose", rv);
    }
    b->outstanding++;
}

/* task.assign for what @res placed. */
static char *assign_json(const struct sched_result *res, const struct sched_request *reqs)
{
    cJSON *cmd = cJSON_CreateObject();
    cJSON_AddStringToObject(cmd, "type", "task.assign");
    cJSON_AddNumberToObject(cmd, "at", 1795305600000.0);
    cJSON *tasks = cJSON_AddArrayToObject(cmd, "tasks");
    for (size_t i = 0; i < res->n_assignments; i++) {
        const struct sched_assignment *a = &res->assignments[i];
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "id", a->task_id);
        cJSON_AddStringToObject(t, "app", reqs[a->req].app);
        cJSON_AddStringToObject(t, "version", "v1");
        cJSON_AddStringToObject(t, "node", a->node_id);
        cJSON_AddStringToObject(t, "host", a->node_id);
        cJSON *ports = cJSON_AddArrayToObject(t, "ports");
        for (size_t k = 0; k < a->n_ports; k++) {
            cJSON_AddItemToArray(ports, cJSON_CreateNumber(a->ports[k]));
        }
        cJSON_AddItemToArray(tasks, t);
    }
    char *text = cJSON_PrintUnformatted(cmd);
    cJSON_Delete(cmd);
    return text;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    unsigned nodes = 5000, apps = 1000, tasks = 100, batch = 10, idle = 200;
    const char *dir = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned long v = strtoul(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--dir") == 0) {
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--nodes") == 0) {
            nodes = (unsigned)v;
        } else if (strcmp(argv[i], "--apps") == 0) {
            apps = (unsigned)v;
        } else if (strcmp(argv[i], "--tasks") == 0) {
            tasks = (unsigned)v;
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = v ? (unsigned)v : 1;
        } else if (strcmp(argv[i], "--idle") == 0) {
            idle = (unsigned)v;
        }
    }
    if (dir == NULL) {
        fprintf(stderr,
                "usage: sched_commit --dir DIR [--nodes N] [--apps A] "
                "[--tasks T] [--batch B] [--idle K]\n");
        return 2;
    }
    struct bench b = {.loop = ev_default_loop(0)};
    struct cm_errbuf eb;
    char path[1024];
    snprintf(path, sizeof(path), "%s/state.db", dir);
    if (cm_state_open(path, &b.state, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        return 1;
    }
    struct raft_config boot = {0};
    raft_config_add(&boot, 1, "127.0.0.1:1", RAFT_VOTER);
    struct raft_host_options ho = {
        .id = 1,
        .cluster_id = 1,
        .data_dir = dir,
        .bind_address = "127.0.0.1:0",
        .bootstrap = &boot,
        .fsm = {&b, fsm_apply, fsm_snapshot, fsm_restore, fsm_applied},
    };
    raft_options_default(&ho.raft);
    ho.raft.seed = 1;
    if (raft_host_start(b.loop, &ho, &b.host, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        return 1;
    }
    raft_config_close(&boot);
    while (raft_role(raft_host_core(b.host)) != RAFT_LEADER) {
        ev_run(b.loop, EVRUN_ONCE);
    }

    struct sched_options so = {.seed = 1};
    struct sched *s = sched_new(&so);
    char(*names)[32];
    struct sched_request *reqs = gen_workload(s, nodes, apps, tasks, 1, &names);

    /* Placements, one raft entry per batch, committed as they go. */
    size_t placed = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < apps; i += batch) {
        unsigned n = apps - i < batch ? apps - i : batch;
        struct sched_result res;
        int rv = sched_place(s, reqs + i, n, &res);
        if (rv != 0) {
            gen_die("sched_place", rv);
        }
        placed += res.n_assignments;
        char *cmd = assign_json(&res, reqs);
        propose(&b, cmd, res.n_assignments);
        cJSON_free(cmd);
        sched_result_done(&res);
        ev_run(b.loop, EVRUN_NOWAIT); /* let the log move while we place */
    }
    while (b.outstanding > 0) {
        ev_run(b.loop, EVRUN_NOWAIT);
    }
    double dt = now_s() - t0;
    size_t committed_batches = b.committed;

    /* Idle: one placement and its commit at a time. */
    double *lat = calloc(idle ? idle : 1, sizeof(double));
    for (unsigned k = 0; k < idle; k++) {
        char app[32];
        snprintf(app, sizeof(app), "/idle/%u", k);
        struct sched_request rq = {
            .app = app, .res = SCHED_RES(100, 64, 0, 0), .count = 1};
        double t = now_s();
        struct sched_result res;
        int rv = sched_place(s, &rq, 1, &res);
        if (rv != 0 || res.n_assignments != 1) {
            gen_die("idle placement", rv != 0 ? rv : CM_ENOSPC);
        }
        char *cmd = assign_json(&res, &rq);
        propose(&b, cmd, 1);
        cJSON_free(cmd);
        sched_result_done(&res);
        while (b.outstanding > 0) {
            /* NOWAIT: the commit happens in the loop's prepare phase; a blocking
             * run would then sleep until the next timer. */
            ev_run(b.loop, EVRUN_NOWAIT);
        }
        lat[k] = (now_s() - t) * 1000.0;
    }
    qsort(lat, idle, sizeof(double), cmp_double);

    printf("nodes=%u\napps=%u\ntasks_per_app=%u\nbatch=%u\n", nodes, apps, tasks, batch);
    printf("placed=%zu\ncommitted=%zu\nfailures=%d\nseconds=%.3f\n", placed,
           committed_batches, b.failures, dt);
    printf("committed_placements_per_s=%.0f\n",
           dt > 0 ? (double)committed_batches / dt : 0.0);
    if (idle > 0) {
        printf("submit_p50_ms=%.3f\nsubmit_p99_ms=%.3f\n", lat[idle / 2],
               lat[(size_t)((double)idle * 0.99)]);
    }
    free(lat);
    free(reqs);
    free(names);
    sched_free(s);
    raft_host_close(b.host);
    cm_state_close(b.state);
    return b.failures > 0 ? 1 : 0;
}
