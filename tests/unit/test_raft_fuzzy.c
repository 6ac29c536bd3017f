/* Fuzzy tests for the raft core: random scenarios on the deterministic cluster
 * (tests/lib/cluster.h) with crashes, restarts, partitions, loss, duplication,
 * reordering, proposals, membership changes, transfers, reads and snapshots,
 * checking the invariants after every step and convergence after healing.
 *
 *   RAFT_FUZZY_SEEDS=N  run seeds 1..N (default FUZZY_DEFAULT_SEEDS)
 *   RAFT_FUZZY_SEED=S   run seed S only and print its whole trace */
#include <stdlib.h>

#include "base/base.h"
#include "cluster.h"
#include "raft/raft.h"
#include "test.h"

#define FUZZY_DEFAULT_SEEDS 3000

static uint64_t pick(struct cm_rng *rng, uint64_t n)
{
    return cm_rng_below(rng, n);
}

/* A random server id among 1..n. */
static raft_id pick_node(struct cluster *c, struct cm_rng *rng, unsigned n)
{
    (void)c;
    return (raft_id)pick(rng, n) + 1;
}

static void random_change(struct cluster *c, struct cm_rng *rng, unsigned n)
{
    raft_id l = cluster_leader(c);
    if (l == 0) {
        return;
    }
    const struct raft_config *cfg = raft_config_current(cluster_raft(c, l));
    raft_id id = pick_node(c, rng, n);
    const struct raft_server *s = raft_config_get(cfg, id);
    uint8_t op;
    if (s == NULL) {
        if (!cluster_is_up(c, id)) {
            cluster_start(c, id);
        }
        op = RAFT_CHANGE_ADD_LEARNER;
    } else if (s->role == RAFT_LEARNER) {
        op = pick(rng, 4) == 0 ? RAFT_CHANGE_REMOVE : RAFT_CHANGE_PROMOTE;
    } else {
        op = pick(rng, 2) == 0 ? RAFT_CHANGE_DEMOTE : RAFT_CHANGE_REMOVE;
    }
    cluster_change(c, l, op, id);
}

static void run_seed(uint64_t seed, bool verbose)
{
    struct cm_rng rng;
    cm_rng_seed(&rng, seed * 0x9e3779b97f4a7c15ull + 17);
    struct cluster_options o;
    cluster_options_default(&o);
    o.seed = seed;
    static const unsigned voters[] = {1, 2, 3, 3, 3, 4, 5, 5};
    o.voters = voters[pick(&rng, CM_ARRAY_SIZE(voters))];
    o.n = CM_MIN(o.voters + (unsigned)pick(&rng, 3), (unsigned)CLUSTER_MAX);
    o.raft.snapshot_threshold = 4 + pick(&rng, 28);
    o.raft.snapshot_trailing = pick(&rng, 8);
    o.raft.snapshot_chunk = 16 + (size_t)pick(&rng, 64);
    o.raft.max_inflight = 1 + (unsigned)pick(&rng, 8);
    o.raft.max_append_entries = 1 + (unsigned)pick(&rng, 16);
    o.raft.max_append_bytes = 16 + (size_t)pick(&rng, 256);
    o.raft.disable_pre_vote = pick(&rng, 4) == 0;
    o.raft.disable_check_quorum = !o.raft.disable_pre_vote && pick(&rng, 6) == 0;
    o.snapshot_pad = (unsigned)pick(&rng, 200);
    o.disk_delay_max = 1 + (unsigned)pick(&rng, 20);
    o.net_delay_max = 5 + (unsigned)pick(&rng, 30);
    o.peer_lost_on_crash = pick(&rng, 2) == 0;
    o.trace_stdout = verbose;
    struct cluster *c = cluster_new(&o);
    cluster_tracef(c, 0,
                   "seed %llu: %u servers, %u voters, threshold %llu trailing %llu "
                   "chunk %zu inflight %u batch %u pre-vote %d check-quorum %d",
                   (unsigned long long)seed, o.n, o.voters,
                   (unsigned long long)o.raft.snapshot_threshold,
                   (unsigned long long)o.raft.snapshot_trailing, o.raft.snapshot_chunk,
                   o.raft.max_inflight, o.raft.max_append_entries,
                   !o.raft.disable_pre_vote, !o.raft.disable_check_quorum);
    unsigned steps = 40 + (unsigned)pick(&rng, 60);
    for (unsigned i = 0; i < steps; i++) {
        unsigned r = (unsigned)pick(&rng, 100);
        if (r < 35) {
            unsigned k = 1 + (unsigned)pick(&rng, 3);
            for (unsigned j = 0; j < k; j++) {
                cluster_submit(c, 0, 1 + (unsigned)pick(&rng, 8), NULL);
            }
        } else if (r < 43) {
            if (pick(&rng, 4) == 0) {
                /* A connection reset: a false alarm about a live peer. */
                cluster_peer_lost(c, pick_node(c, &rng, o.n), pick_node(c, &rng, o.n));
            } else {
                cluster_crash(c, pick_node(c, &rng, o.n));
            }
        } else if (r < 53) {
            raft_id id = pick_node(c, &rng, o.n);
            if (id <= o.voters || pick(&rng, 2) == 0) {
                cluster_start(c, id);
            }
        } else if (r < 60) {
            raft_id group[CLUSTER_MAX];
            unsigned k = 0;
            for (unsigned j = 1; j <= o.n; j++) {
                if (pick(&rng, 2) == 0) {
                    group[k++] = j;
                }
            }
            cluster_partition(c, group, k);
        } else if (r < 66) {
            cluster_heal(c);
        } else if (r < 71) {
            cluster_set_faults(c, (unsigned)pick(&rng, 200), (unsigned)pick(&rng, 100));
        } else if (r < 79) {
            random_change(c, &rng, o.n);
        } else if (r < 84) {
            cluster_transfer(c, 0, pick(&rng, 2) ? 0 : pick_node(c, &rng, o.n));
        } else if (r < 92) {
            cluster_read(c, 0, NULL);
        }
        cluster_run(c, 10 + pick(&rng, pick(&rng, 4) == 0 ? 1500 : 300));
    }
    /* Without pre-vote a server that cannot win (say, one whose votes count
     * in a configuration it missed the end of) still bumps its term and
     * votes for itself, and the real winner needs to beat it to the timer,
     * a coin flip per round: give elections more time then. */
    cluster_check_converges(c, o.raft.disable_pre_vote ? 20000 : 10000, 20000);
    cluster_free(c);
}

TEST(fuzzy_random_scenarios)
{
    const char *one = getenv("RAFT_FUZZY_SEED");
    if (one != NULL) {
        uint64_t seed = strtoull(one, NULL, 10);
        printf("# replaying seed %llu\n", (unsigned long long)seed);
        run_seed(seed, true);
        return;
    }
    const char *env = getenv("RAFT_FUZZY_SEEDS");
    uint64_t n = env != NULL ? strtoull(env, NULL, 10) : FUZZY_DEFAULT_SEEDS;
    for (uint64_t seed = 1; seed <= n; seed++) {
        run_seed(seed, false);
    }
    printf("# %llu seeds\n", (unsigned long long)n);
}
