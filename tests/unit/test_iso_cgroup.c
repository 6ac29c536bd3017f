/* isolation/: the cgroup manager over fake cgroupfs trees built in a temp dir from
 * the recorded fixtures in tests/unit/data/cgroup/{v2,v1}. A recording syscall
 * table (STYLE.md rule 3) writes a transcript of every mkdir, write, kill and rmdir
 * the manager makes, which is the oracle, emulates the kernel where a test needs it
 * (cgroup.kill empties cgroup.procs), and injects EINTR, EIO and ENOSPC. */
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "base/base.h"
#include "isolation/isolation.h"
#include "test.h"

/* ------------------------------------------------------------------ fixtures */

static const char *data_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0]) {
        return dir;
    }
    char src[PATH_MAX];
    snprintf(src, sizeof(src), "%s", __FILE__);
    const char *srcdir = dirname(src);
    snprintf(dir, sizeof(dir), "%s/data/cgroup", srcdir);
    if (srcdir[0] == '/' || access(dir, R_OK) == 0) {
        return dir;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *build = dirname(dirname(exe));
        snprintf(dir, sizeof(dir), "%s/%s/data/cgroup", build, srcdir);
    }
    return dir;
}

static void copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in < 0 || out < 0) {
        test__fail(__FILE__, __LINE__, "copy `%s` to `%s`", src, dst);
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            test__fail(__FILE__, __LINE__, "write `%s`", dst);
        }
    }
    close(in);
    close(out);
}

static void copy_tree(const char *src, const char *dst)
{
    if (mkdir(dst, 0755) < 0 && errno != EEXIST) {
        test__fail(__FILE__, __LINE__, "mkdir `%s`", dst);
    }
    DIR *d = opendir(src);
    if (d == NULL) {
        test__fail(__FILE__, __LINE__, "fixture dir `%s` missing", src);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char s[PATH_MAX + 512], t[PATH_MAX + 512];
        snprintf(s, sizeof(s), "%s/%s", src, e->d_name);
        snprintf(t, sizeof(t), "%s/%s", dst, e->d_name);
        struct stat st;
        if (stat(s, &st) < 0) {
            test__fail(__FILE__, __LINE__, "stat `%s`", s);
        }
        if (S_ISDIR(st.st_mode)) {
            copy_tree(s, t);
        } else {
            copy_file(s, t);
        }
    }
    closedir(d);
}

static char tmp_root[PATH_MAX];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Tests end by longjmp on failure, so leftovers go at the next setup and at exit. */
static void tmp_cleanup(void)
{
    if (tmp_root[0]) {
        nftw(tmp_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        tmp_root[0] = '\0';
    }
}

/* A fresh copy of data/cgroup/@which in a temp dir; returns its path. */
static const char *fake_tree(const char *which)
{
    static bool registered;
    if (!registered) {
        atexit(tmp_cleanup);
        registered = true;
    }
    tmp_cleanup();
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/iso-cg-test-XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        test__fail(__FILE__, __LINE__, "mkdtemp");
    }
    static char dst[PATH_MAX + 512];
    char src[PATH_MAX + 512];
    snprintf(src, sizeof(src), "%s/%s", data_dir(), which);
    snprintf(dst, sizeof(dst), "%s/%s", tmp_root, which);
    copy_tree(src, dst);
    return dst;
}

