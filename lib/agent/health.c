/* Health and readiness checks of the tasks of this node (DESIGN.md §7,
 * shared/specs/compat.md §1.7-1.8).
 *
 * They run here, next to the task, never from the leader: Marathon's leader-side
 * checks killed healthy tasks when the leader was busy. Every check is a small
 * state machine on the agent's libev loop (enum run_phase): it waits for its next
 * run, runs with a timeout, turns what it saw into a result (pure rules in the
 * first half of this file) and schedules the next run. Only changes of a task's
 * verdict or readiness leave this file (agent_health_cbs.changed); the agent turns
 * them into `task.status` commands, so the log carries transitions, not checks.
 *
 * Where a check connects (HTTP, HTTPS, TCP): the task row's host when it is an
 * IPv4 address (what clients of the task use, like Marathon's own checks, which
 * probe the agent's address), else 127.0.0.1; MESOS_* checks always probe
 * 127.0.0.1, as the Mesos checker does for host networking.
 *
 * COMMAND checks run `/bin/sh -c <command>` inside the task: the daemon forks a
 * helper, moves it into the task's cgroup (so what the check spends is charged to
 * the task, as under Mesos), and the helper joins the task's mount, PID, UTS, IPC
 * and network namespaces through the init's pidfd (setns(2) with a pidfd, Linux
 * 5.8). Joining a PID namespace only applies to children, so the helper forks the
 * shell, which then sees the task's /proc, private /tmp and loopback; it gets the
 * task's environment (cm_agent_env_build) and works in its sandbox. The helper
 * reports the shell's exit status over a pipe and dies with it; on a timeout the
 * daemon sends it SIGTERM, on which it SIGKILLs the shell's process group (the
 * shell has PR_SET_PDEATHSIG as a second line). The alternative, spawning the
 * command with only the task's environment, would see the host's /proc and /tmp
 * and could not reach a task listening on a private network namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/agent_int.h"
#include "isolation/isolation.h"
#include "net/http.h"
#include "net/net.h"
#include "state/state.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define BODY_KEEP        1024        /* bytes of a readiness response kept */
#define HTTP_MAX_BODY    (64 * 1024) /* a check reads no further than this */
#define COMMAND_OUT_KEEP 200         /* bytes of a command's output in its cause */
#define KILL_AGAIN_S     1.0         /* SIGKILL a helper that ignored SIGTERM */
#define HELPER_FAILED    255         /* the helper's own failure (setns, fork) */

/* ------------------------------------------------------------------ pure rules */

enum cm_hc_result cm_agent_hc_http_result(int status, bool ignore_1xx)
{
    if (status >= 100 && status <= 199 && ignore_1xx) {
        return CM_HC_IGNORED;
    }
    return status >= 200 && status <= 399 ? CM_HC_HEALTHY : CM_HC_UNHEALTHY;
}

bool cm_agent_rc_ready(int status, const int32_t *codes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (codes[i] == status) {
            return true;
        }
    }
    return false;
}

