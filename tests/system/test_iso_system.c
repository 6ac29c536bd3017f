/* isolation/ on the real kernel: namespaces, cgroups (whatever this host has: v1,
 * hybrid or v2, from iso_cgroup_detect), a private cgroup2 mount, OOM kills, the
 * whole-cgroup kill, the init, the child-error path and the re-exec'd init.
 *
 * Needs root, PID/mount/UTS/IPC namespaces and a cgroup filesystem; without them
 * the executable prints why and exits 77 (meson: skipped). Everything it creates is
 * named after its pid (cgroup parent "clusterctl-test-<pid>", temp dirs) and is
 * removed even when a test fails: failed tests longjmp out, so cleanup runs at the
 * start of the next test and at exit. It only ever signals processes it started,
 * by pid (or the members of its own task cgroups). */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "isolation/isolation.h"
#include "test.h"

/* ------------------------------------------------------------------ fixture */

static char parent[64];           /* "clusterctl-test-<pid>" */
static struct iso_cg_layout host; /* this host's cgroup mounts */
static struct iso_cgroup_manager *mgr;

static struct {
    pid_t pids[32];
    int npids;
    struct iso_cgroup *cgs[16];
    int ncgs;
    struct iso_cgroup_manager *mgrs[4]; /* extra managers (private cgroup2) */
    int nmgrs;
    char mounts[4][PATH_MAX];
    int nmounts;
} live;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Remove <mount>/<parent> of a hierarchy; ignore what is already gone. */
static void rmdir_parent(const char *mount)
{
    if (mount[0] == '\0') {
        return;
    }
    char path[PATH_MAX + 128];
    snprintf(path, sizeof(path), "%s/%s", mount, parent);
    rmdir(path);
}

/* Undo everything an earlier test left: kill our task cgroups and processes,
 * remove the cgroups, free the managers, unmount the private mounts. */
static void cleanup(void)
{
    struct cm_errbuf eb;
    for (int i = 0; i < live.ncgs; i++) {
        iso_cgroup_kill(live.cgs[i], 5000, &eb);
    }
    for (int i = 0; i < live.npids; i++) {
        kill(live.pids[i], SIGKILL);
        waitpid(live.pids[i], NULL, 0);
    }
    live.npids = 0;
    for (int i = 0; i < live.ncgs; i++) {
        iso_cgroup_remove(live.cgs[i], 5000, &eb);
        iso_cgroup_free(live.cgs[i]);
    }
    live.ncgs = 0;
    for (int i = 0; i < live.nmgrs; i++) {
        iso_cgroup_manager_free(live.mgrs[i]);
    }
    live.nmgrs = 0;
    for (int i = 0; i < live.nmounts; i++) {
        rmdir_parent(live.mounts[i]);
        umount2(live.mounts[i], MNT_DETACH);
        rmdir(live.mounts[i]);
    }
    live.nmounts = 0;
}

static void cleanup_at_exit(void)
{
    cleanup();
    iso_cgroup_manager_free(mgr);
    mgr = NULL;
    rmdir_parent(host.v2_mount);
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        rmdir_parent(host.v1_mount[c]);
    }
}

static _Noreturn void skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    fprintf(stderr, "skipped: %s\n", why);
    exit(77);
}

/* Runs before the test runner's main: no point in running anything without root,
 * namespaces and cgroups. */