/* Contents of @root/@rel in a static buffer ("<missing>" when absent). */
static const char *file_at(const char *root, const char *rel)
{
    static char buf[8192];
    char path[PATH_MAX + 512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return "<missing>";
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void put_file(const char *root, const char *rel, const char *val)
{
    char path[PATH_MAX + 512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_TRUE(fd >= 0);
    ASSERT_INT_EQ(write(fd, val, strlen(val)), (ssize_t)strlen(val));
    close(fd);
}

static bool exists_at(const char *root, const char *rel)
{
    char path[PATH_MAX + 512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------------ recording syscalls
 */

#define MAX_FDS 1024

static struct {
    char log[16384]; /* the transcript, one event per line */
    struct {
        char name[64];
        int dirfd;
    } wfd[MAX_FDS]; /* fds open for writing */
    bool eintr;     /* fail every other call with EINTR */
    unsigned calls;
    const char *fail_write; /* file name whose writes fail with fail_errno */
    bool fail_mkdir;        /* mkdirat fails with fail_errno */
    int fail_errno;
} rec;

static void rec_reset(void)
{
    memset(&rec, 0, sizeof(rec));
}

static void rec_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void rec_log(const char *fmt, ...)
{
    size_t n = strlen(rec.log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec.log + n, sizeof(rec.log) - n, fmt, ap);
    va_end(ap);
    n = strlen(rec.log);
    snprintf(rec.log + n, sizeof(rec.log) - n, "\n");
}

static bool interrupted(void)
{
    if (rec.eintr && (rec.calls++ % 2) == 0) {
        errno = EINTR;
        return true;
    }
    return false;
}

static int rec_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    if (interrupted()) {
        return -1;
    }
    int fd = openat(dirfd, path, flags, mode);
    if (fd >= 0 && fd < MAX_FDS && (flags & O_ACCMODE) != O_RDONLY) {
        const char *slash = strrchr(path, '/');
        snprintf(rec.wfd[fd].name, sizeof(rec.wfd[fd].name), "%s",
                 slash ? slash + 1 : path);
        rec.wfd[fd].dirfd = dirfd;
    }
    return fd;
}

static ssize_t rec_read(int fd, void *buf, size_t n)
{
    if (interrupted()) {
        return -1;
    }
    return read(fd, buf, n);
}

/* Empty the fake cgroup.procs next to the file being written (the kernel's
 * effect of killing everything). */
static void empty_procs(int dirfd)
{
    int fd = openat(dirfd, "cgroup.procs", O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
    }
}

static ssize_t rec_write(int fd, const void *buf, size_t n)
{
    if (interrupted()) {
        return -1;
    }
    const char *name = fd >= 0 && fd < MAX_FDS ? rec.wfd[fd].name : "?";
    if (rec.fail_write && strcmp(name, rec.fail_write) == 0) {
        errno = rec.fail_errno;
        return -1;
    }
    rec_log("write %s %.*s", name, (int)n, (const char *)buf);
    ssize_t w = write(fd, buf, n);
    bool thaw =
        (strcmp(name, "cgroup.freeze") == 0 && n == 1 && *(const char *)buf == '0') ||
        (strcmp(name, "freezer.state") == 0 && n == 6 && memcmp(buf, "THAWED", 6) == 0);
    if (strcmp(name, "cgroup.kill") == 0 || thaw) {
        empty_procs(rec.wfd[fd].dirfd);
    }
    return w;
}

static int rec_close(int fd)
{
    if (fd >= 0 && fd < MAX_FDS) {
        rec.wfd[fd].name[0] = '\0';
    }
    return close(fd);
}

static int rec_mkdirat(int dirfd, const char *path, mode_t mode)
{
    if (interrupted()) {
        return -1;
    }
    if (rec.fail_mkdir) {
        errno = rec.fail_errno;
        return -1;
    }
    int rv = mkdirat(dirfd, path, mode);
    rec_log("mkdir %s%s", path, rv < 0 && errno == EEXIST ? " (exists)" : "");
    return rv;
}

static int rec_unlinkat(int dirfd, const char *path, int flags)
{
    if (interrupted()) {
        return -1;
    }
    int rv = unlinkat(dirfd, path, flags);
    rec_log("rmdir %s%s", path, rv < 0 ? " (failed)" : "");
    return rv;
}

/* Never signals anything: the pids in fake trees are made up. */
static int rec_kill(pid_t pid, int sig)
{
    rec_log("kill %d %d", (int)pid, sig);
    return 0;
}

static int rec_nanosleep(const struct timespec *req, struct timespec *rem)
{
    (void)req;
    if (interrupted()) {
        rem->tv_sec = 0;
        rem->tv_nsec = 0;
        return -1;
    }
    return 0;
}

static const struct iso_sys rec_sys = {
    .openat = rec_openat,
    .read = rec_read,
    .write = rec_write,
    .close = rec_close,
    .mkdirat = rec_mkdirat,
    .unlinkat = rec_unlinkat,
    .kill = rec_kill,
    .nanosleep = rec_nanosleep,
};

/* ------------------------------------------------------------------ v2 */

static struct iso_cgroup_manager *v2_manager(const char *root, struct cm_errbuf *eb)
{
    struct iso_cg_layout l;
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_UNIFIED;
    snprintf(l.v2_mount, sizeof(l.v2_mount), "%s", root);
    struct iso_cg_opts o = {.parent = "clusterctl", .sys = &rec_sys};
    struct iso_cgroup_manager *m = NULL;
    int rv = iso_cgroup_manager_new(&l, &o, &m, eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "manager: %s", eb->msg);
    }
    return m;
}

static const struct iso_limits app_limits = {.cpus = 0.5,
                                             .cpu_quota = true,
                                             .mem_mib = 64,
                                             .pids_max = 100};

static const char v2_create_log[] =
    "write cgroup.subtree_control +cpu +memory +pids\n"
    "mkdir clusterctl (exists)\n"
    "write cgroup.subtree_control +cpu +memory +pids\n"
    "mkdir task-1 (exists)\n"
    "write cpu.weight 50\n"
    "write cpu.max 50000 100000\n"
    "write memory.max 67108864\n"
    "write memory.swap.max 0\n"
    "write pids.max 100\n";

TEST(v2_create_sets_limits)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    ASSERT_STR_EQ(iso_cgroup_manager_name(m), "cgroupfs-v2");
    ASSERT_INT_EQ(iso_cgroup_manager_mode(m), ISO_CG_MODE_UNIFIED);
    ASSERT_TRUE(iso_cgroup_manager_has(m, ISO_CTRL_MEMORY));
    ASSERT_TRUE(iso_cgroup_manager_has(m, ISO_CTRL_CPU));
    ASSERT_TRUE(iso_cgroup_manager_has(m, ISO_CTRL_PIDS));
    ASSERT_TRUE(iso_cgroup_manager_has(m, ISO_CTRL_FREEZER));
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_create(m, "task-1", &app_limits, &cg, &eb));
    ASSERT_STR_EQ(iso_cgroup_name(cg), "task-1");
    ASSERT_STR_EQ(rec.log, v2_create_log);
    ASSERT_STR_EQ(file_at(root, "cgroup.subtree_control"), "+cpu +memory +pids");
    ASSERT_STR_EQ(file_at(root, "clusterctl/cgroup.subtree_control"),
                  "+cpu +memory +pids");
    ASSERT_STR_EQ(file_at(root, "clusterctl/task-1/cpu.weight"), "50");
    ASSERT_STR_EQ(file_at(root, "clusterctl/task-1/cpu.max"), "50000 100000");
    ASSERT_STR_EQ(file_at(root, "clusterctl/task-1/memory.max"), "67108864");
    ASSERT_STR_EQ(file_at(root, "clusterctl/task-1/memory.swap.max"), "0");
    ASSERT_STR_EQ(file_at(root, "clusterctl/task-1/pids.max"), "100");

    /* Reset to no limits: everything back to "max" and the default weight. */
    rec.log[0] = '\0';
    struct iso_limits none = {0};
    ASSERT_OK(iso_cgroup_set_limits(cg, &none, &eb));
    ASSERT_STR_EQ(rec.log,
                  "write cpu.weight 100\n"
                  "write cpu.max max 100000\n"
                  "write memory.max max\n"
                  "write memory.swap.max max\n"
                  "write pids.max max\n");
    /* cpus without a hard quota: weight only. */
    rec.log[0] = '\0';
    struct iso_limits soft = {.cpus = 2};
    ASSERT_OK(iso_cgroup_set_limits(cg, &soft, &eb));
    ASSERT_STR_EQ(file_at(root, "clusterctl/task-1/cpu.weight"), "200");
    ASSERT_STR_EQ(file_at(root, "clusterctl/task-1/cpu.max"), "max 100000");
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_already_enabled_controllers_are_not_rewritten)
{
    rec_reset();
    const char *root = fake_tree("v2");
    put_file(root, "cgroup.subtree_control", "cpu memory pids\n");
    put_file(root, "clusterctl/cgroup.subtree_control", "memory\n");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    ASSERT_STR_EQ(rec.log,
                  "mkdir clusterctl (exists)\nwrite cgroup.subtree_control +cpu +pids\n");
    iso_cgroup_manager_free(m);
}

TEST(v2_nested_parent_is_created)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct iso_cg_layout l;
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_UNIFIED;
    snprintf(l.v2_mount, sizeof(l.v2_mount), "%s", root);
    /* "clusterctl" exists with its files; "tasks" does not (a real kernel would
     * populate it): the manager must get as far as reading its controllers. */
    struct iso_cg_opts o = {.parent = "clusterctl/tasks", .sys = &rec_sys};
    struct iso_cgroup_manager *m = NULL;
    struct cm_errbuf eb = {0};
    ASSERT_ERR(iso_cgroup_manager_new(&l, &o, &m, &eb), CM_ENOENT);
    ASSERT_TRUE(strstr(eb.msg, "cgroup.controllers") != NULL);
    ASSERT_TRUE(exists_at(root, "clusterctl/tasks"));
    ASSERT_NULL(m);
    struct iso_cg_opts bad = {.parent = "../x", .sys = &rec_sys};
    ASSERT_ERR(iso_cgroup_manager_new(&l, &bad, &m, &eb), CM_EINVAL);
    bad.parent = "/abs";
    ASSERT_ERR(iso_cgroup_manager_new(&l, &bad, &m, &eb), CM_EINVAL);
    bad.parent = "a//b";
    ASSERT_ERR(iso_cgroup_manager_new(&l, &bad, &m, &eb), CM_EINVAL);
}

