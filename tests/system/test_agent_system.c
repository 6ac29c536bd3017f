/* lib/agent on the real kernel: a state.db in a temp dir fed with app.put and
 * task.assign as the raft log would, an agent whose report callback applies its
 * task.status commands back into the same state (the loop closed), real cgroups
 * (whatever this host has) and namespaces.
 *
 * Needs root, namespaces and a cgroup filesystem; exits 77 (meson: skipped)
 * without them. Everything it creates is named after its pid (cgroup parent
 * "clusterctl-agent-test-<pid>", /var/tmp/cm-agent-test-<pid>) and removed even
 * when a test fails (failed tests longjmp out; cleanup runs at the start of the
 * next test and at exit). It only signals processes it started: the members of
 * its own task cgroups, by pid. */
#include <dirent.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "base/base.h"
#include "isolation/isolation.h"
#include "net/net.h"
#include "state/db.h"
#include "test.h"

/* ------------------------------------------------------------------ fixture */

static char parent[64]; /* cgroup parent */
static char dir[256];
static char tasks_dir[PATH_MAX];
static struct iso_cgroup_manager *mgr;
static struct ev_loop *loop;

static struct {
    struct cm_state *state;
    uint64_t index;
    struct cm_agent *agent;
    bool changed; /* the state changed since the last sync */
    int reports;
    int health_reports; /* reports that carry a health verdict */
    int check_runs;     /* health check runs the agent traced */
    char last_trace[512];
} fx;

static void rm_tree_entry_quiet(const char *path)
{
    remove(path);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    rm_tree_entry_quiet(path);
    return 0;
}

/* Kill and remove every task cgroup under our parent: only our tasks live there. */
static void kill_all_cgroups(void)
{
    if (mgr == NULL) {
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct cm_errbuf eb = {0};
    if (iso_cgroup_manager_list(mgr, &names, &n, &eb) != 0) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct iso_cgroup *cg = NULL;
        if (iso_cgroup_open(mgr, names[i], &cg, &eb) == 0) {
            iso_cgroup_kill(cg, 5000, &eb);
            iso_cgroup_remove(cg, 5000, &eb);
            iso_cgroup_free(cg);
        }
    }
    iso_names_free(names, n);
}

static void reap_children(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static void cleanup(void)
{
    cm_agent_free(fx.agent);
    fx.agent = NULL;
    kill_all_cgroups();
    reap_children();
    cm_state_close(fx.state);
    fx.state = NULL;
    if (dir[0] != '\0') {
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static void cleanup_at_exit(void)
{
    cleanup();
    struct iso_cg_layout l;
    struct cm_errbuf eb = {0};
    iso_cgroup_manager_free(mgr);
    mgr = NULL;
    if (iso_cg_layout_detect(&l, &eb) == 0) {
        char path[PATH_MAX + 128];
        snprintf(path, sizeof(path), "%s/%s", l.v2_mount, parent);
        rmdir(path);
        for (int c = 0; c < ISO_CTRL__COUNT; c++) {
            if (l.v1_mount[c][0] != '\0') {
                snprintf(path, sizeof(path), "%s/%s", l.v1_mount[c], parent);
                rmdir(path);
            }
        }
    }
}

static _Noreturn void skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    fprintf(stderr, "skipped: %s\n", why);
    exit(77);
}

__attribute__((constructor)) static void prerequisites(void)
{
    if (geteuid() != 0) {
        skip_all("needs root (cgroups and namespaces)");
    }
    pid_t p = fork();
    if (p == 0) {
        _exit(unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) == 0 ? 0
                                                                                     : 1);
    }
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        skip_all("cannot unshare PID/mount/UTS/IPC namespaces");
    }
    snprintf(parent, sizeof(parent), "clusterctl-agent-test-%d", (int)getpid());
    struct iso_cg_opts o = {.parent = parent};
    struct cm_errbuf eb = {0};
    if (iso_cgroup_detect(&o, &mgr, &eb) != 0) {
        fprintf(stderr, "cgroup manager: %s\n", eb.msg);
        skip_all("cannot create cgroups here");
    }
    if (!iso_cgroup_manager_has(mgr, ISO_CTRL_MEMORY)) {
        skip_all("no memory controller");
    }
    loop = ev_default_loop(0);
    atexit(cleanup_at_exit);
    fprintf(stderr, "# manager %s, parent %s\n", iso_cgroup_manager_name(mgr), parent);
}

