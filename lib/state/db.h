/* lib/state, section "db": state.db, the replicated state machine (DESIGN.md §4-5).
 * (Kept in its own file while the apps section of state/state.h is being written;
 * state/state.h includes it.)
 *
 * Every node applies the committed raft log to its own state.db. A command is a
 * JSON object with a "type"; it is validated before it is proposed
 * (cm_state_validate), and applying a valid command never fails and never reads a
 * clock, a random source or the machine: the leader stamps times ("at", ms since
 * the epoch), ids and ports into the command. The applied index is stored in the
 * same transaction as the command's effects.
 *
 * Commands (fields beyond "type"):
 *   app.put      app: {spec object with "id"}, version: "ISO-8601"
 *   app.delete   id: "/path"                      (its live tasks become killing)
 *   task.assign  at, tasks: [{id, app, version, node, host, ports: [int]}]
 *   task.status  at, id, state [, health: "healthy"|"unhealthy"|null]
 *                [, exit: int] [, reason: "..."] [, ready: bool]
 *                [, checks: {health: [...], readiness: [...]}]
 *                health, ready and checks are left as they are when absent
 *                (health: null clears it); the executor sends them only when
 *                a task's health or readiness changes (lib/agent/health.c).
 *   task.kill    at, ids: ["task id", ...]
 *   task.expunge ids: [...]                        (terminal tasks, and killing or
 *                                                  unreachable ones on a node that
 *                                                  is unreachable or down)
 *   node.up      at, node: {id, address, attrs: {k: v}, resources: {...}}
 *                                                  (a draining node stays draining;
 *                                                  its unreachable tasks run again)
 *   node.state   at, id (a known node), state: "up"|"unreachable"|"down"|"draining"
 *                unreachable: its staging/starting/running tasks become unreachable;
 *                up, draining: its unreachable tasks become running (its agent
 *                re-reports those that ended); down: its tasks become lost
 *   deploy.start at, id, version, apps: ["/app", ...], plan: {steps: [...]},
 *                changes: [app.put | app.delete | task.kill command, ...]
 *                [, rollbackOf: "deployment id"] [, rollback: true]
 *                (applies the changes, cancels the running deployments that
 *                touch the same apps, records the new one; docs/deployments.md)
 *   deploy.step  at, id, step: int              (the next step is current)
 *   deploy.promote at, id                        (canaries promoted)
 *   deploy.done  at, id                          (every step finished)
 *   deploy.failed at, id, reason [, rollback: "new deployment id"]
 *   deploy.cancel at, id                         (stopped, nothing rolled back)
 *   vip.put      vips: [{name, address}]          (named VIPs: the leader's allocation;
 *                                                 name without its leading '/', an
 *                                                 address held by another name refused)
 *   vip.delete   names: ["name", ...]              (no app declares them any more)
 *
 * An app.put whose address VIP labels (VIP_<n> "a.b.c.d:port", legacy vip_PORT<n>)
 * name the address of a named VIP is refused, naming the label.
 *
 * Thread safety: one struct cm_state per thread.
 */
#ifndef CM_STATE_DB_H
#define CM_STATE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct cm_state;

/* What an applied command changed (for DNS/LB snapshots, the executor, watchers). */
enum cm_state_change {
    CM_STATE_CHANGED_APPS = 1 << 0,
    CM_STATE_CHANGED_TASKS = 1 << 1,
    CM_STATE_CHANGED_NODES = 1 << 2,
    CM_STATE_CHANGED_VIPS = 1 << 3,
    CM_STATE_CHANGED_DEPLOYMENTS = 1 << 4,
};

/* Task states, DESIGN.md §5. */
enum cm_task_state {
    CM_TASK_STAGING = 0, /* assigned, not yet launched */
    CM_TASK_STARTING,    /* [transient] launch in progress */
    CM_TASK_RUNNING,     /* process alive */
    CM_TASK_KILLING,     /* [transient] stop requested */
    CM_TASK_KILLED,      /* stopped on request */
    CM_TASK_FINISHED,    /* exited 0 by itself */
    CM_TASK_FAILED,      /* exited non-zero, or could not start */
    CM_TASK_LOST,        /* its node is gone */
    CM_TASK_UNREACHABLE, /* its node stopped heartbeating */
    CM__TASK_STATE_COUNT,
};

/* "staging", "running", ...; NULL for an invalid value. */
const char *cm_task_state_name(enum cm_task_state st);
/* Parse a state name. Errors: CM_EINVAL. */
int cm_task_state_parse(const char *s, enum cm_task_state *ret);
/* killed, finished, failed and lost are terminal. */
bool cm_task_state_terminal(enum cm_task_state st);

/* Open or create state.db at @path (WAL, synchronous=NORMAL: the raft log is
 * the durable record; a lost tail of state.db transactions is re-applied from it).
 * Errors: CM_ECORRUPT naming the file, CM_EIO, CM_ENOMEM. */
int cm_state_open(const char *path, struct cm_state **ret, struct cm_errbuf *eb);
void cm_state_close(struct cm_state *s);

