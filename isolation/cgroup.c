/* The cgroup manager: detection, the parts common to v1 and v2, and the dispatch to
 * the hierarchy-specific vtable (cgroup_v2.c first, cgroup_v1.c second), after
 * crun's libcrun_cgroup_manager. */
#define ISO__INTERNAL
#include "isolation/isolation.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"

#define DEFAULT_PARENT "clusterctl"

int iso_cg_layout_detect(struct iso_cg_layout *ret, struct cm_errbuf *eb)
{
    const struct iso_sys *s = iso_sys_default();
    char *text = NULL;
    size_t len = 0;
    int rv = iso__read_all_at(s, AT_FDCWD, "/proc/self/mountinfo", &text, &len);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `/proc/self/mountinfo`");
    }
    rv = iso_parse_cg_layout(text, len, ret);
    cm_free(&text);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "parse `/proc/self/mountinfo`");
    }
    return 0;
}

/* A relative path of non-empty components without "." or "..". */
static bool valid_rel_path(const char *p)
{
    if (p[0] == '\0' || p[0] == '/' || strlen(p) >= 1024) {
        return false;
    }
    const char *c = p;
    while (*c) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) {
            return false;
        }
        c += n;
        if (*c == '/') {
            c++;
            if (*c == '\0') {
                return false;
            }
        }
    }
    return true;
}

static bool valid_name(const char *name)
{
    return valid_rel_path(name) && strchr(name, '/') == NULL && strlen(name) < 256;
}

int iso_cgroup_manager_new(const struct iso_cg_layout *layout,
                           const struct iso_cg_opts *opts,
                           struct iso_cgroup_manager **ret, struct cm_errbuf *eb)
{
    const char *parent = opts && opts->parent ? opts->parent : DEFAULT_PARENT;
    if (!valid_rel_path(parent)) {
        return cm_err_setf(eb, CM_EINVAL, "bad cgroup parent `%s`", parent);
    }
    const struct iso__cg_ops *ops;
    switch (layout->mode) {
    case ISO_CG_MODE_UNIFIED:
        ops = &iso__cg_v2_ops;
        break;
    case ISO_CG_MODE_LEGACY:
    case ISO_CG_MODE_HYBRID:
        ops = &iso__cg_v1_ops;
        break;
    case ISO_CG_MODE_NONE:
    default:
        return cm_err_setf(eb, CM_EINVAL, "no cgroup hierarchy to manage");
    }
    struct iso_cgroup_manager *m = cm_calloc(1, sizeof(*m));
    if (m == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "cgroup manager");
    }
    m->ops = ops;
    m->sys = opts && opts->sys ? opts->sys : iso_sys_default();
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        m->root_fd[c] = -1;
        m->parent_fd[c] = -1;
        m->same_as[c] = c;
    }
    m->parent = cm_strdup(parent);
    if (m->parent == NULL) {
        iso_cgroup_manager_free(m);
        return cm_err_setf(eb, CM_ENOMEM, "cgroup manager");
    }
    int rv = ops->init(m, layout, eb);
    if (rv != 0) {
        iso_cgroup_manager_free(m);
        return rv;
    }
    *ret = m;
    return 0;
}

