/* isolation/ additions made for lib/agent, without namespaces (unprivileged): the
 * init's status file (fork-based and `__init --status-file` argument handling) and
 * its parser. Only processes these tests started are waited for. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "isolation/isolation.h"
#include "test.h"

static char tmpdir[64];

static void make_dir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cm-agent-iso-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(tmpdir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    ASSERT_INT_EQ(system(cmd), 0);
}

static const char *slurp(const char *path)
{
    static char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static char *const env[] = {(char *)"PATH=/usr/bin:/bin", NULL};

static int spawn_and_wait(const char *cmd, const char *status_file)
{
    struct iso_spawn_opts o = {
        .cmd = cmd,
        .envp = env,
        .workdir = tmpdir,
        .stdout_fd = -1,
        .stderr_fd = -1,
        .flags = ISO_SPAWN_NO_NEWNS,
        .status_file = status_file,
    };
    struct cm_errbuf eb = {0};
    pid_t pid = 0;
    int rv = iso_spawn(&o, &pid, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "spawn: %s", eb.msg);
    }
    int st;
    ASSERT_INT_EQ(waitpid(pid, &st, 0), pid);
    return iso_exit_code(st);
}

TEST(init_writes_status_file_relative_and_absolute)
{
    make_dir();
    ASSERT_INT_EQ(spawn_and_wait("exit 7", "status"), 7);
    char path[128];
    snprintf(path, sizeof(path), "%s/status", tmpdir);
    ASSERT_STR_EQ(slurp(path), "7\n");
    snprintf(path, sizeof(path), "%s/status.tmp", tmpdir);
    ASSERT_NULL(slurp(path)); /* renamed into place */

    snprintf(path, sizeof(path), "%s/abs-status", tmpdir);
    ASSERT_INT_EQ(spawn_and_wait("kill -TERM $$", path), 128 + 15);
    ASSERT_STR_EQ(slurp(path), "143\n");
    /* Overwritten by the next run. */
    ASSERT_INT_EQ(spawn_and_wait("true", path), 0);
    ASSERT_STR_EQ(slurp(path), "0\n");
    remove_dir();
}

TEST(spawn_rejects_empty_status_file)
{
    struct iso_spawn_opts o = {.cmd = "true",
                               .workdir = "/",
                               .stdout_fd = -1,
                               .stderr_fd = -1,
                               .status_file = ""};
    struct cm_errbuf eb = {0};
    pid_t pid;
    ASSERT_ERR(iso_spawn(&o, &pid, &eb), CM_EINVAL);
}

/* iso_init_main in a child of ours (it exits with the task's status). */
static int run_init_main(char **argv, int argc)
{
    pid_t p = fork();
    if (p == 0) {
        _exit(iso_init_main(argc, argv));
    }
    int st;
    ASSERT_INT_EQ(waitpid(p, &st, 0), p);
    ASSERT_TRUE(WIFEXITED(st));
    return WEXITSTATUS(st);
}

TEST(init_main_status_file_argument)
{
    make_dir();
    char path[128];
    snprintf(path, sizeof(path), "%s/st", tmpdir);
    char *ok[] = {(char *)"clusterctl",
                  (char *)"__init",
                  (char *)"--status-file",
                  path,
                  (char *)"--cmd",
                  (char *)"exit 5",
                  NULL};
    ASSERT_INT_EQ(run_init_main(ok, 6), 5);
    ASSERT_STR_EQ(slurp(path), "5\n");
    /* As `clusterctl __init` passes it: argv[0] is the verb. */
    char *verb_first[] = {
        (char *)"__init", (char *)"--status-file", path, (char *)"--", (char *)"sh",
        (char *)"-c",     (char *)"exit 9",        NULL};
    ASSERT_INT_EQ(run_init_main(verb_first, 7), 9);
    ASSERT_STR_EQ(slurp(path), "9\n");
    char *empty[] = {(char *)"x", (char *)"__init", (char *)"--status-file",
                     (char *)"",  (char *)"--cmd",  (char *)"true",
                     NULL};
    ASSERT_INT_EQ(run_init_main(empty, 6), 2);
    char *missing[] = {(char *)"x", (char *)"__init", (char *)"--status-file", NULL};
    ASSERT_INT_EQ(run_init_main(missing, 3), 2);
    remove_dir();
}

TEST(status_file_parser)
{
    int code = -1;
    ASSERT_OK(iso_parse_status_file("0\n", 2, &code));
    ASSERT_INT_EQ(code, 0);
    ASSERT_OK(iso_parse_status_file("137", 3, &code));
    ASSERT_INT_EQ(code, 137);
    ASSERT_OK(iso_parse_status_file("255\n", 4, &code));
    ASSERT_INT_EQ(code, 255);
    ASSERT_ERR(iso_parse_status_file("256\n", 4, &code), CM_ERANGE);
    ASSERT_ERR(iso_parse_status_file("", 0, &code), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_status_file("\n", 1, &code), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_status_file("-1\n", 3, &code), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_status_file("12 \n", 4, &code), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_status_file("1\n\n", 3, &code), CM_EMALFORMED);
    ASSERT_INT_EQ(code, 255); /* untouched on failure */
}
