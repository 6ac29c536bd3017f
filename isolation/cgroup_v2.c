/* cgroupfs v2 (the unified hierarchy): one directory per task, controllers turned
 * on through cgroup.subtree_control of every ancestor, cgroup.kill for the kill
 * (Linux 5.14+), cgroup.freeze before that. Documentation/admin-guide/cgroup-v2.rst. */
#define ISO__INTERNAL
#include "isolation/isolation.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"

#define V2 0 /* the slot of the one hierarchy */

/* The v2 controllers we turn on for tasks, in the order written. */
static const enum iso_ctrl wanted[] = {ISO_CTRL_CPU, ISO_CTRL_MEMORY, ISO_CTRL_PIDS};

/* Bitmask of our controllers named in a space-separated list. */
static unsigned ctrl_mask(char *list)
{
    unsigned mask = 0;
    char *save = NULL;
    for (char *t = strtok_r(list, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
        for (size_t i = 0; i < CM_ARRAY_SIZE(wanted); i++) {
            if (strcmp(t, iso_ctrl_name(wanted[i])) == 0) {
                mask |= 1u << wanted[i];
            }
        }
    }
    return mask;
}

/* Enable in @dirfd's cgroup.subtree_control what it offers of our controllers.
 * *ret_mask gets the ones enabled for its children afterwards. */
static int enable_subtree(const struct iso_sys *s, int dirfd, const char *what,
                          unsigned *ret_mask, struct cm_errbuf *eb)
{
    char buf[512];
    size_t len;
    int rv = iso__read_at(s, dirfd, "cgroup.controllers", buf, sizeof(buf), &len);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `%s/cgroup.controllers`", what);
    }
    unsigned avail = ctrl_mask(buf);
    rv = iso__read_at(s, dirfd, "cgroup.subtree_control", buf, sizeof(buf), &len);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `%s/cgroup.subtree_control`", what);
    }
    unsigned enabled = ctrl_mask(buf);
    unsigned todo = avail & ~enabled;
    if (todo != 0) {
        /* One write for all: the kernel applies the list atomically. */
        char req[64] = "";
        for (size_t i = 0; i < CM_ARRAY_SIZE(wanted); i++) {
            if (todo & (1u << wanted[i])) {
                size_t n = strlen(req);
                snprintf(req + n, sizeof(req) - n, "%s+%s", n ? " " : "",
                         iso_ctrl_name(wanted[i]));
            }
        }
        rv = iso__write_at(s, dirfd, "cgroup.subtree_control", req);
        if (rv != 0) {
            /* EBUSY: the cgroup has processes of its own ("no internal
             * processes" rule); the parent must be a cgroup only we populate. */
            return cm_err_sys(eb, rv, "write `%s` to `%s/cgroup.subtree_control`", req,
                              what);
        }
    }
    *ret_mask = enabled | todo;
    return 0;
}

static int v2_init(struct iso_cgroup_manager *m, const struct iso_cg_layout *layout,
                   struct cm_errbuf *eb)
{
    const struct iso_sys *s = m->sys;
    if (layout->v2_mount[0] == '\0') {
        return cm_err_setf(eb, CM_ENOTSUP, "no cgroup2 mount");
    }
    int fd = iso__openat(s, AT_FDCWD, layout->v2_mount, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return cm_err_sys(eb, fd, "open cgroup2 root `%s`", layout->v2_mount);
    }
    m->root_fd[V2] = fd;
    /* Walk down the parent path, turning controllers on at each level so they
     * reach the task cgroups. */
    char path[1024];
    snprintf(path, sizeof(path), "%s", m->parent);
    int cur = iso__openat(s, fd, ".", O_RDONLY | O_DIRECTORY);
    if (cur < 0) {
        return cm_err_sys(eb, cur, "open cgroup2 root `%s`", layout->v2_mount);
    }
    char *save = NULL;
    unsigned mask = 0;
    for (char *comp = strtok_r(path, "/", &save); comp;
         comp = strtok_r(NULL, "/", &save)) {
        int rv = enable_subtree(s, cur, comp == path ? layout->v2_mount : m->parent,
                                &mask, eb);
        if (rv == 0) {
            rv = iso__mkdirat(s, cur, comp);
            if (rv == CM_EEXIST) {
                rv = 0;
            } else if (rv != 0) {
                cm_err_sys(eb, rv, "mkdir cgroup `%s` in `%s`", comp, layout->v2_mount);
            }
        }
        int next = -1;
        if (rv == 0) {
            next = iso__openat(s, cur, comp, O_RDONLY | O_DIRECTORY);
            if (next < 0) {
                rv = cm_err_sys(eb, next, "open cgroup `%s`", m->parent);
            }
        }
        iso__close(s, cur);
        if (rv != 0) {
            return rv;
        }
        cur = next;
    }
    m->parent_fd[V2] = cur;
    int rv = enable_subtree(s, cur, m->parent, &mask, eb);
    if (rv != 0) {
        return rv;
    }
    m->v2_ctrls = mask;
    return 0;
}

