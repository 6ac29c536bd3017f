/* lib/node internals shared by node.c and controller.c. Not an API. */
#ifndef CM_NODE_INT_H
#define CM_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "node/node.h"

struct ev_loop;
struct cm_state;
struct cm_app;

/* What the controller needs from the daemon. */
struct cm_node_ctl_ops {
    void *data;
    struct cm_state *state; /* the local replica (borrowed) */
    /* Validate and propose (see struct cm_api_ops.propose). */
    int (*propose)(void *data, const char *cmd, size_t len, cm_api_done_fn done,
                   void *arg, struct cm_errbuf *eb);
    int64_t (*now_ms)(void *data);
    /* This node's id in `nodes` (the failure detector never suspects it).
     * Borrowed; NULL: none. */
    const char *self;
};

/* The leader's controller (controller.c). */
struct cm_controller;
int cm_controller_new(struct ev_loop *loop, const struct cm_node_ctl_ops *ops,
                      struct cm_controller **ret);
void cm_controller_free(struct cm_controller *c);
/* Start (this node became leader) or stop planning. */
void cm_controller_set_leader(struct cm_controller *c, bool leader);
/* The replica changed: plan again soon. Accepts NULL. */
void cm_controller_kick(struct cm_controller *c);
/* Why instances of @app could not be placed in the last pass ("3 of 5 nodes lack
 * memory"), into @buf; false when nothing waits for placement (or not leader). */
bool cm_controller_waiting(const struct cm_controller *c, const char *app, char *buf,
                           size_t cap);
/* Marathon's launch delay after @failures consecutive failures. */
int64_t cm_backoff_delay_ms(const struct cm_app *a, uint32_t failures);
/* A heartbeat from @node (its id in `nodes`, the agent's --name) reached this
 * node at @now_ms (wall clock ms, the scale of ops.now_ms). Leader memory only,
 * never in the raft log; ignored unless leader. A node silent for
 * CM_NODE_SILENCE_MS is committed `unreachable` (and its live tasks with it); an
 * unreachable node that is heard again is committed `up` at the next pass.
 * @node is copied. See liveness.c. */
void cm_controller_heartbeat(struct cm_controller *c, const char *node, int64_t now_ms);
/* When the leader last heard @node (wall-clock ms; itself: now), or -1 when
 * unknown: not leader, or no heartbeat since it became leader. */
int64_t cm_controller_last_heard(const struct cm_controller *c, const char *node);

/* ---- the failure detector (liveness.c): pure, driven by the controller */

#define CM_NODE_SILENCE_MS 5000 /* DESIGN.md §6: unreachable after 5 s */

struct cm_liveness;
/* NULL on OOM. */
struct cm_liveness *cm_liveness_new(void);
void cm_liveness_free(struct cm_liveness *l);
/* This node became leader at @now_ms: forget what was heard; every node counts
 * as just heard (so a leader change never marks nodes unreachable). */
void cm_liveness_reset(struct cm_liveness *l, int64_t now_ms);
/* Record a heartbeat. True when @node was last seen not up (plan again now).
 * On OOM the heartbeat is dropped (the next one is tried again). */
bool cm_liveness_heard(struct cm_liveness *l, const char *node, int64_t now_ms);
/* The last heartbeat of @node, or -1 when none was heard since the reset. */
int64_t cm_liveness_last(const struct cm_liveness *l, const char *node);

/* A node as the replica shows it. */
struct cm_liveness_node {
    const char *id;
    const char *state;  /* "up", "draining", "unreachable", "down" */
    int64_t updated_at; /* when the state was last set (the leader's clock) */
};

/* What the detector wants committed for one node. */
enum cm_liveness_action {
    CM_LIVENESS_NONE = 0,    /* nothing */
    CM_LIVENESS_UNREACHABLE, /* node.state unreachable: silent too long */
    CM_LIVENESS_UP,          /* node.state up: heard again */
    CM_LIVENESS_DRAINING,    /* node.state draining: heard again, was draining */
};

/* Decide for @n at @now; @self (this node, the leader) is always alive. Lowers
 * *next_ms to the time at which the answer for @n may change without news.
 * Errors: CM_ENOMEM (nothing decided). */
int cm_liveness_check(struct cm_liveness *l, const struct cm_liveness_node *n,
                      const char *self, int64_t now, enum cm_liveness_action *ret,
                      int64_t *next_ms);
/* "unreachable", "up", "draining" for an action other than NONE. */
const char *cm_liveness_state_name(enum cm_liveness_action act);

/* Replacement timing of an app's unreachable tasks (unreachableStrategy; @a NULL,
 * a deleted app: the defaults). The time at which a task unreachable since
 * @since stops counting as live and is replaced (killed in the replica); INT64_MAX
 * when never ("disabled"). */
int64_t cm_unreachable_inactive_at(const struct cm_app *a, int64_t since);
/* The time at which a task that was killed at @killed_at while its node was
 * unreachable (normally: when it became inactive) is expunged: at
 * expungeAfterSeconds after it became unreachable. INT64_MAX when never. */
int64_t cm_unreachable_expunge_at(const struct cm_app *a, int64_t killed_at);

/* ---- deployments (deploy.c, docs/deployments.md) */

struct cm_deploys;
struct cm_task_row;
typedef struct cJSON cJSON;

/* What the controller may do to an app now. */
enum cm_deploy_gate {
    CM_DEPLOY_FREE = 0, /* converge as usual (Marathon's rolling rules) */
    CM_DEPLOY_HOLD,     /* a later step: start nothing, kill no old task */
    CM_DEPLOY_CANARY,   /* start up to N new tasks, kill no old task */
};

/* The running deployments of the replica. Errors: CM_ENOMEM, storage. */
int cm_deploys_load(struct cm_state *st, struct cm_deploys **ret);
void cm_deploys_free(struct cm_deploys *ds);
/* The gate of @app (@spec its current spec, may be NULL); N in *ret_canaries. */
enum cm_deploy_gate cm_deploys_gate(const struct cm_deploys *ds, const char *app,
                                    const struct cm_app *spec, uint32_t *ret_canaries);
/* Append to @out the commands that move the deployments on (deploy.step,
 * deploy.promote, deploy.done, deploy.failed and a rollback's deploy.start);
 * *ret_recheck_ms > 0: look again after that long (timers: canary promotion,
 * progress deadline). */
int cm_deploys_advance(const struct cm_deploys *ds, struct cm_state *st, int64_t now,
                       cJSON *out, int64_t *ret_recheck_ms);
/* A task counts for a deployment: running, healthy when the app has health
 * checks (else not reported unhealthy), and ready when it has a readiness check
 * (the task row's `ready`; compat.md §1.8). */
bool cm_deploy_task_ready(const struct cm_task_row *row, bool has_health_checks,
                          bool has_readiness_checks);

#endif
