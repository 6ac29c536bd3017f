/* The executor: reconcile the local replica's task rows with the processes of this
 * node (see agent.h for the table), supervise them on the daemon's libev loop, and
 * report their states as `task.status` commands.
 *
 * Exits are watched through a pidfd for every task, our children and re-adopted
 * ones alike: the daemon's default loop reaps every child it has (libev's SIGCHLD
 * handler), so the status comes from waitid(P_PIDFD) when we get there first, else
 * from the `exit_status` file the init writes just before it exits. */
#include <dirent.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "agent/agent_int.h"
#include "isolation/isolation.h"
#include "state/db.h"
#include "state/state.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define DEFAULT_LOG_MAX   (10u * 1024 * 1024)
#define DEFAULT_LOG_KEEP  5
#define DEFAULT_TICK_MS   1000
#define DEFAULT_RESEND_MS 5000
#define DEFAULT_PIDS_MAX  4096
#define DEFAULT_GRACE_S   3 /* Marathon/Mesos when taskKillGracePeriodSeconds is unset */
#define KILL_RETRY_S      1.0
#define RECORD_MAX        (64 * 1024)
#define STATUS_FILE       "exit_status"
#define RECORD_FILE       "task.json"

static const char *const stream_names[] = {"stdout", "stderr"};

struct agent_task {
    struct agent_task *next;
    struct cm_agent *a;
    char *id;
    char *sandbox; /* <tasks_dir>/<id>; NULL when the id cannot name a directory */
    enum cm_agent_phase phase;
    struct cm_agent_record rec; /* what task.json says (or will) */
    bool has_record;            /* task.json exists */
    struct iso_cgroup *cg;      /* NULL when none is open */
    int pidfd;                  /* -1 when not watching */
    ev_io pid_w;
    ev_timer kill_w; /* grace period, then kill retries */
    bool adopted;
    bool stop_requested;
    bool sigkilled;
    bool orphan;         /* its row is gone from the replica */
    bool corrupt_record; /* task.json exists but cannot be trusted */
    bool seen;           /* in the latest sync */
    enum cm_task_state row_state;
    /* The last report handed to the daemon: state and when (mono ms). */
    int reported_state; /* -1: none */
    uint64_t reported_at;
    /* Health and readiness checks (health.c) while the task runs. */
    struct agent_health *health;
    char *row_health; /* the replica's health of the task; NULL: none */
    bool row_ready;
    int health_sent; /* the last health report's (verdict, ready) key; -1: none */
    uint64_t health_sent_at;
    bool health_killed; /* stopped because a check reached its failure limit */
    char health_reason[CM_AGENT_REASON_MAX + 1];
};

struct cm_agent {
    struct ev_loop *loop;
    char *node;
    char *tasks_dir;
    char *init_path;
    char *host;
    struct cm_state *state;
    cm_agent_report_fn report;
    void *report_data;
    cm_agent_trace_fn trace_fn;
    void *trace_data;
    struct cm_clock *clock;
    struct iso_cgroup_manager *cgroups;
    bool own_cgroups;
    uint64_t log_max;
    unsigned log_keep;
    unsigned resend_ms;
    uint64_t pids_max;
    unsigned spawn_flags;
    ev_timer tick_w;
    struct agent_task *tasks;
    bool synced; /* the first sync (re-adoption, strays) is done */
    /* Task cgroups that no task of the replica owns, still being removed. */
    char **strays;
    size_t n_strays;
};

static void trace(struct cm_agent *a, const char *fmt, ...) CM_PRINTF(2, 3);
static void trace(struct cm_agent *a, const char *fmt, ...)
{
    if (a->trace_fn == NULL) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    a->trace_fn(a->trace_data, line);
}

/* ------------------------------------------------------------------ small I/O */

static int sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Read a small file whole into @buf (NUL-terminated). Returns the length or a
 * negative cm_err. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return cm_errno();
    }
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            int err = cm_errno();
            close(fd);
            return err;
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return len + 1 >= cap ? CM_ETOOBIG : (ssize_t)len;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return cm_errno();
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int proc_start_time(pid_t pid, uint64_t *ret)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n < 0) {
        return (int)n;
    }
    return cm_agent_parse_proc_start(buf, (size_t)n, ret);
}

static void sandbox_path(const struct agent_task *t, const char *name, char *out,
                         size_t cap)
{
    snprintf(out, cap, "%s/%s", t->sandbox, name);
}

/* Write the record: a temporary file renamed over task.json. No fsync: the
 * record only has to survive the daemon, not the machine (after a reboot its
 * tasks are gone and the init's status file is what matters). */
static int record_write(struct agent_task *t, struct cm_errbuf *eb)
{
    struct cm_buf b = {0};
    int rv = cm_agent_record_format(&t->rec, &b);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "task record: out of memory");
    }
    char tmp[4200], path[4200];
    sandbox_path(t, RECORD_FILE ".tmp", tmp, sizeof(tmp));
    sandbox_path(t, RECORD_FILE, path, sizeof(path));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        rv = cm_err_sys(eb, cm_errno(), "create `%s`", tmp);
        goto out;
    }
    rv = write_all(fd, b.data, b.len);
    close(fd);
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = cm_errno();
    }
    if (rv != 0) {
        unlink(tmp);
        cm_err_sys(eb, rv, "write `%s`", path);
        goto out;
    }
    t->has_record = true;
out:
    cm_buf_done(&b);
    return rv;
}

/* 0 and the record, CM_ENOENT, or CM_ECORRUPT. */
static int record_read(const char *sandbox, struct cm_agent_record *ret)
{
    char path[4200];
    int len = snprintf(path, sizeof(path), "%s/" RECORD_FILE, sandbox);
    if (len < 0 || (size_t)len >= sizeof(path)) {
        return CM_ECORRUPT; /* no sandbox of ours has such a path */
    }
    char *buf = cm_malloc(RECORD_MAX);
    if (buf == NULL) {
        return CM_ENOMEM;
    }
    ssize_t n = read_small(path, buf, RECORD_MAX);
    int rv = n < 0 ? (n == CM_ENOENT ? CM_ENOENT : CM_ECORRUPT)
                   : cm_agent_record_parse(buf, (size_t)n, ret);
    cm_free(&buf);
    return rv;
}

/* The exit code the init left, or -1. */
static int read_status_file(const struct agent_task *t)
{
    char path[4200], buf[32];
    sandbox_path(t, STATUS_FILE, path, sizeof(path));
    ssize_t n = read_small(path, buf, sizeof(buf));
    int code;
    if (n < 0 || iso_parse_status_file(buf, (size_t)n, &code) != 0) {
        return -1;
    }
    return code;
}

