/* isolation/: the pure parsers (STYLE.md rule 19), over inline and recorded
 * (tests/unit/data/cgroup/) kernel files, malformed input included. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/base.h"
#include "isolation/isolation.h"
#include "test.h"

/* ------------------------------------------------------------------ fixtures */

/* tests/unit/data/cgroup, found from this file's path relative to the working
 * directory (meson runs tests in the build directory) or to the executable. */
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
        /* <build>/tests/test_x -> <build> */
        char *build = dirname(dirname(exe));
        snprintf(dir, sizeof(dir), "%s/%s/data/cgroup", build, srcdir);
    }
    return dir;
}

static char fixture_buf[16384];

/* The fixture @rel as a string in a static buffer; *ret_len its length. */
static const char *fixture(const char *rel, size_t *ret_len)
{
    char path[PATH_MAX + 512];
    snprintf(path, sizeof(path), "%s/%s", data_dir(), rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        test__fail(__FILE__, __LINE__, "fixture `%s` missing", path);
    }
    size_t n = fread(fixture_buf, 1, sizeof(fixture_buf) - 1, f);
    fclose(f);
    fixture_buf[n] = '\0';
    *ret_len = n;
    return fixture_buf;
}

#define S(lit) (lit), (sizeof(lit) - 1)

static bool str_is(struct iso_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* ------------------------------------------------------------------ /proc/<pid>/cgroup
 */

TEST(proc_cgroup_v2_line)
{
    struct iso_proc_cgroup_line l;
    ASSERT_OK(iso_parse_proc_cgroup_line(S("0::/system.slice/x.service\n"), &l));
    ASSERT_UINT_EQ(l.id, 0);
    ASSERT_UINT_EQ(l.controllers.len, 0);
    ASSERT_TRUE(str_is(l.path, "/system.slice/x.service"));
}

TEST(proc_cgroup_v1_lines)
{
    struct iso_proc_cgroup_line l;
    ASSERT_OK(iso_parse_proc_cgroup_line(S("7:cpu,cpuacct:/a/b"), &l));
    ASSERT_UINT_EQ(l.id, 7);
    ASSERT_TRUE(str_is(l.controllers, "cpu,cpuacct"));
    ASSERT_TRUE(str_is(l.path, "/a/b"));
    ASSERT_OK(iso_parse_proc_cgroup_line(S("1:name=systemd:/"), &l));
    ASSERT_TRUE(str_is(l.controllers, "name=systemd"));
    /* The path is the rest of the line, colons and all. */
    ASSERT_OK(iso_parse_proc_cgroup_line(S("4:memory:/odd:name"), &l));
    ASSERT_TRUE(str_is(l.path, "/odd:name"));
}

TEST(proc_cgroup_malformed)
{
    static const char *const bad[] = {
        "",
        "0",
        "0:",
        "0::",
        "0::relative",
        "x::/",
        "-1::/",
        "1::/",
        "0:memory:/",
        "4294967296:cpu:/",
        "4:memory",
        "4:memory:/a\n/b",
        ":cpu:/",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        struct iso_proc_cgroup_line l;
        int rv = iso_parse_proc_cgroup_line(bad[i], strlen(bad[i]), &l);
        if (rv != CM_EMALFORMED) {
            test__fail(__FILE__, __LINE__, "`%s` parsed (%d)", bad[i], rv);
        }
    }
}

TEST(proc_cgroup_find_recorded)
{
    size_t len;
    const char *t = fixture("proc-cgroup.hybrid", &len);
    struct iso_str p;
    ASSERT_OK(iso_proc_cgroup_find(t, len, "memory", &p));
    ASSERT_TRUE(str_is(p, "/process_api/22536c8a1b90590ba1cd763f42c70ae5"));
    ASSERT_OK(iso_proc_cgroup_find(t, len, "cpu", &p));
    ASSERT_TRUE(str_is(p, "/"));
    ASSERT_OK(iso_proc_cgroup_find(t, len, NULL, &p));
    ASSERT_TRUE(str_is(p, "/"));
    ASSERT_ERR(iso_proc_cgroup_find(t, len, "rdma", &p), CM_ENOTFOUND);

    t = fixture("proc-cgroup.legacy", &len);
    ASSERT_OK(iso_proc_cgroup_find(t, len, "cpuacct", &p));
    ASSERT_TRUE(str_is(p, "/system.slice/clusterctl.service"));
    ASSERT_OK(iso_proc_cgroup_find(t, len, "net_prio", &p));
    ASSERT_TRUE(str_is(p, "/"));
    ASSERT_ERR(iso_proc_cgroup_find(t, len, "", &p), CM_ENOTFOUND);
    /* "cpu" must not match "cpuset" or "cpuacct" by prefix. */
    ASSERT_ERR(iso_proc_cgroup_find(S("3:cpuset:/x\n"), "cpu", &p), CM_ENOTFOUND);

    t = fixture("proc-cgroup.unified", &len);
    ASSERT_OK(iso_proc_cgroup_find(t, len, "", &p));
    ASSERT_TRUE(str_is(p, "/system.slice/clusterctl.service"));
    ASSERT_ERR(iso_proc_cgroup_find(t, len, "memory", &p), CM_ENOTFOUND);
}

TEST(proc_cgroup_find_malformed)
{
    struct iso_str p;
    ASSERT_ERR(iso_proc_cgroup_find(S("0::/\ngarbage\n"), NULL, &p), CM_EMALFORMED);
    ASSERT_ERR(iso_proc_cgroup_find(S(""), NULL, &p), CM_ENOTFOUND);
}

/* ------------------------------------------------------------------ mountinfo */

TEST(mountinfo_line)
{
    struct iso_mountinfo_line mi;
    ASSERT_OK(iso_parse_mountinfo_line(
        S("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root "
          "rw,errors=continue\n"),
        &mi));
    ASSERT_STR_EQ(mi.mount_point, "/mnt2");
    ASSERT_TRUE(str_is(mi.root, "/mnt1"));
    ASSERT_TRUE(str_is(mi.fstype, "ext3"));
    ASSERT_TRUE(str_is(mi.options, "rw,errors=continue"));
    /* No optional fields; an escaped space in the mount point. */
    ASSERT_OK(iso_parse_mountinfo_line(
        S("27 22 0:25 / /mnt/with\\040space rw,relatime - tmpfs none rw"), &mi));
    ASSERT_STR_EQ(mi.mount_point, "/mnt/with space");
}

TEST(mountinfo_malformed)
{
    static const char *const bad[] = {
        "",
        "36 35 98:0 /mnt1 /mnt2 rw",                  /* no separator */
        "36 35 98:0 /mnt1 /mnt2 rw -",                /* nothing after it */
        "36 35 98:0 /mnt1 /mnt2 rw - ext3",           /* no source */
        "36 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root", /* no super options */
        "x 35 98:0 / /m rw - t s o",                  /* bad id */
        "36 35 980 / /m rw - t s o",                  /* no major:minor */
        "36 35 98:0 / m rw - t s o",                  /* relative mount point */
        "36 35 98:0 / /m\\000x rw - t s o",           /* escaped NUL */
        "36  35 98:0 / /m rw - t s o",                /* empty field */
        "36 35 98:0 / /m rw - t s o extra",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        struct iso_mountinfo_line mi;
        int rv = iso_parse_mountinfo_line(bad[i], strlen(bad[i]), &mi);
        if (rv != CM_EMALFORMED) {
            test__fail(__FILE__, __LINE__, "`%s` parsed (%d)", bad[i], rv);
        }
    }
    char longline[600];
    memset(longline, 'a', sizeof(longline));
    int n = snprintf(longline, sizeof(longline), "1 2 0:1 / /");
    longline[n] = 'a';
    snprintf(longline + 500, 100, " rw - t s o");
    struct iso_mountinfo_line mi;
    ASSERT_ERR(iso_parse_mountinfo_line(longline, strlen(longline), &mi), CM_ETOOBIG);
}

TEST(layout_hybrid_recorded)
{
    size_t len;
    const char *t = fixture("mountinfo.hybrid", &len);
    struct iso_cg_layout l;
    ASSERT_OK(iso_parse_cg_layout(t, len, &l));
    ASSERT_INT_EQ(l.mode, ISO_CG_MODE_HYBRID);
    ASSERT_STR_EQ(l.v2_mount, "/sys/fs/cgroup/unified");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_CPU], "/sys/fs/cgroup/cpu");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_CPUACCT], "/sys/fs/cgroup/cpuacct");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_MEMORY], "/sys/fs/cgroup/memory");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_PIDS], "/sys/fs/cgroup/pids");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_FREEZER], "/sys/fs/cgroup/freezer");
}