static int apply_cmd(const char *cmd, size_t len)
{
    struct cm_errbuf eb = {0};
    int rv = cm_state_validate(fx.state, cmd, len, &eb);
    if (rv != 0) {
        printf("# validate %.*s: %s\n", (int)len, cmd, eb.msg);
        return rv;
    }
    rv = cm_state_apply(fx.state, ++fx.index, cmd, len, &eb);
    if (rv == 0 && (cm_state_take_changes(fx.state) & CM_STATE_CHANGED_TASKS)) {
        fx.changed = true;
    }
    return rv;
}

static void apply(const char *cmd)
{
    if (apply_cmd(cmd, strlen(cmd)) != 0) {
        test__fail(__FILE__, __LINE__, "apply %s", cmd);
    }
}

/* The daemon's part: validate and "propose" (here: apply at once). */
static int report(void *data, const char *cmd, size_t len)
{
    (void)data;
    fx.reports++;
    fx.health_reports += strstr(cmd, "\"health\":\"") != NULL;
    printf("# report %.*s\n", (int)len, cmd);
    return apply_cmd(cmd, len);
}

static void on_trace(void *data, const char *line)
{
    (void)data;
    printf("# agent: %s\n", line);
    fx.check_runs += strncmp(line, "check task=", 11) == 0;
    snprintf(fx.last_trace, sizeof(fx.last_trace), "%s", line);
}

static const char *init_path(void)
{
    const char *p = getenv("ISO_INIT_HELPER");
    return p != NULL && p[0] != '\0' ? p : NULL;
}

static void new_agent(uint64_t log_max, unsigned keep)
{
    struct cm_agent_opts o = {
        .node = "n1",
        .tasks_dir = tasks_dir,
        .init_path = init_path(),
        .host = "127.0.0.1",
        .state = fx.state,
        .report = report,
        .trace = on_trace,
        .cgroups = mgr,
        .log_max_bytes = log_max,
        .log_keep = keep,
        .tick_ms = 100,
    };
    struct cm_errbuf eb = {0};
    if (cm_agent_new(loop, &o, &fx.agent, &eb) != 0) {
        test__fail(__FILE__, __LINE__, "agent: %s", eb.msg);
    }
    ASSERT_OK(cm_agent_sync(fx.agent, &eb));
    fx.changed = false;
}

static void setup(void)
{
    cleanup();
    fx.index = 0;
    fx.reports = 0;
    fx.health_reports = 0;
    fx.check_runs = 0;
    snprintf(dir, sizeof(dir), "/var/tmp/cm-agent-test-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(tasks_dir, sizeof(tasks_dir), "%s/tasks", dir);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/state.db", dir);
    struct cm_errbuf eb = {0};
    if (cm_state_open(path, &fx.state, &eb) != 0) {
        test__fail(__FILE__, __LINE__, "state: %s", eb.msg);
    }
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

/* Run the loop (and sync after state changes, as the daemon does after each
 * applied batch) until @done says so or @timeout_ms passes. */
static bool run_until(bool (*done)(void *), void *arg, int timeout_ms)
{
    ev_timer t;
    ev_timer_init(&t, tick_cb, 0.02, 0.02);
    ev_timer_start(loop, &t);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    bool ok = false;
    for (;;) {
        if (fx.changed && fx.agent != NULL) {
            fx.changed = false;
            struct cm_errbuf eb = {0};
            cm_agent_sync(fx.agent, &eb);
        }
        if (done(arg)) {
            ok = true;
            break;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms =
            (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > timeout_ms) {
            break;
        }
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &t);
    return ok;
}

struct row_info {
    enum cm_task_state state;
    int64_t exit_status;
    char reason[256];
};

static int row_cb(void *data, const struct cm_task_row *row)
{
    struct row_info *r = data;
    r->state = row->state;
    r->exit_status = row->exit_status;
    snprintf(r->reason, sizeof(r->reason), "%s", row->reason ? row->reason : "");
    return 0;
}

static struct row_info row_of(const char *id)
{
    struct row_info r;
    memset(&r, 0, sizeof(r));
    if (cm_state_task(fx.state, id, row_cb, &r) != 0) {
        test__fail(__FILE__, __LINE__, "no task %s", id);
    }
    return r;
}

struct want {
    const char *id;
    enum cm_task_state state;
};

static bool in_state(void *arg)
{
    const struct want *w = arg;
    return row_of(w->id).state == w->state;
}

static void wait_state(const char *id, enum cm_task_state st, int timeout_ms)
{
    struct want w = {id, st};
    if (!run_until(in_state, &w, timeout_ms)) {
        test__fail(__FILE__, __LINE__, "task %s: state %s, want %s", id,
                   cm_task_state_name(row_of(id).state), cm_task_state_name(st));
    }
}

static void put_app(const char *app_json)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "{\"type\":\"app.put\",\"version\":\"2026-01-01T00:00:00.000Z\",\"app\":%s}",
             app_json);
    apply(cmd);
}