/* ------------------------------------------------------------------ reports */

/* The state the replica should show for @t and does not, or -1. */
static int wanted_report(const struct agent_task *t)
{
    switch (t->phase) {
    case CM_AGENT_PHASE_RUNNING:
    case CM_AGENT_PHASE_STOPPING:
    case CM_AGENT_PHASE_KILLING:
        /* Never "running" over "killing": apply would take it back. */
        if (!t->orphan &&
            (t->row_state == CM_TASK_STAGING || t->row_state == CM_TASK_STARTING)) {
            return CM_TASK_RUNNING;
        }
        return -1;
    case CM_AGENT_PHASE_EXITED:
        if (!t->orphan && !cm_task_state_terminal(t->row_state)) {
            return t->rec.final_state;
        }
        return -1;
    default:
        return -1;
    }
}

/* A running task's health, readiness and check results (only what is known). */
static bool add_health_fields(struct agent_task *t, cJSON *o)
{
    const char *verdict = agent__health_verdict(t->health);
    if (verdict != NULL && cJSON_AddStringToObject(o, "health", verdict) == NULL) {
        return false;
    }
    if (agent__health_ready(t->health) && cJSON_AddTrueToObject(o, "ready") == NULL) {
        return false;
    }
    cJSON *checks = agent__health_checks_json(t->health);
    if (checks == NULL) {
        return false;
    }
    if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(checks, "health")) +
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(checks, "readiness")) ==
        0) {
        cJSON_Delete(checks);
        return true;
    }
    return cJSON_AddItemToObject(o, "checks", checks);
}

static void send_report(struct agent_task *t, int state)
{
    struct cm_agent *a = t->a;
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    bool ok =
        o != NULL && cJSON_AddStringToObject(o, "type", "task.status") != NULL &&
        cJSON_AddNumberToObject(o, "at", (double)cm_clock_real_ms(a->clock)) != NULL &&
        cJSON_AddStringToObject(o, "id", t->id) != NULL &&
        cJSON_AddStringToObject(o, "state",
                                cm_task_state_name((enum cm_task_state)state)) != NULL;
    if (ok && state == CM_TASK_RUNNING && t->health != NULL) {
        ok = add_health_fields(t, o);
    }
    if (ok && state != CM_TASK_RUNNING) {
        if (t->rec.exit_code >= 0) {
            ok = cJSON_AddNumberToObject(o, "exit", t->rec.exit_code) != NULL;
        }
        if (ok && t->rec.reason[0] != '\0') {
            ok = cJSON_AddStringToObject(o, "reason", t->rec.reason) != NULL;
        }
    }
    if (ok) {
        text = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(o);
    if (text == NULL) {
        return; /* OOM: the next tick tries again */
    }
    int rv = a->report(a->report_data, text, strlen(text));
    trace(a, "report task=%s state=%s rv=%d", t->id,
          cm_task_state_name((enum cm_task_state)state), rv);
    cJSON_free(text);
    t->reported_state = state;
    t->reported_at = cm_clock_mono_ms(a->clock);
}

/* The (verdict, ready) key the replica should show for a running task and does
 * not, or -1. Only transitions are reported: no verdict yet is no news, and
 * readiness only ever becomes true. */
static int wanted_health(const struct agent_task *t)
{
    if (t->health == NULL || t->phase != CM_AGENT_PHASE_RUNNING || t->orphan ||
        t->row_state != CM_TASK_RUNNING) {
        return -1;
    }
    const char *verdict = agent__health_verdict(t->health);
    bool ready = agent__health_ready(t->health);
    bool news = (verdict != NULL &&
                 (t->row_health == NULL || strcmp(verdict, t->row_health) != 0)) ||
                (ready && !t->row_ready);
    if (!news) {
        return -1;
    }
    return (verdict == NULL ? 0 : verdict[0] == 'h' ? 1 : 2) * 2 + ready;
}

/* Report what the replica lacks: at once when it is news, else again after
 * resend_ms (a proposal can be lost with a leader). */
static void maybe_report(struct agent_task *t)
{
    uint64_t now = cm_clock_mono_ms(t->a->clock);
    int want = wanted_report(t);
    if (want >= 0) {
        if (want != t->reported_state || now - t->reported_at >= t->a->resend_ms) {
            send_report(t, want);
        }
        return;
    }
    int key = wanted_health(t);
    if (key >= 0 &&
        (key != t->health_sent || now - t->health_sent_at >= t->a->resend_ms)) {
        t->health_sent = key;
        t->health_sent_at = now;
        send_report(t, CM_TASK_RUNNING);
    }
}

/* ------------------------------------------------------------------ life cycle */

static void task_free(struct agent_task *t)
{
    struct cm_agent *a = t->a;
    ev_io_stop(a->loop, &t->pid_w);
    ev_timer_stop(a->loop, &t->kill_w);
    agent__health_free(t->health);
    cm_free(&t->row_health);
    if (t->pidfd >= 0) {
        close(t->pidfd);
    }
    iso_cgroup_free(t->cg);
    cm_free(&t->id);
    cm_free(&t->sandbox);
    cm_free_raw(t);
}

static void cleanup_cgroup(struct agent_task *t);

/* The task is gone: decide its final state, remember it in the record, report. */
static void finish(struct agent_task *t, int code, const char *lost_reason)
{
    struct cm_agent *a = t->a;
    ev_io_stop(a->loop, &t->pid_w);
    ev_timer_stop(a->loop, &t->kill_w);
    agent__health_free(t->health);
    t->health = NULL;
    if (t->pidfd >= 0) {
        close(t->pidfd);
        t->pidfd = -1;
    }
    struct cm_errbuf eb;
    bool oom = false;
    if (t->cg != NULL) {
        struct iso_cg_oom o;
        if (iso_cgroup_oom(t->cg, &o, &eb) == 0 && o.oom_kill > t->rec.oom_base) {
            oom = true;
        }
        /* The init's exit took its PID namespace down; anything left (it cannot
         * have escaped the namespace, but be sure) goes too. */
        iso_cgroup_kill_start(t->cg, &eb);
    }
    struct cm_agent_record *r = &t->rec;
    r->exit_code = code;
    r->reason[0] = '\0';
    bool killing = t->stop_requested || t->row_state == CM_TASK_KILLING;
    if (oom) {
        r->final_state = CM_TASK_FAILED;
        if (r->mem_mib > 0) {
            snprintf(r->reason, sizeof(r->reason), "OOM killed (memory limit %.0f MiB)",
                     r->mem_mib);
        } else {
            snprintf(r->reason, sizeof(r->reason), "OOM killed");
        }
    } else if (killing) {
        r->final_state = CM_TASK_KILLED;
        if (code < 0 && t->sigkilled) {
            r->exit_code = 128 + SIGKILL;
        } else if (code < 0 && lost_reason != NULL) {
            snprintf(r->reason, sizeof(r->reason), "%s", lost_reason);
        }
    } else if (code == 0) {
        r->final_state = CM_TASK_FINISHED;
    } else if (code > 0) {
        r->final_state = CM_TASK_FAILED;
        snprintf(r->reason, sizeof(r->reason), "Command exited with status %d", code);
    } else {
        r->final_state = CM_TASK_FAILED;
        snprintf(r->reason, sizeof(r->reason), "%s",
                 lost_reason ? lost_reason
                             : "the task's init ended without an exit status "
                               "(killed from outside?)");
    }
    /* Killed by its own checks: a failure (it counts toward the launch backoff,
     * compat.md §1.7), with the check's cause. */
    if (t->health_killed && !oom) {
        r->final_state = CM_TASK_FAILED;
        snprintf(r->reason, sizeof(r->reason), "%s", t->health_reason);
    }
    r->phase = CM_AGENT_PHASE_EXITED;
    t->phase = CM_AGENT_PHASE_EXITED;
    if (t->sandbox != NULL) {
        record_write(t, &eb); /* best effort: the report carries the result */
    }
    trace(a, "exit task=%s code=%d state=%s%s%s", t->id, code,
          cm_task_state_name((enum cm_task_state)r->final_state), r->reason[0] ? " " : "",
          r->reason);
    maybe_report(t);
    if (t->orphan || cm_task_state_terminal(t->row_state)) {
        cleanup_cgroup(t);
    }
}

/* A launch that failed before the task ran. */
static void launch_failed(struct agent_task *t, const char *why)
{
    t->stop_requested = false;
    t->rec.phase = CM_AGENT_PHASE_EXITED;
    if (t->cg != NULL) {
        struct cm_errbuf eb;
        iso_cgroup_remove(t->cg, 0, &eb);
        iso_cgroup_free(t->cg);
        t->cg = NULL;
    }
    t->rec.final_state = CM_TASK_FAILED;
    t->rec.exit_code = -1;
    snprintf(t->rec.reason, sizeof(t->rec.reason), "%s", why);
    t->phase = CM_AGENT_PHASE_EXITED;
    if (t->sandbox != NULL && access(t->sandbox, F_OK) == 0) {
        struct cm_errbuf eb;
        record_write(t, &eb);
    }
    trace(t->a, "launch-failed task=%s reason=%s", t->id, why);
    maybe_report(t);
}

static void on_pid(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent_task *t = cm_container_of(w, struct agent_task, pid_w);
    int code = -1;
    /* Our child and not yet reaped by the loop's SIGCHLD handler: take its
     * status (and reap it). Otherwise ECHILD, and the init's file tells. */
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (!t->adopted &&
        waitid((idtype_t)P_PIDFD, (id_t)t->pidfd, &si, WEXITED | WNOHANG) == 0 &&
        si.si_pid != 0) {
        code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    }
    if (code < 0) {
        code = read_status_file(t);
    }
    finish(t, code, NULL);
}

static void watch(struct agent_task *t)
{
    ev_io_init(&t->pid_w, on_pid, t->pidfd, EV_READ);
    ev_io_start(t->a->loop, &t->pid_w);
}

static void on_kill_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct agent_task *t = cm_container_of(w, struct agent_task, kill_w);
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    /* The init first (its exit ends the namespace), then every member. */
    if (t->pidfd >= 0) {
        sys_pidfd_signal(t->pidfd, SIGKILL);
    }
    if (t->cg != NULL) {
        iso_cgroup_kill_start(t->cg, &eb);
    }
    t->sigkilled = true;
    if (t->phase != CM_AGENT_PHASE_KILLING) {
        trace(t->a, "kill task=%s", t->id);
    }
    t->phase = CM_AGENT_PHASE_KILLING;
    /* Again every second until the pidfd says it is gone. */
    ev_timer_set(w, KILL_RETRY_S, 0.);
    ev_timer_start(loop, w);
}

