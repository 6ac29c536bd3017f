/* Launch a task in new namespaces (STYLE.md rule 21, after crun's linux.c):
 *
 *   parent                         child (PID 1 of the new PID namespace)
 *   clone(NEWPID|NEWNS|NEWUTS|NEWIPC[|NEWNET]) ----> waits for "go" on the sync socket
 *   add the child to the task cgroup
 *   send "go" --------------------------------------> hostname, private mounts, /tmp,
 *                                                     /proc, chdir, stdio, then the
 *                                                     init (here, or re-exec'd)
 *                                                     init forks the task, which execs
 *   recv: EOF = exec'd; (errno, len, msg) = failed <-- any failure before exec
 *
 * The sync socket is SOCK_SEQPACKET and O_CLOEXEC, so the successful exec of the
 * task closes its last copy and the parent reads EOF. */
#define ISO__INTERNAL
#include "isolation/isolation.h"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define DEFAULT_TIMEOUT_MS 30000

void iso__sync_report(int sync_fd, int err, const char *fmt, ...)
{
    struct iso__sync_msg m;
    memset(&m, 0, sizeof(m));
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m.msg, sizeof(m.msg), fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    m.err = err > 0 ? err : EIO;
    m.len = (uint32_t)CM_MIN((size_t)n, sizeof(m.msg) - 1);
    if (sync_fd < 0) {
        return;
    }
    ssize_t w;
    do {
        w = send(sync_fd, &m, offsetof(struct iso__sync_msg, msg) + m.len, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
}

/* Report and end the child. Only called between clone and exec. */
#define CHILD_FAIL(sync, err, ...)                    \
    do {                                              \
        iso__sync_report((sync), (err), __VA_ARGS__); \
        _exit(127);                                   \
    } while (0)

/* A new network namespace has only a down loopback: bring it up. */
static int loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    int rv = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rv == 0) {
        ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
        rv = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return rv;
}

/* Put @fd on @target; -1 means /dev/null (@null). */
static int dup_to(int fd, int null, int target)
{
    int rv;
    do {
        rv = dup2(fd >= 0 ? fd : null, target);
    } while (rv < 0 && errno == EINTR);
    return rv;
}

static _Noreturn void child_main(const struct iso_spawn_opts *o, int sync, int init_fd,
                                 char **init_argv)
{
    char go;
    ssize_t r;
    do {
        r = recv(sync, &go, 1, 0);
    } while (r < 0 && errno == EINTR);
    if (r != 1) {
        _exit(127); /* the parent gave up (cgroup join failed) */
    }
    /* Open the working directory before the mounts change: a sandbox under /tmp
     * would be hidden by the private tmpfs, but this fd keeps reaching it. */
    int wd = open(o->workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (wd < 0) {
        CHILD_FAIL(sync, errno, "chdir `%s`", o->workdir);
    }
    if (!(o->flags & ISO_SPAWN_NO_NEWNS)) {
        if (o->hostname && sethostname(o->hostname, strlen(o->hostname)) < 0) {
            CHILD_FAIL(sync, errno, "sethostname `%s`", o->hostname);
        }
        /* Our mounts must not propagate back to the host. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
            CHILD_FAIL(sync, errno, "make mounts private");
        }
        if (!(o->flags & ISO_SPAWN_NO_TMPFS) &&
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) {
            CHILD_FAIL(sync, errno, "mount tmpfs on `/tmp`");
        }
        /* A /proc for the new PID namespace (the old one shows host pids). */
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
            CHILD_FAIL(sync, errno, "mount proc on `/proc`");
        }
        if ((o->flags & ISO_SPAWN_NEWNET) && loopback_up() < 0) {
            CHILD_FAIL(sync, errno, "bring up loopback");
        }
    }
    if (fchdir(wd) < 0) {
        CHILD_FAIL(sync, errno, "chdir `%s`", o->workdir);
    }
    close(wd);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) {
        CHILD_FAIL(sync, errno, "open `/dev/null`");
    }
    /* Move the caller's fds above 2 first, so dup2 cannot clobber one with
     * another (stdout_fd could be 2). */
    int out = o->stdout_fd >= 0 ? fcntl(o->stdout_fd, F_DUPFD_CLOEXEC, 3) : -1;
    int err = o->stderr_fd >= 0 ? fcntl(o->stderr_fd, F_DUPFD_CLOEXEC, 3) : -1;
    if ((o->stdout_fd >= 0 && out < 0) || (o->stderr_fd >= 0 && err < 0)) {
        CHILD_FAIL(sync, errno, "dup stdout/stderr");
    }
    if (dup_to(-1, null, 0) < 0 || dup_to(out, null, 1) < 0 || dup_to(err, null, 2) < 0) {
        CHILD_FAIL(sync, errno, "set up stdio");
    }
    /* Whatever the caller forgot to mark close-on-exec must not reach the task. */
    (void)syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
    if (init_argv != NULL) {
        /* The sync socket crosses this exec: the init hands it to the task. */
        if (fcntl(sync, F_SETFD, 0) < 0) {
            CHILD_FAIL(sync, errno, "clear FD_CLOEXEC on the sync socket");
        }
        static char *const empty_env[] = {NULL};
        /* By fd, opened before the mounts changed: the binary may live under
         * the /tmp we just covered. */
        syscall(SYS_execveat, init_fd, "", init_argv, o->envp ? o->envp : empty_env,
                AT_EMPTY_PATH);
        CHILD_FAIL(sync, errno, "exec init `%s`", init_argv[0]);
    }
    static char *const empty_env[] = {NULL};
    struct iso__init_args a = {
        .sync_fd = sync,
        .status_file = o->status_file,
        .cmd = o->cmd,
        .argv = o->argv,
        .envp = o->envp ? o->envp : empty_env,
    };
    iso__init_run(&a);
}