static void assign(const char *id, const char *app, const char *ports)
{
    char cmd[2048];
    snprintf(
        cmd, sizeof(cmd),
        "{\"type\":\"task.assign\",\"at\":1000,\"tasks\":[{\"id\":\"%s\",\"app\":\"%s\","
        "\"version\":\"2026-01-01T00:00:00.000Z\",\"node\":\"n1\","
        "\"host\":\"127.0.0.1\",\"ports\":%s}]}",
        id, app, ports);
    apply(cmd);
}

static void kill_task(const char *id)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "{\"type\":\"task.kill\",\"at\":2000,\"ids\":[\"%s\"]}",
             id);
    apply(cmd);
}

static pid_t pid_of(const char *id)
{
    struct cm_agent_task_info info;
    ASSERT_OK(cm_agent_task(fx.agent, id, &info));
    return info.pid;
}

static struct iso_cgroup *cgroup_of(const char *id)
{
    char name[256];
    cm_agent_cgroup_name(id, name, sizeof(name));
    struct iso_cgroup *cg = NULL;
    struct cm_errbuf eb = {0};
    if (iso_cgroup_open(mgr, name, &cg, &eb) != 0) {
        return NULL;
    }
    return cg;
}

/* The task process under the init: the cgroup member that is not @init. */
static pid_t task_pid(const char *id, pid_t init)
{
    struct iso_cgroup *cg = cgroup_of(id);
    ASSERT_NOT_NULL(cg);
    pid_t found = 0;
    for (int tries = 0; tries < 200 && found == 0; tries++) {
        pid_t *pids = NULL;
        size_t n = 0;
        struct cm_errbuf eb = {0};
        ASSERT_OK(iso_cgroup_pids(cg, &pids, &n, &eb));
        for (size_t i = 0; i < n; i++) {
            if (pids[i] != init) {
                found = pids[i];
            }
        }
        cm_free(&pids);
        if (found == 0) {
            usleep(10000);
        }
    }
    iso_cgroup_free(cg);
    ASSERT_TRUE(found != 0);
    return found;
}

static const char *read_text(const char *path, size_t *ret_len)
{
    static char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *ret_len = 0;
        return "";
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    *ret_len = n > 0 ? (size_t)n : 0;
    return buf;
}

/* Whether the NUL-separated environ text holds @kv. */
static bool environ_has(const char *text, size_t len, const char *kv)
{
    for (size_t i = 0; i < len;) {
        if (strcmp(text + i, kv) == 0) {
            return true;
        }
        i += strlen(text + i) + 1;
    }
    return false;
}

/* ------------------------------------------------------------------ tests */