/* The index of the port named @name in the app's port list, or -1. */
static int port_index_of(const struct cm_app *app, const char *name)
{
    if (app->n_networks > 0 && app->networks[0].mode != CM_APP_NET_HOST) {
        for (size_t i = 0; i < app->container.n_port_mappings; i++) {
            const char *n = app->container.port_mappings[i].name;
            if (n != NULL && strcmp(n, name) == 0) {
                return (int)i;
            }
        }
        return -1;
    }
    for (size_t i = 0; i < app->n_port_defs; i++) {
        const char *n = app->port_defs[i].name;
        if (n != NULL && strcmp(n, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* The host port at @idx of the row's ports. */
static int host_port_at(const char *ports_json, int idx, char *why, size_t cap)
{
    cJSON *a = ports_json != NULL ? cJSON_Parse(ports_json) : cJSON_CreateArray();
    if (a == NULL || !cJSON_IsArray(a)) {
        cJSON_Delete(a);
        snprintf(why, cap, "the task's ports are unreadable");
        return CM_EMALFORMED;
    }
    const cJSON *p = cJSON_GetArrayItem(a, idx);
    int rv;
    if (p == NULL) {
        snprintf(why, cap, "the task has no port at index %d (it has %d)", idx,
                 cJSON_GetArraySize(a));
        rv = CM_ERANGE;
    } else if (!cJSON_IsNumber(p) || p->valuedouble < 1 || p->valuedouble > 65535) {
        snprintf(why, cap, "the task has no host port at index %d", idx);
        rv = CM_ERANGE;
    } else {
        rv = (int)p->valuedouble;
    }
    cJSON_Delete(a);
    return rv;
}

int cm_agent_hc_port(const struct cm_app *app, const struct cm_app_health_check *hc,
                     const char *ports_json, char *why, size_t cap)
{
    if (hc->proto == CM_APP_HC_COMMAND) {
        snprintf(why, cap, "COMMAND checks use no port");
        return CM_EINVAL;
    }
    if (hc->port > 0) {
        return hc->port;
    }
    int idx = hc->port_index;
    if (hc->port_name != NULL) {
        idx = port_index_of(app, hc->port_name);
        if (idx < 0) {
            snprintf(why, cap, "no port named '%s'", hc->port_name);
            return CM_ENOTFOUND;
        }
    }
    if (idx < 0) {
        snprintf(why, cap, "the check names no port (port, portIndex or portName)");
        return CM_EINVAL;
    }
    return host_port_at(ports_json, idx, why, cap);
}

int cm_agent_rc_port(const struct cm_app *app, const struct cm_app_readiness_check *rc,
                     const char *ports_json, char *why, size_t cap)
{
    int idx = port_index_of(app, rc->port_name);
    if (idx < 0) {
        snprintf(why, cap, "no port named '%s'", rc->port_name);
        return CM_ENOTFOUND;
    }
    return host_port_at(ports_json, idx, why, cap);
}

void cm_agent_hc_init(struct cm_hc_state *s, int64_t started_at)
{
    memset(s, 0, sizeof(*s));
    s->started_at = started_at;
    s->alive = -1;
}

/* The checks Mesos executes (compat.md §1.7). */
static bool mesos_level(enum cm_app_hc_proto p)
{
    return p == CM_APP_HC_MESOS_HTTP || p == CM_APP_HC_MESOS_HTTPS ||
           p == CM_APP_HC_MESOS_TCP || p == CM_APP_HC_COMMAND;
}

unsigned cm_agent_hc_step(struct cm_hc_state *s, const struct cm_app_health_check *hc,
                          enum cm_hc_result r, const char *cause, int64_t now)
{
    int before = s->alive;
    unsigned out = 0;
    switch (r) {
    case CM_HC_IGNORED:
        return 0;
    case CM_HC_HEALTHY:
        s->consecutive_failures = 0;
        if (s->first_success == 0) {
            s->first_success = now;
        }
        s->last_success = now;
        s->alive = 1;
        break;
    case CM_HC_UNHEALTHY:
        /* Marathon's HealthCheckActor: failures are ignored until the first
         * success or the end of the grace period, whichever comes first. */
        if (s->first_success == 0 &&
            now < s->started_at + (int64_t)hc->grace_period_s * 1000) {
            return 0;
        }
        s->consecutive_failures++;
        s->last_failure = now;
        snprintf(s->last_failure_cause, sizeof(s->last_failure_cause), "%s",
                 cause != NULL ? cause : "failed");
        s->alive = 0;
        uint32_t limit = (uint32_t)CM_MAX(hc->max_consecutive_failures, 0);
        if (mesos_level(hc->proto) && limit == 0) {
            limit = 1;
        }
        if (limit > 0 && s->consecutive_failures >= limit) {
            out |= CM_HC_KILL;
        }
        break;
    }
    if (s->alive != before) {
        out |= CM_HC_CHANGED;
    }
    return out;
}

int cm_agent_hc_verdict(const struct cm_hc_state *v, size_t n)
{
    int verdict = n > 0 ? 1 : -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i].alive == 0) {
            return 0;
        }
        if (v[i].alive < 0) {
            verdict = -1;
        }
    }
    return verdict;
}

/* ------------------------------------------------------------------ runtime */

/* The life cycle of one check (STYLE.md rule 15). */
enum run_phase {
    RUN_IDLE = 0, /* waiting for its next run (the timer) */
    RUN_ACTIVE,   /* [transient] probing; the timer is the timeout */
    RUN_REAPING,  /* [transient] COMMAND timed out: waiting for the helper to die */
    RUN_DONE,     /* readiness reached, or stopped: nothing more */
};

enum run_kind {
    KIND_HTTP = 0,
    KIND_HTTPS,
    KIND_TCP,
    KIND_COMMAND,
};

struct check_run {
    struct agent_health *h;
    bool readiness;
    size_t idx; /* into the app's health_checks or readiness_checks */
    enum run_kind kind;
    enum run_phase phase;
    ev_timer timer;
    uint64_t began;  /* mono ms of the run's start */
    char target[96]; /* "GET /health on 127.0.0.1:31000" style, for causes */
    /* HTTP(S) */
    struct cm_http_call *call;
    int status; /* of the response being read; -1 none */
    char *ctype;
    struct cm_buf body;
    /* TCP */
    int fd;
    ev_io io;
    /* COMMAND: the helper's pidfd, its status pipe and the output pipe */
    pid_t pid;
    int pidfd;
    ev_io pid_w;
    int st_fd;
    int out_fd;
    ev_io out_w;
    char out[COMMAND_OUT_KEEP + 1];
    size_t out_len;
    bool timed_out;
    /* results */
    struct cm_hc_state *st; /* health checks: its entry of agent_health.states */
    bool ready;             /* readiness checks */
    int last_status;        /* readiness: -1 none */
    char *last_ctype;
    char *last_body;
};

struct agent_health {
    struct ev_loop *loop;
    struct cm_clock *clock;
    struct cm_app *app;
    char *id;
    char *ports_json;
    char *sandbox;
    char **envp; /* the task's environment, for COMMAND checks */
    char ip[INET_ADDRSTRLEN];
    int64_t started_at;
    int pidfd;
    pid_t pid;
    struct iso_cgroup *cg;
    struct cm_tls
        *tls; /* insecure client context for HTTPS checks; NULL until one runs */
    struct agent_health_cbs cbs;
    struct check_run *hc;
    struct cm_hc_state *states; /* one per health check, for the verdict */
    size_t n_hc;
    struct check_run *rc;
    size_t n_rc;
    bool stopped;
    int verdict; /* cm_agent_hc_verdict of the last result */
    bool ready;
};

static void htrace(struct agent_health *h, const char *fmt, ...) CM_PRINTF(2, 3);
static void htrace(struct agent_health *h, const char *fmt, ...)
{
    if (h->cbs.trace == NULL) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    h->cbs.trace(h->cbs.data, line);
}

static const struct cm_app_health_check *hc_of(const struct check_run *r)
{
    return &r->h->app->health_checks[r->idx];
}

static const struct cm_app_readiness_check *rc_of(const struct check_run *r)
{
    return &r->h->app->readiness_checks[r->idx];
}

static int interval_s(const struct check_run *r)
{
    return r->readiness ? rc_of(r)->interval_s : hc_of(r)->interval_s;
}

static int timeout_s(const struct check_run *r)
{
    return r->readiness ? rc_of(r)->timeout_s : hc_of(r)->timeout_s;
}

static const char *run_name(const struct check_run *r)
{
    if (r->readiness) {
        return rc_of(r)->name;
    }
    return cm_app_hc_proto_name(hc_of(r)->proto);
}

/* Release what the current run holds. Never called from inside the HTTP call's
 * callbacks with the call still set (they clear it first). */
static void run_release(struct check_run *r)
{
    struct ev_loop *loop = r->h->loop;
    if (r->call != NULL) {
        cm_http_call_cancel(r->call);
        r->call = NULL;
    }
    cm_free(&r->ctype);
    cm_buf_done(&r->body);
    r->status = -1;
    ev_io_stop(loop, &r->io);
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    ev_io_stop(loop, &r->pid_w);
    ev_io_stop(loop, &r->out_w);
    if (r->pidfd >= 0) {
        /* Still running (stopped or timed out and given up on): end it. */
        syscall(SYS_pidfd_send_signal, r->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        waitid((idtype_t)P_PIDFD, (id_t)r->pidfd, &si, WEXITED | WNOHANG);
        close(r->pidfd);
        r->pidfd = -1;
    }
    if (r->st_fd >= 0) {
        close(r->st_fd);
        r->st_fd = -1;
    }
    if (r->out_fd >= 0) {
        close(r->out_fd);
        r->out_fd = -1;
    }
    r->out_len = 0;
    r->timed_out = false;
}

static void schedule(struct check_run *r, double delay_s)
{
    r->phase = RUN_IDLE;
    ev_timer_stop(r->h->loop, &r->timer);
    ev_timer_set(&r->timer, delay_s > 0 ? delay_s : 0., 0.);
    ev_timer_start(r->h->loop, &r->timer);
}

static void recompute(struct agent_health *h)
{
    if (h->stopped) {
        return;
    }
    int verdict = cm_agent_hc_verdict(h->states, h->n_hc);
    bool ready = true;
    for (size_t i = 0; i < h->n_rc; i++) {
        ready = ready && h->rc[i].ready;
    }
    if (verdict != h->verdict || ready != h->ready) {
        htrace(h, "health task=%s verdict=%s ready=%d", h->id,
               verdict < 0 ? "none"
               : verdict   ? "healthy"
                           : "unhealthy",
               (int)ready);
        h->verdict = verdict;
        h->ready = ready;
        h->cbs.changed(h->cbs.data);
    }
}

/* What a task answered is kept as JSON text in the replica: printable ASCII only
 * (any other byte becomes '?'), so it is valid UTF-8 whatever the task sent. */
static void printable(char *s)
{
    for (char *c = s; c != NULL && *c; c++) {
        unsigned char u = (unsigned char)*c;
        if ((u < 0x20 && u != '\n' && u != '\t') || u >= 0x7f) {
            *c = '?';
        }
    }
}

/* The run ended with @res (@cause says why when unhealthy). */
static void run_finish(struct check_run *r, enum cm_hc_result res, int status,
                       const char *cause)
{
    struct agent_health *h = r->h;
    ev_timer_stop(h->loop, &r->timer);
    uint64_t now_mono = cm_clock_mono_ms(h->clock);
    int64_t now = cm_clock_real_ms(h->clock);
    if (r->readiness) {
        const struct cm_app_readiness_check *rc = rc_of(r);
        bool ready =
            status > 0 && cm_agent_rc_ready(status, rc->ready_codes, rc->n_ready_codes);
        if (status > 0 && rc->preserve_last_response) {
            cm_free(&r->last_ctype);
            cm_free(&r->last_body);
            r->last_status = status;
            r->last_ctype = r->ctype;
            r->ctype = NULL;
            r->last_body = cm_buf_steal(&r->body);
            printable(r->last_ctype);
            printable(r->last_body);
        }
        htrace(h, "readiness task=%s check=%s status=%d ready=%d", h->id, rc->name,
               status, (int)ready);
        run_release(r);
        if (ready) {
            r->ready = true;
            r->phase = RUN_DONE;
            recompute(h);
            return;
        }
    } else {
        const struct cm_app_health_check *hc = hc_of(r);
        unsigned act = cm_agent_hc_step(r->st, hc, res, cause, now);
        htrace(h, "check task=%s check=%zu result=%s%s%s", h->id, r->idx,
               res == CM_HC_HEALTHY     ? "healthy"
               : res == CM_HC_UNHEALTHY ? "unhealthy"
                                        : "ignored",
               cause ? " cause=" : "", cause ? cause : "");
        run_release(r);
        if (act & CM_HC_CHANGED) {
            recompute(h);
        }
        if ((act & CM_HC_KILL) && !h->stopped) {
            char reason[CM_AGENT_REASON_MAX + 1];
            snprintf(reason, sizeof(reason), "health check failed: %s",
                     r->st->last_failure_cause);
            agent__health_stop(h);
            h->cbs.kill(h->cbs.data, reason);
            return;
        }
    }
    if (h->stopped) {
        return;
    }
    /* Every interval from the start of the previous run. */
    double elapsed = (double)(now_mono - r->began) / 1000.0;
    schedule(r, (double)interval_s(r) - elapsed);
}

/* ---- HTTP(S) */

static void http_finish(struct check_run *r, int err, int status)
{
    char cause[CM_HC_CAUSE_MAX];
    const char *path = r->readiness ? rc_of(r)->path : hc_of(r)->path;
    if (err != 0) {
        snprintf(cause, sizeof(cause), "HTTP GET %s on %s: %s", path, r->target,
                 cm_strerror(err));
        run_finish(r, CM_HC_UNHEALTHY, -1, cause);
        return;
    }
    snprintf(cause, sizeof(cause), "HTTP %d on %s", status, path);
    bool ignore = !r->readiness && hc_of(r)->ignore_http1xx;
    enum cm_hc_result res = cm_agent_hc_http_result(status, ignore);
    run_finish(r, res, status, res == CM_HC_UNHEALTHY ? cause : NULL);
}

static void http_keep_head(struct check_run *r, const struct cm_http_response *head)
{
    if (r->status < 0) {
        r->status = head->status;
        const char *ct = cm_http_response_header(head, "content-type");
        if (ct != NULL) {
            r->ctype = cm_strdup(ct);
        }
    }
}

static int http_chunk(struct cm_http_call *call, const struct cm_http_response *head,
                      const char *data, size_t len, void *user)
{
    (void)call;
    struct check_run *r = user;
    http_keep_head(r, head);
    bool keep = r->readiness && rc_of(r)->preserve_last_response;
    if (keep && r->body.len < BODY_KEEP) {
        size_t n = CM_MIN(len, BODY_KEEP - r->body.len);
        cm_buf_append(&r->body, data, n); /* best effort: a lost body is no failure */
        if (r->body.len < BODY_KEEP) {
            return 0;
        }
    }
    /* The status is all a check needs: stop reading (the call frees itself). */
    r->call = NULL;
    http_finish(r, 0, r->status);
    return 1;
}

static void http_done(struct cm_http_call *call, int err,
                      const struct cm_http_response *resp, void *user)
{
    (void)call;
    struct check_run *r = user;
    r->call = NULL; /* freed when this returns */
    if (err == 0) {
        http_keep_head(r, resp);
    }
    http_finish(r, err, err == 0 ? r->status : -1);
}

static void http_start(struct check_run *r, int port)
{
    struct agent_health *h = r->h;
    const char *path = r->readiness ? rc_of(r)->path : hc_of(r)->path;
    bool mesos = !r->readiness && mesos_level(hc_of(r)->proto);
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%d", mesos ? "127.0.0.1" : h->ip, port);
    snprintf(r->target, sizeof(r->target), "%s", addr);
    if (r->kind == KIND_HTTPS && h->tls == NULL) {
        /* Made on the first HTTPS run; a failure is this run's failure. */
        struct cm_errbuf eb;
        cm_errbuf_clear(&eb);
        if (cm_tls_new(&(struct cm_tls_options){.insecure = true}, &h->tls, &eb) != 0) {
            h->tls = NULL;
            char cause[CM_ERRBUF_SIZE + 16];
            snprintf(cause, sizeof(cause), "HTTPS: %s", eb.msg);
            run_finish(r, CM_HC_UNHEALTHY, -1, cause);
            return;
        }
    }
    struct cm_http_call_options o = {
        .method = "GET",
        .path = path,
        .connect_timeout_ms = (unsigned)timeout_s(r) * 1000u,
        .max_body = HTTP_MAX_BODY,
        .on_chunk = http_chunk,
        .on_done = http_done,
        .user = r,
        /* HTTPS: the task's certificate is not verified (compat.md §1.7, as
         * Marathon and Mesos do). */
        .wrap = r->kind == KIND_HTTPS ? cm_tls_wrap : NULL,
        .wrap_data = r->kind == KIND_HTTPS ? h->tls : NULL,
    };
    int rv = cm_http_call_start(h->loop, addr, &o, &r->call);
    if (rv != 0) {
        r->call = NULL;
        http_finish(r, rv, -1);
    }
}

/* ---- TCP */

static void tcp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct check_run *r = cm_container_of(w, struct check_run, io);
    int rv = cm_tcp_connect_result(r->fd);
    char cause[CM_HC_CAUSE_MAX];
    snprintf(cause, sizeof(cause), "TCP connect to %s: %s", r->target, cm_strerror(rv));
    run_finish(r, rv == 0 ? CM_HC_HEALTHY : CM_HC_UNHEALTHY, -1, rv == 0 ? NULL : cause);
}

static void tcp_start(struct check_run *r, int port)
{
    struct agent_health *h = r->h;
    bool mesos = mesos_level(hc_of(r)->proto);
    snprintf(r->target, sizeof(r->target), "%s:%d", mesos ? "127.0.0.1" : h->ip, port);
    int rv = cm_tcp_connect(r->target, &r->fd);
    if (rv != 0) {
        r->fd = -1;
        char cause[CM_HC_CAUSE_MAX];
        snprintf(cause, sizeof(cause), "TCP connect to %s: %s", r->target,
                 cm_strerror(rv));
        run_finish(r, CM_HC_UNHEALTHY, -1, cause);
        return;
    }
    ev_io_init(&r->io, tcp_cb, r->fd, EV_WRITE);
    ev_io_start(h->loop, &r->io);
}

/* ---- COMMAND */

/* The helper's shell, for its SIGTERM handler (the helper is a single-threaded
 * forked child; nothing else in the daemon touches this). */
static volatile pid_t helper_shell_pid;

static void helper_on_term(int sig)
{
    (void)sig;
    pid_t p = helper_shell_pid;
    if (p > 0) {
        kill(-p, SIGKILL);
        kill(p, SIGKILL);
    }
    _exit(128 + SIGTERM);
}

static void helper_fail(int out_fd, const char *what)
{
    char msg[160];
    int e = errno;
    /* errno's number, not strerror(): this runs in a fork of a threaded daemon. */
    int n = snprintf(msg, sizeof(msg), "health check helper: %s: errno %d\n", what, e);
    if (n > 0 && write(out_fd, msg, (size_t)n) < 0) {
        /* nothing more to do */
    }
    _exit(HELPER_FAILED);
}

/* The forked helper: only async-signal-safe calls (and snprintf) from here on. */
static void helper_main(struct agent_health *h, const char *cmd, int sync_fd, int st_fd,
                        int out_fd, int cwd_fd)
{
    sigset_t all;
    sigemptyset(&all);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = helper_on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigprocmask(SIG_SETMASK, &all, NULL);
    char c;
    /* Wait until the daemon has moved us into the task's cgroup. */
    while (read(sync_fd, &c, 1) < 0 && errno == EINTR) {
    }
    close(sync_fd);
    if (setns(h->pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
                            CLONE_NEWNET) != 0) {
        helper_fail(out_fd, "setns into the task");
    }
    pid_t pid = fork();
    if (pid < 0) {
        helper_fail(out_fd, "fork");
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setsid();
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2(null, 0);
        }
        dup2(out_fd, 1);
        dup2(out_fd, 2);
        /* The sandbox by the init's own working directory: its path may be
         * hidden in the task's mount namespace (a sandbox under /tmp, which
         * the task sees as its private tmpfs). */
        if (cwd_fd < 0 || fchdir(cwd_fd) != 0) {
            helper_fail(out_fd, "enter the task's working directory");
        }
        char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
        execve("/bin/sh", argv, h->envp);
        helper_fail(out_fd, "exec /bin/sh");
    }
    helper_shell_pid = pid;
    close(out_fd);
    int ws;
    while (waitpid(pid, &ws, 0) < 0) {
        if (errno != EINTR) {
            _exit(HELPER_FAILED);
        }
    }
    int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    unsigned char b = (unsigned char)code;
    if (write(st_fd, &b, 1) < 0) {
        /* the daemon learns nothing: the check fails */
    }
    _exit(0);
}