static int v2_create(struct iso_cgroup *cg, bool create, struct cm_errbuf *eb)
{
    const struct iso_sys *s = cg->m->sys;
    int pfd = cg->m->parent_fd[V2];
    bool made = false;
    if (create) {
        int rv = iso__mkdirat(s, pfd, cg->name);
        if (rv != 0 && rv != CM_EEXIST) {
            return cm_err_sys(eb, rv, "mkdir");
        }
        made = rv == 0;
    }
    int fd = iso__openat(s, pfd, cg->name, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        if (made) {
            iso__rmdirat(s, pfd, cg->name);
        }
        return cm_err_sys(eb, fd, "open");
    }
    cg->fd[V2] = fd;
    return 0;
}

static int write_file(struct iso_cgroup *cg, const char *name, const char *val,
                      struct cm_errbuf *eb)
{
    int rv = iso__write_at(cg->m->sys, cg->fd[V2], name, val);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "write `%s` to `%s`", val, name);
    }
    return 0;
}

static int need(struct iso_cgroup *cg, enum iso_ctrl c, struct cm_errbuf *eb)
{
    if (!(cg->m->v2_ctrls & (1u << c))) {
        return cm_err_setf(eb, CM_ENOTSUP,
                           "the %s controller is not available in the cgroup2 hierarchy",
                           iso_ctrl_name(c));
    }
    return 0;
}

static int v2_set_limits(struct iso_cgroup *cg, const struct iso_limits *lim,
                         struct cm_errbuf *eb)
{
    char val[64];
    int rv;
    unsigned have = cg->m->v2_ctrls;
    if (lim->cpus > 0 || lim->cpu_quota) {
        if ((rv = need(cg, ISO_CTRL_CPU, eb)) != 0) {
            return rv;
        }
    }
    if (lim->mem_mib > 0 && (rv = need(cg, ISO_CTRL_MEMORY, eb)) != 0) {
        return rv;
    }
    if (lim->pids_max > 0 && (rv = need(cg, ISO_CTRL_PIDS, eb)) != 0) {
        return rv;
    }
    if (have & (1u << ISO_CTRL_CPU)) {
        snprintf(val, sizeof(val), "%" PRIu64, iso_cpu_weight(lim->cpus));
        if ((rv = write_file(cg, "cpu.weight", val, eb)) != 0) {
            return rv;
        }
        if (lim->cpu_quota && lim->cpus > 0) {
            snprintf(val, sizeof(val), "%" PRIu64 " %u",
                     iso_cpu_quota_us(lim->cpus, ISO_CPU_PERIOD_US), ISO_CPU_PERIOD_US);
        } else {
            snprintf(val, sizeof(val), "max %u", ISO_CPU_PERIOD_US);
        }
        if ((rv = write_file(cg, "cpu.max", val, eb)) != 0) {
            return rv;
        }
    }
    if (have & (1u << ISO_CTRL_MEMORY)) {
        if (lim->mem_mib > 0) {
            snprintf(val, sizeof(val), "%" PRIu64, iso_mem_bytes(lim->mem_mib));
        } else {
            snprintf(val, sizeof(val), "max");
        }
        if ((rv = write_file(cg, "memory.max", val, eb)) != 0) {
            return rv;
        }
        /* Without swap accounting (or swap) the file is absent: nothing to turn off. */
        if (iso__exists_at(cg->fd[V2], "memory.swap.max") &&
            (rv = write_file(cg, "memory.swap.max", lim->mem_mib > 0 ? "0" : "max",
                             eb)) != 0) {
            return rv;
        }
    }
    if (have & (1u << ISO_CTRL_PIDS)) {
        if (lim->pids_max > 0) {
            snprintf(val, sizeof(val), "%" PRIu64, lim->pids_max);
        } else {
            snprintf(val, sizeof(val), "max");
        }
        if ((rv = write_file(cg, "pids.max", val, eb)) != 0) {
            return rv;
        }
    }
    return 0;
}

static int v2_add_pid(struct iso_cgroup *cg, pid_t pid, struct cm_errbuf *eb)
{
    char val[32];
    snprintf(val, sizeof(val), "%d", (int)pid);
    return write_file(cg, "cgroup.procs", val, eb);
}

static int v2_procs_fd(struct iso_cgroup *cg)
{
    return cg->fd[V2];
}

