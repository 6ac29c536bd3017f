/* Autopilot (DESIGN.md §4): the leader keeps --voters voters by promoting
 * healthy, caught-up learners and by replacing voters that stay silent longer
 * than a grace period. One membership change at a time (raft changes one
 * server per configuration entry, thesis §4.1).
 *
 * cm_autopilot_decide() is pure (table-driven tests in test_node_autopilot.c);
 * the node's cluster glue gathers its input once a second on the leader and
 * carries the action out with raft_host_change(). */
#include "node/cluster_int.h"

static bool is_dead(const struct cm_autopilot_input *in,
                    const struct cm_autopilot_server *s)
{
    return s->id != in->self && s->silent_ms > CM_AUTOPILOT_GRACE_MS;
}

void cm_autopilot_decide(const struct cm_autopilot_input *in,
                         struct cm_autopilot_action *ret)
{
    *ret = (struct cm_autopilot_action){CM_AUTOPILOT_NONE, 0, "nothing to do"};
    if (in->change_pending) {
        ret->why = "a membership change is in progress";
        return;
    }
    unsigned voters = 0, candidates = 0;
    const struct cm_autopilot_server *dead = NULL, *cand = NULL;
    const struct cm_autopilot_server *unhealthy = NULL, *last = NULL;
    for (unsigned i = 0; i < in->n; i++) {
        const struct cm_autopilot_server *s = &in->servers[i];
        if (s->voter) {
            voters++;
            if (dead == NULL && is_dead(in, s)) {
                dead = s;
            }
            /* The voter to drop when there are too many: an unhealthy one
             * first, else the last one listed; never the leader itself. */
            if (s->id != in->self) {
                if (!s->healthy && unhealthy == NULL) {
                    unhealthy = s;
                }
                last = s;
            }
        } else if (s->healthy && s->caught_up) {
            candidates++;
            if (cand == NULL) {
                cand = s;
            }
        }
    }
    const struct cm_autopilot_server *extra = unhealthy != NULL ? unhealthy : last;
    if (dead != NULL) {
        /* Promote the replacement first: with 3 voters of which one is dead,
         * 4 voters need 3 for a quorum, which the 3 live ones give; demoting
         * first would leave 2 voters that both must stay up. */
        if (voters <= in->want_voters && cand != NULL) {
            *ret = (struct cm_autopilot_action){CM_AUTOPILOT_PROMOTE, cand->id,
                                                "replacing a silent voter"};
            return;
        }
        if (voters > in->want_voters) {
            *ret = (struct cm_autopilot_action){CM_AUTOPILOT_DEMOTE, dead->id,
                                                "voter silent past the grace period"};
            return;
        }
        /* No replacement: keep its vote; demoting it would not add any
         * tolerance for further failures. */
    }
    if (voters < in->want_voters && cand != NULL &&
        ((voters + 1) % 2 == 1 || candidates >= 2)) {
        /* An even voter count tolerates no more failures than the odd count
         * below it, so promote only towards an odd count (or when a second
         * candidate will follow at once). */
        *ret = (struct cm_autopilot_action){CM_AUTOPILOT_PROMOTE, cand->id,
                                            "fewer voters than wanted"};
        return;
    }
    if (voters > in->want_voters && extra != NULL) {
        *ret = (struct cm_autopilot_action){CM_AUTOPILOT_DEMOTE, extra->id,
                                            "more voters than wanted"};
        return;
    }
}