/* SIGTERM to the init (it forwards it to the task), then the grace period. */
static void stop(struct agent_task *t)
{
    if (t->phase != CM_AGENT_PHASE_RUNNING) {
        return;
    }
    t->stop_requested = true;
    t->phase = CM_AGENT_PHASE_STOPPING;
    agent__health_stop(t->health);
    if (t->pidfd >= 0) {
        sys_pidfd_signal(t->pidfd, SIGTERM);
    }
    trace(t->a, "stop task=%s grace=%ds", t->id, (int)t->rec.grace_s);
    ev_timer_init(&t->kill_w, on_kill_timer, (double)t->rec.grace_s, 0.);
    ev_timer_start(t->a->loop, &t->kill_w);
}

static void cleanup_cgroup(struct agent_task *t)
{
    struct cm_errbuf eb;
    if (t->cg == NULL && t->rec.cgroup[0] != '\0' && t->phase == CM_AGENT_PHASE_EXITED) {
        if (iso_cgroup_open(t->a->cgroups, t->rec.cgroup, &t->cg, &eb) != 0) {
            t->cg = NULL;
        }
    }
    if (t->cg != NULL) {
        int rv = iso_cgroup_remove(t->cg, 0, &eb);
        if (rv == CM_EBUSY) {
            iso_cgroup_kill_start(t->cg, &eb);
            return; /* processes still leaving: the next tick tries again */
        }
        trace(t->a, "cleanup task=%s cgroup=%s rv=%d", t->id, t->rec.cgroup, rv);
        iso_cgroup_free(t->cg);
        t->cg = NULL;
    }
    if (t->phase == CM_AGENT_PHASE_EXITED) {
        t->phase = CM_AGENT_PHASE_DONE;
    }
}

/* ------------------------------------------------------------------ launch */

struct row_copy {
    char *id, *app, *version, *host, *ports, *health;
    enum cm_task_state state;
    bool ready;
};

struct spec_find {
    const char *version;
    char *spec;
    int err;
};

