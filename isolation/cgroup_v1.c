/* cgroupfs v1 (legacy and hybrid hosts): one directory per task in each controller
 * hierarchy we use (cpu, cpuacct, memory, pids, freezer; co-mounted ones such as
 * "cpu,cpuacct" share a directory). Documentation/admin-guide/cgroup-v1/. */
#define ISO__INTERNAL
#include "isolation/isolation.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"

/* v1 shows "no limit" as PAGE_COUNTER_MAX pages in bytes (9223372036854771712 on
 * 4 KiB pages); anything that large is unlimited. */
#define V1_UNLIMITED_MIN (UINT64_C(1) << 62)

/* mkdir -p @path under @rootfd and open it. */
static int mkdir_p_open(const struct iso_sys *s, int rootfd, const char *path,
                        struct cm_errbuf *eb)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", path);
    int cur = iso__openat(s, rootfd, ".", O_RDONLY | O_DIRECTORY);
    if (cur < 0) {
        return cm_err_sys(eb, cur, "open cgroup root");
    }
    char *save = NULL;
    for (char *comp = strtok_r(buf, "/", &save); comp;
         comp = strtok_r(NULL, "/", &save)) {
        int rv = iso__mkdirat(s, cur, comp);
        if (rv != 0 && rv != CM_EEXIST) {
            iso__close(s, cur);
            return cm_err_sys(eb, rv, "mkdir cgroup `%s`", path);
        }
        int next = iso__openat(s, cur, comp, O_RDONLY | O_DIRECTORY);
        iso__close(s, cur);
        if (next < 0) {
            return cm_err_sys(eb, next, "open cgroup `%s`", path);
        }
        cur = next;
    }
    return cur;
}

static int v1_init(struct iso_cgroup_manager *m, const struct iso_cg_layout *layout,
                   struct cm_errbuf *eb)
{
    const struct iso_sys *s = m->sys;
    bool any = false;
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        const char *mnt = layout->v1_mount[c];
        if (mnt[0] == '\0') {
            continue;
        }
        for (int p = 0; p < c; p++) {
            if (strcmp(layout->v1_mount[p], mnt) == 0) {
                m->same_as[c] = p;
                m->root_fd[c] = m->root_fd[p];
                m->parent_fd[c] = m->parent_fd[p];
                break;
            }
        }
        if (m->same_as[c] != c) {
            continue;
        }
        int fd = iso__openat(s, AT_FDCWD, mnt, O_RDONLY | O_DIRECTORY);
        if (fd < 0) {
            return cm_err_sys(eb, fd, "open cgroup hierarchy `%s`", mnt);
        }
        m->root_fd[c] = fd;
        int pfd = mkdir_p_open(s, fd, m->parent, eb);
        if (pfd < 0) {
            return cm_err_wrapf(eb, "%s", mnt);
        }
        m->parent_fd[c] = pfd;
        any = true;
    }
    if (!any) {
        return cm_err_setf(eb, CM_ENOTSUP, "no cgroup v1 controller hierarchy mounted");
    }
    return 0;
}

static int v1_create(struct iso_cgroup *cg, bool create, struct cm_errbuf *eb)
{
    struct iso_cgroup_manager *m = cg->m;
    const struct iso_sys *s = m->sys;
    unsigned made = 0;
    int rv = 0;
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        if (m->parent_fd[c] < 0) {
            continue;
        }
        if (m->same_as[c] != c) {
            cg->fd[c] = cg->fd[m->same_as[c]];
            continue;
        }
        if (create) {
            rv = iso__mkdirat(s, m->parent_fd[c], cg->name);
            if (rv != 0 && rv != CM_EEXIST) {
                cm_err_sys(eb, rv, "mkdir (%s)", iso_ctrl_name(c));
                break;
            }
            made |= rv == 0 ? 1u << c : 0;
        }
        rv = iso__openat(s, m->parent_fd[c], cg->name, O_RDONLY | O_DIRECTORY);
        if (rv < 0) {
            cm_err_sys(eb, rv, "open (%s)", iso_ctrl_name(c));
            break;
        }
        cg->fd[c] = rv;
        rv = 0;
    }
    if (rv != 0) {
        for (int c = 0; c < ISO_CTRL__COUNT; c++) {
            if (m->same_as[c] == c && cg->fd[c] >= 0) {
                iso__close(s, cg->fd[c]);
            }
            cg->fd[c] = -1;
            if (made & (1u << c)) {
                iso__rmdirat(s, m->parent_fd[c], cg->name);
            }
        }
    }
    return rv;
}

