/* lib/api: the HTTP API every node serves (DESIGN.md §10): Marathon v2
 * compatible routes, the native /v1 routes, /ping and /metrics.
 *
 * The handlers know nothing of raft or the daemon: they read the local replica
 * (state.db) and change things only by proposing commands through the ops the
 * daemon provides (struct cm_api_ops). A write is acknowledged once its command
 * is applied on this node, so a client that reads from the same node next sees
 * its own write.
 *
 * Thread safety: everything runs on the daemon's loop thread.
 */
#ifndef CM_API_H
#define CM_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct cm_http_server;
struct cm_state;
struct ev_loop;

/* Completion of a proposal: status 0 once applied here at @index; otherwise a
 * cm_err (CM_ENOTLEADER when no leader could take it, CM_EVALIDATION with
 * @msg naming the field, CM_ESHUTDOWN, ...). @msg is borrowed for the call. */
typedef void (*cm_api_done_fn)(void *arg, int status, uint64_t index, const char *msg);

/* What the daemon gives the handlers. All callbacks get @data. */
struct cm_api_ops {
    void *data;
    /* The local replica (borrowed; valid for the daemon's life). */
    struct cm_state *(*state)(void *data);
    /* Validate and propose a command (JSON text, copied): on the leader
     * directly, on a follower forwarded to the leader. Returns 0 when @done
     * will run (exactly once, from the loop, never inside this call), or an
     * error (then @done never runs) with @eb saying why. */
    int (*propose)(void *data, const char *cmd, size_t len, cm_api_done_fn done,
                   void *arg, struct cm_errbuf *eb);
    /* Wall-clock ms since the epoch (the leader stamps commands with it). */
    int64_t (*now_ms)(void *data);
    /* The leader's HTTP address "host:port" into @buf; false when unknown. */
    bool (*leader)(void *data, char *buf, size_t cap);
    /* This node: its name (node id in the state) and HTTP address. */
    const char *(*node_name)(void *data);
    const char *(*http_address)(void *data);
    /* Logs of a task that runs on this node: up to @max bytes of @stream
     * ("stdout" or "stderr") from @offset (negative: from the end) into @out;
     * *ret_next is the offset after them. CM_ENOTFOUND when the task has no
     * sandbox here. */
    int (*task_log)(void *data, const char *task_id, const char *stream, int64_t offset,
                    size_t max, struct cm_buf *out, int64_t *ret_next);
    /* Optional: why instances of @app wait to be placed ("3 of 5 nodes lack
     * memory; 2 fail hostname:UNIQUE"), into @buf; false when unknown here (the
     * leader's scheduler knows it). Shown by /v2/queue. */
    bool (*queue_reason)(void *data, const char *app, char *buf, size_t cap);
    /* Prometheus text lines the daemon adds to /metrics (may be NULL). */
    void (*metrics)(void *data, struct cm_buf *out);

    /* Optional (zero/NULL means "not available"): */
    /* The daemon's loop, for the timers of `logs -f` (follow is refused with
     * 503 without it). Borrowed. */
    struct ev_loop *loop;
    /* enum cm_app_feature bits this node honours (cm_app_parse_opts.features);
     * 0: none, today's node. */
    unsigned features;
    /* The binary's version for /v2/info (borrowed; NULL: "unknown"). */
    const char *version;
    /* The cluster's identity for /v2/info's frameworkId (may be NULL). */
    const char *(*cluster_id)(void *data);
    /* Linearizable reads (GET ...?consistent=true): a ReadIndex through the
     * leader, then @done (once, from the loop, never inside this call) with 0
     * when this replica has applied that index, else a cm_err and a message.
     * Returns an error when @done will not run. NULL: such reads get 503. */
    int (*read_barrier)(void *data, cm_api_done_fn done, void *arg);
    /* The raft members as a JSON array for GET /v1/members (NULL: 503). */
    int (*members)(void *data, struct cm_buf *out);
    /* This node's VIPs for GET /v1/vips (docs/vips.md): the JSON object
     * {"node", "mode", "vips": [...]} as this node programs them, appended to
     * @out (NULL: 503). */
    int (*vips)(void *data, struct cm_buf *out);
    /* When this node last heard @node's heartbeat (wall-clock ms), or -1 when
     * it does not know (only the leader hears heartbeats). May be NULL. */
    int64_t (*node_heard_ms)(void *data, const char *node);
    /* /v2/events: a subscriber whose unread bytes would pass this is dropped
     * (0: 8 MiB; the HTTP server's max_output caps it too); an SSE comment
     * goes to every subscriber this often (0: 15000 ms). The stream needs
     * @loop (503 without). */
    size_t events_max_queued;
    unsigned events_heartbeat_ms;
};

struct cm_api;

/* Register every route on @srv. @ops is copied. Errors: CM_ENOMEM, CM_EINVAL
 * (a route conflicts). */
int cm_api_start(struct cm_http_server *srv, const struct cm_api_ops *ops,
                 struct cm_api **ret);
/* Hand the events the replica recorded since the last call (db.h, "events") to
 * the /v2/events subscribers; the daemon calls it after each applied batch.
 * Accepts NULL. */
void cm_api_publish_events(struct cm_api *api);

/* Stop: pending proposals complete into closed requests harmlessly, log
 * followers end. The routes stay registered on the server with the api as
 * their data: free (or stop) the HTTP server first, then the api. Accepts
 * NULL. */
void cm_api_free(struct cm_api *api);

#endif /* CM_API_H */
