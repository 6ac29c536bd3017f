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
/* A task counts for a deployment: running, and healthy when the app has health
 * checks (else not reported unhealthy). */
bool cm_deploy_task_ready(const struct cm_task_row *row, bool has_health_checks);

#endif