static int write_file(struct iso_cgroup *cg, enum iso_ctrl c, const char *name,
                      const char *val, struct cm_errbuf *eb)
{
    int rv = iso__write_at(cg->m->sys, cg->fd[c], name, val);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "write `%s` to `%s`", val, name);
    }
    return 0;
}

static int need(struct iso_cgroup *cg, enum iso_ctrl c, struct cm_errbuf *eb)
{
    if (cg->fd[c] < 0) {
        return cm_err_setf(eb, CM_ENOTSUP, "the %s controller hierarchy is not mounted",
                           iso_ctrl_name(c));
    }
    return 0;
}

static int set_memory(struct iso_cgroup *cg, const struct iso_limits *lim,
                      struct cm_errbuf *eb)
{
    char val[32];
    if (lim->mem_mib > 0) {
        snprintf(val, sizeof(val), "%" PRIu64, iso_mem_bytes(lim->mem_mib));
    } else {
        snprintf(val, sizeof(val), "-1");
    }
    /* memory.memsw.limit_in_bytes (memory + swap) must stay >= the memory limit, so
     * raise it first when the memory limit goes up, lower it last when it goes
     * down. Setting both to the same value turns swap off for the task. Without
     * swap accounting the file is absent. */
    bool memsw = iso__exists_at(cg->fd[ISO_CTRL_MEMORY], "memory.memsw.limit_in_bytes");
    int rv =
        iso__write_at(cg->m->sys, cg->fd[ISO_CTRL_MEMORY], "memory.limit_in_bytes", val);
    if (rv == CM_EINVAL && memsw) {
        if ((rv = write_file(cg, ISO_CTRL_MEMORY, "memory.memsw.limit_in_bytes", val,
                             eb)) != 0) {
            return rv;
        }
        rv = iso__write_at(cg->m->sys, cg->fd[ISO_CTRL_MEMORY], "memory.limit_in_bytes",
                           val);
    }
    if (rv != 0) {
        return cm_err_sys(eb, rv, "write `%s` to `memory.limit_in_bytes`", val);
    }
    if (memsw) {
        return write_file(cg, ISO_CTRL_MEMORY, "memory.memsw.limit_in_bytes", val, eb);
    }
    return 0;
}

static int v1_set_limits(struct iso_cgroup *cg, const struct iso_limits *lim,
                         struct cm_errbuf *eb)
{
    char val[32];
    int rv;
    if ((lim->cpus > 0 || lim->cpu_quota) && (rv = need(cg, ISO_CTRL_CPU, eb)) != 0) {
        return rv;
    }
    if (lim->mem_mib > 0 && (rv = need(cg, ISO_CTRL_MEMORY, eb)) != 0) {
        return rv;
    }
    if (lim->pids_max > 0 && (rv = need(cg, ISO_CTRL_PIDS, eb)) != 0) {
        return rv;
    }
    if (cg->fd[ISO_CTRL_CPU] >= 0) {
        snprintf(val, sizeof(val), "%" PRIu64, iso_cpu_shares(lim->cpus));
        if ((rv = write_file(cg, ISO_CTRL_CPU, "cpu.shares", val, eb)) != 0) {
            return rv;
        }
        if (lim->cpu_quota && lim->cpus > 0) {
            snprintf(val, sizeof(val), "%u", ISO_CPU_PERIOD_US);
            if ((rv = write_file(cg, ISO_CTRL_CPU, "cpu.cfs_period_us", val, eb)) != 0) {
                return rv;
            }
            snprintf(val, sizeof(val), "%" PRIu64,
                     iso_cpu_quota_us(lim->cpus, ISO_CPU_PERIOD_US));
        } else {
            snprintf(val, sizeof(val), "-1");
        }
        if ((rv = write_file(cg, ISO_CTRL_CPU, "cpu.cfs_quota_us", val, eb)) != 0) {
            return rv;
        }
    }
    if (cg->fd[ISO_CTRL_MEMORY] >= 0 && (rv = set_memory(cg, lim, eb)) != 0) {
        return rv;
    }
    if (cg->fd[ISO_CTRL_PIDS] >= 0) {
        if (lim->pids_max > 0) {
            snprintf(val, sizeof(val), "%" PRIu64, lim->pids_max);
        } else {
            snprintf(val, sizeof(val), "max");
        }
        if ((rv = write_file(cg, ISO_CTRL_PIDS, "pids.max", val, eb)) != 0) {
            return rv;
        }
    }
    return 0;
}