int iso_cgroup_detect(const struct iso_cg_opts *opts, struct iso_cgroup_manager **ret,
                      struct cm_errbuf *eb)
{
    struct iso_cg_layout layout;
    int rv = iso_cg_layout_detect(&layout, eb);
    if (rv != 0) {
        return rv;
    }
    if (layout.mode == ISO_CG_MODE_NONE) {
        return cm_err_setf(eb, CM_ENOTSUP, "no cgroup filesystem mounted");
    }
    if (layout.mode == ISO_CG_MODE_HYBRID) {
        /* Hybrid hosts usually bind every controller to v1 and leave v2 empty; use
         * v2 only when it actually carries the memory controller. */
        char buf[512];
        size_t len;
        const struct iso_sys *s = opts && opts->sys ? opts->sys : iso_sys_default();
        iso__cleanup_close int fd =
            iso__openat(s, AT_FDCWD, layout.v2_mount, O_RDONLY | O_DIRECTORY);
        if (fd >= 0 &&
            iso__read_at(s, fd, "cgroup.controllers", buf, sizeof(buf), &len) == 0) {
            char *save = NULL;
            for (char *t = strtok_r(buf, " \n", &save); t;
                 t = strtok_r(NULL, " \n", &save)) {
                if (strcmp(t, "memory") == 0) {
                    layout.mode = ISO_CG_MODE_UNIFIED;
                }
            }
        }
    }
    return iso_cgroup_manager_new(&layout, opts, ret, eb);
}

void iso_cgroup_manager_free(struct iso_cgroup_manager *m)
{
    if (m == NULL) {
        return;
    }
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        if (m->same_as[c] == c) {
            if (m->parent_fd[c] >= 0) {
                iso__close(m->sys, m->parent_fd[c]);
            }
            if (m->root_fd[c] >= 0) {
                iso__close(m->sys, m->root_fd[c]);
            }
        }
    }
    cm_free(&m->parent);
    cm_free_raw(m);
}

const char *iso_cgroup_manager_name(const struct iso_cgroup_manager *m)
{
    return m->ops->name;
}

enum iso_cg_mode iso_cgroup_manager_mode(const struct iso_cgroup_manager *m)
{
    return m->ops->mode;
}

bool iso_cgroup_manager_has(const struct iso_cgroup_manager *m, enum iso_ctrl c)
{
    if ((unsigned)c >= ISO_CTRL__COUNT) {
        return false;
    }
    if (m->ops->mode == ISO_CG_MODE_UNIFIED) {
        /* cpu.stat and cgroup.freeze are in the v2 core. */
        return c == ISO_CTRL_CPUACCT || c == ISO_CTRL_FREEZER ||
               (m->v2_ctrls & (1u << c));
    }
    return m->parent_fd[c] >= 0;
}

/* The first directory fd of the parent (any hierarchy): where names are listed. */
static int first_parent_fd(const struct iso_cgroup_manager *m)
{
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        if (m->parent_fd[c] >= 0) {
            return m->parent_fd[c];
        }
    }
    return -1;
}

void iso_names_free(char **names, size_t n)
{
    if (names == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        cm_free(&names[i]);
    }
    cm_free_raw(names);
}

int iso_cgroup_manager_list(struct iso_cgroup_manager *m, char ***ret_names,
                            size_t *ret_n, struct cm_errbuf *eb)
{
    int pfd = first_parent_fd(m);
    if (pfd < 0) {
        return cm_err_setf(eb, CM_ENOTSUP, "no cgroup hierarchy");
    }
    int dfd = iso__openat(m->sys, pfd, ".", O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        return cm_err_sys(eb, dfd, "open cgroup parent `%s`", m->parent);
    }
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int err = cm_errno();
        close(dfd);
        return cm_err_sys(eb, err, "read cgroup parent `%s`", m->parent);
    }
    char **names = NULL;
    size_t n = 0;
    int rv = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.') {
            continue;
        }
        char **nn = cm_reallocarray(names, n + 1, sizeof(*names));
        if (nn == NULL) {
            rv = CM_ENOMEM;
            break;
        }
        names = nn;
        names[n] = cm_strdup(e->d_name);
        if (names[n] == NULL) {
            rv = CM_ENOMEM;
            break;
        }
        n++;
    }
    if (rv == 0 && errno != 0) {
        rv = cm_errno();
    }
    closedir(d);
    if (rv != 0) {
        iso_names_free(names, n);
        return cm_err_sys(eb, rv, "list cgroup parent `%s`", m->parent);
    }
    *ret_names = names != NULL ? names : cm_malloc(0);
    if (*ret_names == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "list cgroup parent");
    }
    *ret_n = n;
    return 0;
}