TEST(v2_membership_and_pids)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    rec.log[0] = '\0';
    ASSERT_OK(iso_cgroup_add_pid(cg, 1234, &eb));
    ASSERT_STR_EQ(rec.log, "write cgroup.procs 1234\n");
    put_file(root, "clusterctl/task-1/cgroup.procs", "12\n34\n");
    pid_t *pids = NULL;
    size_t n = 0;
    ASSERT_OK(iso_cgroup_pids(cg, &pids, &n, &eb));
    ASSERT_UINT_EQ(n, 2);
    ASSERT_INT_EQ(pids[0], 12);
    ASSERT_INT_EQ(pids[1], 34);
    cm_free(&pids);
    put_file(root, "clusterctl/task-1/cgroup.procs", "12\nbad\n");
    ASSERT_ERR(iso_cgroup_pids(cg, &pids, &n, &eb), CM_EMALFORMED);
    ASSERT_TRUE(strstr(eb.msg, "cgroup.procs") != NULL);
    put_file(root, "clusterctl/task-1/cgroup.procs", "");
    ASSERT_OK(iso_cgroup_pids(cg, &pids, &n, &eb));
    ASSERT_UINT_EQ(n, 0);
    cm_free(&pids);
    iso_cgroup_free(cg);
    ASSERT_ERR(iso_cgroup_open(m, "task-9", &cg, &eb), CM_ENOENT);
    ASSERT_TRUE(strstr(eb.msg, "clusterctl/task-9") != NULL);
    iso_cgroup_manager_free(m);
}

