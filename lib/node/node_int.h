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
    const char *vip_cidr; /* --vip-cidr, for named VIPs (borrowed) */
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

#endif