__attribute__((constructor)) static void prerequisites(void)
{
    if (geteuid() != 0) {
        skip_all("needs root (cgroups and namespaces)");
    }
    if (access("/proc/self/ns/pid", F_OK) != 0 ||
        access("/proc/self/ns/uts", F_OK) != 0) {
        skip_all("no namespace support in /proc/self/ns");
    }
    pid_t p = fork();
    if (p == 0) {
        _exit(unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) == 0 ? 0
                                                                                     : 1);
    }
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        skip_all(
            "cannot unshare PID/mount/UTS/IPC namespaces (container without "
            "CAP_SYS_ADMIN?)");
    }
    struct cm_errbuf eb = {0};
    if (iso_cg_layout_detect(&host, &eb) != 0 || host.mode == ISO_CG_MODE_NONE) {
        skip_all("no cgroup filesystem mounted");
    }
    snprintf(parent, sizeof(parent), "clusterctl-test-%d", (int)getpid());
    struct iso_cg_opts o = {.parent = parent};
    if (iso_cgroup_detect(&o, &mgr, &eb) != 0) {
        fprintf(stderr, "cgroup manager: %s\n", eb.msg);
        skip_all("cannot create cgroups here");
    }
    atexit(cleanup_at_exit);
    fprintf(stderr, "# cgroup layout mode %d, manager %s, parent %s\n", (int)host.mode,
            iso_cgroup_manager_name(mgr), parent);
}

static void setup(void)
{
    cleanup();
}

static struct iso_cgroup *new_cgroup(struct iso_cgroup_manager *m, const char *name,
                                     const struct iso_limits *lim)
{
    struct cm_errbuf eb = {0};
    struct iso_cgroup *cg = NULL;
    if (iso_cgroup_create(m, name, lim, &cg, &eb) != 0) {
        test__fail(__FILE__, __LINE__, "create cgroup: %s", eb.msg);
    }
    live.cgs[live.ncgs++] = cg;
    return cg;
}

static void forget_pid(pid_t pid)
{
    for (int i = 0; i < live.npids; i++) {
        if (live.pids[i] == pid) {
            live.pids[i] = live.pids[--live.npids];
            return;
        }
    }
}

/* The wait status of our child @pid (within @timeout_ms, else the test fails). */
static int wait_status(pid_t pid, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget_pid(pid);
            return st;
        }
        if (r < 0 || waited >= timeout_ms) {
            test__fail(__FILE__, __LINE__, "pid %d did not exit within %d ms", (int)pid,
                       timeout_ms);
        }
        sleep_ms(10);
    }
}

static char *const task_env[] = {(char *)"PATH=/usr/local/bin:/usr/bin:/bin",
                                 (char *)"MESOS_TASK_ID=t1", NULL};

static pid_t spawn(struct iso_spawn_opts *o)
{
    struct cm_errbuf eb = {0};
    pid_t pid = -1;
    if (o->envp == NULL) {
        o->envp = task_env;
    }
    if (o->workdir == NULL) {
        o->workdir = "/";
    }
    int rv = iso_spawn(o, &pid, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "spawn: %s", eb.msg);
    }
    live.pids[live.npids++] = pid;
    return pid;
}

/* Read @fd until @n lines arrived or EOF, 20 s at most. */
static const char *read_lines(int fd, int n)
{
    static char buf[8192];
    size_t len = 0;
    int lines = 0;
    while (lines < n && len < sizeof(buf) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20000) <= 0) {
            buf[len] = '\0';
            test__fail(__FILE__, __LINE__, "task output stalled after `%s`", buf);
        }
        ssize_t r = read(fd, buf + len, 1);
        if (r <= 0) {
            break;
        }
        lines += buf[len] == '\n';
        len++;
    }
    buf[len] = '\0';
    return buf;
}

static const char *read_file(const char *path)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return "<missing>";
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static bool same_ns(pid_t pid, const char *ns)
{
    char a[PATH_MAX], b[PATH_MAX], pa[64], pb[64];
    snprintf(pa, sizeof(pa), "/proc/%d/ns/%s", (int)pid, ns);
    snprintf(pb, sizeof(pb), "/proc/self/ns/%s", ns);
    ssize_t na = readlink(pa, a, sizeof(a) - 1);
    ssize_t nb = readlink(pb, b, sizeof(b) - 1);
    if (na < 0 || nb < 0) {
        test__fail(__FILE__, __LINE__, "readlink %s", pa);
    }
    a[na] = b[nb] = '\0';
    return strcmp(a, b) == 0;
}