static struct iso_cgroup *cgroup_alloc(struct iso_cgroup_manager *m, const char *name)
{
    struct iso_cgroup *cg = cm_calloc(1, sizeof(*cg));
    if (cg == NULL) {
        return NULL;
    }
    cg->m = m;
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        cg->fd[c] = -1;
    }
    cg->name = cm_strdup(name);
    if (cg->name == NULL) {
        cm_free_raw(cg);
        return NULL;
    }
    return cg;
}

static void cgroup_close_fds(struct iso_cgroup *cg)
{
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        if (cg->m->same_as[c] == c && cg->fd[c] >= 0) {
            iso__close(cg->m->sys, cg->fd[c]);
        }
        cg->fd[c] = -1;
    }
}

void iso_cgroup_free(struct iso_cgroup *cg)
{
    if (cg == NULL) {
        return;
    }
    cgroup_close_fds(cg);
    cm_free(&cg->name);
    cm_free_raw(cg);
}

const char *iso_cgroup_name(const struct iso_cgroup *cg)
{
    return cg->name;
}

/* Remove what create made; best effort, the error being reported is the first. */
static void cgroup_undo(struct iso_cgroup *cg)
{
    struct cm_errbuf ignored;
    iso_cgroup_remove(cg, 0, &ignored);
}

static int cgroup_get(struct iso_cgroup_manager *m, const char *name,
                      const struct iso_limits *lim, bool create, struct iso_cgroup **ret,
                      struct cm_errbuf *eb)
{
    if (!valid_name(name)) {
        return cm_err_setf(eb, CM_EINVAL, "bad cgroup name `%s`", name);
    }
    struct iso_cgroup *cg = cgroup_alloc(m, name);
    if (cg == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "cgroup `%s`", name);
    }
    int rv = m->ops->create(cg, create, eb);
    if (rv == 0 && lim != NULL) {
        rv = m->ops->set_limits(cg, lim, eb);
        if (rv != 0 && create) {
            cgroup_undo(cg);
        }
    }
    if (rv != 0) {
        iso_cgroup_free(cg);
        return cm_err_wrapf(eb, "cgroup `%s/%s`", m->parent, name);
    }
    *ret = cg;
    return 0;
}

int iso_cgroup_create(struct iso_cgroup_manager *m, const char *name,
                      const struct iso_limits *lim, struct iso_cgroup **ret,
                      struct cm_errbuf *eb)
{
    return cgroup_get(m, name, lim, true, ret, eb);
}

int iso_cgroup_open(struct iso_cgroup_manager *m, const char *name,
                    struct iso_cgroup **ret, struct cm_errbuf *eb)
{
    return cgroup_get(m, name, NULL, false, ret, eb);
}

int iso_cgroup_set_limits(struct iso_cgroup *cg, const struct iso_limits *lim,
                          struct cm_errbuf *eb)
{
    int rv = cg->m->ops->set_limits(cg, lim, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "cgroup `%s/%s`", cg->m->parent, cg->name);
    }
    return 0;
}

int iso_cgroup_add_pid(struct iso_cgroup *cg, pid_t pid, struct cm_errbuf *eb)
{
    int rv = cg->m->ops->add_pid(cg, pid, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "add pid %d to cgroup `%s/%s`", (int)pid, cg->m->parent,
                            cg->name);
    }
    return 0;
}

int iso_cgroup_pids(struct iso_cgroup *cg, pid_t **ret_pids, size_t *ret_n,
                    struct cm_errbuf *eb)
{
    int fd = cg->m->ops->procs_fd(cg);
    if (fd < 0) {
        return cm_err_setf(eb, CM_ENOTSUP, "cgroup `%s`: no hierarchy", cg->name);
    }
    char *text = NULL;
    size_t len = 0;
    int rv = iso__read_all_at(cg->m->sys, fd, "cgroup.procs", &text, &len);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "read `%s/%s/cgroup.procs`", cg->m->parent, cg->name);
    }
    rv = iso__parse_pids(text, len, ret_pids, ret_n);
    cm_free(&text);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "parse `%s/%s/cgroup.procs`", cg->m->parent, cg->name);
    }
    return 0;
}