static int v2_kill_pass(struct iso_cgroup *cg, struct cm_errbuf *eb)
{
    const struct iso_sys *s = cg->m->sys;
    if (iso__exists_at(cg->fd[V2], "cgroup.kill")) {
        return write_file(cg, "cgroup.kill", "1", eb);
    }
    /* Before Linux 5.14: freeze so nothing forks while we kill, then thaw so the
     * SIGKILLs are delivered. */
    bool frozen = iso__exists_at(cg->fd[V2], "cgroup.freeze");
    int rv;
    if (frozen && (rv = write_file(cg, "cgroup.freeze", "1", eb)) != 0) {
        return rv;
    }
    pid_t *pids = NULL;
    size_t n = 0;
    rv = iso_cgroup_pids(cg, &pids, &n, eb);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        if (s->kill(pids[i], SIGKILL) < 0 && errno != ESRCH) {
            rv = cm_err_sys(eb, cm_errno(), "kill %d", (int)pids[i]);
        }
    }
    cm_free(&pids);
    if (frozen) {
        struct cm_errbuf tmp;
        int trv = write_file(cg, "cgroup.freeze", "0", rv == 0 ? eb : &tmp);
        rv = rv != 0 ? rv : trv;
    }
    return rv;
}

static int v2_oom(struct iso_cgroup *cg, struct iso_cg_oom *ret, struct cm_errbuf *eb)
{
    char buf[1024];
    size_t len;
    int rv =
        iso__read_at(cg->m->sys, cg->fd[V2], "memory.events", buf, sizeof(buf), &len);
    if (rv == CM_ENOENT && !(cg->m->v2_ctrls & (1u << ISO_CTRL_MEMORY))) {
        return need(cg, ISO_CTRL_MEMORY, eb);
    }
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `memory.events`");
    }
    struct iso_mem_events ev;
    rv = iso_parse_mem_events(buf, len, &ev);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "parse `memory.events`");
    }
    ret->oom_kill = ev.oom_kill;
    ret->oom = ev.oom;
    return 0;
}

/* Read an optional number: absent is 0 (or ISO_UNLIMITED for limits). */
static int read_opt(struct iso_cgroup *cg, const char *name, bool limit, uint64_t *ret,
                    struct cm_errbuf *eb)
{
    int rv = iso__read_u64_at(cg->m->sys, cg->fd[V2], name, limit, ret);
    if (rv == CM_ENOENT) {
        *ret = limit ? ISO_UNLIMITED : 0;
        return 0;
    }
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `%s`", name);
    }
    return 0;
}

static int v2_stats(struct iso_cgroup *cg, struct iso_cg_stats *ret, struct cm_errbuf *eb)
{
    char buf[8192];
    size_t len;
    const struct iso_sys *s = cg->m->sys;
    int rv = iso__read_at(s, cg->fd[V2], "cpu.stat", buf, sizeof(buf), &len);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `cpu.stat`");
    }
    struct iso_cpu_stat cs;
    if ((rv = iso_parse_cpu_stat(buf, len, &cs)) != 0) {
        return cm_err_sys(eb, rv, "parse `cpu.stat`");
    }
    ret->cpu_usage_ns = cs.usage_usec * 1000;
    ret->cpu_user_ns = cs.user_usec * 1000;
    ret->cpu_system_ns = cs.system_usec * 1000;
    ret->nr_throttled = cs.nr_throttled;
    ret->throttled_ns = cs.throttled_usec * 1000;
    if ((rv = read_opt(cg, "memory.current", false, &ret->mem_current, eb)) != 0 ||
        (rv = read_opt(cg, "memory.peak", false, &ret->mem_peak, eb)) != 0 ||
        (rv = read_opt(cg, "memory.max", true, &ret->mem_limit, eb)) != 0 ||
        (rv = read_opt(cg, "pids.current", false, &ret->pids_current, eb)) != 0) {
        return rv;
    }
    rv = iso__read_at(s, cg->fd[V2], "memory.stat", buf, sizeof(buf), &len);
    if (rv == 0) {
        if ((rv = iso_parse_mem_stat(buf, len, &ret->mem)) != 0) {
            return cm_err_sys(eb, rv, "parse `memory.stat`");
        }
    } else if (rv != CM_ENOENT) {
        return cm_err_sys(eb, rv, "read `memory.stat`");
    }
    return 0;
}

const struct iso__cg_ops iso__cg_v2_ops = {
    .name = "cgroupfs-v2",
    .mode = ISO_CG_MODE_UNIFIED,
    .init = v2_init,
    .create = v2_create,
    .set_limits = v2_set_limits,
    .add_pid = v2_add_pid,
    .procs_fd = v2_procs_fd,
    .kill_pass = v2_kill_pass,
    .oom = v2_oom,
    .stats = v2_stats,
};