static bool has_pid(struct iso_cgroup *cg, pid_t pid, size_t *ret_n)
{
    pid_t *pids = NULL;
    size_t n = 0;
    struct cm_errbuf eb = {0};
    if (iso_cgroup_pids(cg, &pids, &n, &eb) != 0) {
        test__fail(__FILE__, __LINE__, "pids: %s", eb.msg);
    }
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found |= pids[i] == pid;
    }
    cm_free(&pids);
    if (ret_n) {
        *ret_n = n;
    }
    return found;
}

/* The file @name of task cgroup @cg in the hierarchy of controller @c (v1) or the
 * v2 hierarchy. */
static const char *cg_file(const struct iso_cg_layout *l, bool v2, enum iso_ctrl c,
                           const char *cg, const char *name)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s/%s/%s", v2 ? l->v2_mount : l->v1_mount[c], parent,
             cg, name);
    return read_file(path);
}

static bool mgr_is_v2(struct iso_cgroup_manager *m)
{
    return iso_cgroup_manager_mode(m) == ISO_CG_MODE_UNIFIED;
}

/* ------------------------------------------------------------------ tests */

TEST(spawn_in_namespaces_and_cgroup)
{
    setup();
    struct iso_limits lim = {
        .cpus = 0.5, .cpu_quota = true, .mem_mib = 128, .pids_max = 64};
    struct iso_cgroup *cg = new_cgroup(mgr, "t-ns", &lim);
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    struct iso_spawn_opts o = {
        .cmd =
            "echo $$; cat /proc/1/comm; cat /proc/sys/kernel/hostname; ls -A /tmp | wc "
            "-l;"
            " touch /tmp/iso-private-marker; echo $MESOS_TASK_ID; pwd;"
            " exec sleep 1000",
        .workdir = "/usr",
        .hostname = "task-host",
        .stdout_fd = out[1],
        .stderr_fd = out[1],
        .cgroup = cg,
    };
    pid_t pid = spawn(&o);
    close(out[1]);
    /* PID 2 (the init is 1), a fresh /proc, our hostname, an empty private /tmp,
     * the environment and the working directory. */
    ASSERT_STR_EQ(read_lines(out[0], 6), "2\nclusterctl-init\ntask-host\n0\nt1\n/usr\n");
    close(out[0]);
    ASSERT_TRUE(access("/tmp/iso-private-marker", F_OK) != 0);

    /* Host view: NSpid has two levels, the namespaces differ (except net). */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    const char *status = read_file(path);
    char want[64];
    snprintf(want, sizeof(want), "NSpid:\t%d\t1\n", (int)pid);
    ASSERT_TRUE(strstr(status, want) != NULL);
    ASSERT_FALSE(same_ns(pid, "pid"));
    ASSERT_FALSE(same_ns(pid, "mnt"));
    ASSERT_FALSE(same_ns(pid, "uts"));
    ASSERT_FALSE(same_ns(pid, "ipc"));
    ASSERT_TRUE(same_ns(pid, "net"));

    /* cgroupfs: listed in the task cgroup, /proc/<pid>/cgroup agrees. */
    size_t n = 0;
    ASSERT_TRUE(has_pid(cg, pid, &n));
    ASSERT_INT_OP(n, >=, 2); /* init and sleep */
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    const char *pc = read_file(path);
    struct iso_str cgpath;
    char expect[128];
    snprintf(expect, sizeof(expect), "/%s/t-ns", parent);
    bool v2 = mgr_is_v2(mgr);
    ASSERT_OK(iso_proc_cgroup_find(pc, strlen(pc), v2 ? NULL : "memory", &cgpath));
    ASSERT_UINT_EQ(cgpath.len, strlen(expect));
    ASSERT_MEM_EQ(cgpath.ptr, expect, cgpath.len);
    if (v2) {
        ASSERT_STR_EQ(cg_file(&host, true, 0, "t-ns", "memory.max"), "134217728\n");
        ASSERT_STR_EQ(cg_file(&host, true, 0, "t-ns", "cpu.max"), "50000 100000\n");
        ASSERT_STR_EQ(cg_file(&host, true, 0, "t-ns", "pids.max"), "64\n");
    } else {
        char pidline[32];
        snprintf(pidline, sizeof(pidline), "%d\n", (int)pid);
        ASSERT_TRUE(strstr(cg_file(&host, false, ISO_CTRL_MEMORY, "t-ns", "tasks"),
                           pidline) != NULL);
        ASSERT_TRUE(strstr(cg_file(&host, false, ISO_CTRL_PIDS, "t-ns", "cgroup.procs"),
                           pidline) != NULL);
        ASSERT_STR_EQ(
            cg_file(&host, false, ISO_CTRL_MEMORY, "t-ns", "memory.limit_in_bytes"),
            "134217728\n");
        ASSERT_STR_EQ(cg_file(&host, false, ISO_CTRL_CPU, "t-ns", "cpu.cfs_quota_us"),
                      "50000\n");
        ASSERT_STR_EQ(cg_file(&host, false, ISO_CTRL_CPU, "t-ns", "cpu.shares"), "512\n");
        ASSERT_STR_EQ(cg_file(&host, false, ISO_CTRL_PIDS, "t-ns", "pids.max"), "64\n");
    }
    struct iso_cg_stats st;
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_stats(cg, &st, &eb));
    ASSERT_INT_OP(st.mem_current, >, 0);
    ASSERT_INT_OP(st.cpu_usage_ns, >, 0);
    ASSERT_UINT_EQ(st.mem_limit, 134217728);
    ASSERT_INT_OP(st.pids_current, >=, 2);

    /* Stop: the whole cgroup, then the directory. */
    ASSERT_OK(iso_cgroup_kill(cg, 5000, &eb));
    int ws = wait_status(pid, 5000);
    ASSERT_TRUE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));
}