TEST(v2_bad_names)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    static const char *const bad[] = {"", ".", "..", "a/b", "/a", "a/"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        struct iso_cgroup *cg = NULL;
        ASSERT_ERR(iso_cgroup_create(m, bad[i], NULL, &cg, &eb), CM_EINVAL);
        ASSERT_NULL(cg);
    }
    iso_cgroup_manager_free(m);
}

TEST(v2_kill_uses_cgroup_kill)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    /* Empty: nothing to do. */
    rec.log[0] = '\0';
    ASSERT_OK(iso_cgroup_kill(cg, 1000, &eb));
    ASSERT_STR_EQ(rec.log, "");
    put_file(root, "clusterctl/task-1/cgroup.procs", "4242\n4243\n");
    ASSERT_OK(iso_cgroup_kill(cg, 1000, &eb));
    ASSERT_STR_EQ(rec.log, "write cgroup.kill 1\n");
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_kill_without_cgroup_kill_freezes)
{
    rec_reset();
    const char *root = fake_tree("v2");
    char path[PATH_MAX + 512];
    snprintf(path, sizeof(path), "%s/clusterctl/task-1/cgroup.kill", root);
    ASSERT_INT_EQ(unlink(path), 0);
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    put_file(root, "clusterctl/task-1/cgroup.procs", "4242\n4243\n");
    rec.log[0] = '\0';
    ASSERT_OK(iso_cgroup_kill(cg, 1000, &eb));
    ASSERT_STR_EQ(rec.log,
                  "write cgroup.freeze 1\n"
                  "kill 4242 9\n"
                  "kill 4243 9\n"
                  "write cgroup.freeze 0\n");
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_kill_times_out)
{
    rec_reset();
    const char *root = fake_tree("v2");
    char path[PATH_MAX + 512];
    snprintf(path, sizeof(path), "%s/clusterctl/task-1/cgroup.kill", root);
    ASSERT_INT_EQ(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/clusterctl/task-1/cgroup.freeze", root);
    ASSERT_INT_EQ(unlink(path), 0);
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    /* Nothing empties cgroup.procs now: a process that will not die. */
    put_file(root, "clusterctl/task-1/cgroup.procs", "4242\n");
    rec.log[0] = '\0';
    ASSERT_ERR(iso_cgroup_kill(cg, 30, &eb), CM_ETIMEDOUT);
    ASSERT_TRUE(strstr(eb.msg, "1 processes left") != NULL);
    ASSERT_STR_EQ(rec.log, "kill 4242 9\nkill 4242 9\nkill 4242 9\n");
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_oom_and_stats)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    struct iso_cg_oom oom;
    ASSERT_OK(iso_cgroup_oom(cg, &oom, &eb));
    ASSERT_UINT_EQ(oom.oom_kill, 1);
    ASSERT_UINT_EQ(oom.oom, 1);
    struct iso_cg_stats st;
    ASSERT_OK(iso_cgroup_stats(cg, &st, &eb));
    ASSERT_UINT_EQ(st.cpu_usage_ns, 123456000);
    ASSERT_UINT_EQ(st.cpu_user_ns, 100000000);
    ASSERT_UINT_EQ(st.cpu_system_ns, 23456000);
    ASSERT_UINT_EQ(st.nr_throttled, 2);
    ASSERT_UINT_EQ(st.throttled_ns, 5000000);
    ASSERT_UINT_EQ(st.mem_current, 2932736);
    ASSERT_UINT_EQ(st.mem_peak, 10485760);
    ASSERT_UINT_EQ(st.mem_limit, ISO_UNLIMITED);
    ASSERT_UINT_EQ(st.mem.anon, 1048576);
    ASSERT_UINT_EQ(st.pids_current, 3);
    /* memory.peak is Linux 5.19+: absent is 0, not an error. */
    char path[PATH_MAX + 512];
    snprintf(path, sizeof(path), "%s/clusterctl/task-1/memory.peak", root);
    ASSERT_INT_EQ(unlink(path), 0);
    put_file(root, "clusterctl/task-1/memory.max", "67108864\n");
    ASSERT_OK(iso_cgroup_stats(cg, &st, &eb));
    ASSERT_UINT_EQ(st.mem_peak, 0);
    ASSERT_UINT_EQ(st.mem_limit, 67108864);
    put_file(root, "clusterctl/task-1/memory.events", "oom_kill many\n");
    ASSERT_ERR(iso_cgroup_oom(cg, &oom, &eb), CM_EMALFORMED);
    ASSERT_TRUE(strstr(eb.msg, "memory.events") != NULL);
    put_file(root, "clusterctl/task-1/cpu.stat", "usage_usec\n");
    ASSERT_ERR(iso_cgroup_stats(cg, &st, &eb), CM_EMALFORMED);
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_missing_controller_is_enotsup)
{
    rec_reset();
    const char *root = fake_tree("v2");
    /* A hybrid host's v2: controllers bound to v1. */
    put_file(root, "cgroup.controllers", "hugetlb\n");
    put_file(root, "clusterctl/cgroup.controllers", "hugetlb\n");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    ASSERT_STR_EQ(rec.log, "mkdir clusterctl (exists)\n");
    ASSERT_FALSE(iso_cgroup_manager_has(m, ISO_CTRL_MEMORY));
    struct iso_limits lim = {.mem_mib = 64};
    struct iso_cgroup *cg = NULL;
    ASSERT_ERR(iso_cgroup_create(m, "task-2", &lim, &cg, &eb), CM_ENOTSUP);
    ASSERT_TRUE(strstr(eb.msg, "memory controller") != NULL);
    ASSERT_TRUE(strstr(eb.msg, "clusterctl/task-2") != NULL);
    /* Nothing left behind. */
    ASSERT_FALSE(exists_at(root, "clusterctl/task-2"));
    /* Without limits it works: membership and kill need no controller. */
    ASSERT_OK(iso_cgroup_create(m, "task-2", NULL, &cg, &eb));
    struct iso_cg_oom oom;
    ASSERT_ERR(iso_cgroup_oom(cg, &oom, &eb), CM_ENOTSUP);
    ASSERT_OK(iso_cgroup_remove(cg, 0, &eb));
    ASSERT_FALSE(exists_at(root, "clusterctl/task-2"));
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_remove_and_list)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_create(m, "task-2", NULL, &cg, &eb));
    char **names = NULL;
    size_t n = 0;
    ASSERT_OK(iso_cgroup_manager_list(m, &names, &n, &eb));
    ASSERT_UINT_EQ(n, 2);
    bool seen1 = false, seen2 = false;
    for (size_t i = 0; i < n; i++) {
        seen1 |= strcmp(names[i], "task-1") == 0;
        seen2 |= strcmp(names[i], "task-2") == 0;
    }
    ASSERT_TRUE(seen1 && seen2);
    iso_names_free(names, n);
    rec.log[0] = '\0';
    ASSERT_OK(iso_cgroup_remove(cg, 100, &eb));
    ASSERT_STR_EQ(rec.log, "rmdir task-2\n");
    ASSERT_FALSE(exists_at(root, "clusterctl/task-2"));
    /* Already gone is fine. */
    ASSERT_OK(iso_cgroup_remove(cg, 100, &eb));
    iso_cgroup_free(cg);
    /* A fake directory with files is not empty: the error names it. */
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    ASSERT_ERR(iso_cgroup_remove(cg, 0, &eb), -ENOTEMPTY);
    ASSERT_TRUE(strstr(eb.msg, "rmdir cgroup `clusterctl/task-1`") != NULL);
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_eintr_is_retried)
{
    rec_reset();
    const char *root = fake_tree("v2");
    rec.eintr = true;
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_create(m, "task-1", &app_limits, &cg, &eb));
    ASSERT_STR_EQ(rec.log, v2_create_log);
    ASSERT_OK(iso_cgroup_add_pid(cg, 77, &eb));
    pid_t *pids = NULL;
    size_t n = 0;
    ASSERT_OK(iso_cgroup_pids(cg, &pids, &n, &eb));
    ASSERT_UINT_EQ(n, 1);
    cm_free(&pids);
    struct iso_cg_stats st;
    ASSERT_OK(iso_cgroup_stats(cg, &st, &eb));
    ASSERT_OK(iso_cgroup_kill(cg, 1000, &eb));
    ASSERT_TRUE(rec.calls > 20);
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v2_write_error_names_the_file)
{
    rec_reset();
    const char *root = fake_tree("v2");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v2_manager(root, &eb);
    rec.fail_write = "memory.max";
    rec.fail_errno = EIO;
    struct iso_cgroup *cg = NULL;
    ASSERT_ERR(iso_cgroup_create(m, "task-1", &app_limits, &cg, &eb), CM_EIO);
    ASSERT_NULL(cg);
    ASSERT_STR_EQ(eb.msg,
                  "cgroup `clusterctl/task-1`: write `67108864` to `memory.max`: "
                  "input/output error");
    rec.fail_write = "cgroup.procs";
    rec.fail_errno = ESRCH;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    ASSERT_ERR(iso_cgroup_add_pid(cg, 99, &eb), -ESRCH);
    ASSERT_TRUE(strstr(eb.msg, "add pid 99") != NULL);
    iso_cgroup_free(cg);
    rec.fail_write = NULL;
    rec.fail_mkdir = true;
    rec.fail_errno = ENOSPC;
    ASSERT_ERR(iso_cgroup_create(m, "task-3", NULL, &cg, &eb), CM_ENOSPC);
    ASSERT_TRUE(strstr(eb.msg, "mkdir") != NULL);
    iso_cgroup_manager_free(m);
}

