/* lib/node: the agent's command line and the data-dir lock. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/node.h"
#include "test.h"

static int parse(struct cm_node_config *c, struct cm_errbuf *eb, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"agent";
    va_list ap;
    va_start(ap, eb);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 63) {
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    cm_node_config_default(c);
    cm_errbuf_clear(eb);
    return cm_node_config_parse(c, argc, argv, eb);
}

TEST(config_defaults_match_design)
{
    struct cm_node_config c;
    struct cm_errbuf eb;
    ASSERT_OK(parse(&c, &eb, NULL));
    ASSERT_STR_EQ(c.data_dir, "/var/lib/clusterctl");
    ASSERT_STR_EQ(c.bind, "0.0.0.0");
    ASSERT_UINT_EQ(c.rpc_port, 7071);
    ASSERT_UINT_EQ(c.http_port, 7070);
    ASSERT_STR_EQ(c.dns_addr, "0.0.0.0:53");
    ASSERT_STR_EQ(c.domain, "cluster");
    ASSERT_STR_EQ(c.vip_cidr, "198.18.0.0/15");
    ASSERT_STR_EQ(c.vip_mode, "auto");
    ASSERT_UINT_EQ(c.voters, 3);
    ASSERT_FALSE(c.dev);
}

TEST(config_dev_implies_loopback)
{
    struct cm_node_config c;
    struct cm_errbuf eb;
    ASSERT_OK(parse(&c, &eb, "--dev", NULL));
    ASSERT_STR_EQ(c.bind, "127.0.0.1");
    ASSERT_STR_EQ(c.dns_addr, "127.0.0.1:8600");
    ASSERT_UINT_EQ(c.voters, 1);
    ASSERT_FALSE(c.data_dir_given);
    ASSERT_OK(parse(&c, &eb, "--dev", "--dns-addr", "127.0.0.1:5353", "--data-dir",
                    "/tmp/x", NULL));
    ASSERT_STR_EQ(c.dns_addr, "127.0.0.1:5353");
    ASSERT_TRUE(c.data_dir_given);
    ASSERT_ERR(parse(&c, &eb, "--dev", "--join", "a:1", "--token", "t", NULL), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "--join") != NULL);
}

TEST(config_every_flag)
{
    struct cm_node_config c;
    struct cm_errbuf eb;
    ASSERT_OK(parse(&c, &eb, "--data-dir", "/d", "--bind", "10.0.0.1", "--advertise",
                    "10.0.0.1", "--rpc-port", "8001", "--http-port", "8000", "--dns-addr",
                    "10.0.0.1:53", "--domain", "corp.example", "--dns-compat", "mesos",
                    "--join", "a:7071,b:7071", "--join", "c:7071", "--token", "tok",
                    "--voters", "5", "--attr", "rack=r1", "--attr", "zone=z",
                    "--resources", "cpus=2,mem=4096,ports=[31000-32000,33000-33010]",
                    "--log-level", "debug", "--name", "node-3", "--cgroup-parent",
                    "harness-x/n3", NULL));
    ASSERT_STR_EQ(c.name, "node-3");
    ASSERT_STR_EQ(c.cgroup_parent, "harness-x/n3");
    ASSERT_UINT_EQ(c.rpc_port, 8001);
    ASSERT_STR_EQ(c.domain, "corp.example");
    ASSERT_UINT_EQ(c.n_join, 3);
    ASSERT_STR_EQ(c.join[2], "c:7071");
    ASSERT_UINT_EQ(c.voters, 5);
    ASSERT_UINT_EQ(c.n_attrs, 2);
    ASSERT_STR_EQ(c.attrs[1].key, "zone");
    ASSERT_TRUE(c.resources.cpus == 2.0);
    ASSERT_TRUE(c.resources.mem_mib == 4096.0);
    ASSERT_UINT_EQ(c.resources.n_ranges, 2);
    ASSERT_UINT_EQ(c.resources.ports[1].end, 33010);
    ASSERT_INT_EQ(c.log_level, CM_LOG_DEBUG);
}

struct bad_case {
    const char *flag;
    const char *value;
    const char *want; /* substring of the message */
};

