/* Golden-trace tests: small deterministic cluster scenarios whose transcript
 * (the core's tracer lines and the harness's own) is asserted line by line.
 * The trace format is part of the contract (STYLE.md rule 16): change these
 * expectations only together with a deliberate change of the format. */
#include <stdlib.h>

#include "base/base.h"
#include "cluster.h"
#include "raft/raft.h"
#include "test.h"

/* Fixed delays: the only randomness left is the cores' election timeouts,
 * which come from the seeds. */
static struct cluster *golden_cluster(unsigned n)
{
    struct cluster_options o;
    cluster_options_default(&o);
    o.n = n;
    o.voters = n;
    o.seed = 7;
    o.net_delay_min = o.net_delay_max = 10;
    o.disk_delay_min = o.disk_delay_max = 2;
    o.trace_stdout = getenv("RAFT_TRACE") != NULL;
    o.capture = true;
    return cluster_new(&o);
}

/* Compare the captured transcript with @want, line by line, skipping the
 * harness's delivery lines when @skip_net. */
static void assert_transcript(struct cluster *c, const char *const *want, size_t n,
                              bool skip_net)
{
    const char *p = cluster_captured(c);
    size_t i = 0;
    while (*p != '\0') {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p += len + (end ? 1 : 0);
        if (skip_net && (strstr(line, " 0: deliver ") || strstr(line, " 0: drop "))) {
            continue;
        }
        if (i >= n) {
            test__fail(__FILE__, __LINE__, "extra line %zu: \"%s\"", i + 1, line);
        }
        if (strcmp(line, want[i]) != 0) {
            test__fail(__FILE__, __LINE__, "line %zu:\n#   got  \"%s\"\n#   want \"%s\"",
                       i + 1, line, want[i]);
        }
        i++;
    }
    if (i != n) {
        test__fail(__FILE__, __LINE__, "transcript ends after %zu lines, want %zu", i, n);
    }
}

static bool has_leader(struct cluster *c, void *arg)
{
    (void)arg;
    return cluster_leader(c) != 0;
}

/* Three servers elect a leader (pre-vote, then vote), which appends its
 * barrier, gets two proposals, replicates them in one batch once the
 * followers answered the first probe, and commits on its own persistence plus
 * one follower; the followers learn the commit with the next heartbeat. */
static const char *const golden_election[] = {
    "     0 1: start term 0 last 1 snapshot 0 voters 3",
    "     0 0: start 1: term 0 log 1..1 snapshot 0",
    "     0 2: start term 0 last 1 snapshot 0 voters 3",
    "     0 0: start 2: term 0 log 1..1 snapshot 0",
    "     0 3: start term 0 last 1 snapshot 0 voters 3",
    "     0 0: start 3: term 0 log 1..1 snapshot 0",
    "  1026 2: follower -> pre-candidate term 0",
    "  1036 0: deliver 2->1 pre-vote t1 last 1/1",
    "  1036 1: grant pre-vote to 2 term 1",
    "  1036 0: deliver 2->3 pre-vote t1 last 1/1",
    "  1036 3: grant pre-vote to 2 term 1",
    "  1046 0: deliver 1->2 pre-vote-result t1 granted",
    "  1046 2: term 0 -> 1",
    "  1046 2: pre-candidate -> candidate term 1",
    "  1046 0: deliver 3->2 pre-vote-result t1 granted",
    "  1056 0: deliver 2->1 vote t1 last 1/1",
    "  1056 1: term 0 -> 1",
    "  1056 1: grant vote to 2 term 1",
    "  1056 0: deliver 2->3 vote t1 last 1/1",
    "  1056 3: term 0 -> 1",
    "  1056 3: grant vote to 2 term 1",
    "  1066 0: deliver 1->2 vote-result t1 granted",
    "  1066 2: candidate -> leader term 1",
    "  1066 0: deliver 3->2 vote-result t1 granted",
    "  1070 0: submit 2 to 2: ok",
    "  1076 0: deliver 2->1 append t1 prev 1/1 n 1 commit 0",
    "  1076 1: leader is 2 term 1",
    "  1076 0: deliver 2->3 append t1 prev 1/1 n 1 commit 0",
    "  1076 3: leader is 2 term 1",
    "  1088 0: deliver 1->2 append-result t1 ok last 2",
    "  1088 2: commit 0 -> 2",
    "  1088 0: deliver 3->2 append-result t1 ok last 2",
    "  1098 0: deliver 2->1 append t1 prev 2/1 n 2 commit 2",
    "  1098 1: commit 0 -> 2",
    "  1098 0: deliver 2->3 append t1 prev 2/1 n 2 commit 2",
    "  1098 3: commit 0 -> 2",
    "  1110 0: deliver 1->2 append-result t1 ok last 4",
    "  1110 2: commit 2 -> 4",
    "  1110 0: deliver 3->2 append-result t1 ok last 4",
    "  1176 0: deliver 2->1 append t1 prev 4/1 n 0 commit 4",
    "  1176 1: commit 2 -> 4",
    "  1176 0: deliver 2->3 append t1 prev 4/1 n 0 commit 4",
    "  1176 3: commit 2 -> 4",
    "  1186 0: deliver 1->2 append-result t1 ok last 4",
    "  1186 0: deliver 3->2 append-result t1 ok last 4",
};