TEST(network_namespace_has_only_loopback)
{
    setup();
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    struct iso_spawn_opts o = {
        .cmd =
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
            "cat /sys/class/net/lo/flags 2>/dev/null || echo noflags; exec sleep 1000",
        .stdout_fd = out[1],
        .stderr_fd = -1,
        .flags = ISO_SPAWN_NEWNET,
    };
    pid_t pid = spawn(&o);
    close(out[1]);
    const char *txt = read_lines(out[0], 2);
    close(out[0]);
    ASSERT_TRUE(strncmp(txt, "lo\n", 3) == 0);
    ASSERT_FALSE(same_ns(pid, "net"));
    ASSERT_INT_EQ(kill(pid, SIGTERM), 0);
    ASSERT_INT_EQ(iso_exit_code(wait_status(pid, 5000)), 128 + SIGTERM);
}

/* A task that allocates past its limit is OOM-killed and reported as such. */
static void check_oom(struct iso_cgroup_manager *m)
{
    struct iso_limits lim = {.mem_mib = 64};
    struct iso_cgroup *cg = new_cgroup(m, "t-oom", &lim);
    /* tail keeps a "line" with no newline in memory: 200 MB of zeros. */
    struct iso_spawn_opts o = {
        .cmd = "head -c 200000000 /dev/zero | tail > /dev/null",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .cgroup = cg,
    };
    pid_t pid = spawn(&o);
    int ws = wait_status(pid, 60000);
    ASSERT_TRUE(WIFEXITED(ws));
    ASSERT_INT_EQ(WEXITSTATUS(ws), 128 + SIGKILL);
    struct iso_cg_oom oom;
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_oom(cg, &oom, &eb));
    ASSERT_INT_OP(oom.oom_kill, >=, 1);
    struct iso_cg_stats st;
    ASSERT_OK(iso_cgroup_stats(cg, &st, &eb));
    ASSERT_INT_OP(st.mem_peak, <=, 64 * 1024 * 1024);
    ASSERT_INT_OP(st.mem_peak, >, 32 * 1024 * 1024);
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));
}

