/* Scheduler core benchmark: the C1M shape (Nomad's "million container
 * challenge") scaled to one machine: 5,000 simulated nodes of mixed sizes in
 * racks and zones, 1,000 apps x 100 tasks with a mix of constraints (UNIQUE
 * hostname, GROUP_BY rack, MAX_PER rack, LIKE zone, most none), several roles
 * with weights and a reservation pool, one or two dynamic ports per task.
 * Measures placements per second of sched_place alone (wall clock, one thread;
 * building the cluster is not timed).
 *
 * Usage: sched_core [--nodes N] [--apps A] [--tasks T] [--batch B] [--seed S]
 *                   [--policy binpack|spread]
 * Prints `key=value` lines on stdout: placed, unplaced, seconds, placements_per_s. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "sched/sched.h"
#include "sched_gen.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rv)
{
    fprintf(stderr, "sched_core: %s: %s\n", what, cm_strerror(rv));
    exit(1);
}

int main(int argc, char **argv)
{
    unsigned nodes = 5000, apps = 1000, tasks = 100, batch = 50;
    uint64_t seed = 1;
    enum sched_policy policy = SCHED_POLICY_BINPACK;
    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned long v = strtoul(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--nodes") == 0) {
            nodes = (unsigned)v;
        } else if (strcmp(argv[i], "--apps") == 0) {
            apps = (unsigned)v;
        } else if (strcmp(argv[i], "--tasks") == 0) {
            tasks = (unsigned)v;
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = v ? (unsigned)v : 1;
        } else if (strcmp(argv[i], "--seed") == 0) {
            seed = v;
        } else if (strcmp(argv[i], "--policy") == 0) {
            policy = strcmp(argv[i + 1], "spread") == 0 ? SCHED_POLICY_SPREAD
                                                        : SCHED_POLICY_BINPACK;
        } else {
            fprintf(stderr,
                    "usage: sched_core [--nodes N] [--apps A] [--tasks T] "
                    "[--batch B] [--seed S] [--policy binpack|spread]\n");
            return 2;
        }
    }

    struct sched_options o = {.policy = policy, .seed = seed};
    struct sched *s = sched_new(&o);
    if (s == NULL) {
        die("sched_new", CM_ENOMEM);
    }
    char(*names)[32];
    struct sched_request *reqs = gen_workload(s, nodes, apps, tasks, seed, &names);

    size_t placed = 0, unplaced = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < apps; i += batch) {
        unsigned n = apps - i < batch ? apps - i : batch;
        struct sched_result res;
        int rv = sched_place(s, reqs + i, n, &res);
        if (rv != 0) {
            die("sched_place", rv);
        }
        placed += res.n_assignments;
        for (size_t u = 0; u < res.n_unplaced; u++) {
            unplaced += res.unplaced[u].count;
        }
        sched_result_done(&res);
    }
    double dt = now_s() - t0;
    printf("nodes=%u\napps=%u\ntasks_per_app=%u\nbatch=%u\n", nodes, apps, tasks, batch);
    printf("placed=%zu\nunplaced=%zu\nseconds=%.6f\nplacements_per_s=%.0f\n", placed,
           unplaced, dt, dt > 0 ? (double)placed / dt : 0.0);
    sched_free(s);
    free(reqs);
    free(names);
    return 0;
}