static int find_version(void *data, const struct cm_app_row *row)
{
    struct spec_find *f = data;
    if (f->spec == NULL && row->version != NULL &&
        strcmp(row->version, f->version) == 0) {
        f->spec = cm_strdup(row->spec);
        f->err = f->spec ? 0 : CM_ENOMEM;
    }
    return 0;
}

static int take_current(void *data, const struct cm_app_row *row)
{
    struct spec_find *f = data;
    if (f->spec == NULL) {
        f->spec = cm_strdup(row->spec);
        f->err = f->spec ? 0 : CM_ENOMEM;
    }
    return 0;
}

/* The app spec of the task's version (else the app's current one). */
static int load_app(struct cm_agent *a, const struct row_copy *row, struct cm_app **ret,
                    char *why, size_t cap)
{
    struct spec_find f = {.version = row->version ? row->version : ""};
    cm_state_app_versions(a->state, row->app, find_version, &f);
    if (f.spec == NULL && f.err == 0) {
        cm_state_apps(a->state, row->app, take_current, &f);
    }
    if (f.spec == NULL) {
        snprintf(why, cap, "%s",
                 f.err ? "out of memory reading the app"
                       : "the task's app is not in the local state");
        return f.err ? f.err : CM_ENOTFOUND;
    }
    int rv = cm_app_from_canonical(f.spec, strlen(f.spec), ret);
    cm_free(&f.spec);
    if (rv != 0) {
        snprintf(why, cap, "app spec of %s unreadable: %s", row->app, cm_strerror(rv));
    }
    return rv;
}

/* ------------------------------------------------------------------ health hooks */

static void on_health_changed(void *data)
{
    maybe_report(data);
}

static void on_health_kill(void *data, const char *reason)
{
    struct agent_task *t = data;
    t->health_killed = true;
    snprintf(t->health_reason, sizeof(t->health_reason), "%s", reason);
    trace(t->a, "health-kill task=%s reason=%s", t->id, reason);
    stop(t);
}

static void on_health_trace(void *data, const char *line)
{
    struct agent_task *t = data;
    trace(t->a, "%s", line);
}

/* Start the checks of a running task once (after a launch, or a re-adoption). */
static void health_ensure(struct agent_task *t, const struct row_copy *row)
{
    struct cm_agent *a = t->a;
    if (t->health != NULL || t->phase != CM_AGENT_PHASE_RUNNING || t->orphan) {
        return;
    }
    char why[CM_AGENT_REASON_MAX + 1];
    struct cm_app *app = NULL;
    if (load_app(a, row, &app, why, sizeof(why)) != 0) {
        return; /* the next sync tries again */
    }
    struct agent_health_task ht = {
        .id = t->id,
        .version = row->version,
        .host = row->host && row->host[0] ? row->host : a->host,
        .ports_json = row->ports,
        .sandbox = t->sandbox,
        .started_at = t->rec.launched_at,
        .pidfd = t->pidfd,
        .pid = (pid_t)t->rec.pid,
        .cg = t->cg,
    };
    struct agent_health_cbs cbs = {
        .data = t,
        .changed = on_health_changed,
        .kill = on_health_kill,
        .trace = a->trace_fn != NULL ? on_health_trace : NULL,
    };
    if (agent__health_new(a->loop, a->clock, app, &ht, &cbs, &t->health) != 0) {
        t->health = NULL;
        cm_app_free(app);
    }
}

