/* lib/agent: the executor (DESIGN.md §7). Every node runs the tasks that its replica
 * of the state assigns to it, isolated by isolation/, and reports their status.
 *
 * Principles (DESIGN.md §1): the agent acts only on what the local replica has
 * applied (cm_agent_sync reads the `tasks` rows of this node and nothing else tells
 * it what to run), and it reports by handing `task.status` commands to the daemon,
 * which proposes them (or forwards them to the leader). A report is resent until
 * the replica shows it, so lost proposals heal by themselves.
 *
 *   replica state      local task                      action
 *   staging/starting   unknown, no local record        launch, report running
 *   staging/starting   running (report lost)           report running again
 *   killing            running                         SIGTERM, grace, kill cgroup,
 *                                                      report killed
 *   killing            never launched                  report killed
 *   any non-terminal   exited                          report finished/failed/killed
 *   terminal           any                             remove the cgroup (the
 *                                                      sandbox stays for `logs`)
 *
 * Each task lives in `<tasks_dir>/<task id>/` (its working directory): `stdout`,
 * `stderr` and their rotations `stdout.1`.., `task.json` (the local record: pid,
 * process start time, cgroup, phase) and `exit_status` (written by the task's init
 * just before it exits, iso_spawn_opts.status_file).
 *
 * Recovery (DESIGN.md §7): cm_agent_free() leaves tasks running, and so does a
 * crash of the daemon. A new agent re-adopts live tasks from their record (the
 * process start time from /proc/<pid>/stat defeats pid reuse; a pidfd watches them
 * since they are no longer its children) and reports those that died meanwhile,
 * with the status their init left in `exit_status` and the cgroup's OOM counter.
 *
 * Logs, a departure from DESIGN.md §7 ("pipes to the executor"): the task's stdout
 * and stderr are the files themselves, opened O_APPEND and passed to the task.
 * Pipes would die with the daemon and the task would get SIGPIPE or block on a full
 * pipe while the daemon restarts; files keep logging through a restart. Rotation is
 * done from the daemon by size (copy to `stdout.1`, shifting older ones, then
 * truncate; the task's O_APPEND writes continue at the new end). Like logrotate's
 * copytruncate, a line written between the copy and the truncation can be lost;
 * the window is a few system calls long.
 *
 * Log positions are logical: bytes the stream ever held, so a follower's cursor
 * stays valid across rotations (the rotated-away byte count is kept in the record).
 *
 * Thread safety: none; everything runs on the daemon's loop thread. Library code
 * here never logs (STYLE.md rule 16): it reports through the callbacks.
 */
#ifndef CM_AGENT_H
#define CM_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/base.h"

struct ev_loop;
struct cm_state;
struct cm_app;
struct iso_cgroup_manager;

/* ------------------------------------------------------------------ the agent */

/* Propose (or forward) one command: @cmd is `task.status` JSON text of @len bytes,
 * borrowed for the call. Return 0 when it was handed on, anything else when it was
 * not (the agent tries again later). The callback must not free the agent; it may
 * apply the command to the state synchronously (tests close the loop this way)
 * but must then not call cm_agent_sync from inside. */
typedef int (*cm_agent_report_fn)(void *data, const char *cmd, size_t len);

/* One line describing what the agent did ("launch task=web.1 pid=123"), for tests
 * and the daemon's log. Borrowed for the call. */
typedef void (*cm_agent_trace_fn)(void *data, const char *line);

struct cm_agent_opts {
    /* This node's id in `nodes` and in task rows. Copied. Required. */
    const char *node;
    /* `<data-dir>/tasks`, created when missing. Copied. Required. */
    const char *tasks_dir;
    /* The binary re-exec'd as each task's init (`<init_path> __init ...`), normally
     * "/proc/self/exe"; NULL runs the init in a fork of the daemon. Copied. */
    const char *init_path;
    /* HOST for tasks whose row has no host. Copied; NULL: "localhost". */
    const char *host;
    /* The local replica: the only source of what to run. Borrowed until
     * cm_agent_free. Required. */
    struct cm_state *state;
    cm_agent_report_fn report; /* required */
    void *report_data;
    cm_agent_trace_fn trace; /* NULL: none */
    void *trace_data;
    /* "at" timestamps and timers of reports. NULL: cm_clock_system(). Borrowed. */
    struct cm_clock *clock;
    /* cgroups: a manager to use (borrowed until cm_agent_free), or NULL to detect
     * one under @cgroup_parent (NULL: "clusterctl"; copied). */
    struct iso_cgroup_manager *cgroups;
    const char *cgroup_parent;
    /* Log rotation: rotate a stream above @log_max_bytes (0: 10 MiB), keep
     * @log_keep rotated files (0: 5). Checked every @tick_ms (0: 1000 ms), which
     * also paces the resending of reports. */
    uint64_t log_max_bytes;
    unsigned log_keep;
    unsigned tick_ms;
    /* Resend a report the replica does not show after this long (0: 5000 ms). */
    unsigned resend_ms;
    /* Per-task process limit (0: 4096). */
    uint64_t pids_max;
    /* Extra enum iso_spawn_flags for every task (e.g. ISO_SPAWN_NEWNET). */
    unsigned spawn_flags;
};

