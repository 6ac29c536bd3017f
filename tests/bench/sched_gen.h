/* The C1M-shaped workload shared by the scheduler benchmarks (sched_core.c and
 * sched_commit.c): roles, @nodes nodes and @apps requests of @tasks instances. */
#ifndef SCHED_GEN_H
#define SCHED_GEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sched/sched.h"

static void gen_die(const char *what, int rv)
{
    fprintf(stderr, "%s: %s\n", what, cm_strerror(rv));
    exit(1);
}

static const char *const gen_roles[] = {"*", "web", "batch", "analytics"};

/* Fill @s with the roles and nodes; return the app requests (free with free();
 * names in *ret_names, also free()). */
static struct sched_request *gen_workload(struct sched *s, unsigned nodes, unsigned apps,
                                          unsigned tasks, uint64_t seed,
                                          char (**ret_names)[32])
{
    const char *const *roles = gen_roles;
    static const double weights[] = {1, 2, 1, 1};
    for (size_t i = 0; i < CM_ARRAY_SIZE(gen_roles); i++) {
        struct sched_role r = {.name = roles[i], .weight = weights[i]};
        int rv = sched_role_set(s, &r);
        if (rv != 0) {
            gen_die("sched_role_set", rv);
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
            gen_die("sched_node_upsert", rv);
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
        gen_die("calloc", CM_ENOMEM);
    }
    for (unsigned i = 0; i < apps; i++) {
        struct sched_request *r = &reqs[i];
        snprintf(names[i], sizeof(names[i]), "/bench/app-%04u", i);
        r->app = names[i];
        r->role = roles[i % CM_ARRAY_SIZE(gen_roles)];
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

    *ret_names = names;
    return reqs;
}

#endif