static int open_log(const struct agent_task *t, int s)
{
    char path[4200];
    sandbox_path(t, stream_names[s], path, sizeof(path));
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

static void launch(struct agent_task *t, const struct row_copy *row)
{
    struct cm_agent *a = t->a;
    char why[CM_AGENT_REASON_MAX + 1];
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    struct cm_app *app = NULL;
    char **envp = NULL;
    char **argv = NULL;
    int fds[2] = {-1, -1};
    if (t->sandbox == NULL) {
        launch_failed(t, "the task id cannot name a sandbox directory");
        return;
    }
    if (load_app(a, row, &app, why, sizeof(why)) != 0) {
        launch_failed(t, why);
        return;
    }
    t->phase = CM_AGENT_PHASE_LAUNCHING;
    memset(&t->rec, 0, sizeof(t->rec));
    snprintf(t->rec.id, sizeof(t->rec.id), "%s", t->id);
    t->rec.phase = CM_AGENT_PHASE_LAUNCHING;
    t->rec.exit_code = -1;
    t->rec.launched_at = cm_clock_real_ms(a->clock);
    t->rec.mem_mib = app->mem;
    t->rec.grace_s = app->task_kill_grace_period_s >= 0 ? app->task_kill_grace_period_s
                                                        : DEFAULT_GRACE_S;
    cm_agent_cgroup_name(t->id, t->rec.cgroup, sizeof(t->rec.cgroup));

    if (app->container.image != NULL) {
        snprintf(why, sizeof(why), "container images are not supported by this executor");
        goto fail;
    }
    if (app->cmd == NULL && app->n_args == 0) {
        snprintf(why, sizeof(why), "the app has neither cmd nor args");
        goto fail;
    }
    if (mkdir(t->sandbox, 0750) != 0 && errno != EEXIST) {
        snprintf(why, sizeof(why), "create sandbox `%s`: %s", t->sandbox,
                 cm_strerror(cm_errno()));
        goto fail;
    }
    struct iso_limits lim = {
        .cpus = app->cpus,
        .cpu_quota = app->cpus > 0,
        .mem_mib = app->mem,
        .pids_max = a->pids_max,
    };
    if (iso_cgroup_create(a->cgroups, t->rec.cgroup, &lim, &t->cg, &eb) != 0) {
        t->cg = NULL;
        snprintf(why, sizeof(why), "%s", eb.msg);
        goto fail;
    }
    struct iso_cg_oom oom;
    if (iso_cgroup_oom(t->cg, &oom, &eb) == 0) {
        t->rec.oom_base = oom.oom_kill;
    }
    for (int s = 0; s < 2; s++) {
        if ((fds[s] = open_log(t, s)) < 0) {
            snprintf(why, sizeof(why), "open %s of the sandbox: %s", stream_names[s],
                     cm_strerror(cm_errno()));
            goto fail;
        }
    }
    char path[4200];
    sandbox_path(t, STATUS_FILE, path, sizeof(path));
    unlink(path);
    struct cm_agent_env_task et = {
        .id = t->id,
        .version = row->version,
        .host = row->host && row->host[0] ? row->host : a->host,
        .ports_json = row->ports,
        .sandbox = t->sandbox,
    };
    int rv = cm_agent_env_build(app, &et, &envp);
    if (rv != 0) {
        snprintf(why, sizeof(why), "task environment: %s", cm_strerror(rv));
        goto fail;
    }
    if (app->cmd == NULL) {
        argv = cm_calloc(app->n_args + 1, sizeof(*argv));
        if (argv == NULL) {
            snprintf(why, sizeof(why), "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < app->n_args; i++) {
            argv[i] = app->args[i];
        }
    }
    if (record_write(t, &eb) != 0) {
        snprintf(why, sizeof(why), "%s", eb.msg);
        goto fail;
    }
    struct iso_spawn_opts so = {
        .cmd = app->cmd,
        .argv = argv,
        .envp = envp,
        .workdir = t->sandbox,
        .stdout_fd = fds[0],
        .stderr_fd = fds[1],
        .cgroup = t->cg,
        .flags = a->spawn_flags,
        .init_path = a->init_path,
        .status_file = STATUS_FILE,
    };
    pid_t pid = 0;
    if (iso_spawn(&so, &pid, &eb) != 0) {
        snprintf(why, sizeof(why), "%s", eb.msg);
        goto fail;
    }
    /* Still our unreaped child: the pidfd names exactly it. */
    t->pidfd = sys_pidfd_open(pid);
    if (t->pidfd < 0 || proc_start_time(pid, &t->rec.start_time) != 0) {
        snprintf(why, sizeof(why), "pidfd_open %d: %s", (int)pid,
                 cm_strerror(cm_errno()));
        if (t->pidfd >= 0) {
            close(t->pidfd);
            t->pidfd = -1;
        }
        kill(pid, SIGKILL);
        goto fail;
    }
    t->rec.pid = pid;
    t->rec.phase = CM_AGENT_PHASE_RUNNING;
    record_write(t, &eb); /* a failure only costs re-adoption after a restart */
    t->phase = CM_AGENT_PHASE_RUNNING;
    watch(t);
    trace(a, "launch task=%s pid=%d cgroup=%s", t->id, (int)pid, t->rec.cgroup);
    health_ensure(t, row);
    maybe_report(t);
    goto out;
fail:
    launch_failed(t, why);
out:
    for (int s = 0; s < 2; s++) {
        if (fds[s] >= 0) {
            close(fds[s]);
        }
    }
    cm_free(&argv);
    cm_free(&envp);
    cm_app_free(app);
}

/* ------------------------------------------------------------------ adoption */

/* A task with a record and no entry: a previous agent (or this daemon before a
 * restart) launched it. */
static void adopt(struct agent_task *t)
{
    struct cm_agent *a = t->a;
    struct cm_errbuf eb;
    if (t->rec.cgroup[0] != '\0' &&
        iso_cgroup_open(a->cgroups, t->rec.cgroup, &t->cg, &eb) != 0) {
        t->cg = NULL;
    }
    switch (t->rec.phase) {
    case CM_AGENT_PHASE_EXITED:
        t->phase = CM_AGENT_PHASE_EXITED;
        trace(a, "recovered task=%s state=%s", t->id,
              cm_task_state_name((enum cm_task_state)t->rec.final_state));
        return;
    case CM_AGENT_PHASE_LAUNCHING:
        /* The daemon died between the record and the spawn's result: whatever
         * started has no pid on record; stop it and call the task lost. */
        if (t->cg != NULL) {
            iso_cgroup_kill_start(t->cg, &eb);
        }
        t->phase = CM_AGENT_PHASE_RUNNING;
        finish(t, -1,
               t->corrupt_record ? "lost: its local record is unreadable"
                                 : "launch interrupted by an agent restart");
        return;
    default:
        break;
    }
    pid_t pid = (pid_t)t->rec.pid;
    int fd = sys_pidfd_open(pid);
    uint64_t start = 0;
    if (fd >= 0 && proc_start_time(pid, &start) == 0 && start == t->rec.start_time) {
        /* The pidfd was opened before the check: it is that process. */
        t->pidfd = fd;
        t->adopted = true;
        t->phase = CM_AGENT_PHASE_RUNNING;
        watch(t);
        trace(a, "adopt task=%s pid=%d", t->id, (int)pid);
        return;
    }
    if (fd >= 0) {
        close(fd);
    }
    t->adopted = true;
    t->phase = CM_AGENT_PHASE_RUNNING;
    trace(a, "gone task=%s pid=%d", t->id, (int)pid);
    finish(t, read_status_file(t), "lost while the agent was down");
}

/* ------------------------------------------------------------------ sync */

static struct agent_task *find_task(struct cm_agent *a, const char *id)
{
    for (struct agent_task *t = a->tasks; t != NULL; t = t->next) {
        if (strcmp(t->id, id) == 0) {
            return t;
        }
    }
    return NULL;
}

static struct agent_task *task_new(struct cm_agent *a, const char *id)
{
    struct agent_task *t = cm_calloc(1, sizeof(*t));
    if (t == NULL || (t->id = cm_strdup(id)) == NULL) {
        cm_free(&t);
        return NULL;
    }
    if (cm_agent_id_ok(id)) {
        t->sandbox = cm_asprintf("%s/%s", a->tasks_dir, id);
        if (t->sandbox == NULL) {
            cm_free(&t->id);
            cm_free(&t);
            return NULL;
        }
    }
    t->a = a;
    t->pidfd = -1;
    t->reported_state = -1;
    t->health_sent = -1;
    t->rec.exit_code = -1;
    ev_init(&t->pid_w, on_pid);
    ev_init(&t->kill_w, on_kill_timer);
    t->next = a->tasks;
    a->tasks = t;
    if (t->sandbox != NULL) {
        int rv = record_read(t->sandbox, &t->rec);
        if (rv == 0 && strcmp(t->rec.id, id) == 0) {
            t->has_record = true;
        } else if (rv == CM_ECORRUPT || rv == 0) {
            /* A record we cannot trust: the task may run, but we cannot find or
             * stop it safely by pid; call it lost (its cgroup name is known). */
            memset(&t->rec, 0, sizeof(t->rec));
            snprintf(t->rec.id, sizeof(t->rec.id), "%s", id);
            cm_agent_cgroup_name(id, t->rec.cgroup, sizeof(t->rec.cgroup));
            t->rec.phase = CM_AGENT_PHASE_LAUNCHING;
            t->rec.exit_code = -1;
            t->has_record = true;
            t->corrupt_record = true;
        } else {
            memset(&t->rec, 0, sizeof(t->rec));
            t->rec.exit_code = -1;
        }
    }
    return t;
}

static void reconcile(struct agent_task *t, const struct row_copy *row)
{
    enum cm_task_state st = row->state;
    switch (t->phase) {
    case CM_AGENT_PHASE_NEW:
        if (t->has_record) {
            adopt(t);
            if (t->phase == CM_AGENT_PHASE_RUNNING &&
                (st == CM_TASK_KILLING || cm_task_state_terminal(st))) {
                stop(t);
            }
            health_ensure(t, row);
            if (t->phase == CM_AGENT_PHASE_EXITED && cm_task_state_terminal(st)) {
                cleanup_cgroup(t);
            }
            maybe_report(t);
        } else if (st == CM_TASK_STAGING || st == CM_TASK_STARTING) {
            launch(t, row);
        } else if (st == CM_TASK_KILLING) {
            t->rec.final_state = CM_TASK_KILLED;
            t->rec.exit_code = -1;
            snprintf(t->rec.reason, sizeof(t->rec.reason),
                     "killed before it was launched");
            t->phase = CM_AGENT_PHASE_EXITED;
            maybe_report(t);
        } else if (cm_task_state_terminal(st)) {
            t->phase = CM_AGENT_PHASE_DONE;
        } else {
            /* running/unreachable in the replica, and nothing here knows it. */
            t->rec.final_state = CM_TASK_FAILED;
            t->rec.exit_code = -1;
            snprintf(t->rec.reason, sizeof(t->rec.reason),
                     "lost: the node has no local record of the task");
            t->phase = CM_AGENT_PHASE_EXITED;
            maybe_report(t);
        }
        break;
    case CM_AGENT_PHASE_RUNNING:
        if (st == CM_TASK_KILLING || cm_task_state_terminal(st)) {
            stop(t);
        }
        health_ensure(t, row);
        maybe_report(t);
        break;
    case CM_AGENT_PHASE_EXITED:
        if (cm_task_state_terminal(st)) {
            cleanup_cgroup(t);
        } else {
            maybe_report(t);
        }
        break;
    default:
        break;
    }
}

struct rows {
    struct row_copy *v;
    size_t n, cap;
    int err;
};

static char *dup_or_null(const char *s, int *err)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = cm_strdup(s);
    if (d == NULL) {
        *err = CM_ENOMEM;
    }
    return d;
}

static void rows_done(struct rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        cm_free(&r->v[i].id);
        cm_free(&r->v[i].app);
        cm_free(&r->v[i].version);
        cm_free(&r->v[i].host);
        cm_free(&r->v[i].ports);
        cm_free(&r->v[i].health);
    }
    cm_free(&r->v);
}