#define POLL_MS 10

int iso_cgroup_kill(struct iso_cgroup *cg, unsigned timeout_ms, struct cm_errbuf *eb)
{
    unsigned waited = 0;
    for (;;) {
        pid_t *pids = NULL;
        size_t n = 0;
        int rv = iso_cgroup_pids(cg, &pids, &n, eb);
        cm_free(&pids);
        if (rv != 0) {
            return rv;
        }
        if (n == 0) {
            return 0;
        }
        if (waited >= timeout_ms) {
            return cm_err_setf(eb, CM_ETIMEDOUT,
                               "cgroup `%s/%s`: %zu processes left after kill",
                               cg->m->parent, cg->name, n);
        }
        rv = cg->m->ops->kill_pass(cg, eb);
        if (rv != 0) {
            return cm_err_wrapf(eb, "kill cgroup `%s/%s`", cg->m->parent, cg->name);
        }
        /* Killed processes leave cgroup.procs only once they are reaped or
         * released; poll briefly. */
        rv = iso__sleep_ms(cg->m->sys, POLL_MS);
        if (rv != 0) {
            return cm_err_sys(eb, rv, "sleep");
        }
        waited += POLL_MS;
    }
}

int iso_cgroup_kill_start(struct iso_cgroup *cg, struct cm_errbuf *eb)
{
    int rv = cg->m->ops->kill_pass(cg, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "kill cgroup `%s/%s`", cg->m->parent, cg->name);
    }
    return 0;
}

int iso_cgroup_oom(struct iso_cgroup *cg, struct iso_cg_oom *ret, struct cm_errbuf *eb)
{
    struct iso_cg_oom out;
    memset(&out, 0, sizeof(out));
    int rv = cg->m->ops->oom(cg, &out, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "cgroup `%s/%s`", cg->m->parent, cg->name);
    }
    *ret = out;
    return 0;
}

int iso_cgroup_stats(struct iso_cgroup *cg, struct iso_cg_stats *ret,
                     struct cm_errbuf *eb)
{
    struct iso_cg_stats out;
    memset(&out, 0, sizeof(out));
    out.mem_limit = ISO_UNLIMITED;
    int rv = cg->m->ops->stats(cg, &out, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "cgroup `%s/%s`", cg->m->parent, cg->name);
    }
    *ret = out;
    return 0;
}

int iso_cgroup_remove(struct iso_cgroup *cg, unsigned timeout_ms, struct cm_errbuf *eb)
{
    struct iso_cgroup_manager *m = cg->m;
    cgroup_close_fds(cg);
    unsigned waited = 0;
    for (int c = 0; c < ISO_CTRL__COUNT; c++) {
        if (m->same_as[c] != c || m->parent_fd[c] < 0) {
            continue;
        }
        for (;;) {
            int rv = iso__rmdirat(m->sys, m->parent_fd[c], cg->name);
            if (rv == 0 || rv == CM_ENOENT) {
                break;
            }
            if (rv != CM_EBUSY || waited >= timeout_ms) {
                return cm_err_sys(
                    eb, rv, "rmdir cgroup `%s/%s` (%s)", m->parent, cg->name,
                    m->ops->mode == ISO_CG_MODE_UNIFIED ? "v2" : iso_ctrl_name(c));
            }
            rv = iso__sleep_ms(m->sys, POLL_MS);
            if (rv != 0) {
                return cm_err_sys(eb, rv, "sleep");
            }
            waited += POLL_MS;
        }
    }
    return 0;
}