static int v1_add_pid(struct iso_cgroup *cg, pid_t pid, struct cm_errbuf *eb)
{
    char val[32];
    snprintf(val, sizeof(val), "%d", (int)pid);
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        if (cg->fd[c] < 0 || cg->m->same_as[c] != c) {
            continue;
        }
        int rv = write_file(cg, (enum iso_ctrl)c, "cgroup.procs", val, eb);
        if (rv != 0) {
            return cm_err_wrapf(eb, "%s", iso_ctrl_name(c));
        }
    }
    return 0;
}

static int v1_procs_fd(struct iso_cgroup *cg)
{
    if (cg->fd[ISO_CTRL_FREEZER] >= 0) {
        return cg->fd[ISO_CTRL_FREEZER];
    }
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        if (cg->fd[c] >= 0) {
            return cg->fd[c];
        }
    }
    return -1;
}

/* Ask for FROZEN and wait (bounded) until the kernel reports it, so no process
 * forks between our read of cgroup.procs and the kills. */
static int freeze(struct iso_cgroup *cg, struct cm_errbuf *eb)
{
    int rv = write_file(cg, ISO_CTRL_FREEZER, "freezer.state", "FROZEN", eb);
    for (int i = 0; rv == 0 && i < 100; i++) {
        char buf[32];
        size_t len;
        rv = iso__read_at(cg->m->sys, cg->fd[ISO_CTRL_FREEZER], "freezer.state", buf,
                          sizeof(buf), &len);
        if (rv != 0) {
            return cm_err_sys(eb, rv, "read `freezer.state`");
        }
        if (strncmp(buf, "FROZEN", 6) == 0) {
            return 0;
        }
        rv = iso__sleep_ms(cg->m->sys, 1);
    }
    /* Still FREEZING (a task in uninterruptible sleep): kill anyway; the caller
     * loops until the cgroup is empty. */
    return rv;
}

static int v1_kill_pass(struct iso_cgroup *cg, struct cm_errbuf *eb)
{
    bool freezer = cg->fd[ISO_CTRL_FREEZER] >= 0;
    int rv;
    if (freezer && (rv = freeze(cg, eb)) != 0) {
        return rv;
    }
    pid_t *pids = NULL;
    size_t n = 0;
    rv = iso_cgroup_pids(cg, &pids, &n, eb);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        if (cg->m->sys->kill(pids[i], SIGKILL) < 0 && errno != ESRCH) {
            rv = cm_err_sys(eb, cm_errno(), "kill %d", (int)pids[i]);
        }
    }
    cm_free(&pids);
    if (freezer) {
        struct cm_errbuf tmp;
        int trv = write_file(cg, ISO_CTRL_FREEZER, "freezer.state", "THAWED",
                             rv == 0 ? eb : &tmp);
        rv = rv != 0 ? rv : trv;
    }
    return rv;
}

static int v1_oom(struct iso_cgroup *cg, struct iso_cg_oom *ret, struct cm_errbuf *eb)
{
    int rv = need(cg, ISO_CTRL_MEMORY, eb);
    if (rv != 0) {
        return rv;
    }
    char buf[256];
    size_t len;
    const struct iso_sys *s = cg->m->sys;
    int fd = cg->fd[ISO_CTRL_MEMORY];
    rv = iso__read_at(s, fd, "memory.oom_control", buf, sizeof(buf), &len);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `memory.oom_control`");
    }
    struct iso_oom_control oc;
    if ((rv = iso_parse_oom_control(buf, len, &oc)) != 0) {
        return cm_err_sys(eb, rv, "parse `memory.oom_control`");
    }
    ret->oom_kill = oc.oom_kill;
    ret->under_oom = oc.under_oom;
    rv = iso__read_u64_at(s, fd, "memory.failcnt", false, &ret->failcnt);
    if (rv != 0 && rv != CM_ENOENT) {
        return cm_err_sys(eb, rv, "read `memory.failcnt`");
    }
    return 0;
}