static int collect_row(void *data, const struct cm_task_row *row)
{
    struct rows *r = data;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct row_copy *v = cm_reallocarray(r->v, cap, sizeof(*v));
        if (v == NULL) {
            r->err = CM_ENOMEM;
            return CM_ENOMEM;
        }
        r->v = v;
        r->cap = cap;
    }
    struct row_copy *c = &r->v[r->n++];
    memset(c, 0, sizeof(*c));
    c->id = dup_or_null(row->id, &r->err);
    c->app = dup_or_null(row->app, &r->err);
    c->version = dup_or_null(row->version, &r->err);
    c->host = dup_or_null(row->host, &r->err);
    c->ports = dup_or_null(row->ports, &r->err);
    c->health = dup_or_null(row->health, &r->err);
    c->state = row->state;
    c->ready = row->ready;
    return r->err;
}

static bool cgroup_owned(struct cm_agent *a, const char *name)
{
    for (struct agent_task *t = a->tasks; t != NULL; t = t->next) {
        if (strcmp(t->rec.cgroup, name) == 0) {
            return true;
        }
        char mine[256];
        cm_agent_cgroup_name(t->id, mine, sizeof(mine));
        if (strcmp(mine, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Kill and remove the stray cgroups; those still busy stay in the list for the
 * next tick. */
static void remove_strays(struct cm_agent *a)
{
    size_t keep = 0;
    for (size_t i = 0; i < a->n_strays; i++) {
        struct iso_cgroup *cg = NULL;
        struct cm_errbuf eb;
        int rv = iso_cgroup_open(a->cgroups, a->strays[i], &cg, &eb);
        if (rv == 0) {
            iso_cgroup_kill_start(cg, &eb);
            rv = iso_cgroup_remove(cg, 0, &eb);
            iso_cgroup_free(cg);
        }
        if (rv == CM_EBUSY) {
            a->strays[keep++] = a->strays[i];
            continue;
        }
        trace(a, "stray cgroup=%s removed rv=%d", a->strays[i], rv);
        cm_free(&a->strays[i]);
    }
    a->n_strays = keep;
}

/* At the first sync: task cgroups under our parent that belong to no task of this
 * node in the replica (expunged while the daemon was down, or left by a launch
 * whose task is gone from the state) run nothing anyone asked for. */
static void find_strays(struct cm_agent *a)
{
    char **names = NULL;
    size_t n = 0;
    struct cm_errbuf eb;
    if (iso_cgroup_manager_list(a->cgroups, &names, &n, &eb) != 0) {
        return;
    }
    char **v = cm_calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        iso_names_free(names, n);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(names[i], "task-", 5) == 0 && !cgroup_owned(a, names[i])) {
            v[k++] = names[i];
            names[i] = NULL;
        }
    }
    iso_names_free(names, n);
    a->strays = v;
    a->n_strays = k;
    remove_strays(a);
}

int cm_agent_sync(struct cm_agent *a, struct cm_errbuf *eb)
{
    struct rows rows = {0};
    int rv = cm_state_tasks(a->state, NULL, a->node, collect_row, &rows);
    if (rv != 0 || rows.err != 0) {
        rv = rows.err ? rows.err : rv;
        rows_done(&rows);
        return cm_err_setf(eb, rv, "agent: read this node's tasks: %s", cm_strerror(rv));
    }
    for (struct agent_task *t = a->tasks; t != NULL; t = t->next) {
        t->seen = false;
    }
    for (size_t i = 0; i < rows.n; i++) {
        const struct row_copy *row = &rows.v[i];
        if (row->id == NULL) {
            continue;
        }
        struct agent_task *t = find_task(a, row->id);
        if (t == NULL && (t = task_new(a, row->id)) == NULL) {
            rows_done(&rows);
            return cm_err_setf(eb, CM_ENOMEM, "agent: out of memory");
        }
        t->seen = true;
        t->orphan = false;
        t->row_state = row->state;
        t->row_ready = row->ready;
        cm_free(&t->row_health);
        t->row_health = row->health != NULL ? cm_strdup(row->health) : NULL;
        reconcile(t, row);
    }
    rows_done(&rows);
    /* Rows that vanished (expunged): nothing may run for them. Entries go once
     * their process is gone and their cgroup removed. */
    for (struct agent_task **pp = &a->tasks; *pp != NULL;) {
        struct agent_task *t = *pp;
        if (!t->seen) {
            t->orphan = true;
            if (t->phase == CM_AGENT_PHASE_RUNNING) {
                stop(t);
            } else if (t->phase == CM_AGENT_PHASE_EXITED) {
                cleanup_cgroup(t);
            }
            if (t->phase == CM_AGENT_PHASE_DONE || t->phase == CM_AGENT_PHASE_NEW) {
                *pp = t->next;
                task_free(t);
                continue;
            }
        }
        pp = &t->next;
    }
    if (!a->synced) {
        a->synced = true;
        find_strays(a);
    }
    return 0;
}

/* ------------------------------------------------------------------ log rotation */

static unsigned rotated_count(const char *base, unsigned keep)
{
    unsigned n = 0;
    char path[4300];
    for (unsigned i = 1; i <= keep; i++) {
        snprintf(path, sizeof(path), "%s.%u", base, i);
        if (access(path, F_OK) != 0) {
            break;
        }
        n = i;
    }
    return n;
}

/* Copy @src to the new file @dst; returns the bytes copied or a negative cm_err. */
static int64_t copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return cm_errno();
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0) {
        int err = cm_errno();
        close(in);
        return err;
    }
    int64_t total = 0;
    char buf[65536];
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            if (r < 0) {
                total = cm_errno();
            }
            break;
        }
        int rv = write_all(out, buf, (size_t)r);
        if (rv != 0) {
            total = rv;
            break;
        }
        total += r;
    }
    close(in);
    close(out);
    return total;
}