TEST(two_tasks_run_isolated_with_env_then_killed)
{
    setup();
    /* args (exec form): a shell would drop `PORT_HTTP-API`, not a valid shell
     * name, from what it passes on. */
    put_app(
        "{\"id\":\"/web\",\"args\":[\"sleep\",\"1000\"],\"instances\":2,\"cpus\":0.1,"
        "\"mem\":64,\"env\":{\"FOO\":\"bar\",\"PORT0\":\"override-is-kept-out\"},"
        "\"portDefinitions\":[{\"port\":0,\"name\":\"http-api\"},{\"port\":8080}]}");
    assign("web.1", "/web", "[31000,31002]");
    assign("web.2", "/web", "[31001,31003]");
    new_agent(0, 0);
    wait_state("web.1", CM_TASK_RUNNING, 10000);
    wait_state("web.2", CM_TASK_RUNNING, 10000);
    pid_t p1 = pid_of("web.1"), p2 = pid_of("web.2");
    ASSERT_TRUE(p1 > 0 && p2 > 0 && p1 != p2);

    /* Own PID namespaces: the init is PID 1 of each. */
    char path[PATH_MAX + 64];
    size_t len;
    for (int i = 0; i < 2; i++) {
        pid_t p = i == 0 ? p1 : p2;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)p);
        char want[64];
        snprintf(want, sizeof(want), "NSpid:\t%d\t1\n", (int)p);
        ASSERT_TRUE(strstr(read_text(path, &len), want) != NULL);
    }
    char ns1[64], ns2[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)p1);
    ns1[readlink(path, ns1, sizeof(ns1) - 1)] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)p2);
    ns2[readlink(path, ns2, sizeof(ns2) - 1)] = '\0';
    ASSERT_TRUE(strcmp(ns1, ns2) != 0);

    /* Own cgroups, with the init inside. */
    struct iso_cgroup *cg1 = cgroup_of("web.1");
    ASSERT_NOT_NULL(cg1);
    pid_t *pids = NULL;
    size_t n = 0;
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_pids(cg1, &pids, &n, &eb));
    bool has = false;
    for (size_t i = 0; i < n; i++) {
        has |= pids[i] == p1;
    }
    cm_free(&pids);
    iso_cgroup_free(cg1);
    ASSERT_TRUE(has);

    /* The environment of the task process (the init's child). */
    pid_t t1 = task_pid("web.1", p1);
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)t1);
    const char *env = read_text(path, &len);
    ASSERT_TRUE(environ_has(env, len, "PORT_HTTP-API=31000"));
    ASSERT_TRUE(environ_has(env, len, "PORT_HTTP_API=31000"));
    ASSERT_TRUE(environ_has(env, len, "PORT_8080=31002"));
    ASSERT_TRUE(environ_has(env, len, "PORT1=31002"));
    ASSERT_TRUE(environ_has(env, len, "PORT=31000"));
    ASSERT_TRUE(environ_has(env, len, "PORTS=31000,31002"));
    ASSERT_TRUE(environ_has(env, len, "HOST=127.0.0.1"));
    ASSERT_TRUE(environ_has(env, len, "MESOS_TASK_ID=web.1"));
    ASSERT_TRUE(environ_has(env, len, "MARATHON_APP_ID=/web"));
    ASSERT_TRUE(environ_has(env, len, "MARATHON_APP_VERSION=2026-01-01T00:00:00.000Z"));
    ASSERT_TRUE(environ_has(env, len, "FOO=bar"));
    /* The app's env overrides generated names, as in Marathon. */
    ASSERT_TRUE(environ_has(env, len, "PORT0=override-is-kept-out"));
    char sb[PATH_MAX + 64];
    snprintf(sb, sizeof(sb), "MESOS_SANDBOX=%s/web.1", tasks_dir);
    ASSERT_TRUE(environ_has(env, len, sb));

    /* Metrics from the cgroup. */
    struct cm_agent_task_info info;
    ASSERT_OK(cm_agent_task(fx.agent, "web.1", &info));
    ASSERT_TRUE(info.has_stats);
    ASSERT_INT_OP(info.mem_bytes, >, 0);
    ASSERT_UINT_EQ(info.mem_limit, 64ull * 1024 * 1024);

    /* Kill: sleep dies of the forwarded SIGTERM well within the grace. */
    kill_task("web.1");
    kill_task("web.2");
    wait_state("web.1", CM_TASK_KILLED, 2500);
    wait_state("web.2", CM_TASK_KILLED, 2500);
    ASSERT_INT_EQ(row_of("web.1").exit_status, 128 + SIGTERM);
    /* Terminal in the replica: the cgroups go, the sandboxes stay. */
    struct iso_cgroup *gone = NULL;
    for (int i = 0; i < 100 && (gone = cgroup_of("web.1")) != NULL; i++) {
        iso_cgroup_free(gone);
        run_until(in_state, &(struct want){"web.1", CM_TASK_KILLED}, 50);
        usleep(20000);
    }
    ASSERT_NULL(gone);
    snprintf(path, sizeof(path), "%s/web.1/stdout", tasks_dir);
    ASSERT_INT_EQ(access(path, F_OK), 0);
    cleanup();
}

TEST(exits_finish_or_fail_with_status)
{
    setup();
    put_app("{\"id\":\"/ok\",\"args\":[\"true\"]}");
    put_app("{\"id\":\"/bad\",\"cmd\":\"echo bye; exit 3\"}");
    put_app("{\"id\":\"/noexec\",\"args\":[\"/nonexistent/binary\"]}");
    assign("ok.1", "/ok", "[]");
    assign("bad.1", "/bad", "[]");
    assign("noexec.1", "/noexec", "[]");
    new_agent(0, 0);
    wait_state("ok.1", CM_TASK_FINISHED, 10000);
    wait_state("bad.1", CM_TASK_FAILED, 10000);
    wait_state("noexec.1", CM_TASK_FAILED, 10000);
    ASSERT_INT_EQ(row_of("ok.1").exit_status, 0);
    struct row_info b = row_of("bad.1");
    ASSERT_INT_EQ(b.exit_status, 3);
    ASSERT_STR_EQ(b.reason, "Command exited with status 3");
    /* An exec error comes back over the sync socket as the reason. */
    struct row_info ne = row_of("noexec.1");
    printf("# noexec reason: %s\n", ne.reason);
    ASSERT_TRUE(strstr(ne.reason, "/nonexistent/binary") != NULL);
    size_t len;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/bad.1/stdout", tasks_dir);
    ASSERT_STR_EQ(read_text(path, &len), "bye\n");
    cleanup();
}