static int read_opt(struct iso_cgroup *cg, enum iso_ctrl c, const char *name, bool limit,
                    uint64_t *ret, struct cm_errbuf *eb)
{
    if (cg->fd[c] < 0) {
        return 0;
    }
    int rv = iso__read_u64_at(cg->m->sys, cg->fd[c], name, limit, ret);
    if (rv == CM_ENOENT) {
        return 0;
    }
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `%s`", name);
    }
    return 0;
}

static int v1_stats(struct iso_cgroup *cg, struct iso_cg_stats *ret, struct cm_errbuf *eb)
{
    char buf[8192];
    size_t len;
    const struct iso_sys *s = cg->m->sys;
    int rv;
    if ((rv = read_opt(cg, ISO_CTRL_CPUACCT, "cpuacct.usage", false, &ret->cpu_usage_ns,
                       eb)) != 0 ||
        (rv = read_opt(cg, ISO_CTRL_CPUACCT, "cpuacct.usage_user", false,
                       &ret->cpu_user_ns, eb)) != 0 ||
        (rv = read_opt(cg, ISO_CTRL_CPUACCT, "cpuacct.usage_sys", false,
                       &ret->cpu_system_ns, eb)) != 0 ||
        (rv = read_opt(cg, ISO_CTRL_MEMORY, "memory.usage_in_bytes", false,
                       &ret->mem_current, eb)) != 0 ||
        (rv = read_opt(cg, ISO_CTRL_MEMORY, "memory.max_usage_in_bytes", false,
                       &ret->mem_peak, eb)) != 0 ||
        (rv = read_opt(cg, ISO_CTRL_MEMORY, "memory.limit_in_bytes", false,
                       &ret->mem_limit, eb)) != 0 ||
        (rv = read_opt(cg, ISO_CTRL_PIDS, "pids.current", false, &ret->pids_current,
                       eb)) != 0) {
        return rv;
    }
    if (ret->mem_limit >= V1_UNLIMITED_MIN) {
        ret->mem_limit = ISO_UNLIMITED;
    }
    if (cg->fd[ISO_CTRL_CPU] >= 0) {
        rv = iso__read_at(s, cg->fd[ISO_CTRL_CPU], "cpu.stat", buf, sizeof(buf), &len);
        if (rv == 0) {
            struct iso_cpu_stat cs;
            if ((rv = iso_parse_cpu_stat(buf, len, &cs)) != 0) {
                return cm_err_sys(eb, rv, "parse `cpu.stat`");
            }
            ret->nr_throttled = cs.nr_throttled;
            ret->throttled_ns = cs.throttled_usec * 1000;
        } else if (rv != CM_ENOENT) {
            return cm_err_sys(eb, rv, "read `cpu.stat`");
        }
    }
    if (cg->fd[ISO_CTRL_MEMORY] >= 0) {
        rv = iso__read_at(s, cg->fd[ISO_CTRL_MEMORY], "memory.stat", buf, sizeof(buf),
                          &len);
        if (rv == 0) {
            if ((rv = iso_parse_mem_stat(buf, len, &ret->mem)) != 0) {
                return cm_err_sys(eb, rv, "parse `memory.stat`");
            }
        } else if (rv != CM_ENOENT) {
            return cm_err_sys(eb, rv, "read `memory.stat`");
        }
    }
    return 0;
}

const struct iso__cg_ops iso__cg_v1_ops = {
    .name = "cgroupfs-v1",
    .mode = ISO_CG_MODE_LEGACY,
    .init = v1_init,
    .create = v1_create,
    .set_limits = v1_set_limits,
    .add_pid = v1_add_pid,
    .procs_fd = v1_procs_fd,
    .kill_pass = v1_kill_pass,
    .oom = v1_oom,
    .stats = v1_stats,
};
