/* The task's init: PID 1 of the task's PID namespace. It forks the task, forwards
 * the stop signals to it, reaps every zombie that gets re-parented to it, and exits
 * with the task's status (128+signal when the task was killed), like tini.
 *
 * PID 1 of a namespace gets no signal it has no handler for (even from outside the
 * namespace, except SIGKILL/SIGSTOP), so the forwarded signals get a no-op handler
 * and stay blocked: sigwaitinfo() takes them off the queue one at a time. */
#define ISO__INTERNAL
#include "isolation/isolation.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"

extern char **environ;

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static void on_signal(int sig)
{
    (void)sig;
}

static _Noreturn void exec_task(const struct iso__init_args *a)
{
    /* Start the task clean: default dispositions (SIG_IGN survives exec), nothing
     * blocked, its own session so it has no controlling terminal of ours. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            (void)sigaction(sig, &dfl, NULL);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    (void)setsid();
    if (a->cmd != NULL) {
        char *const argv[] = {(char *)"sh", (char *)"-c", (char *)a->cmd, NULL};
        execve("/bin/sh", argv, a->envp);
        int err = errno;
        iso__sync_report(a->sync_fd, err, "exec `/bin/sh`");
        _exit(err == ENOENT ? 127 : 126);
    }
    /* execvp searches the PATH of the environment it runs in: the task's. */
    environ = (char **)a->envp;
    execvp(a->argv[0], a->argv);
    int err = errno;
    iso__sync_report(a->sync_fd, err, "exec `%s`", a->argv[0]);
    _exit(err == ENOENT ? 127 : 126);
}

/* Leave the task's exit code where a supervisor that is not our parent can find
 * it: write a temporary file, then rename it, so readers see all or nothing. */
static void write_status(const char *path, int code)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    char buf[16];
    int len = snprintf(buf, sizeof(buf), "%d\n", code);
    ssize_t w;
    do {
        w = write(fd, buf, (size_t)len);
    } while (w < 0 && errno == EINTR);
    close(fd);
    if (w != len || rename(tmp, path) != 0) {
        unlink(tmp);
    }
}

void iso__init_run(const struct iso__init_args *a)
{
    (void)prctl(PR_SET_NAME, "clusterctl-init", 0, 0, 0);
    /* Outside a PID namespace (tests) orphans should still come to us. */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGCHLD, &sa, NULL);
    for (size_t i = 0; i < CM_ARRAY_SIZE(forwarded); i++) {
        sigaddset(&set, forwarded[i]);
        (void)sigaction(forwarded[i], &sa, NULL);
    }
    sigprocmask(SIG_SETMASK, &set, NULL);

    /* The fork-based init is a copy of the daemon: drop every descriptor it
     * inherited (listening sockets, databases) but stdio and the sync socket,
     * or it would hold them for the task's whole life. */
    if (a->sync_fd > 3) {
        (void)syscall(SYS_close_range, 3u, (unsigned)a->sync_fd - 1, 0u);
    }
    (void)syscall(SYS_close_range, a->sync_fd >= 3 ? (unsigned)a->sync_fd + 1 : 3u, ~0u,
                  0u);

    /* _Fork: no atfork handlers, no malloc locks. The fork-based init runs in a
     * raw-cloned copy of a possibly multi-threaded daemon, where a lock another
     * thread held at clone time stays held forever. */
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
    pid_t task = _Fork();
#else
    pid_t task = fork();
#endif
    if (task == 0) {
        exec_task(a);
    }
    if (task < 0) {
        iso__sync_report(a->sync_fd, errno, "fork task");
        _exit(127);
    }
    /* The task holds the last copy of the sync socket now; its exec closes it. */
    if (a->sync_fd >= 0) {
        close(a->sync_fd);
    }
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0) {
            continue; /* EINTR */
        }
        if (sig != SIGCHLD) {
            (void)kill(task, sig);
            continue;
        }
        /* SIGCHLD coalesces: reap everything that is ready. */
        for (;;) {
            int st;
            pid_t p = waitpid(-1, &st, WNOHANG);
            if (p <= 0) {
                break;
            }
            if (p == task) {
                /* Exit at once: as PID 1 our exit makes the kernel SIGKILL the
                 * rest of the namespace. */
                int code = iso_exit_code(st);
                if (a->status_file != NULL) {
                    write_status(a->status_file, code);
                }
                _exit(code);
            }
        }
    }
}

int iso_init_main(int argc, char **argv)
{
    struct iso__init_args a = {.sync_fd = -1, .envp = environ};
    int i = 1;
    if (i < argc && strcmp(argv[i], "__init") == 0) {
        i++;
    }
    if (i + 1 < argc && strcmp(argv[i], "--sync-fd") == 0) {
        int64_t v;
        if (cm_parse_i64(argv[i + 1], 0, 1 << 20, &v) != 0) {
            return 2;
        }
        a.sync_fd = (int)v;
        i += 2;
    }
    if (i + 1 < argc && strcmp(argv[i], "--status-file") == 0) {
        if (argv[i + 1][0] == '\0') {
            return 2;
        }
        a.status_file = argv[i + 1];
        i += 2;
    }
    if (i + 1 < argc && strcmp(argv[i], "--cmd") == 0 && i + 2 == argc) {
        a.cmd = argv[i + 1];
    } else if (i + 1 < argc && strcmp(argv[i], "--") == 0) {
        a.argv = &argv[i + 1];
    } else {
        return 2;
    }
    /* The task must not inherit the socket; the init closes its copy after fork. */
    if (a.sync_fd >= 0) {
        (void)fcntl(a.sync_fd, F_SETFD, FD_CLOEXEC);
    }
    iso__init_run(&a);
}