struct cm_agent;

/* Make the agent on @loop: create the tasks dir, detect cgroups (unless given),
 * start the periodic timer. It does nothing with tasks until cm_agent_sync.
 * On success *ret is the agent (cm_agent_free).
 * Errors: CM_EINVAL (a required option is missing), CM_ENOMEM, the cgroup
 * detection's errors, errno of creating the tasks dir (all in @eb). */
int cm_agent_new(struct ev_loop *loop, const struct cm_agent_opts *o,
                 struct cm_agent **ret, struct cm_errbuf *eb);

/* Stop watching and free. Tasks keep running (a new agent re-adopts them).
 * Accepts NULL. Must not be called from the report callback. */
void cm_agent_free(struct cm_agent *a);

/* Reconcile with the replica: call after each applied batch that changed tasks
 * (cm_state_take_changes() & CM_STATE_CHANGED_TASKS) and once at start (which
 * re-adopts what a previous agent left). Idempotent: a task is never launched
 * twice. Per-task failures are reported as task states, not returned.
 * Errors: CM_ENOMEM, storage errors of reading the replica (in @eb). */
int cm_agent_sync(struct cm_agent *a, struct cm_errbuf *eb);

/* The local life cycle of a task (STYLE.md rule 15). */
enum cm_agent_phase {
    CM_AGENT_PHASE_NEW = 0,   /* [transient] known from the replica, not acted on */
    CM_AGENT_PHASE_LAUNCHING, /* [transient] sandbox and cgroup made, spawning */
    CM_AGENT_PHASE_RUNNING,   /* the init is alive and watched */
    CM_AGENT_PHASE_STOPPING,  /* SIGTERM sent; the grace period runs */
    CM_AGENT_PHASE_KILLING,   /* [transient] the cgroup was SIGKILLed; waiting */
    CM_AGENT_PHASE_EXITED,    /* gone; the final status is being reported */
    CM_AGENT_PHASE_DONE,      /* terminal in the replica; cgroup removed */
};

/* "new", "launching", ...; NULL for an invalid value. */
const char *cm_agent_phase_name(enum cm_agent_phase p);

/* What the API shows about one local task. Strings borrowed until the next call
 * into the agent. */
struct cm_agent_task_info {
    const char *id;
    enum cm_agent_phase phase;
    pid_t pid;             /* host pid of the task's init; 0 when none */
    bool adopted;          /* re-adopted from a record (not our child) */
    int64_t launched_at;   /* wall-clock ms */
    bool has_stats;        /* the fields below are valid (a live cgroup) */
    uint64_t cpu_usage_ns; /* total CPU time */
    uint64_t mem_bytes;    /* memory charged now */
    uint64_t mem_peak;     /* high-water mark when the kernel offers it */
    uint64_t mem_limit;    /* UINT64_MAX: none */
    uint64_t pids;         /* processes and threads */
};

/* Information and usage (from the task's cgroup) of one task.
 * Errors: CM_ENOTFOUND (not a task of this agent). */
int cm_agent_task(struct cm_agent *a, const char *id, struct cm_agent_task_info *ret);

/* Call @fn for every local task, in no particular order; a non-zero return stops
 * the walk and is returned. Usage is read for live tasks. */
int cm_agent_tasks(struct cm_agent *a,
                   int (*fn)(void *data, const struct cm_agent_task_info *t), void *data);

/* ------------------------------------------------------------------ logs */

enum cm_agent_stream {
    CM_AGENT_STDOUT = 0,
    CM_AGENT_STDERR,
};

/* Read up to @max bytes of a task's stream from logical position @pos (see the
 * header comment) and append them to @out. Bytes older than the current file
 * (rotated away) are skipped: *ret_pos receives the position of the first byte
 * appended (>= @pos), so the next call reads from *ret_pos + appended. Reading at
 * or past the end appends nothing. Works for any task with a sandbox, live or
 * not, known to this agent or not.
 * Errors: CM_EINVAL (bad task id), CM_ENOENT (no such sandbox or log), CM_ENOMEM,
 * errno of the reads. */
int cm_agent_log_read(struct cm_agent *a, const char *id, enum cm_agent_stream s,
                      uint64_t pos, size_t max, struct cm_buf *out, uint64_t *ret_pos);