TEST(golden_election_and_replication)
{
    struct cluster *c = golden_cluster(3);
    ASSERT_TRUE(cluster_run_until(c, has_leader, NULL, 5000));
    ASSERT_UINT_EQ(cluster_leader(c), 2);
    raft_index idx;
    ASSERT_OK(cluster_submit(c, 0, 2, &idx));
    ASSERT_UINT_EQ(idx, 4);
    cluster_run(c, 120);
    assert_transcript(c, golden_election, CM_ARRAY_SIZE(golden_election), false);
    for (raft_id id = 1; id <= 3; id++) {
        ASSERT_UINT_EQ(cluster_applied(c, id), 4);
    }
    cluster_free(c);
}

/* The leader crashes; after the followers' leases run out one wins a new term
 * (its pre-vote and vote to the dead server are dropped), commits a barrier and
 * a proposal, and the old leader rejoins as a follower. Network lines are left
 * out. */
static const char *const golden_reelection[] = {
    "  1190 0: crash 2 (0 writes lost)",
    "  2267 1: follower -> pre-candidate term 1",
    "  2277 3: grant pre-vote to 1 term 2",
    "  2287 1: term 1 -> 2",
    "  2287 1: pre-candidate -> candidate term 2",
    "  2297 3: term 1 -> 2",
    "  2297 3: grant vote to 1 term 2",
    "  2307 1: candidate -> leader term 2",
    "  2310 0: submit 1 to 1: ok",
    "  2310 2: start term 1 last 4 snapshot 0 voters 3",
    "  2310 0: start 2: term 1 log 1..4 snapshot 0",
    "  2317 2: term 1 -> 2",
    "  2317 2: leader is 1 term 2",
    "  2317 2: commit 0 -> 4",
    "  2317 3: leader is 1 term 2",
    "  2329 1: commit 4 -> 5",
    "  2339 2: commit 4 -> 5",
    "  2339 3: commit 4 -> 5",
    "  2351 1: commit 5 -> 6",
    "  2417 2: commit 5 -> 6",
    "  2417 3: commit 5 -> 6",
};

TEST(golden_leader_crash_and_reelection)
{
    struct cluster *c = golden_cluster(3);
    ASSERT_TRUE(cluster_run_until(c, has_leader, NULL, 5000));
    raft_id l = cluster_leader(c);
    raft_index idx;
    ASSERT_OK(cluster_submit(c, l, 2, &idx));
    cluster_run(c, 120);
    cluster_capture(c, false);
    cluster_capture_reset(c);
    cluster_capture(c, true);
    cluster_crash(c, l);
    ASSERT_TRUE(cluster_run_until(c, has_leader, NULL, 5000));
    ASSERT_OK(cluster_submit(c, 0, 1, &idx));
    ASSERT_UINT_EQ(idx, 6);
    cluster_start(c, l);
    cluster_run(c, 300);
    assert_transcript(c, golden_reelection, CM_ARRAY_SIZE(golden_reelection), true);
    ASSERT_UINT_EQ(cluster_applied(c, l), 6);
    cluster_free(c);
}

TEST(golden_dump)
{
    if (getenv("RAFT_GOLDEN_DUMP") == NULL) {
        test_skip("set RAFT_GOLDEN_DUMP to print the transcripts");
    }
    struct cluster *c = golden_cluster(3);
    ASSERT_TRUE(cluster_run_until(c, has_leader, NULL, 5000));
    raft_id l = cluster_leader(c);
    raft_index idx;
    ASSERT_OK(cluster_submit(c, l, 2, &idx));
    cluster_run(c, 120);
    printf("%s", cluster_captured(c));
    printf("----\n");
    size_t off = strlen(cluster_captured(c));
    cluster_crash(c, l);
    ASSERT_TRUE(cluster_run_until(c, has_leader, NULL, 5000));
    ASSERT_OK(cluster_submit(c, 0, 1, &idx));
    cluster_start(c, l);
    cluster_run(c, 300);
    printf("%s", cluster_captured(c) + off);
    cluster_free(c);
}
