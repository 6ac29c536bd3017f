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
    static const char *const roles[] = {"*", "web", "batch", "analytics"};
    static const double weights[] = {1, 2, 1, 1};
    for (size_t i = 0; i < CM_ARRAY_SIZE(roles); i++) {
        struct sched_role r = {.name = roles[i], .weight = weights[i]};
        int rv = sched_role_set(s, &r);
        if (rv != 0) {
            die("sched_role_set", rv);
        }
    }

    /* Nodes: 16/32/64 CPUs with 4 GiB per CPU, 40 per rack, 3 zones; one in ten
     * reserves a quarter of itself for "web". */
    struct cm_rng rng;
    cm_rng_seed(&rng, seed);
    for (unsigned i = 0; i < nodes; i++) {
        char id[32], rack[32], zone[16];
        snprintf(id, sizeof(id), "node-%05u", i);
        snprintf(rack, sizeof(rack), "rack-%u", i / 40);
        snprintf(zone, sizeof(zone), "zone-%c", 'a' + (char)(i % 3));
        uint64_t cpus = 16u << (i % 3);
        struct sched_attr attrs[] = {{"rack_id", rack}, {"zone", zone}};
        struct sched_port_range pr = {31000, 32000};
        struct sched_reservation rsv = {.role = "web",
                                        .res = SCHED_RES(cpus * 250, cpus * 1024, 0, 0)};
        struct sched_node n = {
            .id = id,
            .total = SCHED_RES(cpus * 1000, cpus * 4096, 500 * 1024, 0),
            .attrs = attrs,
            .n_attrs = 2,
            .port_ranges = &pr,
            .n_port_ranges = 1,
            .reservations = &rsv,
            .n_reservations = i % 10 == 0,
        };
        int rv = sched_node_upsert(s, &n);
        if (rv != 0) {
            die("sched_node_upsert", rv);
        }
    }

    /* Apps. */
    struct sched_request *reqs = calloc(apps, sizeof(*reqs));
    char(*names)[32] = calloc(apps, sizeof(*names));
    static const uint16_t one_port[] = {0}, two_ports[] = {0, 0};
    static const struct sched_constraint unique_host[] = {{"hostname", "UNIQUE", NULL}};
    static const struct sched_constraint group_rack[] = {{"rack_id", "GROUP_BY", NULL}};
    static const struct sched_constraint max_rack[] = {{"rack_id", "MAX_PER", "5"}};
    static const struct sched_constraint like_zone[] = {{"zone", "LIKE", "zone-[ab]"}};
    if (reqs == NULL || names == NULL) {
        die("calloc", CM_ENOMEM);
    }
    for (unsigned i = 0; i < apps; i++) {
        struct sched_request *r = &reqs[i];
        snprintf(names[i], sizeof(names[i]), "/bench/app-%04u", i);
        r->app = names[i];
        r->role = roles[i % CM_ARRAY_SIZE(roles)];
        r->count = tasks;
        uint64_t mcpus = 100 * (1 + cm_rng_below(&rng, 15)); /* 0.1 .. 1.5 */
        uint64_t mem = 128 * (1 + cm_rng_below(&rng, 16));   /* 128 MiB .. 2 GiB */
        r->res = SCHED_RES(mcpus, mem, 256, 0);
        unsigned pk = i % 10;
        if (pk < 7) {
            r->ports = one_port;
            r->n_ports = 1;
        } else if (pk == 7) {
            r->ports = two_ports;
            r->n_ports = 2;
        }
        switch (i % 20) {
        case 0:
        case 10:
            r->constraints = unique_host;
            r->n_constraints = 1;
            break;
        case 1:
        case 11:
            r->constraints = group_rack;
            r->n_constraints = 1;
            break;
        case 2:
            r->constraints = max_rack;
            r->n_constraints = 1;
            break;
        case 3:
            r->constraints = like_zone;
            r->n_constraints = 1;
            break;
        default:
            break;
        }
    }

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