/* The last @max bytes of the current file (a tail). *ret_pos as cm_agent_log_read,
 * and *ret_end (may be NULL) the logical end to follow from. */
int cm_agent_log_tail(struct cm_agent *a, const char *id, enum cm_agent_stream s,
                      size_t max, struct cm_buf *out, uint64_t *ret_pos,
                      uint64_t *ret_end);

/* The path of a stream's current file, for the daemon's ev_stat watcher when it
 * follows a log (then it calls cm_agent_log_read from its cursor). @out gets @cap
 * bytes. Errors: CM_EINVAL (bad id), CM_ETOOBIG. */
int cm_agent_log_path(struct cm_agent *a, const char *id, enum cm_agent_stream s,
                      char *out, size_t cap);

/* ------------------------------------------------------------------ pure parts
 * Exposed for unit tests; no I/O, no allocation beyond the results. */

/* The task's environment (Marathon's names, shared/specs/compat.md §1.4), in this
 * order, each later entry replacing an earlier one of the same name:
 *   PATH (a default), MESOS_TASK_ID, MESOS_SANDBOX, MARATHON_APP_ID,
 *   MARATHON_APP_VERSION, MARATHON_APP_RESOURCE_CPUS|MEM|DISK|GPUS,
 *   MARATHON_APP_DOCKER_IMAGE (with an image), MARATHON_APP_LABELS and
 *   MARATHON_APP_LABEL_<KEY>; then PORT0..N, PORT_<requested port>,
 *   PORT_<NAME> (upper-cased as Marathon does, and also with every character
 *   outside [A-Z0-9_] as '_' when that differs, so shells can use it), PORT,
 *   PORTS, HOST; then the app's plain `env` (which overrides all of the above, as
 *   in Marathon's TaskBuilder). Secret references are skipped (validation rejects
 *   them before they get here).
 * @ports_json: the task row's JSON array of host ports (NULL or "[]": none).
 * *ret_envp: NULL-terminated "K=V" strings in one cm_malloc'd block (free with
 * cm_free); set on success only.
 * Errors: CM_EMALFORMED (ports_json is not an array of ports), CM_ENOMEM. */
struct cm_agent_env_task {
    const char *id;
    const char *version;
    const char *host;
    const char *ports_json;
    const char *sandbox;
};
int cm_agent_env_build(const struct cm_app *app, const struct cm_agent_env_task *t,
                       char ***ret_envp);

/* The local record `<sandbox>/task.json`. */
#define CM_AGENT_ID_MAX     512
#define CM_AGENT_REASON_MAX 256
struct cm_agent_record {
    char id[CM_AGENT_ID_MAX + 1];
    enum cm_agent_phase phase; /* LAUNCHING, RUNNING or EXITED */
    int64_t pid;               /* host pid of the init; 0 before it exists */
    uint64_t start_time;       /* /proc/<pid>/stat field 22 (clock ticks) */
    char cgroup[256];
    int64_t launched_at;  /* wall-clock ms */
    double mem_mib;       /* the memory limit, for the OOM reason; 0: none */
    int32_t grace_s;      /* taskKillGracePeriodSeconds in effect */
    uint64_t oom_base;    /* the cgroup's OOM kill count at launch */
    uint64_t log_base[2]; /* bytes rotated away, per enum cm_agent_stream */
    /* EXITED only: what was (or is being) reported. */
    int final_state;                      /* enum cm_task_state */
    int exit_code;                        /* -1: none */
    char reason[CM_AGENT_REASON_MAX + 1]; /* "" when none */
};

/* Format @r as one JSON object (with a trailing '\n') appended to @out.
 * Errors: CM_ENOMEM. */
int cm_agent_record_format(const struct cm_agent_record *r, struct cm_buf *out);
/* Parse a record. Unknown fields are ignored; missing required ones, wrong types
 * or out-of-range values make it corrupt. *ret is set on success only.
 * Errors: CM_ECORRUPT (also when cJSON cannot allocate: it does not tell OOM from
 * bad syntax, and the caller's answer, "lost", is the same). */
int cm_agent_record_parse(const char *text, size_t len, struct cm_agent_record *ret);

/* The process start time (field 22) from the text of /proc/<pid>/stat, whose
 * second field (the command name) may contain spaces and parentheses.
 * Errors: CM_EMALFORMED. */
int cm_agent_parse_proc_start(const char *text, size_t len, uint64_t *ret);

/* Log rotation decision for one stream of @size bytes: 0 when it stays, else the
 * number of rotated files to shift (rename `<s>.<i>` to `<s>.<i+1>` for i from
 * the result - 1 down to 1, dropping `<s>.<keep>`), then copy to `<s>.1` and
 * truncate. @existing: how many rotated files exist (the highest i with `<s>.i`).
 * The result is min(existing, keep - 1) + 1 when rotating. */