TEST(memory_limit_oom_kill_is_reported)
{
    setup();
    check_oom(mgr);
}

TEST(init_reaps_zombies_and_forwards_sigterm)
{
    setup();
    struct iso_cgroup *cg = new_cgroup(mgr, "t-init", NULL);
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    struct iso_spawn_opts o = {
        .cmd =
            "trap 'exit 42' TERM; (sleep 0.1 & sleep 0.1 & sleep 0.1 &); echo ready;"
            " while :; do sleep 0.05; done",
        .stdout_fd = out[1],
        .stderr_fd = -1,
        .cgroup = cg,
    };
    pid_t pid = spawn(&o);
    close(out[1]);
    ASSERT_STR_EQ(read_lines(out[0], 1), "ready\n");
    close(out[0]);
    /* The orphaned sleeps were re-parented to the init (PID 1) and have exited:
     * none of the cgroup's processes may be a zombie. */
    sleep_ms(600);
    pid_t *pids = NULL;
    size_t n = 0;
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_pids(cg, &pids, &n, &eb));
    int zombies = 0;
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pids[i]);
        const char *s = read_file(path);
        const char *rp = strrchr(s, ')');
        zombies += rp != NULL && rp[2] == 'Z';
    }
    cm_free(&pids);
    ASSERT_INT_EQ(zombies, 0);
    ASSERT_INT_OP(n, <=, 3); /* init, sh, maybe a sleep 0.05 */
    ASSERT_INT_EQ(kill(pid, SIGTERM), 0);
    ASSERT_INT_EQ(iso_exit_code(wait_status(pid, 5000)), 42);
    ASSERT_OK(iso_cgroup_kill(cg, 5000, &eb));
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));
}

TEST(cgroup_kill_gets_grandchild_ignoring_sigterm)
{
    setup();
    struct iso_cgroup *cg = new_cgroup(mgr, "t-kill", NULL);
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    /* Without a PID namespace nothing kills the grandchild when the init exits:
     * only the cgroup kill can. It ignores SIGTERM (SIG_IGN survives exec). */
    struct iso_spawn_opts o = {
        .cmd = "(trap '' TERM; exec sleep 1000) & echo ready; wait",
        .stdout_fd = out[1],
        .stderr_fd = -1,
        .cgroup = cg,
        .flags = ISO_SPAWN_NO_NEWNS,
    };
    pid_t pid = spawn(&o);
    close(out[1]);
    ASSERT_STR_EQ(read_lines(out[0], 1), "ready\n");
    close(out[0]);
    sleep_ms(100);
    ASSERT_INT_EQ(kill(pid, SIGTERM), 0);
    ASSERT_INT_EQ(iso_exit_code(wait_status(pid, 5000)), 128 + SIGTERM);
    sleep_ms(100);
    size_t n = 0;
    has_pid(cg, pid, &n);
    ASSERT_UINT_EQ(n, 1); /* the sleep survived SIGTERM */
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_kill(cg, 5000, &eb));
    has_pid(cg, pid, &n);
    ASSERT_UINT_EQ(n, 0);
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));

    /* With the namespace: the kill takes the init too. */
    cg = new_cgroup(mgr, "t-kill2", NULL);
    struct iso_spawn_opts o2 = {
        .cmd = "(trap '' TERM; exec sleep 1000) & trap '' TERM; sleep 1000",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .cgroup = cg,
    };
    pid = spawn(&o2);
    sleep_ms(100);
    ASSERT_OK(iso_cgroup_kill(cg, 5000, &eb));
    int ws = wait_status(pid, 5000);
    ASSERT_TRUE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));
}