static void command_drain(struct check_run *r)
{
    char buf[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(r->out_fd, buf, sizeof(buf));
        if (n <= 0) {
            return;
        }
        size_t keep = CM_MIN((size_t)n, COMMAND_OUT_KEEP - r->out_len);
        memcpy(r->out + r->out_len, buf, keep);
        r->out_len += keep;
        r->out[r->out_len] = '\0';
    }
}

static void command_out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct check_run *r = cm_container_of(w, struct check_run, out_w);
    command_drain(r);
}

/* The helper exited. */
static void command_pid_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct check_run *r = cm_container_of(w, struct check_run, pid_w);
    command_drain(r);
    unsigned char b = 0;
    ssize_t n = read(r->st_fd, &b, 1);
    /* Reap it unless the loop's SIGCHLD handler did. */
    siginfo_t si;
    waitid((idtype_t)P_PIDFD, (id_t)r->pidfd, &si, WEXITED | WNOHANG);
    close(r->pidfd);
    r->pidfd = -1;
    char cause[CM_HC_CAUSE_MAX + COMMAND_OUT_KEEP];
    /* The first line of the output says most. */
    char *nl = strchr(r->out, '\n');
    if (nl != NULL) {
        *nl = '\0';
    }
    printable(r->out);
    const char *out = r->out_len > 0 ? r->out : "";
    if (r->timed_out) {
        snprintf(cause, sizeof(cause), "command timed out after %ds",
                 hc_of(r)->timeout_s);
        run_finish(r, CM_HC_UNHEALTHY, -1, cause);
    } else if (n != 1) {
        snprintf(cause, sizeof(cause), "command did not run%s%s", out[0] ? ": " : "",
                 out);
        run_finish(r, CM_HC_UNHEALTHY, -1, cause);
    } else if (b == 0) {
        run_finish(r, CM_HC_HEALTHY, -1, NULL);
    } else {
        snprintf(cause, sizeof(cause), "command exited with status %d%s%s", (int)b,
                 out[0] ? ": " : "", out);
        run_finish(r, CM_HC_UNHEALTHY, -1, cause);
    }
}