static void rotate_stream(struct agent_task *t, int s)
{
    struct cm_agent *a = t->a;
    char base[4200];
    sandbox_path(t, stream_names[s], base, sizeof(base));
    struct stat st;
    if (stat(base, &st) != 0) {
        return;
    }
    unsigned shift = cm_agent_log_rotation((uint64_t)st.st_size, a->log_max, a->log_keep,
                                           rotated_count(base, a->log_keep));
    if (shift == 0) {
        return;
    }
    char from[4300], to[4300];
    for (unsigned i = shift - 1; i >= 1; i--) {
        snprintf(from, sizeof(from), "%s.%u", base, i);
        snprintf(to, sizeof(to), "%s.%u", base, i + 1);
        rename(from, to);
    }
    snprintf(to, sizeof(to), "%s.1", base);
    int64_t copied = copy_file(base, to);
    if (copied < 0) {
        return;
    }
    /* Right after the copy: what the task wrote in between is the loss window
     * documented in agent.h. Its O_APPEND writes go on at the new end. */
    if (truncate(base, 0) != 0) {
        return;
    }
    t->rec.log_base[s] += (uint64_t)copied;
    struct cm_errbuf eb;
    record_write(t, &eb);
    trace(a, "rotate task=%s stream=%s bytes=%lld", t->id, stream_names[s],
          (long long)copied);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_agent *a = cm_container_of(w, struct cm_agent, tick_w);
    for (struct agent_task *t = a->tasks; t != NULL; t = t->next) {
        switch (t->phase) {
        case CM_AGENT_PHASE_RUNNING:
        case CM_AGENT_PHASE_STOPPING:
        case CM_AGENT_PHASE_KILLING:
            rotate_stream(t, CM_AGENT_STDOUT);
            rotate_stream(t, CM_AGENT_STDERR);
            break;
        case CM_AGENT_PHASE_EXITED:
            if (t->orphan || cm_task_state_terminal(t->row_state)) {
                cleanup_cgroup(t); /* an earlier removal found it busy */
            }
            break;
        default:
            break;
        }
        maybe_report(t);
    }
    if (a->n_strays > 0) {
        remove_strays(a);
    }
}

/* ------------------------------------------------------------------ new / free */

static int mkdir_p(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        return CM_ETOOBIG;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return cm_errno();
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
        return cm_errno();
    }
    return 0;
}

int cm_agent_new(struct ev_loop *loop, const struct cm_agent_opts *o,
                 struct cm_agent **ret, struct cm_errbuf *eb)
{
    if (o->node == NULL || o->tasks_dir == NULL || o->state == NULL ||
        o->report == NULL) {
        return cm_err_setf(eb, CM_EINVAL,
                           "agent: node, tasks_dir, state and report are "
                           "required");
    }
    cm_state_json_init();
    int rv;
    struct cm_agent *a = cm_calloc(1, sizeof(*a));
    if (a == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "agent: out of memory");
    }
    a->loop = loop;
    a->node = cm_strdup(o->node);
    a->tasks_dir = cm_strdup(o->tasks_dir);
    a->init_path = o->init_path ? cm_strdup(o->init_path) : NULL;
    a->host = cm_strdup(o->host ? o->host : "localhost");
    if (a->node == NULL || a->tasks_dir == NULL || a->host == NULL ||
        (o->init_path != NULL && a->init_path == NULL)) {
        rv = cm_err_setf(eb, CM_ENOMEM, "agent: out of memory");
        goto err_after_alloc;
    }
    a->state = o->state;
    a->report = o->report;
    a->report_data = o->report_data;
    a->trace_fn = o->trace;
    a->trace_data = o->trace_data;
    a->clock = o->clock ? o->clock : cm_clock_system();
    a->log_max = o->log_max_bytes ? o->log_max_bytes : DEFAULT_LOG_MAX;
    a->log_keep = o->log_keep ? o->log_keep : DEFAULT_LOG_KEEP;
    a->resend_ms = o->resend_ms ? o->resend_ms : DEFAULT_RESEND_MS;
    a->pids_max = o->pids_max ? o->pids_max : DEFAULT_PIDS_MAX;
    a->spawn_flags = o->spawn_flags;
    rv = mkdir_p(a->tasks_dir);
    if (rv != 0) {
        cm_err_sys(eb, rv, "agent: create `%s`", a->tasks_dir);
        goto err_after_alloc;
    }
    if (o->cgroups != NULL) {
        a->cgroups = o->cgroups;
    } else {
        struct iso_cg_opts co = {.parent = o->cgroup_parent};
        rv = iso_cgroup_detect(&co, &a->cgroups, eb);
        if (rv != 0) {
            cm_err_wrapf(eb, "agent: cgroups");
            goto err_after_alloc;
        }
        a->own_cgroups = true;
    }
    double tick = (o->tick_ms ? o->tick_ms : DEFAULT_TICK_MS) / 1000.0;
    ev_timer_init(&a->tick_w, on_tick, tick, tick);
    ev_timer_start(loop, &a->tick_w);
    *ret = a;
    return 0;