TEST(child_error_comes_back_with_errno)
{
    setup();
    struct iso_cgroup *cg = new_cgroup(mgr, "t-err", NULL);
    struct iso_spawn_opts o = {
        .cmd = "true",
        .envp = task_env,
        .workdir = "/nonexistent/sandbox",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .cgroup = cg,
    };
    struct cm_errbuf eb = {0};
    pid_t pid = -1;
    ASSERT_ERR(iso_spawn(&o, &pid, &eb), CM_ENOENT);
    ASSERT_STR_EQ(eb.msg,
                  "task child: chdir `/nonexistent/sandbox`: no such file or "
                  "directory");
    ASSERT_INT_EQ(pid, -1);
    char *const argv[] = {(char *)"no-such-command-iso", NULL};
    o.cmd = NULL;
    o.argv = argv;
    o.workdir = "/";
    ASSERT_ERR(iso_spawn(&o, &pid, &eb), CM_ENOENT);
    ASSERT_STR_EQ(eb.msg,
                  "task child: exec `no-such-command-iso`: no such file or directory");
    /* The failed children were reaped and left nothing in the cgroup. */
    size_t n = 0;
    has_pid(cg, 0, &n);
    ASSERT_UINT_EQ(n, 0);
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));
}

TEST(reexec_init)
{
    setup();
    const char *helper = getenv("ISO_INIT_HELPER");
    if (helper == NULL || access(helper, X_OK) != 0) {
        test_skip("ISO_INIT_HELPER not set (run under meson test)");
    }
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    struct iso_spawn_opts o = {
        .cmd = "tr '\\0' ' ' < /proc/1/cmdline; echo; exit 5",
        .stdout_fd = out[1],
        .stderr_fd = -1,
        .init_path = helper,
    };
    pid_t pid = spawn(&o);
    close(out[1]);
    const char *txt = read_lines(out[0], 1);
    close(out[0]);
    ASSERT_TRUE(strstr(txt, " __init --sync-fd ") != NULL);
    ASSERT_TRUE(strstr(txt, " --cmd tr ") != NULL);
    ASSERT_INT_EQ(iso_exit_code(wait_status(pid, 5000)), 5);
    /* Exec errors of the task still come back through the re-exec'd init. */
    char *const argv[] = {(char *)"no-such-command-iso", NULL};
    struct iso_spawn_opts o2 = {
        .argv = argv,
        .envp = task_env,
        .workdir = "/",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .init_path = helper,
    };
    struct cm_errbuf eb = {0};
    ASSERT_ERR(iso_spawn(&o2, &pid, &eb), CM_ENOENT);
    ASSERT_TRUE(strstr(eb.msg, "exec `no-such-command-iso`") != NULL);
}

TEST(readopt_after_restart)
{
    setup();
    struct iso_cgroup *cg = new_cgroup(mgr, "t-adopt", NULL);
    struct iso_spawn_opts o = {
        .cmd = "exec sleep 1000", .stdout_fd = -1, .stderr_fd = -1, .cgroup = cg};
    pid_t pid = spawn(&o);
    /* A second manager, as a restarted daemon would make. */
    struct cm_errbuf eb = {0};
    struct iso_cg_opts mo = {.parent = parent};
    struct iso_cgroup_manager *m2 = NULL;
    ASSERT_OK(iso_cgroup_detect(&mo, &m2, &eb));
    live.mgrs[live.nmgrs++] = m2;
    char **names = NULL;
    size_t n = 0;
    ASSERT_OK(iso_cgroup_manager_list(m2, &names, &n, &eb));
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found |= strcmp(names[i], "t-adopt") == 0;
    }
    iso_names_free(names, n);
    ASSERT_TRUE(found);
    struct iso_cgroup *cg2 = NULL;
    ASSERT_OK(iso_cgroup_open(m2, "t-adopt", &cg2, &eb));
    live.cgs[live.ncgs++] = cg2;
    ASSERT_TRUE(has_pid(cg2, pid, NULL));
    ASSERT_OK(iso_cgroup_kill(cg2, 5000, &eb));
    int ws = wait_status(pid, 5000);
    ASSERT_TRUE(WIFSIGNALED(ws));
}

