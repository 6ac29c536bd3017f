/* isolation/: iso_spawn and the init without namespaces (ISO_SPAWN_NO_NEWNS), so it
 * runs unprivileged: stdio, environment, exit statuses, signal forwarding, zombie
 * reaping, and the child-error path over the sync socket. The namespace half is in
 * tests/system/test_iso_system.c. Only processes these tests started are signalled,
 * by pid. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "isolation/isolation.h"
#include "test.h"

static pid_t live[16];
static int nlive;

/* Kill (by pid) and reap what an earlier, failed test left running. */
static void reap_leftovers(void)
{
    for (int i = 0; i < nlive; i++) {
        kill(live[i], SIGKILL);
        waitpid(live[i], NULL, 0);
    }
    nlive = 0;
}

static void setup(void)
{
    static bool registered;
    if (!registered) {
        atexit(reap_leftovers);
        registered = true;
    }
    reap_leftovers();
}

static char *const task_env[] = {(char *)"PATH=/usr/bin:/bin", (char *)"FOO=bar", NULL};

static pid_t spawn_cmd(const char *cmd, int out_fd, int err_fd)
{
    struct iso_spawn_opts o = {
        .cmd = cmd,
        .envp = task_env,
        .workdir = "/",
        .stdout_fd = out_fd,
        .stderr_fd = err_fd,
        .flags = ISO_SPAWN_NO_NEWNS,
    };
    struct cm_errbuf eb = {0};
    pid_t pid = -1;
    int rv = iso_spawn(&o, &pid, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "spawn: %s", eb.msg);
    }
    live[nlive++] = pid;
    return pid;
}

/* Read @fd until EOF (or @max bytes) into a static buffer, with a 10 s limit. */
static const char *read_all(int fd, size_t max)
{
    static char buf[4096];
    size_t len = 0;
    while (len < sizeof(buf) - 1 && len < max) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) {
            test__fail(__FILE__, __LINE__, "no output within 10 s");
        }
        ssize_t n = read(fd, buf + len, CM_MIN(sizeof(buf) - 1 - len, max - len));
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static int wait_exit(pid_t pid)
{
    int st;
    ASSERT_INT_EQ(waitpid(pid, &st, 0), pid);
    for (int i = 0; i < nlive; i++) {
        if (live[i] == pid) {
            live[i] = live[--nlive];
            break;
        }
    }
    return iso_exit_code(st);
}