/* argv for `<init_path> __init --sync-fd N [--status-file F] (--cmd CMD |
 * -- ARGV...)`. */
static char **build_init_argv(const struct iso_spawn_opts *o, char *fdbuf)
{
    size_t n = 8;
    for (size_t i = 0; o->argv && o->argv[i]; i++) {
        n++;
    }
    char **v = cm_calloc(n + 1, sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    size_t k = 0;
    v[k++] = (char *)o->init_path;
    v[k++] = (char *)"__init";
    v[k++] = (char *)"--sync-fd";
    v[k++] = fdbuf;
    if (o->status_file) {
        v[k++] = (char *)"--status-file";
        v[k++] = (char *)o->status_file;
    }
    if (o->cmd) {
        v[k++] = (char *)"--cmd";
        v[k++] = (char *)o->cmd;
    } else {
        v[k++] = (char *)"--";
        for (size_t i = 0; o->argv[i]; i++) {
            v[k++] = o->argv[i];
        }
    }
    v[k] = NULL;
    return v;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* Wait for the child's verdict: 0 on EOF (exec'd), else its error. */
static int wait_sync(int fd, pid_t pid, unsigned timeout_ms, struct cm_errbuf *eb)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rv;
    do {
        rv = poll(&p, 1, (int)timeout_ms);
    } while (rv < 0 && errno == EINTR);
    if (rv < 0) {
        return cm_err_sys(eb, cm_errno(), "wait for task child %d", (int)pid);
    }
    if (rv == 0) {
        return cm_err_setf(eb, CM_ETIMEDOUT, "task child %d did not exec within %u ms",
                           (int)pid, timeout_ms);
    }
    struct iso__sync_msg m;
    ssize_t n;
    do {
        n = recv(fd, &m, sizeof(m), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return cm_err_sys(eb, cm_errno(), "read sync socket of task child %d", (int)pid);
    }
    if (n == 0) {
        return 0;
    }
    size_t head = offsetof(struct iso__sync_msg, msg);
    if ((size_t)n < head || m.len > (size_t)n - head || m.err <= 0) {
        return cm_err_setf(eb, CM_EPROTO, "task child %d: bad sync message", (int)pid);
    }
    return cm_err_sys(eb, -m.err, "task child: %.*s", (int)m.len, m.msg);
}

int iso_spawn(const struct iso_spawn_opts *o, pid_t *ret_pid, struct cm_errbuf *eb)
{
    if ((o->cmd == NULL) == (o->argv == NULL || o->argv[0] == NULL) ||
        o->workdir == NULL || (o->status_file != NULL && o->status_file[0] == '\0')) {
        return cm_err_setf(eb, CM_EINVAL,
                           "spawn needs a workdir and exactly one of cmd and argv");
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        return cm_err_sys(eb, cm_errno(), "socketpair");
    }
    char fdbuf[16];
    snprintf(fdbuf, sizeof(fdbuf), "%d", sv[1]);
    char **init_argv = NULL;
    int init_fd = -1;
    if (o->init_path != NULL) {
        init_fd = open(o->init_path, O_PATH | O_CLOEXEC);
        if (init_fd < 0) {
            int err = cm_errno();
            close(sv[0]);
            close(sv[1]);
            return cm_err_sys(eb, err, "open init `%s`", o->init_path);
        }
        if ((init_argv = build_init_argv(o, fdbuf)) == NULL) {
            close(init_fd);
            close(sv[0]);
            close(sv[1]);
            return cm_err_setf(eb, CM_ENOMEM, "spawn");
        }
    }
    unsigned long flags = SIGCHLD;
    if (!(o->flags & ISO_SPAWN_NO_NEWNS)) {
        flags |= CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
        if (o->flags & ISO_SPAWN_NEWNET) {
            flags |= CLONE_NEWNET;
        }
    }
    /* Raw clone without a new stack behaves like fork, but with namespace flags:
     * the child is PID 1 of the new PID namespace. */
    pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(sv[0]);
        child_main(o, sv[1], init_fd, init_argv);
    }
    int saved = errno;
    close(sv[1]);
    if (init_fd >= 0) {
        close(init_fd);
    }
    cm_free(&init_argv);
    if (pid < 0) {
        close(sv[0]);
        return cm_err_sys(eb, -saved, "clone task child");
    }
    int rv = 0;
    if (o->cgroup != NULL) {
        rv = iso_cgroup_add_pid(o->cgroup, pid, eb);
    }
    if (rv == 0) {
        char go = 'g';
        ssize_t w;
        do {
            w = send(sv[0], &go, 1, MSG_NOSIGNAL);
        } while (w < 0 && errno == EINTR);
        if (w != 1) {
            rv = cm_err_sys(eb, cm_errno(), "start task child %d", (int)pid);
        }
    }
    if (rv == 0) {
        rv =
            wait_sync(sv[0], pid, o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS, eb);
    }
    close(sv[0]);
    if (rv != 0) {
        /* Our own child, by pid: it has not exec'd the task or has failed to. */
        kill(pid, SIGKILL);
        reap(pid);
        return rv;
    }
    *ret_pid = pid;
    return 0;
}

int iso_exit_code(int wstatus)
{
    if (WIFEXITED(wstatus)) {
        return WEXITSTATUS(wstatus);
    }
    if (WIFSIGNALED(wstatus)) {
        return 128 + WTERMSIG(wstatus);
    }
    return 255;
}