uint64_t cm_state_applied_index(struct cm_state *s);

/* Check a command before it is proposed: shape, types, and the rules that depend on
 * the current state (e.g. a task.status for an unknown task). On failure @eb names
 * the field ("task.assign: tasks[2].node: missing"). Errors: CM_EVALIDATION,
 * CM_ETOOBIG, CM_ENOMEM. */
int cm_state_validate(struct cm_state *s, const void *cmd, size_t len,
                      struct cm_errbuf *eb);

/* Apply the committed command at @index (> applied index). A command that does not
 * validate (it cannot happen when every proposer validates) changes nothing but the
 * applied index, identically on every node. Errors are storage failures only
 * (CM_EIO, CM_ENOMEM): fatal to the node. */
int cm_state_apply(struct cm_state *s, uint64_t index, const void *cmd, size_t len,
                   struct cm_errbuf *eb);
/* Record @index as applied without a command (raft barriers and configurations). */
int cm_state_apply_noop(struct cm_state *s, uint64_t index, struct cm_errbuf *eb);

/* What changed since the last call (a mask of enum cm_state_change); clears it. */
unsigned cm_state_take_changes(struct cm_state *s);

/* ---- events (events.c): Marathon's event bus (compat.md §2.4), from the log.
 *
 * While recording is on, applying a command also records the events it implies,
 * in Marathon's JSON shapes: app.put gives api_post_event (and
 * add_health_check_event / remove_health_check_event for the checks it adds or
 * removes), app.delete app_terminated_event, and every change of a task's state
 * or health, whatever command caused it, status_update_event followed by
 * instance_changed_event (state) or health_status_changed_event followed by
 * instance_health_changed_event (health; a task turning unhealthy first gives
 * failed_health_check_event for each failing check); a task ended by its health checks
 * (reason "health check failed...") first gives unhealthy_instance_kill_event.
 * deploy.* commands give deployment_info, deployment_step_success / _failure
 * and deployment_success / _failed (a replaced or rolled-back deployment
 * fails); a deploy.start's changes give their own events, its app.puts an
 * api_post_event only when a request started it ("origin"). Timestamps are the command's
 * stamped time ("at", or an app.put's version), never the clock, so every node records
 * the same events from the same log. Events wait in a bounded ring until taken;
 * past CM_STATE_EVENTS_MAX events or CM_STATE_EVENTS_MAX_BYTES bytes the oldest
 * are dropped, and counted. */

#define CM_STATE_EVENTS_MAX       16384
#define CM_STATE_EVENTS_MAX_BYTES (16u << 20)

struct cm_state_event {
    uint64_t index;   /* raft index of the command that caused it */
    const char *type; /* eventType: "status_update_event", ... (static) */
    const char *json; /* one line of JSON with eventType and timestamp */
    size_t len;       /* of json */
};

/* Turn recording on or off (off after open; turning it off forgets what waits).
 * Errors: CM_ENOMEM (recording stays off). */
int cm_state_events_record(struct cm_state *s, bool on);
bool cm_state_events_recording(const struct cm_state *s);
/* Hand each waiting event, oldest first, to @fn (@ev borrowed for the call) and
 * forget them. Returns how many. */
typedef void (*cm_state_event_fn)(void *data, const struct cm_state_event *ev);
size_t cm_state_take_events(struct cm_state *s, cm_state_event_fn fn, void *data);
/* Events lost since open: dropped from a full ring, or not built for lack of
 * memory (a lower bound then: a failed note loses events of unknown number). */
uint64_t cm_state_events_dropped(const struct cm_state *s);

/* Write a consistent copy of the database to the new file @path (SQLite backup
 * API) and fsync it. */
int cm_state_snapshot(struct cm_state *s, const char *path, struct cm_errbuf *eb);
/* Replace the whole state with the snapshot @path, in one transaction. */
int cm_state_restore(struct cm_state *s, const char *path, struct cm_errbuf *eb);

/* ---- queries. Rows are borrowed for the duration of the callback; a non-zero
 * return from the callback stops the iteration and is returned. */

struct cm_app_row {
    const char *id;
    const char *version;
    int64_t instances;
    const char *spec; /* JSON */
};

struct cm_task_row {
    const char *id;
    const char *app;
    const char *version;
    const char *node;
    const char *host;
    const char *ports; /* JSON array of host ports */
    enum cm_task_state state;
    const char *health;  /* NULL, "healthy" or "unhealthy" */
    const char *reason;  /* NULL or e.g. "oom" */
    int64_t exit_status; /* -1: none */
    int64_t staged_at;
    int64_t started_at; /* 0: not yet */
    int64_t updated_at;
    /* A readiness check passed (compat.md §1.8), or the app has none (the
     * executor then reports it with "running"). Never goes back to false. */
    bool ready;
    /* NULL, or the per-check results as of the last health or readiness
     * transition (JSON object, at most 16 KiB; lib/agent/health.c writes it):
     *   {"health": [{"alive", "consecutiveFailures", "firstSuccess",
     *                "lastSuccess", "lastFailure", "lastFailureCause"}],
     *    "readiness": [{"name", "ready", "lastResponse"?: {"status",
     *                   "contentType", "body"}}]}
     * times in ms since the epoch, 0 when never. */
    const char *checks;
};