static bool log_says_ready(void *arg)
{
    struct cm_buf out = {0};
    uint64_t pos = 0;
    bool ready =
        cm_agent_log_read(fx.agent, arg, CM_AGENT_STDOUT, 0, 64, &out, &pos) == 0 &&
        out.data != NULL && strcmp(out.data, "ready\n") == 0;
    cm_buf_done(&out);
    return ready;
}

TEST(kill_escalates_after_the_grace_period)
{
    setup();
    put_app(
        "{\"id\":\"/stubborn\",\"cmd\":\"trap '' TERM; echo ready; sleep 1000\","
        "\"taskKillGracePeriodSeconds\":1}");
    assign("stubborn.1", "/stubborn", "[]");
    new_agent(0, 0);
    wait_state("stubborn.1", CM_TASK_RUNNING, 10000);
    /* Only once the trap is set: "running" means exec'd, not "trap done". */
    ASSERT_TRUE(run_until(log_says_ready, (void *)"stubborn.1", 10000));
    kill_task("stubborn.1");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    wait_state("stubborn.1", CM_TASK_KILLED, 5000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    ASSERT_INT_OP(ms, >=, 900);
    ASSERT_INT_EQ(row_of("stubborn.1").exit_status, 128 + SIGKILL);
    cleanup();
}

TEST(oom_kill_is_reported_as_such)
{
    setup();
    put_app(
        "{\"id\":\"/hog\",\"cmd\":\"head -c 200000000 /dev/zero | tail\",\"mem\":32}");
    assign("hog.1", "/hog", "[]");
    new_agent(0, 0);
    wait_state("hog.1", CM_TASK_FAILED, 30000);
    struct row_info r = row_of("hog.1");
    printf("# reason: %s exit %lld\n", r.reason, (long long)r.exit_status);
    ASSERT_STR_EQ(r.reason, "OOM killed (memory limit 32 MiB)");
    cleanup();
}

TEST(restarted_agent_adopts_running_task)
{
    setup();
    put_app("{\"id\":\"/svc\",\"cmd\":\"sleep 1000\"}");
    assign("svc.1", "/svc", "[]");
    new_agent(0, 0);
    wait_state("svc.1", CM_TASK_RUNNING, 10000);
    pid_t pid = pid_of("svc.1");
    int reports = fx.reports;
    cm_agent_free(fx.agent);
    fx.agent = NULL;
    ASSERT_INT_EQ(kill(pid, 0), 0); /* still running without an agent */
    new_agent(0, 0);
    struct cm_agent_task_info info;
    ASSERT_OK(cm_agent_task(fx.agent, "svc.1", &info));
    ASSERT_INT_EQ(info.pid, pid);
    ASSERT_TRUE(info.adopted);
    ASSERT_INT_EQ(info.phase, CM_AGENT_PHASE_RUNNING);
    ASSERT_INT_EQ(fx.reports, reports); /* nothing new to say */
    kill_task("svc.1");
    wait_state("svc.1", CM_TASK_KILLED, 5000);
    ASSERT_INT_EQ(row_of("svc.1").exit_status, 128 + SIGTERM);
    cleanup();
}

static bool pid_gone(void *arg)
{
    pid_t pid = *(pid_t *)arg;
    return waitpid(pid, NULL, WNOHANG) == pid || kill(pid, 0) != 0;
}

TEST(death_while_no_agent_is_reported)
{
    setup();
    put_app("{\"id\":\"/svc\",\"cmd\":\"sleep 1000\"}");
    assign("svc.1", "/svc", "[]");
    assign("svc.2", "/svc", "[]");
    new_agent(0, 0);
    wait_state("svc.1", CM_TASK_RUNNING, 10000);
    wait_state("svc.2", CM_TASK_RUNNING, 10000);
    pid_t init1 = pid_of("svc.1"), init2 = pid_of("svc.2");
    pid_t task1 = task_pid("svc.1", init1);
    cm_agent_free(fx.agent);
    fx.agent = NULL;
    /* svc.1: its task dies; the init writes the status and exits. svc.2: the
     * init itself is SIGKILLed, so no status file is left. */
    ASSERT_INT_EQ(kill(task1, SIGKILL), 0);
    ASSERT_INT_EQ(kill(init2, SIGKILL), 0);
    ASSERT_TRUE(run_until(pid_gone, &init1, 5000));
    ASSERT_TRUE(run_until(pid_gone, &init2, 5000));
    new_agent(0, 0);
    wait_state("svc.1", CM_TASK_FAILED, 5000);
    wait_state("svc.2", CM_TASK_FAILED, 5000);
    struct row_info r1 = row_of("svc.1"), r2 = row_of("svc.2");
    ASSERT_INT_EQ(r1.exit_status, 128 + SIGKILL);
    ASSERT_STR_EQ(r1.reason, "Command exited with status 137");
    ASSERT_STR_EQ(r2.reason, "lost while the agent was down");
    cleanup();
}

static bool file_exists(void *arg)
{
    return access((const char *)arg, F_OK) == 0;
}

TEST(logs_are_written_rotated_and_readable)
{
    setup();
    /* Three bursts of 50 lines of 40 bytes (2000 bytes each), paused so the
     * 100 ms tick rotates between them; the limit is 1500 bytes, 2 kept. */
    put_app(
        "{\"id\":\"/chatty\",\"cmd\":\"for b in 1 2 3; do i=0; while [ $i -lt 50 ]; "
        "do printf 'burst %s line %02d .......................\\\\n' $b $i; "
        "i=$((i+1)); done; sleep 0.6; done; echo oops >&2; sleep 1000\"}");
    assign("chatty.1", "/chatty", "[]");
    new_agent(1500, 2);
    wait_state("chatty.1", CM_TASK_RUNNING, 10000);
    char p2[PATH_MAX + 64], p3[PATH_MAX + 64], err[PATH_MAX + 64];
    snprintf(p2, sizeof(p2), "%s/chatty.1/stdout.2", tasks_dir);
    snprintf(p3, sizeof(p3), "%s/chatty.1/stdout.3", tasks_dir);
    snprintf(err, sizeof(err), "%s/chatty.1/stderr", tasks_dir);
    ASSERT_TRUE(run_until(file_exists, p2, 10000));
    /* Wait until the third burst is rotated too: then stdout is empty. */
    struct cm_buf out = {0};
    uint64_t pos = 0, end = 0;
    for (int i = 0; i < 100; i++) {
        cm_buf_clear(&out);
        ASSERT_OK(cm_agent_log_tail(fx.agent, "chatty.1", CM_AGENT_STDOUT, 100, &out,
                                    &pos, &end));
        if (end == 6000 && out.len == 0) {
            break;
        }
        run_until(file_exists, p3, 100); /* just runs the loop a while */
    }
    ASSERT_UINT_EQ(end, 6000);          /* 3 x 50 x 40 bytes: logical, across rotations */
    ASSERT_TRUE(access(p3, F_OK) != 0); /* keep = 2 */
    size_t len;
    const char *old = read_text(p2, &len);
    /* Whole lines: normally exactly the second burst. */
    ASSERT_TRUE(len > 0 && len % 40 == 0 && strncmp(old, "burst ", 6) == 0);
    /* Reading from 0 skips what rotated away: the current file starts at 6000. */
    cm_buf_clear(&out);
    ASSERT_OK(
        cm_agent_log_read(fx.agent, "chatty.1", CM_AGENT_STDOUT, 0, 4096, &out, &pos));
    ASSERT_UINT_EQ(pos, 6000);
    ASSERT_UINT_EQ(out.len, 0);
    /* stderr has its line. */
    ASSERT_TRUE(run_until(file_exists, err, 1000));
    cm_buf_clear(&out);
    for (int i = 0; i < 50 && out.len == 0; i++) {
        ASSERT_OK(cm_agent_log_read(fx.agent, "chatty.1", CM_AGENT_STDERR, 0, 4096, &out,
                                    &pos));
        if (out.len == 0) {
            run_until(file_exists, p3, 50);
        }
    }
    ASSERT_STR_EQ(out.data, "oops\n");
    ASSERT_UINT_EQ(pos, 0);
    cm_buf_done(&out);
    kill_task("chatty.1");
    wait_state("chatty.1", CM_TASK_KILLED, 5000);
    cleanup();
}

/* isolation's iso_cgroup_kill_start (added for the agent): one pass, no wait. */
TEST(cgroup_kill_start_kills_without_waiting)
{
    setup();
    struct cm_errbuf eb = {0};
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_create(mgr, "kill-start", NULL, &cg, &eb));
    char *const env[] = {(char *)"PATH=/usr/bin:/bin", NULL};
    struct iso_spawn_opts o = {
        .cmd = "sleep 1000 & sleep 1000",
        .envp = env,
        .workdir = "/",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .cgroup = cg,
    };
    pid_t pid = 0;
    if (iso_spawn(&o, &pid, &eb) != 0) {
        iso_cgroup_remove(cg, 1000, &eb);
        iso_cgroup_free(cg);
        test__fail(__FILE__, __LINE__, "spawn: %s", eb.msg);
    }
    ASSERT_OK(iso_cgroup_kill_start(cg, &eb));
    int st;
    ASSERT_INT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT_OK(iso_cgroup_kill(cg, 5000, &eb)); /* empty by now, or soon */
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));
    iso_cgroup_free(cg);
    cleanup();
}