static void command_start(struct check_run *r)
{
    struct agent_health *h = r->h;
    const char *cmd = hc_of(r)->command;
    char cause[CM_HC_CAUSE_MAX];
    int sync[2] = {-1, -1}, st[2] = {-1, -1}, out[2] = {-1, -1};
    snprintf(r->target, sizeof(r->target), "command");
    if (h->pidfd < 0 || h->envp == NULL) {
        run_finish(r, CM_HC_UNHEALTHY, -1, "the task's process is not known here");
        return;
    }
    if (pipe2(sync, O_CLOEXEC) != 0 || pipe2(st, O_CLOEXEC) != 0 ||
        pipe2(out, O_CLOEXEC) != 0) {
        snprintf(cause, sizeof(cause), "pipe: %s", cm_strerror(cm_errno()));
        goto fail;
    }
    char cwd_path[64];
    snprintf(cwd_path, sizeof(cwd_path), "/proc/%d/cwd", (int)h->pid);
    int cwd = open(cwd_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(cause, sizeof(cause), "fork: %s", cm_strerror(cm_errno()));
        if (cwd >= 0) {
            close(cwd);
        }
        goto fail;
    }
    if (pid == 0) {
        close(sync[1]);
        close(st[0]);
        close(out[0]);
        helper_main(h, cmd, sync[0], st[1], out[1], cwd);
        _exit(HELPER_FAILED);
    }
    if (cwd >= 0) {
        close(cwd);
    }
    close(sync[0]);
    close(st[1]);
    close(out[1]);
    sync[0] = st[1] = out[1] = -1;
    r->pid = pid;
    r->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    r->st_fd = st[0];
    r->out_fd = out[0];
    st[0] = out[0] = -1;
    struct cm_errbuf eb;
    int rv = r->pidfd < 0 ? cm_errno() : 0;
    if (rv == 0 && h->cg != NULL) {
        rv = iso_cgroup_add_pid(h->cg, pid, &eb);
    }
    if (rv != 0) {
        snprintf(cause, sizeof(cause), "join the task's cgroup: %s", cm_strerror(rv));
        kill(pid, SIGKILL);
        if (r->pidfd < 0) {
            waitpid(pid, NULL, 0);
        }
        close(sync[1]);
        run_finish(r, CM_HC_UNHEALTHY, -1, cause);
        return;
    }
    fcntl(r->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(r->st_fd, F_SETFL, O_NONBLOCK);
    if (write(sync[1], "g", 1) != 1) {
        /* the helper died already: its pidfd says so */
    }
    close(sync[1]);
    ev_io_init(&r->pid_w, command_pid_cb, r->pidfd, EV_READ);
    ev_io_start(h->loop, &r->pid_w);
    ev_io_init(&r->out_w, command_out_cb, r->out_fd, EV_READ);
    ev_io_start(h->loop, &r->out_w);
    return;
fail:
    for (int i = 0; i < 2; i++) {
        if (sync[i] >= 0) {
            close(sync[i]);
        }
        if (st[i] >= 0) {
            close(st[i]);
        }
        if (out[i] >= 0) {
            close(out[i]);
        }
    }
    run_finish(r, CM_HC_UNHEALTHY, -1, cause);
}

/* ---- scheduling */

static void run_start(struct check_run *r)
{
    struct agent_health *h = r->h;
    r->phase = RUN_ACTIVE;
    r->began = cm_clock_mono_ms(h->clock);
    r->status = -1;
    ev_timer_stop(h->loop, &r->timer);
    ev_timer_set(&r->timer, (double)timeout_s(r), 0.);
    ev_timer_start(h->loop, &r->timer);
    if (r->kind == KIND_COMMAND) {
        command_start(r);
        return;
    }
    char why[CM_HC_CAUSE_MAX];
    int port = r->readiness
                   ? cm_agent_rc_port(h->app, rc_of(r), h->ports_json, why, sizeof(why))
                   : cm_agent_hc_port(h->app, hc_of(r), h->ports_json, why, sizeof(why));
    if (port < 0) {
        run_finish(r, CM_HC_UNHEALTHY, -1, why);
        return;
    }
    if (r->kind == KIND_TCP) {
        tcp_start(r, port);
    } else {
        http_start(r, port);
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct check_run *r = cm_container_of(w, struct check_run, timer);
    switch (r->phase) {
    case RUN_IDLE:
        run_start(r);
        break;
    case RUN_ACTIVE:
        if (r->kind == KIND_COMMAND && r->pidfd >= 0) {
            /* The helper kills the shell's process group and exits; its pidfd
             * then ends the run. SIGKILL after a second if it does not. */
            r->timed_out = true;
            r->phase = RUN_REAPING;
            syscall(SYS_pidfd_send_signal, r->pidfd, SIGTERM, NULL, 0);
            ev_timer_set(w, KILL_AGAIN_S, 0.);
            ev_timer_start(loop, w);
            break;
        }
        char cause[CM_HC_CAUSE_MAX];
        snprintf(cause, sizeof(cause), "%s check on %s timed out after %ds", run_name(r),
                 r->target, timeout_s(r));
        run_finish(r, CM_HC_UNHEALTHY, -1, cause);
        break;
    case RUN_REAPING:
        syscall(SYS_pidfd_send_signal, r->pidfd, SIGKILL, NULL, 0);
        break;
    case RUN_DONE:
        break;
    }
}

static void run_init(struct agent_health *h, struct check_run *r, bool readiness,
                     size_t idx)
{
    r->h = h;
    r->readiness = readiness;
    r->idx = idx;
    r->fd = -1;
    r->pidfd = -1;
    r->st_fd = -1;
    r->out_fd = -1;
    r->status = -1;
    r->last_status = -1;
    ev_init(&r->timer, timer_cb);
    ev_init(&r->io, tcp_cb);
    ev_init(&r->pid_w, command_pid_cb);
    ev_init(&r->out_w, command_out_cb);
    if (readiness) {
        r->kind = rc_of(r)->https ? KIND_HTTPS : KIND_HTTP;
        return;
    }
    r->st = &h->states[idx];
    cm_agent_hc_init(r->st, h->started_at);
    switch (hc_of(r)->proto) {
    case CM_APP_HC_HTTP:
    case CM_APP_HC_MESOS_HTTP:
        r->kind = KIND_HTTP;
        break;
    case CM_APP_HC_HTTPS:
    case CM_APP_HC_MESOS_HTTPS:
        r->kind = KIND_HTTPS;
        break;
    case CM_APP_HC_TCP:
    case CM_APP_HC_MESOS_TCP:
        r->kind = KIND_TCP;
        break;
    case CM_APP_HC_COMMAND:
        r->kind = KIND_COMMAND;
        break;
    }
}

int agent__health_new(struct ev_loop *loop, struct cm_clock *clock, struct cm_app *app,
                      const struct agent_health_task *t,
                      const struct agent_health_cbs *cbs, struct agent_health **ret)
{
    struct agent_health *h = cm_calloc(1, sizeof(*h));
    if (h == NULL) {
        return CM_ENOMEM;
    }
    h->loop = loop;
    h->clock = clock;
    h->cbs = *cbs;
    h->started_at = t->started_at;
    h->pidfd = t->pidfd;
    h->pid = t->pid;
    h->cg = t->cg;
    h->verdict = -1;
    h->id = cm_strdup(t->id);
    h->ports_json = cm_strdup(t->ports_json != NULL ? t->ports_json : "[]");
    h->sandbox = cm_strdup(t->sandbox != NULL ? t->sandbox : "/");
    h->hc = cm_calloc(app->n_health_checks + 1, sizeof(*h->hc));
    h->states = cm_calloc(app->n_health_checks + 1, sizeof(*h->states));
    h->rc = cm_calloc(app->n_readiness_checks + 1, sizeof(*h->rc));
    if (h->id == NULL || h->ports_json == NULL || h->sandbox == NULL || h->hc == NULL ||
        h->states == NULL || h->rc == NULL) {
        goto err_after_alloc;
    }
    struct in_addr a4;
    snprintf(
        h->ip, sizeof(h->ip), "%s",
        t->host != NULL && inet_pton(AF_INET, t->host, &a4) == 1 ? t->host : "127.0.0.1");
    bool command = false;
    for (size_t i = 0; i < app->n_health_checks; i++) {
        command = command || app->health_checks[i].proto == CM_APP_HC_COMMAND;
    }
    if (command) {
        struct cm_agent_env_task et = {
            .id = t->id,
            .version = t->version,
            .host = t->host,
            .ports_json = t->ports_json,
            .sandbox = t->sandbox,
        };
        int rv = cm_agent_env_build(app, &et, &h->envp);
        if (rv == CM_ENOMEM) {
            goto err_after_alloc;
        }
        if (rv != 0) {
            h->envp = NULL; /* bad ports: COMMAND checks then fail with a cause */
        }
    }
    h->app = app;
    h->n_hc = app->n_health_checks;
    h->n_rc = app->n_readiness_checks;
    h->ready = h->n_rc == 0;
    for (size_t i = 0; i < h->n_hc; i++) {
        struct check_run *r = &h->hc[i];
        run_init(h, r, false, i);
        /* Mesos waits delaySeconds before the first check; Marathon's own
         * checks start at once (failures in the grace period do not count). */
        schedule(r, mesos_level(app->health_checks[i].proto)
                        ? (double)app->health_checks[i].delay_s
                        : 0.);
    }
    for (size_t i = 0; i < h->n_rc; i++) {
        run_init(h, &h->rc[i], true, i);
        schedule(&h->rc[i], 0.);
    }
    *ret = h;
    return 0;

err_after_alloc:
    cm_free(&h->id);
    cm_free(&h->ports_json);
    cm_free(&h->sandbox);
    cm_free(&h->hc);
    cm_free(&h->states);
    cm_free(&h->rc);
    cm_free(&h);
    return CM_ENOMEM;
}

void agent__health_stop(struct agent_health *h)
{
    if (h == NULL || h->stopped) {
        return;
    }
    h->stopped = true;
    for (size_t i = 0; i < h->n_hc + h->n_rc; i++) {
        struct check_run *r = i < h->n_hc ? &h->hc[i] : &h->rc[i - h->n_hc];
        ev_timer_stop(h->loop, &r->timer);
        run_release(r);
        r->phase = RUN_DONE;
    }
}

void agent__health_free(struct agent_health *h)
{
    if (h == NULL) {
        return;
    }
    agent__health_stop(h);
    for (size_t i = 0; i < h->n_rc; i++) {
        cm_free(&h->rc[i].last_ctype);
        cm_free(&h->rc[i].last_body);
    }
    cm_free(&h->hc);
    cm_free(&h->states);
    cm_free(&h->rc);
    cm_free(&h->envp);
    cm_tls_free(h->tls);
    cm_app_free(h->app);
    cm_free(&h->id);
    cm_free(&h->ports_json);
    cm_free(&h->sandbox);
    cm_free_raw(h);
}

const char *agent__health_verdict(const struct agent_health *h)
{
    if (h == NULL || h->verdict < 0) {
        return NULL;
    }
    return h->verdict ? "healthy" : "unhealthy";
}

bool agent__health_ready(const struct agent_health *h)
{
    return h != NULL && h->ready;
}

static bool add_ms(cJSON *o, const char *name, int64_t ms)
{
    return cJSON_AddNumberToObject(o, name, (double)ms) != NULL;
}

cJSON *agent__health_checks_json(const struct agent_health *h)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *hs = cJSON_AddArrayToObject(o, "health");
    cJSON *rs = cJSON_AddArrayToObject(o, "readiness");
    bool ok = o != NULL && hs != NULL && rs != NULL;
    for (size_t i = 0; ok && i < h->n_hc; i++) {
        const struct cm_hc_state *s = &h->states[i];
        cJSON *e = cJSON_CreateObject();
        ok = e != NULL && cJSON_AddItemToArray(hs, e);
        ok = ok && (s->alive < 0 ? cJSON_AddNullToObject(e, "alive") != NULL
                                 : cJSON_AddBoolToObject(e, "alive", s->alive) != NULL);
        ok = ok && cJSON_AddNumberToObject(e, "consecutiveFailures",
                                           (double)s->consecutive_failures) != NULL;
        ok = ok && add_ms(e, "firstSuccess", s->first_success) &&
             add_ms(e, "lastSuccess", s->last_success) &&
             add_ms(e, "lastFailure", s->last_failure);
        ok = ok && (s->last_failure_cause[0] == '\0'
                        ? cJSON_AddNullToObject(e, "lastFailureCause") != NULL
                        : cJSON_AddStringToObject(e, "lastFailureCause",
                                                  s->last_failure_cause) != NULL);
    }
    for (size_t i = 0; ok && i < h->n_rc; i++) {
        const struct check_run *r = &h->rc[i];
        cJSON *e = cJSON_CreateObject();
        ok = e != NULL && cJSON_AddItemToArray(rs, e);
        ok = ok && cJSON_AddStringToObject(e, "name", rc_of(r)->name) != NULL &&
             cJSON_AddBoolToObject(e, "ready", r->ready) != NULL;
        if (ok && r->last_status > 0) {
            cJSON *lr = cJSON_AddObjectToObject(e, "lastResponse");
            ok = lr != NULL &&
                 cJSON_AddNumberToObject(lr, "status", r->last_status) != NULL &&
                 cJSON_AddStringToObject(lr, "contentType",
                                         r->last_ctype ? r->last_ctype : "") != NULL &&
                 cJSON_AddStringToObject(lr, "body", r->last_body ? r->last_body : "") !=
                     NULL;
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