TEST(private_cgroup2_mount)
{
    setup();
    char dir[] = "/tmp/iso-cgroup2-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    if (mount("none", dir, "cgroup2", 0, NULL) < 0) {
        int err = errno;
        rmdir(dir);
        test_skip("mount -t cgroup2: %s", strerror(err));
    }
    snprintf(live.mounts[live.nmounts++], PATH_MAX, "%s", dir);
    struct iso_cg_layout l;
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_UNIFIED;
    snprintf(l.v2_mount, sizeof(l.v2_mount), "%s", dir);
    struct iso_cg_opts mo = {.parent = parent};
    struct iso_cgroup_manager *m2 = NULL;
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_manager_new(&l, &mo, &m2, &eb));
    live.mgrs[live.nmgrs++] = m2;
    char ctrls[PATH_MAX + 32];
    snprintf(ctrls, sizeof(ctrls), "%s/cgroup.controllers", dir);
    fprintf(stderr, "# private cgroup2 controllers: %s", read_file(ctrls));
    struct iso_cgroup *cg = new_cgroup(m2, "t-v2", NULL);
    /* Membership, cgroup.kill and cpu.stat need no controller. */
    struct iso_spawn_opts o = {
        .cmd = "exec sleep 1000", .stdout_fd = -1, .stderr_fd = -1, .cgroup = cg};
    pid_t pid = spawn(&o);
    ASSERT_TRUE(has_pid(cg, pid, NULL));
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    const char *pc = read_file(path);
    struct iso_str cgpath;
    ASSERT_OK(iso_proc_cgroup_find(pc, strlen(pc), NULL, &cgpath));
    char expect[128];
    snprintf(expect, sizeof(expect), "/%s/t-v2", parent);
    ASSERT_UINT_EQ(cgpath.len, strlen(expect));
    ASSERT_MEM_EQ(cgpath.ptr, expect, cgpath.len);
    struct iso_cg_stats st;
    ASSERT_OK(iso_cgroup_stats(cg, &st, &eb));
    ASSERT_INT_OP(st.cpu_usage_ns, >, 0);
    ASSERT_OK(iso_cgroup_kill(cg, 5000, &eb));
    int ws = wait_status(pid, 5000);
    ASSERT_TRUE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    ASSERT_OK(iso_cgroup_remove(cg, 5000, &eb));
}

TEST(private_cgroup2_limits_and_oom)
{
    setup();
    char dir[] = "/tmp/iso-cgroup2-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    if (mount("none", dir, "cgroup2", 0, NULL) < 0) {
        int err = errno;
        rmdir(dir);
        test_skip("mount -t cgroup2: %s", strerror(err));
    }
    snprintf(live.mounts[live.nmounts++], PATH_MAX, "%s", dir);
    struct iso_cg_layout l;
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_UNIFIED;
    snprintf(l.v2_mount, sizeof(l.v2_mount), "%s", dir);
    struct iso_cg_opts mo = {.parent = parent};
    struct iso_cgroup_manager *m2 = NULL;
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_manager_new(&l, &mo, &m2, &eb));
    live.mgrs[live.nmgrs++] = m2;
    if (!iso_cgroup_manager_has(m2, ISO_CTRL_MEMORY)) {
        /* The refusal itself is part of the contract. */
        struct iso_limits lim = {.mem_mib = 64};
        struct iso_cgroup *cg = NULL;
        ASSERT_ERR(iso_cgroup_create(m2, "t-v2-oom", &lim, &cg, &eb), CM_ENOTSUP);
        test_skip(
            "v2 memory/cpu/pids limits: this host binds those controllers to "
            "cgroup v1 (hybrid), the cgroup2 hierarchy offers none of them");
    }
    check_oom(m2);
}