TEST(cmd_runs_with_env_and_stdio)
{
    setup();
    int out[2], err[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    ASSERT_INT_EQ(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = spawn_cmd("cat; echo \"out $FOO\"; pwd; echo err >&2", out[1], err[1]);
    close(out[1]);
    close(err[1]);
    ASSERT_STR_EQ(read_all(out[0], 4096), "out bar\n/\n");
    ASSERT_STR_EQ(read_all(err[0], 4096), "err\n");
    close(out[0]);
    close(err[0]);
    ASSERT_INT_EQ(wait_exit(pid), 0);
}

TEST(argv_exit_status)
{
    setup();
    char *const argv[] = {(char *)"sh", (char *)"-c", (char *)"exit 3", NULL};
    struct iso_spawn_opts o = {
        .argv = argv,
        .envp = task_env,
        .workdir = "/tmp",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .flags = ISO_SPAWN_NO_NEWNS,
    };
    struct cm_errbuf eb = {0};
    pid_t pid;
    ASSERT_OK(iso_spawn(&o, &pid, &eb));
    live[nlive++] = pid;
    ASSERT_INT_EQ(wait_exit(pid), 3);
}

TEST(missing_workdir_is_reported_with_errno)
{
    setup();
    struct iso_spawn_opts o = {
        .cmd = "true",
        .workdir = "/nonexistent/iso-sandbox",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .flags = ISO_SPAWN_NO_NEWNS,
    };
    struct cm_errbuf eb = {0};
    pid_t pid = -1;
    ASSERT_ERR(iso_spawn(&o, &pid, &eb), CM_ENOENT);
    ASSERT_INT_EQ(pid, -1);
    ASSERT_STR_EQ(eb.msg,
                  "task child: chdir `/nonexistent/iso-sandbox`: no such file or "
                  "directory");
}

TEST(missing_command_is_reported_with_errno)
{
    setup();
    char *const argv[] = {(char *)"no-such-command-iso", NULL};
    struct iso_spawn_opts o = {
        .argv = argv,
        .envp = task_env,
        .workdir = "/",
        .stdout_fd = -1,
        .stderr_fd = -1,
        .flags = ISO_SPAWN_NO_NEWNS,
    };
    struct cm_errbuf eb = {0};
    pid_t pid = -1;
    ASSERT_ERR(iso_spawn(&o, &pid, &eb), CM_ENOENT);
    ASSERT_STR_EQ(eb.msg,
                  "task child: exec `no-such-command-iso`: no such file or directory");
    /* Not executable: EACCES. */
    char *const argv2[] = {(char *)"/etc/passwd", NULL};
    o.argv = argv2;
    ASSERT_ERR(iso_spawn(&o, &pid, &eb), CM_EACCES);
    ASSERT_TRUE(strstr(eb.msg, "exec `/etc/passwd`") != NULL);
}

TEST(bad_options)
{
    struct cm_errbuf eb = {0};
    pid_t pid;
    char *const argv[] = {(char *)"true", NULL};
    struct iso_spawn_opts o = {.cmd = "true", .argv = argv, .workdir = "/"};
    ASSERT_ERR(iso_spawn(&o, &pid, &eb), CM_EINVAL);
    struct iso_spawn_opts o2 = {.cmd = "true"};
    ASSERT_ERR(iso_spawn(&o2, &pid, &eb), CM_EINVAL);
    char *const empty[] = {NULL};
    struct iso_spawn_opts o3 = {.argv = empty, .workdir = "/"};
    ASSERT_ERR(iso_spawn(&o3, &pid, &eb), CM_EINVAL);
}

TEST(init_forwards_sigterm)
{
    setup();
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = spawn_cmd("trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
                          out[1], -1);
    close(out[1]);
    ASSERT_STR_EQ(read_all(out[0], 6), "ready\n");
    ASSERT_INT_EQ(kill(pid, SIGTERM), 0);
    ASSERT_INT_EQ(wait_exit(pid), 42);
    close(out[0]);
}

TEST(init_exits_128_plus_signal)
{
    setup();
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = spawn_cmd("echo ready; exec sleep 100", out[1], -1);
    close(out[1]);
    ASSERT_STR_EQ(read_all(out[0], 6), "ready\n");
    /* sh may not have exec'd sleep yet: give it a moment, then SIGINT. */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ASSERT_INT_EQ(kill(pid, SIGHUP), 0);
    ASSERT_INT_EQ(wait_exit(pid), 128 + SIGHUP);
    close(out[0]);
}

/* Zombie children of @ppid, from /proc/<pid>/stat. */
static int zombies_of(pid_t ppid)
{
    DIR *d = opendir("/proc");
    ASSERT_NOT_NULL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') {
            continue;
        }
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "re");
        if (f == NULL) {
            continue;
        }
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        char state;
        int pp;
        if (rp && sscanf(rp + 2, "%c %d", &state, &pp) == 2 && pp == ppid &&
            state == 'Z') {
            n++;
        }
    }
    closedir(d);
    return n;
}

TEST(init_reaps_orphans)
{
    setup();
    int out[2];
    ASSERT_INT_EQ(pipe2(out, O_CLOEXEC), 0);
    /* The subshell exits at once; its short sleeps become orphans of the init
     * (a subreaper here, PID 1 in a namespace) and must not stay zombies. */
    pid_t pid =
        spawn_cmd("(sleep 0.1 & sleep 0.1 &); echo ready; exec sleep 100", out[1], -1);
    close(out[1]);
    ASSERT_STR_EQ(read_all(out[0], 6), "ready\n");
    struct timespec ts = {0, 500 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ASSERT_INT_EQ(zombies_of(pid), 0);
    ASSERT_INT_EQ(kill(pid, SIGTERM), 0);
    ASSERT_INT_EQ(wait_exit(pid), 128 + SIGTERM);
    close(out[0]);
}

TEST(exit_code_mapping)
{
    ASSERT_INT_EQ(iso_exit_code(0), 0);
    ASSERT_INT_EQ(iso_exit_code(7 << 8), 7);
    ASSERT_INT_EQ(iso_exit_code(SIGKILL), 137);
}