struct cm_node_row {
    const char *id;
    const char *address;
    const char *attrs;     /* JSON object */
    const char *resources; /* JSON object */
    const char *state;
    int64_t updated_at;
};

struct cm_vip_row {
    const char *name;    /* as in the label, without the leading '/' */
    const char *address; /* dotted IPv4 */
};

typedef int (*cm_app_fn)(void *data, const struct cm_app_row *row);
typedef int (*cm_task_fn)(void *data, const struct cm_task_row *row);
typedef int (*cm_node_fn)(void *data, const struct cm_node_row *row);

/* Apps in id order; @id non-NULL: just that one (CM_ENOTFOUND when absent). */
int cm_state_apps(struct cm_state *s, const char *id, cm_app_fn fn, void *data);
/* Versions of one app, oldest first, as app rows. */
int cm_state_app_versions(struct cm_state *s, const char *id, cm_app_fn fn, void *data);
/* Tasks filtered by app and/or node (NULL: any), in id order. */
int cm_state_tasks(struct cm_state *s, const char *app, const char *node, cm_task_fn fn,
                   void *data);
/* One task by id. Errors: CM_ENOTFOUND. */
int cm_state_task(struct cm_state *s, const char *id, cm_task_fn fn, void *data);
int cm_state_nodes(struct cm_state *s, cm_node_fn fn, void *data);
/* Named VIPs in name order. */
typedef int (*cm_vip_fn)(void *data, const struct cm_vip_row *row);
int cm_state_vips(struct cm_state *s, cm_vip_fn fn, void *data);

/* ---- deployments (docs/deployments.md) */

struct cm_deploy_row {
    const char *id;
    const char *version;
    const char *apps;   /* JSON array of app ids */
    const char *plan;   /* JSON {"steps": [{"actions": [...]}]} */
    int64_t step;       /* index of the current step (0-based) */
    const char *status; /* "running", "success", "failed", "cancelled" */
    bool promoted;
    const char *reason;      /* NULL or why it failed */
    const char *rollback_of; /* NULL or the deployment this one rolls back */
    bool rollback;           /* a rollback (of a deployment or to a version) */
    int64_t started_at;
    int64_t step_started_at;
    int64_t updated_at;
};

typedef int (*cm_deploy_fn)(void *data, const struct cm_deploy_row *row);

/* Deployments, oldest first; @id non-NULL: just that one (CM_ENOTFOUND when
 * absent); @running_only: only those in progress. */
int cm_state_deployments(struct cm_state *s, const char *id, bool running_only,
                         cm_deploy_fn fn, void *data);

/* Marathon's upgrade arithmetic (TaskReplaceActor.computeRestartStrategy and its
 * replacement loop, docs/deployments.md), as one stateless round: given the
 * tasks of an app now, how many new ones to start and old ones to kill. */
struct cm_upgrade {
    uint32_t instances;
    double min_health; /* minimumHealthCapacity */
    double max_over;   /* maximumOverCapacity */
    bool resident;     /* persistent volumes: never over capacity */
};

struct cm_upgrade_state {
    uint32_t old_live;  /* tasks of other versions, not being killed */
    uint32_t new_live;  /* tasks of the target version, not being killed */
    uint32_t new_ready; /* of those: running, healthy and ready */
};

struct cm_upgrade_round {
    uint32_t min_healthy;  /* ceil(instances * minimumHealthCapacity) */
    uint32_t max_capacity; /* floor(instances * (1 + maximumOverCapacity)), +1 */
    uint32_t launch;       /* new tasks to start now */
    uint32_t kill_old;     /* old tasks to kill now */
};

void cm_upgrade_plan(const struct cm_upgrade *u, const struct cm_upgrade_state *st,
                     struct cm_upgrade_round *out);

/* Order apps by their dependencies into steps: step[i] is 0 for an app that
 * depends on none of the others, else 1 + the largest step of those it depends
 * on. A dependency names an app or a group (every app under it); ids outside the
 * set are ignored. On a cycle returns CM_EVALIDATION and writes it into @cycle
 * ("/a -> /b -> /a"). Errors: CM_EVALIDATION, CM_ENOMEM. */
struct cm_deploy_node {
    const char *id;
    const char *const *deps;
    size_t n_deps;
};
int cm_deploy_order(const struct cm_deploy_node *apps, size_t n, uint32_t *ret_step,
                    char *cycle, size_t cap);

/* The deploy.start command that rolls deployment @dep_id back: every app it
 * touched returns to the version (and instance count) it had before, apps it
 * started are stopped, apps it stopped come back. @new_id, @at stamp the new
 * command. Into @out. Errors: CM_ENOTFOUND, CM_ENOMEM, CM_EIO. */
int cm_deploy_rollback_cmd(struct cm_state *s, const char *dep_id, const char *new_id,
                           const char *version, int64_t at, struct cm_buf *out);

#endif /* CM_STATE_DB_H */