static bool cgroup_gone(void *arg)
{
    struct iso_cgroup *cg = NULL;
    struct cm_errbuf eb = {0};
    if (iso_cgroup_open(mgr, arg, &cg, &eb) != 0) {
        return true;
    }
    iso_cgroup_free(cg);
    return false;
}

/* A task cgroup that no task of the replica owns is killed and removed at start. */
TEST(stray_task_cgroup_is_removed_at_start)
{
    setup();
    struct cm_errbuf eb = {0};
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_create(mgr, "task-stray.1", NULL, &cg, &eb));
    char *const env[] = {(char *)"PATH=/usr/bin:/bin", NULL};
    struct iso_spawn_opts o = {
        .cmd = "sleep 1000",
        .envp = env,
        .workdir = "/",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .cgroup = cg,
    };
    pid_t pid = 0;
    int rv = iso_spawn(&o, &pid, &eb);
    iso_cgroup_free(cg);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "spawn: %s", eb.msg);
    }
    /* One task of the replica keeps its (not yet existing) cgroup name. */
    put_app("{\"id\":\"/keep\",\"cmd\":\"sleep 1000\"}");
    assign("keep.1", "/keep", "[]");
    new_agent(0, 0);
    int st;
    ASSERT_INT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT_TRUE(run_until(cgroup_gone, (void *)"task-stray.1", 5000));
    wait_state("keep.1", CM_TASK_RUNNING, 5000);
    cleanup();
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Failover (issue 8 item 5): while its node is unreachable, the leader replaces
 * inactive tasks by killing them in the replica, and later expunges them. When
 * the node comes back, its replica catches up with all of that at once: the
 * agent stops the superseded tasks (killing, or gone from the replica) and
 * leaves the one that is still current running, reporting nothing for it. */