unsigned cm_agent_log_rotation(uint64_t size, uint64_t max_bytes, unsigned keep,
                               unsigned existing);

/* A cgroup name for a task id: "task-" and the id with characters outside
 * [A-Za-z0-9._-] as '_', cut to fit, with "-<16 hex of a hash of the id>"
 * appended when anything was changed or cut (so distinct ids stay distinct).
 * @out: at least 256 bytes. */
void cm_agent_cgroup_name(const char *id, char *out, size_t cap);

/* Whether @id can name a sandbox directory (one path component, not "." or "..",
 * at most 255 bytes, no control characters). */
bool cm_agent_id_ok(const char *id);

/* ------------------------------------------------------------------ health checks
 * Health and readiness checks run here, on the node that runs the task, never on
 * the leader (DESIGN.md §7; health.c). These are their pure parts: Marathon's
 * rules (shared/specs/compat.md §1.7, §1.8) as functions of their inputs. */

struct cm_app_health_check;
struct cm_app_readiness_check;

/* What one check execution says. */
enum cm_hc_result {
    CM_HC_HEALTHY = 0, /* HTTP 200-399, TCP connected, command exited 0 */
    CM_HC_UNHEALTHY,   /* anything else, timeouts included */
    CM_HC_IGNORED,     /* HTTP 1xx with ignoreHttp1xx: discarded, nothing changes */
};

/* The result of an HTTP(S) check answered with @status: 200-399 healthy; 1xx
 * ignored when @ignore_1xx, else unhealthy like every other status. */
enum cm_hc_result cm_agent_hc_http_result(int status, bool ignore_1xx);

/* True when @status is one of @codes (httpStatusCodesForReady). */
bool cm_agent_rc_ready(int status, const int32_t *codes, size_t n);

/* The port a health check probes on a task whose row holds the host ports
 * @ports_json (JSON array): `port` when given, else the host port at
 * `portIndex`, else the host port of the port named `portName` (its index in
 * portMappings for container networking, else in portDefinitions).
 * Errors (with @why, @cap bytes, saying which): CM_EINVAL (a COMMAND check, or
 * nothing selects a port), CM_ENOTFOUND (portName names no port), CM_ERANGE (the
 * task has no host port at that index), CM_EMALFORMED (@ports_json). */
int cm_agent_hc_port(const struct cm_app *app, const struct cm_app_health_check *hc,
                     const char *ports_json, char *why, size_t cap);
/* The same for a readiness check (always by portName). */
int cm_agent_rc_port(const struct cm_app *app, const struct cm_app_readiness_check *rc,
                     const char *ports_json, char *why, size_t cap);

#define CM_HC_CAUSE_MAX 160

/* The running record of one health check of one task (Marathon's Health). */
struct cm_hc_state {
    int64_t started_at; /* ms: the task's start; the grace period runs from it */
    int alive;          /* -1 no verdict yet, 0 unhealthy, 1 healthy */
    uint32_t consecutive_failures; /* counted after the grace period only */
    int64_t first_success;         /* ms; 0: never */
    int64_t last_success;          /* ms; 0: never */
    int64_t last_failure;          /* ms; 0: never */
    char last_failure_cause[CM_HC_CAUSE_MAX];
};

/* What cm_agent_hc_step asks of the caller (bits). */
#define CM_HC_CHANGED 1u /* `alive` changed: the task's verdict may have */
#define CM_HC_KILL    2u /* the failure limit is reached: kill the task */

/* Initialise @s for a task that started at @started_at (ms). */
void cm_agent_hc_init(struct cm_hc_state *s, int64_t started_at);

/* Feed the result @r of one execution of @hc finished at @now (ms); @cause (may be
 * NULL) says why it failed. Marathon's rules (compat.md §1.7):
 *  - ignored results change nothing;
 *  - a failure before the first success and within gracePeriodSeconds of the
 *    start is ignored;
 *  - a success resets the consecutive failures; a counted failure adds one;
 *  - kill when consecutive failures >= maxConsecutiveFailures, where 0 means
 *    "never" for the checks Marathon runs (HTTP, HTTPS, TCP) and "at the first
 *    failure" for the ones Mesos runs (MESOS_*, COMMAND: Mesos kills after
 *    consecutive_failures failures and Marathon passes the value through).
 * Returns CM_HC_* bits. */
unsigned cm_agent_hc_step(struct cm_hc_state *s, const struct cm_app_health_check *hc,
                          enum cm_hc_result r, const char *cause, int64_t now);

/* A task's health over all its checks: 1 when every check is alive, 0 when one
 * is not, -1 when some have no verdict yet and none failed (or @n is 0). */
int cm_agent_hc_verdict(const struct cm_hc_state *v, size_t n);

#endif /* CM_AGENT_H */