static const char *oom_walk_root;

static int create_and_list(void *arg)
{
    (void)arg;
    struct iso_cg_layout l;
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_UNIFIED;
    snprintf(l.v2_mount, sizeof(l.v2_mount), "%s", oom_walk_root);
    struct iso_cg_opts o = {.parent = "clusterctl", .sys = &rec_sys};
    struct iso_cgroup_manager *m = NULL;
    struct iso_cgroup *cg = NULL;
    struct cm_errbuf eb;
    char **names = NULL;
    size_t n = 0;
    pid_t *pids = NULL;
    int rv = iso_cgroup_manager_new(&l, &o, &m, &eb);
    if (rv == 0) {
        rv = iso_cgroup_create(m, "task-1", &app_limits, &cg, &eb);
    }
    if (rv == 0) {
        rv = iso_cgroup_pids(cg, &pids, &n, &eb);
        cm_free(&pids);
    }
    if (rv == 0) {
        rv = iso_cgroup_manager_list(m, &names, &n, &eb);
        iso_names_free(names, n);
    }
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
    return rv;
}

TEST(v2_oom_paths)
{
    rec_reset();
    oom_walk_root = fake_tree("v2");
    put_file(oom_walk_root, "clusterctl/task-1/cgroup.procs", "1\n2\n3\n");
    int points = test_alloc_walk(create_and_list, NULL);
    ASSERT_INT_OP(points, >=, 6);
}