TEST(node_back_stops_superseded_tasks_and_keeps_current_ones)
{
    setup();
    apply(
        "{\"type\":\"node.up\",\"at\":500,\"node\":{\"id\":\"n1\",\"address\":"
        "\"127.0.0.1\",\"attrs\":{},\"resources\":{\"cpus\":1}}}");
    put_app("{\"id\":\"/svc\",\"cmd\":\"sleep 1000\",\"instances\":3}");
    assign("svc.keep", "/svc", "[]");
    assign("svc.replaced", "/svc", "[]");
    assign("svc.expunged", "/svc", "[]");
    new_agent(0, 0);
    wait_state("svc.keep", CM_TASK_RUNNING, 10000);
    wait_state("svc.replaced", CM_TASK_RUNNING, 10000);
    wait_state("svc.expunged", CM_TASK_RUNNING, 10000);
    pid_t keep = pid_of("svc.keep"), replaced = pid_of("svc.replaced"),
          expunged = pid_of("svc.expunged");

    /* Declared unreachable: the rows say so, the processes run on, and the
     * agent has nothing to report (its reports could not get through anyway). */
    apply(
        "{\"type\":\"node.state\",\"at\":3000,\"id\":\"n1\",\"state\":\"unreachable\"}");
    int reports = fx.reports;
    run_until(never, NULL, 300);
    ASSERT_INT_EQ(row_of("svc.keep").state, CM_TASK_UNREACHABLE);
    ASSERT_INT_EQ(kill(keep, 0), 0);
    ASSERT_INT_EQ(kill(replaced, 0), 0);
    ASSERT_INT_EQ(fx.reports, reports);

    /* What the node's replica applies when it is back, in one batch. */
    apply(
        "{\"type\":\"task.kill\",\"at\":13000,\"ids\":[\"svc.replaced\","
        "\"svc.expunged\"]}");
    apply("{\"type\":\"task.expunge\",\"ids\":[\"svc.expunged\"]}");
    apply("{\"type\":\"node.state\",\"at\":20000,\"id\":\"n1\",\"state\":\"up\"}");
    ASSERT_INT_EQ(row_of("svc.keep").state, CM_TASK_RUNNING);
    struct cm_agent_task_info info;
    ASSERT_OK(cm_agent_task(fx.agent, "svc.expunged", &info));
    wait_state("svc.replaced", CM_TASK_KILLED, 10000);
    ASSERT_TRUE(run_until(pid_gone, &replaced, 10000));
    ASSERT_TRUE(run_until(pid_gone, &expunged, 10000));
    ASSERT_INT_EQ(kill(keep, 0), 0);
    ASSERT_INT_EQ(pid_of("svc.keep"), keep);
    ASSERT_INT_EQ(row_of("svc.keep").state, CM_TASK_RUNNING);
    cleanup();
}