TEST(config_bad_values_name_the_flag)
{
    static const struct bad_case cases[] = {
        {"--rpc-port", "0", "--rpc-port"},
        {"--http-port", "http", "--http-port"},
        {"--dns-addr", "nope", "--dns-addr"},
        {"--domain", "Bad_Domain", "--domain"},
        {"--domain", "a..b", "--domain"},
        {"--dns-compat", "consul", "--dns-compat"},
        {"--voters", "2", "--voters"},
        {"--voters", "11", "--voters"},
        {"--attr", "novalue", "--attr"},
        {"--attr", "hostname=x", "hostname is implicit"},
        {"--attr", "bad key=x", "--attr"},
        {"--resources", "cpus=-1", "cpus"},
        {"--resources", "mem=lots", "mem"},
        {"--resources", "gpus=1", "unknown resource 'gpus'"},
        {"--resources", "ports=[2000-1000]", "ports"},
        {"--resources", "ports=[1-10,5-20]", "overlap"},
        {"--join", "nohost", "--join"},
        {"--log-level", "loud", "--log-level"},
        {"--bind", "", "--bind"},
        {"--name", "Node_1", "--name"},
        {"--name", "a.b", "--name"},
        {"--vip-mode", "ipvs", "--vip-mode"},
        {"--vip-mode", "", "--vip-mode"},
        {"--cgroup-parent", "/abs", "--cgroup-parent"},
        {"--cgroup-parent", "a/../b", "--cgroup-parent"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct cm_node_config c;
        struct cm_errbuf eb;
        int rv = parse(&c, &eb, cases[i].flag, cases[i].value, "--token", "t", NULL);
        if (rv != CM_EINVAL || strstr(eb.msg, cases[i].want) == NULL) {
            test__fail(__FILE__, __LINE__, "%s %s: rv %d msg '%s'", cases[i].flag,
                       cases[i].value, rv, eb.msg);
        }
    }
}

TEST(config_vip_mode)
{
    static const char *const modes[] = {"auto", "nat", "proxy", "off"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(modes); i++) {
        struct cm_node_config c;
        struct cm_errbuf eb;
        ASSERT_OK(parse(&c, &eb, "--vip-mode", modes[i], NULL));
        ASSERT_STR_EQ(c.vip_mode, modes[i]);
    }
    struct cm_node_config c;
    struct cm_errbuf eb;
    ASSERT_OK(parse(&c, &eb, "--dev", "--vip-mode", "proxy", NULL));
    ASSERT_STR_EQ(c.vip_mode, "proxy");
    ASSERT_ERR(parse(&c, &eb, "--vip-mode", "NAT", NULL), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "auto, nat, proxy or off") != NULL);
}

TEST(config_vip_proxy_threads)
{
    struct cm_node_config c;
    struct cm_errbuf eb;
    ASSERT_OK(parse(&c, &eb, NULL));
    ASSERT_UINT_EQ(c.vip_proxy_threads, 0); /* lb picks: the CPUs, capped */
    ASSERT_OK(parse(&c, &eb, "--vip-proxy-threads", "3", NULL));
    ASSERT_UINT_EQ(c.vip_proxy_threads, 3);
    ASSERT_ERR(parse(&c, &eb, "--vip-proxy-threads", "0", NULL), CM_EINVAL);
    ASSERT_ERR(parse(&c, &eb, "--vip-proxy-threads", "65", NULL), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "--vip-proxy-threads") != NULL);
}

TEST(config_usage_errors)
{
    struct cm_node_config c;
    struct cm_errbuf eb;
    ASSERT_ERR(parse(&c, &eb, "--frobnicate", NULL), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "--frobnicate") != NULL);
    ASSERT_ERR(parse(&c, &eb, "--data-dir", NULL), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "needs a value") != NULL);
    ASSERT_ERR(parse(&c, &eb, "stray", NULL), CM_EINVAL);
    ASSERT_ERR(parse(&c, &eb, "--join", "a:1", NULL), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "--token") != NULL);
    ASSERT_ERR(parse(&c, &eb, "--rpc-port", "7070", NULL), CM_EINVAL);
    /* Parsing twice in one process works (getopt is re-initialised). */
    ASSERT_OK(parse(&c, &eb, "--voters", "1", NULL));
    ASSERT_OK(parse(&c, &eb, "--voters", "1", NULL));
}

TEST(resources_keep_unset_fields)
{
    struct cm_resources r = {.cpus = 4, .mem_mib = 100};
    struct cm_errbuf eb;
    ASSERT_OK(cm_resources_parse("mem=512", &r, &eb));
    ASSERT_TRUE(r.cpus == 4 && r.mem_mib == 512);
    ASSERT_OK(cm_resources_parse("ports=31000-31005", &r, &eb));
    ASSERT_UINT_EQ(r.ports[0].begin, 31000);
    ASSERT_UINT_EQ(r.n_ranges, 1);
    /* A failed parse changes nothing. */
    ASSERT_ERR(cm_resources_parse("mem=1,cpus=x", &r, &eb), CM_EINVAL);
    ASSERT_TRUE(r.mem_mib == 512);
}

TEST(data_dir_lock_excludes_a_second_daemon)
{
    char tmpl[] = "/tmp/cm-lock-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(tmpl));
    char dir[64];
    snprintf(dir, sizeof(dir), "%s/a/b", tmpl);
    struct cm_errbuf eb;
    int fd;
    ASSERT_OK(cm_node_lock_data_dir(dir, &fd, &eb));
    /* Another process (flock locks are per open file) is refused. */
    pid_t pid = fork();
    if (pid == 0) {
        int fd2;
        struct cm_errbuf eb2;
        int rv = cm_node_lock_data_dir(dir, &fd2, &eb2);
        _exit(rv == CM_EBUSYDIR && strstr(eb2.msg, "pid") != NULL ? 0 : 1);
    }
    int status;
    ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fd);
    ASSERT_OK(cm_node_lock_data_dir(dir, &fd, &eb)); /* free again */
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
    ASSERT_INT_EQ(system(cmd), 0);
}

TEST(data_dir_that_is_a_file)
{
    struct cm_errbuf eb;
    int fd;
    ASSERT_ERR(cm_node_lock_data_dir("/etc/hostname", &fd, &eb), CM_ENOTDIR);
    ASSERT_TRUE(strstr(eb.msg, "/etc/hostname") != NULL);
}