err_after_alloc:
    cm_free(&a->node);
    cm_free(&a->tasks_dir);
    cm_free(&a->init_path);
    cm_free(&a->host);
    cm_free(&a);
    return rv;
}

void cm_agent_free(struct cm_agent *a)
{
    if (a == NULL) {
        return;
    }
    ev_timer_stop(a->loop, &a->tick_w);
    while (a->tasks != NULL) {
        struct agent_task *t = a->tasks;
        a->tasks = t->next;
        task_free(t); /* the process keeps running; its record stays */
    }
    for (size_t i = 0; i < a->n_strays; i++) {
        cm_free(&a->strays[i]);
    }
    cm_free(&a->strays);
    if (a->own_cgroups) {
        iso_cgroup_manager_free(a->cgroups);
    }
    cm_free(&a->node);
    cm_free(&a->tasks_dir);
    cm_free(&a->init_path);
    cm_free(&a->host);
    cm_free_raw(a);
}

/* ------------------------------------------------------------------ info */

static void fill_info(struct agent_task *t, struct cm_agent_task_info *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->id = t->id;
    ret->phase = t->phase;
    ret->pid = t->pidfd >= 0 ? (pid_t)t->rec.pid : 0;
    ret->adopted = t->adopted;
    ret->launched_at = t->rec.launched_at;
    ret->mem_limit = UINT64_MAX;
    struct iso_cg_stats st;
    struct cm_errbuf eb;
    if (t->cg != NULL && t->phase >= CM_AGENT_PHASE_RUNNING &&
        t->phase <= CM_AGENT_PHASE_KILLING && iso_cgroup_stats(t->cg, &st, &eb) == 0) {
        ret->has_stats = true;
        ret->cpu_usage_ns = st.cpu_usage_ns;
        ret->mem_bytes = st.mem_current;
        ret->mem_peak = st.mem_peak;
        ret->mem_limit = st.mem_limit;
        ret->pids = st.pids_current;
    }
}

int cm_agent_task(struct cm_agent *a, const char *id, struct cm_agent_task_info *ret)
{
    struct agent_task *t = find_task(a, id);
    if (t == NULL) {
        return CM_ENOTFOUND;
    }
    fill_info(t, ret);
    return 0;
}

int cm_agent_tasks(struct cm_agent *a,
                   int (*fn)(void *data, const struct cm_agent_task_info *t), void *data)
{
    for (struct agent_task *t = a->tasks; t != NULL; t = t->next) {
        struct cm_agent_task_info info;
        fill_info(t, &info);
        int rv = fn(data, &info);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ log reads */

int cm_agent_log_path(struct cm_agent *a, const char *id, enum cm_agent_stream s,
                      char *out, size_t cap)
{
    if (!cm_agent_id_ok(id) || (unsigned)s > CM_AGENT_STDERR) {
        return CM_EINVAL;
    }
    int n = snprintf(out, cap, "%s/%s/%s", a->tasks_dir, id, stream_names[s]);
    return n < 0 || (size_t)n >= cap ? CM_ETOOBIG : 0;
}

/* Bytes rotated away from stream @s of task @id. */
static uint64_t log_base(struct cm_agent *a, const char *id, enum cm_agent_stream s)
{
    struct agent_task *t = find_task(a, id);
    if (t != NULL && t->has_record) {
        return t->rec.log_base[s];
    }
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/%s", a->tasks_dir, id);
    struct cm_agent_record r;
    return record_read(dir, &r) == 0 ? r.log_base[s] : 0;
}

static int read_range(const char *path, uint64_t off, size_t max, struct cm_buf *out,
                      uint64_t *ret_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return cm_errno();
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = cm_errno();
        close(fd);
        return err;
    }
    uint64_t size = (uint64_t)st.st_size;
    *ret_size = size;
    int rv = 0;
    if (off < size) {
        size_t want = (size_t)CM_MIN((uint64_t)max, size - off);
        rv = cm_buf_reserve(out, want);
        while (rv == 0 && want > 0) {
            ssize_t r = pread(fd, out->data + out->len, want, (off_t)off);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r < 0) {
                rv = cm_errno();
                break;
            }
            if (r == 0) {
                break; /* truncated under us by a rotation */
            }
            out->len += (size_t)r;
            off += (uint64_t)r;
            want -= (size_t)r;
        }
        if (out->data != NULL) {
            out->data[out->len] = '\0';
        }
    }
    close(fd);
    return rv;
}

int cm_agent_log_read(struct cm_agent *a, const char *id, enum cm_agent_stream s,
                      uint64_t pos, size_t max, struct cm_buf *out, uint64_t *ret_pos)
{
    char path[4200];
    int rv = cm_agent_log_path(a, id, s, path, sizeof(path));
    if (rv != 0) {
        return rv;
    }
    uint64_t base = log_base(a, id, s);
    uint64_t start = pos < base ? base : pos;
    uint64_t size;
    rv = read_range(path, start - base, max, out, &size);
    if (rv == 0) {
        *ret_pos = start;
    }
    return rv;
}

int cm_agent_log_tail(struct cm_agent *a, const char *id, enum cm_agent_stream s,
                      size_t max, struct cm_buf *out, uint64_t *ret_pos,
                      uint64_t *ret_end)
{
    char path[4200];
    int rv = cm_agent_log_path(a, id, s, path, sizeof(path));
    if (rv != 0) {
        return rv;
    }
    uint64_t base = log_base(a, id, s);
    struct stat st;
    if (stat(path, &st) != 0) {
        return cm_errno();
    }
    uint64_t size = (uint64_t)st.st_size;
    uint64_t off = size > max ? size - max : 0;
    size_t before = out->len;
    rv = read_range(path, off, max, out, &size);
    if (rv == 0) {
        *ret_pos = base + off;
        if (ret_end != NULL) {
            *ret_end = base + off + (out->len - before);
        }
    }
    return rv;
}