/* ------------------------------------------------------------------ health checks */

static int health_cb(void *data, const struct cm_task_row *row)
{
    snprintf(data, 16, "%s", row->health != NULL ? row->health : "");
    return 0;
}

static bool health_is(void *arg)
{
    const struct want *w = arg; /* id, and the wanted verdict in .state: 1/0 */
    char h[16] = "";
    cm_state_task(fx.state, w->id, health_cb, h);
    return strcmp(h, w->state ? "healthy" : "unhealthy") == 0;
}

static bool runs_done(void *arg)
{
    return fx.check_runs >= *(int *)arg;
}

/* python3's http.server serves the sandbox: /ok answers 200 while the file "ok"
 * exists there and 404 once it is gone. Only the verdict's transitions reach the
 * state (here: healthy, then unhealthy), whatever the number of checks run, and
 * the third failure kills the task as failed, naming the check. */
TEST(health_checks_report_transitions_only_and_kill_at_the_limit)
{
    setup();
    new_agent(0, 0);
    int fd = -1;
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_tcp_listen("127.0.0.1:0", 1, &fd, &eb));
    uint16_t port = 0;
    ASSERT_OK(cm_tcp_local_port(fd, &port));
    close(fd);
    put_app(
        "{\"id\":\"/hc\",\"cmd\":\"exec python3 -m http.server $PORT0 --bind "
        "127.0.0.1\",\"cpus\":0.2,\"mem\":64,\"portDefinitions\":[{\"port\":0}],"
        "\"healthChecks\":[{\"protocol\":\"HTTP\",\"path\":\"/ok\","
        "\"gracePeriodSeconds\":300,\"intervalSeconds\":1,\"timeoutSeconds\":1,"
        "\"maxConsecutiveFailures\":3}]}");
    char ports[32];
    snprintf(ports, sizeof(ports), "[%u]", (unsigned)port);
    assign("hc.1", "/hc", ports);
    wait_state("hc.1", CM_TASK_RUNNING, 10000);
    char ok[PATH_MAX + 16];
    snprintf(ok, sizeof(ok), "%s/hc.1/ok", tasks_dir);
    int okfd = open(ok, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_INT_OP(okfd, >=, 0);
    close(okfd);
    struct want healthy = {"hc.1", 1};
    ASSERT_TRUE(run_until(health_is, &healthy, 60000));
    ASSERT_INT_EQ(fx.health_reports, 1);
    int more = fx.check_runs + 4;
    ASSERT_TRUE(run_until(runs_done, &more, 60000));
    ASSERT_INT_EQ(fx.health_reports, 1); /* four more healthy runs: nothing new */

    ASSERT_INT_EQ(unlink(ok), 0);
    struct want unhealthy = {"hc.1", 0};
    ASSERT_TRUE(run_until(health_is, &unhealthy, 60000));
    ASSERT_INT_EQ(fx.health_reports, 2);
    wait_state("hc.1", CM_TASK_FAILED, 60000);
    ASSERT_STR_EQ(row_of("hc.1").reason, "health check failed: HTTP 404 on /ok");
    ASSERT_INT_EQ(fx.health_reports, 2);
    cleanup();
}
