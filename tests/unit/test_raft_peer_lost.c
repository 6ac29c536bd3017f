/* RAFT_EVENT_PEER_LOST: a follower that loses its leader's connection campaigns
 * after a short random delay instead of a whole election timeout; a false alarm
 * about a live leader disrupts nothing (the other followers keep its lease). */
#include <stdlib.h>

#include "base/base.h"
#include "cluster.h"
#include "raft/raft.h"
#include "test.h"

static bool has_leader(struct cluster *c, void *arg)
{
    raft_id old = *(raft_id *)arg;
    raft_id l = cluster_leader(c);
    return l != 0 && l != old;
}

static struct cluster *three(uint64_t seed, bool notify)
{
    struct cluster_options o;
    cluster_options_default(&o);
    o.seed = seed;
    o.peer_lost_on_crash = notify;
    o.trace_stdout = notify && getenv("PEER_LOST_TRACE") != NULL &&
                     (uint64_t)atoi(getenv("PEER_LOST_TRACE")) == seed;
    return cluster_new(&o);
}

/* Virtual ms from the leader's crash to a new leader. */
static raft_time failover_ms(uint64_t seed, bool notify)
{
    struct cluster *c = three(seed, notify);
    raft_id none = 0;
    ASSERT_TRUE(cluster_run_until(c, has_leader, &none, 10000));
    cluster_run(c, 500);
    raft_id old = cluster_leader(c);
    ASSERT_OK(cluster_submit(c, 0, 3, NULL));
    cluster_run(c, 200);
    cluster_crash(c, old);
    raft_time t0 = cluster_now(c);
    ASSERT_TRUE(cluster_run_until(c, has_leader, &old, 10000));
    raft_time dt = cluster_now(c) - t0;
    cluster_free(c);
    return dt;
}

TEST(peer_lost_makes_failover_fast)
{
    raft_time worst_fast = 0, best_slow = UINT64_MAX;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        raft_time fast = failover_ms(seed, true);
        if (getenv("PEER_LOST_DEBUG") != NULL) {
            printf("# seed %llu: %llu ms\n", (unsigned long long)seed,
                   (unsigned long long)fast);
        }
        raft_time slow = failover_ms(seed, false);
        worst_fast = CM_MAX(worst_fast, fast);
        best_slow = CM_MIN(best_slow, slow);
    }
    printf("# failover with PEER_LOST: worst %llu ms; without: best %llu ms\n",
           (unsigned long long)worst_fast, (unsigned long long)best_slow);
    /* Virtual time: deterministic, so these bounds are exact, not timing limits.
     * Without the hint no election starts before the minimum timeout (1000 ms);
     * with it, within two heartbeats plus a few round trips. */
    ASSERT_INT_OP(best_slow, >=, 1000);
    ASSERT_INT_OP(worst_fast, <, 500);
}

TEST(peer_lost_false_alarm_keeps_the_leader)
{
    struct cluster *c = three(3, false);
    raft_id none = 0;
    ASSERT_TRUE(cluster_run_until(c, has_leader, &none, 10000));
    cluster_run(c, 500);
    raft_id leader = cluster_leader(c);
    raft_term term = raft_current_term(cluster_raft(c, leader));
    raft_id follower = leader == 1 ? 2 : 1;
    /* The follower's connection from the leader resets, but the leader lives. */
    cluster_peer_lost(c, follower, leader);
    cluster_run(c, 3000);
    ASSERT_UINT_EQ(cluster_leader(c), leader);
    ASSERT_UINT_EQ(raft_current_term(cluster_raft(c, leader)), term);
    ASSERT_OK(cluster_submit(c, 0, 2, NULL));
    cluster_run(c, 500);
    ASSERT_UINT_EQ(cluster_leader(c), leader);
    cluster_free(c);
}

TEST(peer_lost_ignored_unless_it_is_the_leader)
{
    struct cluster *c = three(5, false);
    raft_id none = 0;
    ASSERT_TRUE(cluster_run_until(c, has_leader, &none, 10000));
    cluster_run(c, 500);
    raft_id leader = cluster_leader(c);
    raft_id a = leader == 1 ? 2 : 1;
    raft_id b = 6 - leader - a;
    raft_term term = raft_current_term(cluster_raft(c, a));
    cluster_peer_lost(c, a, b);      /* another follower: nothing to do */
    cluster_peer_lost(c, leader, a); /* the leader hears of a follower */
    cluster_run(c, 3000);
    ASSERT_UINT_EQ(cluster_leader(c), leader);
    ASSERT_UINT_EQ(raft_current_term(cluster_raft(c, a)), term);
    cluster_free(c);
}
