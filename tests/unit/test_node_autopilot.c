/* Autopilot decisions (lib/node/autopilot.c), table-driven. */
#include "node/cluster_int.h"
#include "test.h"

#define DEAD (CM_AUTOPILOT_GRACE_MS + 1)

/* Servers: id, voter, healthy, caught_up, silent_ms. The leader is id 1. */
struct ap_case {
    const char *name;
    unsigned want;
    bool pending;
    unsigned n;
    struct cm_autopilot_server sv[8];
    enum cm_autopilot_op op;
    uint64_t id;
};

static const struct ap_case cases[] = {
    {"alone: nothing", 3, false, 1, {{1, true, true, true, 0}}, CM_AUTOPILOT_NONE, 0},
    {"one learner: stay at one voter (2 is no better)",
     3,
     false,
     2,
     {{1, true, true, true, 0}, {2, false, true, true, 100}},
     CM_AUTOPILOT_NONE,
     0},
    {"two learners: promote the first",
     3,
     false,
     3,
     {{1, true, true, true, 0}, {2, false, true, true, 100}, {3, false, true, true, 100}},
     CM_AUTOPILOT_PROMOTE,
     2},
    {"two voters, one learner: promote to three",
     3,
     false,
     3,
     {{1, true, true, true, 0}, {2, true, true, true, 100}, {3, false, true, true, 100}},
     CM_AUTOPILOT_PROMOTE,
     3},
    {"learner behind: not promoted",
     3,
     false,
     3,
     {{1, true, true, true, 0}, {2, true, true, true, 100}, {3, false, true, false, 100}},
     CM_AUTOPILOT_NONE,
     0},
    {"learner silent: not promoted",
     3,
     false,
     3,
     {{1, true, true, true, 0},
      {2, true, true, true, 100},
      {3, false, false, true, 5000}},
     CM_AUTOPILOT_NONE,
     0},
    {"change pending: wait",
     3,
     true,
     3,
     {{1, true, true, true, 0}, {2, true, true, true, 100}, {3, false, true, true, 100}},
     CM_AUTOPILOT_NONE,
     0},
    {"three voters wanted and present: nothing",
     3,
     false,
     4,
     {{1, true, true, true, 0},
      {2, true, true, true, 100},
      {3, true, true, true, 100},
      {4, false, true, true, 100}},
     CM_AUTOPILOT_NONE,
     0},
    {"dead voter with a spare learner: promote the spare first",
     3,
     false,
     4,
     {{1, true, true, true, 0},
      {2, true, false, true, DEAD},
      {3, true, true, true, 100},
      {4, false, true, true, 100}},
     CM_AUTOPILOT_PROMOTE,
     4},
    {"dead voter after its replacement: demote it",
     3,
     false,
     4,
     {{1, true, true, true, 0},
      {2, true, false, true, DEAD},
      {3, true, true, true, 100},
      {4, true, true, true, 100}},
     CM_AUTOPILOT_DEMOTE,
     2},
    {"dead voter, no spare: keep its vote",
     3,
     false,
     3,
     {{1, true, true, true, 0}, {2, true, false, true, DEAD}, {3, true, true, true, 100}},
     CM_AUTOPILOT_NONE,
     0},
    {"silent but within the grace period: nothing",
     3,
     false,
     4,
     {{1, true, true, true, 0},
      {2, true, false, true, CM_AUTOPILOT_GRACE_MS - 1},
      {3, true, true, true, 100},
      {4, false, true, true, 100}},
     CM_AUTOPILOT_NONE,
     0},
    {"too many voters: demote an unhealthy one, never the leader",
     1,
     false,
     3,
     {{1, true, true, true, 0}, {2, true, true, true, 100}, {3, true, false, true, 4000}},
     CM_AUTOPILOT_DEMOTE,
     3},
    {"too many voters, all healthy: demote the last listed",
     3,
     false,
     5,
     {{1, true, true, true, 0},
      {2, true, true, true, 100},
      {3, true, true, true, 100},
      {4, true, true, true, 100},
      {5, true, true, true, 100}},
     CM_AUTOPILOT_DEMOTE,
     5},
    {"five wanted: promote towards five",
     5,
     false,
     5,
     {{1, true, true, true, 0},
      {2, true, true, true, 100},
      {3, true, true, true, 100},
      {4, false, true, true, 100},
      {5, false, true, true, 100}},
     CM_AUTOPILOT_PROMOTE,
     4},
    {"the leader itself is never judged dead",
     3,
     false,
     3,
     {{1, true, true, true, DEAD},
      {2, true, true, true, 100},
      {3, true, true, true, 100}},
     CM_AUTOPILOT_NONE,
     0},
};

TEST(decisions)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        const struct ap_case *c = &cases[i];
        struct cm_autopilot_input in = {
            .self = 1,
            .want_voters = c->want,
            .change_pending = c->pending,
            .n = c->n,
            .servers = c->sv,
        };
        struct cm_autopilot_action a;
        cm_autopilot_decide(&in, &a);
        if (a.op != c->op || a.id != c->id) {
            test__fail(__FILE__, __LINE__,
                       "case '%s': got op %d id %llu (%s), want op %d id %llu", c->name,
                       (int)a.op, (unsigned long long)a.id, a.why, (int)c->op,
                       (unsigned long long)c->id);
        }
        ASSERT_NOT_NULL(a.why);
    }
}

/* Joining nodes one by one and promoting as told ends at the wanted count, with
 * odd voter counts in between except for one step. */
TEST(converges_to_wanted_voters)
{
    struct cm_autopilot_server sv[6];
    for (unsigned i = 0; i < 6; i++) {
        sv[i] = (struct cm_autopilot_server){i + 1, i == 0, true, true, 0};
    }
    for (unsigned want = 1; want <= 5; want += 2) {
        for (unsigned i = 1; i < 6; i++) {
            sv[i].voter = false;
        }
        for (unsigned round = 0; round < 20; round++) {
            struct cm_autopilot_input in = {1, want, false, 6, sv};
            struct cm_autopilot_action a;
            cm_autopilot_decide(&in, &a);
            if (a.op == CM_AUTOPILOT_NONE) {
                break;
            }
            ASSERT_INT_EQ(a.op, CM_AUTOPILOT_PROMOTE);
            sv[a.id - 1].voter = true;
        }
        unsigned voters = 0;
        for (unsigned i = 0; i < 6; i++) {
            voters += sv[i].voter;
        }
        ASSERT_UINT_EQ(voters, want);
    }
}
