/* lib/agent pure parts: the local record (task.json) round trip and corrupt
 * records, /proc/<pid>/stat start times, rotation decisions, cgroup and sandbox
 * names. */
#include <stdlib.h>

#include "agent/agent.h"
#include "state/db.h"
#include "test.h"

static struct cm_agent_record sample(void)
{
    struct cm_agent_record r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "shop_web.4f1e-\"quoted\"");
    r.phase = CM_AGENT_PHASE_RUNNING;
    r.pid = 4194304;
    r.start_time = 18446744073709551615ull; /* above 2^53: kept as a string */
    snprintf(r.cgroup, sizeof(r.cgroup), "task-shop_web.4f1e");
    r.launched_at = 1795358805461;
    r.mem_mib = 32.5;
    r.grace_s = 3;
    r.oom_base = 2;
    r.log_base[0] = 123456789012345ull;
    r.log_base[1] = 7;
    r.final_state = 0;
    r.exit_code = -1;
    return r;
}

static void assert_same(const struct cm_agent_record *a, const struct cm_agent_record *b)
{
    ASSERT_STR_EQ(a->id, b->id);
    ASSERT_INT_EQ(a->phase, b->phase);
    ASSERT_INT_EQ(a->pid, b->pid);
    ASSERT_UINT_EQ(a->start_time, b->start_time);
    ASSERT_STR_EQ(a->cgroup, b->cgroup);
    ASSERT_INT_EQ(a->launched_at, b->launched_at);
    ASSERT_TRUE(a->mem_mib == b->mem_mib);
    ASSERT_INT_EQ(a->grace_s, b->grace_s);
    ASSERT_UINT_EQ(a->oom_base, b->oom_base);
    ASSERT_UINT_EQ(a->log_base[0], b->log_base[0]);
    ASSERT_UINT_EQ(a->log_base[1], b->log_base[1]);
    ASSERT_INT_EQ(a->exit_code, b->exit_code);
    ASSERT_STR_EQ(a->reason, b->reason);
    if (a->phase == CM_AGENT_PHASE_EXITED) {
        ASSERT_INT_EQ(a->final_state, b->final_state);
    }
}

static void round_trip(const struct cm_agent_record *r)
{
    struct cm_buf b = {0};
    ASSERT_OK(cm_agent_record_format(r, &b));
    ASSERT_TRUE(b.len > 0 && b.data[b.len - 1] == '\n');
    struct cm_agent_record back;
    ASSERT_OK(cm_agent_record_parse(b.data, b.len, &back));
    assert_same(r, &back);
    cm_buf_done(&b);
}

TEST(record_round_trip_every_phase)
{
    struct cm_agent_record r = sample();
    round_trip(&r);
    r.phase = CM_AGENT_PHASE_LAUNCHING;
    r.pid = 0;
    r.start_time = 0;
    round_trip(&r);
    r.phase = CM_AGENT_PHASE_EXITED;
    r.final_state = CM_TASK_FAILED;
    r.exit_code = 137;
    snprintf(r.reason, sizeof(r.reason), "OOM killed (memory limit 32 MiB)");
    round_trip(&r);
    r.final_state = CM_TASK_KILLED;
    r.exit_code = -1;
    r.reason[0] = '\0';
    round_trip(&r);
}

TEST(record_corrupt_or_truncated)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "null",
        "{\"v\":1}",
        /* wrong version */
        "{\"v\":2,\"id\":\"t\",\"phase\":\"running\",\"pid\":5,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
        /* running without a pid */
        "{\"v\":1,\"id\":\"t\",\"phase\":\"running\",\"pid\":0,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
        /* unknown phase */
        "{\"v\":1,\"id\":\"t\",\"phase\":\"dancing\",\"pid\":5,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
        /* start time as a number, not a string */
        "{\"v\":1,\"id\":\"t\",\"phase\":\"running\",\"pid\":5,\"start_time\":1,"
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
        /* start time overflows 64 bits */
        "{\"v\":1,\"id\":\"t\",\"phase\":\"running\",\"pid\":5,"
        "\"start_time\":\"18446744073709551616\",\"cgroup\":\"c\",\"launched_at\":1,"
        "\"mem_mib\":0,\"grace_s\":3,\"oom_base\":\"0\",\"stdout_base\":\"0\","
        "\"stderr_base\":\"0\"}",
        /* negative pid, fractional grace */
        "{\"v\":1,\"id\":\"t\",\"phase\":\"launching\",\"pid\":-1,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
        "{\"v\":1,\"id\":\"t\",\"phase\":\"launching\",\"pid\":0,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":2.5,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
        /* exited with a non-terminal state */
        "{\"v\":1,\"id\":\"t\",\"phase\":\"exited\",\"pid\":5,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\",\"state\":\"running\",\"exit\":0,"
        "\"reason\":\"\"}",
        /* exited without its result */
        "{\"v\":1,\"id\":\"t\",\"phase\":\"exited\",\"pid\":5,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
        /* empty id */
        "{\"v\":1,\"id\":\"\",\"phase\":\"launching\",\"pid\":0,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\"}",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        struct cm_agent_record r;
        memset(&r, 0x5a, sizeof(r));
        struct cm_agent_record before = r;
        int rv = cm_agent_record_parse(bad[i], strlen(bad[i]), &r);
        if (rv != CM_ECORRUPT) {
            printf("# case %zu\n", i);
        }
        ASSERT_ERR(rv, CM_ECORRUPT);
        ASSERT_MEM_EQ(&r, &before, sizeof(r)); /* untouched on failure */
    }
    /* Every truncation of a valid record is refused. */
    struct cm_agent_record r = sample();
    struct cm_buf b = {0};
    ASSERT_OK(cm_agent_record_format(&r, &b));
    for (size_t len = 0; len + 2 < b.len; len++) {
        struct cm_agent_record out;
        ASSERT_ERR(cm_agent_record_parse(b.data, len, &out), CM_ECORRUPT);
    }
    cm_buf_done(&b);
    /* Unknown fields are ignored. */
    const char *extra =
        "{\"v\":1,\"id\":\"t\",\"phase\":\"launching\",\"pid\":0,\"start_time\":\"1\","
        "\"cgroup\":\"c\",\"launched_at\":1,\"mem_mib\":0,\"grace_s\":3,\"oom_base\":"
        "\"0\","
        "\"stdout_base\":\"0\",\"stderr_base\":\"0\",\"future\":[1,2]}";
    ASSERT_OK(cm_agent_record_parse(extra, strlen(extra), &r));
    ASSERT_INT_EQ(r.phase, CM_AGENT_PHASE_LAUNCHING);
}