/* ------------------------------------------------------------------ v1 */

static struct iso_cgroup_manager *v1_manager(const char *root, bool comount,
                                             struct cm_errbuf *eb)
{
    struct iso_cg_layout l;
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_HYBRID;
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        snprintf(l.v1_mount[c], sizeof(l.v1_mount[c]), "%s/%s", root, iso_ctrl_name(c));
    }
    if (comount) {
        snprintf(l.v1_mount[ISO_CTRL_CPUACCT], sizeof(l.v1_mount[0]), "%s/cpu", root);
    }
    struct iso_cg_opts o = {.sys = &rec_sys}; /* default parent "clusterctl" */
    struct iso_cgroup_manager *m = NULL;
    if (iso_cgroup_manager_new(&l, &o, &m, eb) != 0) {
        test__fail(__FILE__, __LINE__, "manager: %s", eb->msg);
    }
    return m;
}

TEST(v1_create_sets_limits)
{
    rec_reset();
    const char *root = fake_tree("v1");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v1_manager(root, false, &eb);
    ASSERT_STR_EQ(iso_cgroup_manager_name(m), "cgroupfs-v1");
    ASSERT_INT_EQ(iso_cgroup_manager_mode(m), ISO_CG_MODE_LEGACY);
    ASSERT_STR_EQ(rec.log,
                  "mkdir clusterctl (exists)\n"
                  "mkdir clusterctl (exists)\n"
                  "mkdir clusterctl (exists)\n"
                  "mkdir clusterctl (exists)\n"
                  "mkdir clusterctl (exists)\n");
    rec.log[0] = '\0';
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_create(m, "task-1", &app_limits, &cg, &eb));
    ASSERT_STR_EQ(rec.log,
                  "mkdir task-1 (exists)\n"
                  "mkdir task-1 (exists)\n"
                  "mkdir task-1 (exists)\n"
                  "mkdir task-1 (exists)\n"
                  "mkdir task-1 (exists)\n"
                  "write cpu.shares 512\n"
                  "write cpu.cfs_period_us 100000\n"
                  "write cpu.cfs_quota_us 50000\n"
                  "write memory.limit_in_bytes 67108864\n"
                  "write memory.memsw.limit_in_bytes 67108864\n"
                  "write pids.max 100\n");
    ASSERT_STR_EQ(file_at(root, "memory/clusterctl/task-1/memory.memsw.limit_in_bytes"),
                  "67108864");
    rec.log[0] = '\0';
    struct iso_limits none = {0};
    ASSERT_OK(iso_cgroup_set_limits(cg, &none, &eb));
    ASSERT_STR_EQ(rec.log,
                  "write cpu.shares 1024\n"
                  "write cpu.cfs_quota_us -1\n"
                  "write memory.limit_in_bytes -1\n"
                  "write memory.memsw.limit_in_bytes -1\n"
                  "write pids.max max\n");
    rec.log[0] = '\0';
    ASSERT_OK(iso_cgroup_add_pid(cg, 4321, &eb));
    ASSERT_STR_EQ(rec.log,
                  "write cgroup.procs 4321\n"
                  "write cgroup.procs 4321\n"
                  "write cgroup.procs 4321\n"
                  "write cgroup.procs 4321\n"
                  "write cgroup.procs 4321\n");
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v1_memsw_raised_first_when_needed)
{
    rec_reset();
    const char *root = fake_tree("v1");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v1_manager(root, false, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    /* The kernel refuses a memory limit above memsw with EINVAL. */
    rec.fail_write = "memory.limit_in_bytes";
    rec.fail_errno = EINVAL;
    rec.log[0] = '\0';
    struct iso_limits lim = {.mem_mib = 64};
    ASSERT_ERR(iso_cgroup_set_limits(cg, &lim, &eb), CM_EINVAL);
    ASSERT_STR_EQ(rec.log,
                  "write cpu.shares 1024\n"
                  "write cpu.cfs_quota_us -1\n"
                  "write memory.memsw.limit_in_bytes 67108864\n");
    ASSERT_TRUE(strstr(eb.msg, "memory.limit_in_bytes") != NULL);
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v1_kill_freezes)
{
    rec_reset();
    const char *root = fake_tree("v1");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v1_manager(root, false, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    put_file(root, "freezer/clusterctl/task-1/cgroup.procs", "4242\n4243\n");
    rec.log[0] = '\0';
    ASSERT_OK(iso_cgroup_kill(cg, 1000, &eb));
    ASSERT_STR_EQ(rec.log,
                  "write freezer.state FROZEN\n"
                  "kill 4242 9\n"
                  "kill 4243 9\n"
                  "write freezer.state THAWED\n");
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v1_oom_and_stats_recorded)
{
    rec_reset();
    const char *root = fake_tree("v1");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v1_manager(root, false, &eb);
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_open(m, "task-1", &cg, &eb));
    struct iso_cg_oom oom;
    ASSERT_OK(iso_cgroup_oom(cg, &oom, &eb));
    ASSERT_UINT_EQ(oom.oom_kill, 0);
    ASSERT_FALSE(oom.under_oom);
    ASSERT_UINT_EQ(oom.failcnt, 0);
    put_file(root, "memory/clusterctl/task-1/memory.oom_control",
             "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    put_file(root, "memory/clusterctl/task-1/memory.failcnt", "17\n");
    ASSERT_OK(iso_cgroup_oom(cg, &oom, &eb));
    ASSERT_UINT_EQ(oom.oom_kill, 2);
    ASSERT_UINT_EQ(oom.failcnt, 17);
    struct iso_cg_stats st;
    ASSERT_OK(iso_cgroup_stats(cg, &st, &eb));
    ASSERT_UINT_EQ(st.cpu_usage_ns, 42952095);
    ASSERT_UINT_EQ(st.cpu_user_ns, 8000000);
    ASSERT_UINT_EQ(st.cpu_system_ns, 32000000);
    ASSERT_UINT_EQ(st.mem_peak, 1597440);
    ASSERT_UINT_EQ(st.mem_limit, ISO_UNLIMITED); /* 9223372036854771712 */
    ASSERT_UINT_EQ(st.pids_current, 0);
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v1_comounted_hierarchy_shared)
{
    rec_reset();
    const char *root = fake_tree("v1");
    struct cm_errbuf eb = {0};
    struct iso_cgroup_manager *m = v1_manager(root, true, &eb);
    ASSERT_TRUE(iso_cgroup_manager_has(m, ISO_CTRL_CPUACCT));
    rec.log[0] = '\0';
    struct iso_cgroup *cg = NULL;
    ASSERT_OK(iso_cgroup_create(m, "task-2", NULL, &cg, &eb));
    /* cpu and cpuacct share one directory: four hierarchies, four mkdirs. */
    ASSERT_STR_EQ(rec.log, "mkdir task-2\nmkdir task-2\nmkdir task-2\nmkdir task-2\n");
    ASSERT_TRUE(exists_at(root, "cpu/clusterctl/task-2"));
    ASSERT_FALSE(exists_at(root, "cpuacct/clusterctl/task-2"));
    rec.log[0] = '\0';
    ASSERT_OK(iso_cgroup_remove(cg, 0, &eb));
    ASSERT_STR_EQ(rec.log, "rmdir task-2\nrmdir task-2\nrmdir task-2\nrmdir task-2\n");
    ASSERT_FALSE(exists_at(root, "cpu/clusterctl/task-2"));
    iso_cgroup_free(cg);
    iso_cgroup_manager_free(m);
}

TEST(v1_missing_hierarchy)
{
    rec_reset();
    const char *root = fake_tree("v1");
    struct iso_cg_layout l;
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_LEGACY;
    snprintf(l.v1_mount[ISO_CTRL_MEMORY], sizeof(l.v1_mount[0]), "%s/memory", root);
    struct iso_cg_opts o = {.sys = &rec_sys};
    struct iso_cgroup_manager *m = NULL;
    struct cm_errbuf eb = {0};
    ASSERT_OK(iso_cgroup_manager_new(&l, &o, &m, &eb));
    ASSERT_FALSE(iso_cgroup_manager_has(m, ISO_CTRL_PIDS));
    struct iso_limits lim = {.pids_max = 10};
    struct iso_cgroup *cg = NULL;
    ASSERT_ERR(iso_cgroup_create(m, "task-2", &lim, &cg, &eb), CM_ENOTSUP);
    ASSERT_TRUE(strstr(eb.msg, "pids controller") != NULL);
    ASSERT_FALSE(exists_at(root, "memory/clusterctl/task-2"));
    iso_cgroup_manager_free(m);
    memset(&l, 0, sizeof(l));
    l.mode = ISO_CG_MODE_LEGACY;
    ASSERT_ERR(iso_cgroup_manager_new(&l, &o, &m, &eb), CM_ENOTSUP);
    l.mode = ISO_CG_MODE_NONE;
    ASSERT_ERR(iso_cgroup_manager_new(&l, &o, &m, &eb), CM_EINVAL);
}