TEST(layout_legacy_comounted)
{
    size_t len;
    const char *t = fixture("mountinfo.legacy", &len);
    struct iso_cg_layout l;
    ASSERT_OK(iso_parse_cg_layout(t, len, &l));
    ASSERT_INT_EQ(l.mode, ISO_CG_MODE_LEGACY);
    ASSERT_STR_EQ(l.v2_mount, "");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_CPU], "/sys/fs/cgroup/cpu,cpuacct");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_CPUACCT], "/sys/fs/cgroup/cpu,cpuacct");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_MEMORY], "/sys/fs/cgroup/memory");
}

TEST(layout_unified_and_none)
{
    size_t len;
    const char *t = fixture("mountinfo.unified", &len);
    struct iso_cg_layout l;
    ASSERT_OK(iso_parse_cg_layout(t, len, &l));
    ASSERT_INT_EQ(l.mode, ISO_CG_MODE_UNIFIED);
    ASSERT_STR_EQ(l.v2_mount, "/sys/fs/cgroup");
    ASSERT_STR_EQ(l.v1_mount[ISO_CTRL_MEMORY], "");

    ASSERT_OK(iso_parse_cg_layout(S("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), &l));
    ASSERT_INT_EQ(l.mode, ISO_CG_MODE_NONE);
    /* Only a named v1 hierarchy next to v2: that is unified. */
    ASSERT_OK(iso_parse_cg_layout(
        S("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
          "2 0 0:2 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"),
        &l));
    ASSERT_INT_EQ(l.mode, ISO_CG_MODE_UNIFIED);
    ASSERT_ERR(iso_parse_cg_layout(S("1 0 0:1 / /x rw - cgroup2\n"), &l), CM_EMALFORMED);
}

/* ------------------------------------------------------------------ values */

TEST(u64_and_limit)
{
    uint64_t v;
    ASSERT_OK(iso_parse_u64(S("42952095\n"), &v));
    ASSERT_UINT_EQ(v, 42952095);
    ASSERT_OK(iso_parse_u64(S("0"), &v));
    ASSERT_UINT_EQ(v, 0);
    ASSERT_OK(iso_parse_u64(S("18446744073709551615\n"), &v));
    ASSERT_UINT_EQ(v, UINT64_MAX);
    ASSERT_ERR(iso_parse_u64(S("18446744073709551616"), &v), CM_ERANGE);
    ASSERT_ERR(iso_parse_u64(S("123456789012345678901"), &v), CM_ERANGE);
    ASSERT_ERR(iso_parse_u64(S(""), &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_u64(S("\n"), &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_u64(S("-1\n"), &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_u64(S(" 1"), &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_u64(S("1\n\n"), &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_u64(S("max"), &v), CM_EMALFORMED);

    ASSERT_OK(iso_parse_limit(S("max\n"), &v));
    ASSERT_UINT_EQ(v, ISO_UNLIMITED);
    ASSERT_OK(iso_parse_limit(S("67108864\n"), &v));
    ASSERT_UINT_EQ(v, 67108864);
    ASSERT_ERR(iso_parse_limit(S("maxx"), &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_limit(S("Max"), &v), CM_EMALFORMED);
}

TEST(recorded_v1_values)
{
    size_t len;
    uint64_t v;
    const char *t = fixture("v1/cpuacct/clusterctl/task-1/cpuacct.usage", &len);
    ASSERT_OK(iso_parse_u64(t, len, &v));
    ASSERT_UINT_EQ(v, 42952095);
    t = fixture("v1/memory/clusterctl/task-1/memory.max_usage_in_bytes", &len);
    ASSERT_OK(iso_parse_u64(t, len, &v));
    ASSERT_UINT_EQ(v, 1597440);
    t = fixture("v1/pids/clusterctl/task-1/pids.current", &len);
    ASSERT_OK(iso_parse_u64(t, len, &v));
    ASSERT_UINT_EQ(v, 0);
    t = fixture("v1/pids/clusterctl/task-1/pids.max", &len);
    ASSERT_OK(iso_parse_limit(t, len, &v));
    ASSERT_UINT_EQ(v, ISO_UNLIMITED);
    t = fixture("v1/memory/clusterctl/task-1/memory.limit_in_bytes", &len);
    ASSERT_OK(iso_parse_u64(t, len, &v));
    ASSERT_UINT_EQ(v, 9223372036854771712ull);
}

TEST(cpu_max)
{
    struct iso_cpu_max m;
    ASSERT_OK(iso_parse_cpu_max(S("max 100000\n"), &m));
    ASSERT_UINT_EQ(m.quota_us, ISO_UNLIMITED);
    ASSERT_UINT_EQ(m.period_us, 100000);
    ASSERT_OK(iso_parse_cpu_max(S("50000 100000"), &m));
    ASSERT_UINT_EQ(m.quota_us, 50000);
    static const char *const bad[] = {"",          "max",          "max ",  " 100000",
                                      "max 0",     "max  100000",  "1 2 3", "x 100000",
                                      "max max\n", "50000\t100000"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        int rv = iso_parse_cpu_max(bad[i], strlen(bad[i]), &m);
        if (rv != CM_EMALFORMED) {
            test__fail(__FILE__, __LINE__, "`%s` parsed (%d)", bad[i], rv);
        }
    }
    ASSERT_ERR(iso_parse_cpu_max(S("99999999999999999999999 100000"), &m), CM_ERANGE);
}

TEST(keyed)
{
    uint64_t v;
    ASSERT_OK(iso_parse_keyed(S("a 1\nbb 22\n"), "bb", &v));
    ASSERT_UINT_EQ(v, 22);
    ASSERT_ERR(iso_parse_keyed(S("a 1\nbb 22\n"), "b", &v), CM_ENOTFOUND);
    ASSERT_ERR(iso_parse_keyed(S("a 1\nbb\n"), "a", &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_keyed(S("a 1\n 2\n"), "a", &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_keyed(S("a -1\n"), "a", &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_keyed(S("a 1 2\n"), "a", &v), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_keyed(S("a 1\n\n"), "a", &v), CM_EMALFORMED);
}

TEST(mem_events)
{
    size_t len;
    const char *t = fixture("v2/clusterctl/task-1/memory.events", &len);
    struct iso_mem_events ev;
    ASSERT_OK(iso_parse_mem_events(t, len, &ev));
    ASSERT_UINT_EQ(ev.max, 12);
    ASSERT_UINT_EQ(ev.oom, 1);
    ASSERT_UINT_EQ(ev.oom_kill, 1);
    ASSERT_UINT_EQ(ev.oom_group_kill, 0);
    /* Older kernels lack oom_group_kill; unknown keys are ignored. */
    ASSERT_OK(
        iso_parse_mem_events(S("low 0\nhigh 0\nmax 0\noom 0\noom_kill 3\nnew 9\n"), &ev));
    ASSERT_UINT_EQ(ev.oom_kill, 3);
    ASSERT_UINT_EQ(ev.oom_group_kill, 0);
    ASSERT_OK(iso_parse_mem_events(S(""), &ev));
    ASSERT_UINT_EQ(ev.oom_kill, 0);
    ASSERT_ERR(iso_parse_mem_events(S("oom_kill x\n"), &ev), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_mem_events(S("oom_kill\n"), &ev), CM_EMALFORMED);
}

TEST(oom_control)
{
    size_t len;
    const char *t = fixture("v1/memory/clusterctl/task-1/memory.oom_control", &len);
    struct iso_oom_control oc;
    ASSERT_OK(iso_parse_oom_control(t, len, &oc));
    ASSERT_FALSE(oc.oom_kill_disable);
    ASSERT_FALSE(oc.under_oom);
    ASSERT_UINT_EQ(oc.oom_kill, 0);
    ASSERT_OK(
        iso_parse_oom_control(S("oom_kill_disable 1\nunder_oom 1\noom_kill 7\n"), &oc));
    ASSERT_TRUE(oc.oom_kill_disable);
    ASSERT_TRUE(oc.under_oom);
    ASSERT_UINT_EQ(oc.oom_kill, 7);
    /* Before Linux 4.13 there is no oom_kill line. */
    ASSERT_OK(iso_parse_oom_control(S("oom_kill_disable 0\nunder_oom 0\n"), &oc));
    ASSERT_UINT_EQ(oc.oom_kill, 0);
    ASSERT_ERR(iso_parse_oom_control(S("under_oom 2\n"), &oc), CM_EMALFORMED);
    ASSERT_ERR(iso_parse_oom_control(S("under_oom yes\n"), &oc), CM_EMALFORMED);
}

TEST(cpu_stat)
{
    size_t len;
    const char *t = fixture("v2/clusterctl/task-1/cpu.stat", &len);
    struct iso_cpu_stat cs;
    ASSERT_OK(iso_parse_cpu_stat(t, len, &cs));
    ASSERT_UINT_EQ(cs.usage_usec, 123456);
    ASSERT_UINT_EQ(cs.user_usec, 100000);
    ASSERT_UINT_EQ(cs.system_usec, 23456);
    ASSERT_UINT_EQ(cs.nr_periods, 10);
    ASSERT_UINT_EQ(cs.nr_throttled, 2);
    ASSERT_UINT_EQ(cs.throttled_usec, 5000);
    t = fixture("v1/cpu/clusterctl/task-1/cpu.stat", &len);
    ASSERT_OK(iso_parse_cpu_stat(t, len, &cs));
    ASSERT_UINT_EQ(cs.usage_usec, 0);
    ASSERT_OK(iso_parse_cpu_stat(S("nr_periods 5\nnr_throttled 1\nthrottled_time 7500\n"),
                                 &cs));
    ASSERT_UINT_EQ(cs.throttled_usec, 7);
    ASSERT_ERR(iso_parse_cpu_stat(S("usage_usec 1\nnr_periods\n"), &cs), CM_EMALFORMED);
}

TEST(mem_stat)
{
    size_t len;
    const char *t = fixture("v2/clusterctl/task-1/memory.stat", &len);
    struct iso_mem_stat ms;
    ASSERT_OK(iso_parse_mem_stat(t, len, &ms));
    ASSERT_UINT_EQ(ms.anon, 1048576);
    ASSERT_UINT_EQ(ms.file, 2097152);
    ASSERT_UINT_EQ(ms.shmem, 4096);
    ASSERT_UINT_EQ(ms.pgfault, 3000);
    ASSERT_UINT_EQ(ms.pgmajfault, 2);
    t = fixture("v1/memory/clusterctl/task-1/memory.stat", &len);
    ASSERT_OK(iso_parse_mem_stat(t, len, &ms));
    ASSERT_UINT_EQ(ms.swap, 0);
    /* v1: the hierarchical totals win over the cgroup's own counters. */
    ASSERT_OK(
        iso_parse_mem_stat(S("cache 1\nrss 2\nswap 3\ntotal_cache 10\ntotal_rss 20\n"
                             "total_swap 30\n"),
                           &ms));
    ASSERT_UINT_EQ(ms.file, 10);
    ASSERT_UINT_EQ(ms.anon, 20);
    ASSERT_UINT_EQ(ms.swap, 30);
    ASSERT_OK(iso_parse_mem_stat(S("cache 1\nrss 2\nswap 3\n"), &ms));
    ASSERT_UINT_EQ(ms.file, 1);
    ASSERT_UINT_EQ(ms.anon, 2);
    ASSERT_ERR(iso_parse_mem_stat(S("anon 1\nfile 2x\n"), &ms), CM_EMALFORMED);
}

/* ------------------------------------------------------------------ limits */

TEST(limit_mapping)
{
    ASSERT_UINT_EQ(iso_cpu_shares(1.0), 1024);
    ASSERT_UINT_EQ(iso_cpu_shares(0.5), 512);
    ASSERT_UINT_EQ(iso_cpu_shares(0.001), 2);
    ASSERT_UINT_EQ(iso_cpu_shares(0), 1024);
    ASSERT_UINT_EQ(iso_cpu_shares(1e9), 262144);
    ASSERT_UINT_EQ(iso_cpu_weight(1.0), 100);
    ASSERT_UINT_EQ(iso_cpu_weight(0.25), 25);
    ASSERT_UINT_EQ(iso_cpu_weight(0.001), 1);
    ASSERT_UINT_EQ(iso_cpu_weight(200), 10000);
    ASSERT_UINT_EQ(iso_cpu_quota_us(0.5, 100000), 50000);
    ASSERT_UINT_EQ(iso_cpu_quota_us(2, 100000), 200000);
    ASSERT_UINT_EQ(iso_cpu_quota_us(0.001, 100000), 1000);
    ASSERT_UINT_EQ(iso_mem_bytes(64), 67108864);
    ASSERT_UINT_EQ(iso_mem_bytes(0.5), 524288);
    ASSERT_UINT_EQ(iso_mem_bytes(0.0001), 4096);
    ASSERT_UINT_EQ(iso_mem_bytes(1.00001), 1048576); /* page-aligned down */
    ASSERT_STR_EQ(iso_ctrl_name(ISO_CTRL_FREEZER), "freezer");
}