TEST(proc_stat_start_time)
{
    uint64_t v = 0;
    const char *plain =
        "1234 (sleep) S 1 1234 1234 0 -1 4194560 95 0 0 0 0 0 0 0 20 0 1 0 "
        "987654 5656576 180 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 "
        "17 3 0 0 0 0 0\n";
    ASSERT_OK(cm_agent_parse_proc_start(plain, strlen(plain), &v));
    ASSERT_UINT_EQ(v, 987654);
    /* A command name with spaces and parentheses. */
    const char *odd =
        "77 (a) b (c) d) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0\n";
    ASSERT_OK(cm_agent_parse_proc_start(odd, strlen(odd), &v));
    ASSERT_UINT_EQ(v, 42);
    static const char *const bad[] = {
        "",
        "1234 sleep S 1",
        "1234 (sleep) S 1 2 3",
        "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12a4 0",
        "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123456789012345678901234 0",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        ASSERT_ERR(cm_agent_parse_proc_start(bad[i], strlen(bad[i]), &v), CM_EMALFORMED);
    }
}

TEST(rotation_decisions)
{
    /* Below or at the limit: nothing. */
    ASSERT_UINT_EQ(cm_agent_log_rotation(0, 1000, 5, 0), 0);
    ASSERT_UINT_EQ(cm_agent_log_rotation(1000, 1000, 5, 3), 0);
    /* Above: shift what exists (up to keep-1), then copy to .1. */
    ASSERT_UINT_EQ(cm_agent_log_rotation(1001, 1000, 5, 0), 1);
    ASSERT_UINT_EQ(cm_agent_log_rotation(1001, 1000, 5, 2), 3);
    ASSERT_UINT_EQ(cm_agent_log_rotation(1001, 1000, 5, 4), 5);
    ASSERT_UINT_EQ(cm_agent_log_rotation(1001, 1000, 5, 5), 5); /* .5 is overwritten */
    ASSERT_UINT_EQ(cm_agent_log_rotation(1001, 1000, 5, 9), 5);
    ASSERT_UINT_EQ(cm_agent_log_rotation(5000, 1000, 1, 1), 1);
    /* No limit, or nothing to keep: never. */
    ASSERT_UINT_EQ(cm_agent_log_rotation(UINT64_MAX, 0, 5, 0), 0);
    ASSERT_UINT_EQ(cm_agent_log_rotation(5000, 1000, 0, 0), 0);
}

TEST(cgroup_and_sandbox_names)
{
    char name[256];
    cm_agent_cgroup_name("shop_web.4f1e-aa", name, sizeof(name));
    ASSERT_STR_EQ(name, "task-shop_web.4f1e-aa");
    /* Characters a cgroup name should not carry are mapped, and a hash keeps
     * "a b" and "a:b" apart. */
    char n1[256], n2[256];
    cm_agent_cgroup_name("a b", n1, sizeof(n1));
    cm_agent_cgroup_name("a:b", n2, sizeof(n2));
    ASSERT_TRUE(strncmp(n1, "task-a_b-", 9) == 0);
    ASSERT_UINT_EQ(strlen(n1), 9 + 16);
    ASSERT_TRUE(strcmp(n1, n2) != 0);
    /* Long ids are cut, still below the kernel's 255. */
    char longid[600];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    cm_agent_cgroup_name(longid, name, sizeof(name));
    ASSERT_TRUE(strlen(name) < 255);
    longid[300] = 'y';
    cm_agent_cgroup_name(longid, n1, sizeof(n1));
    ASSERT_TRUE(strcmp(name, n1) != 0);

    ASSERT_TRUE(cm_agent_id_ok("shop_web.4f1e"));
    ASSERT_TRUE(cm_agent_id_ok("a..b"));
    ASSERT_FALSE(cm_agent_id_ok(""));
    ASSERT_FALSE(cm_agent_id_ok("."));
    ASSERT_FALSE(cm_agent_id_ok(".."));
    ASSERT_FALSE(cm_agent_id_ok("a/b"));
    ASSERT_FALSE(cm_agent_id_ok("a\nb"));
    longid[256] = '\0';
    ASSERT_FALSE(cm_agent_id_ok(longid));
    longid[255] = '\0';
    ASSERT_TRUE(cm_agent_id_ok(longid));

    ASSERT_STR_EQ(cm_agent_phase_name(CM_AGENT_PHASE_RUNNING), "running");
    ASSERT_STR_EQ(cm_agent_phase_name(CM_AGENT_PHASE_DONE), "done");
    ASSERT_NULL(cm_agent_phase_name((enum cm_agent_phase)42));
}
