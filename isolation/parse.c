/* Pure parsers for the kernel's cgroup and proc files (STYLE.md rule 19): string to
 * struct, no syscalls, no allocation. Inputs are (pointer, length) and need not be
 * NUL-terminated; every read is bounded by the length, which the fuzzer checks. */
#define ISO__INTERNAL
#include "isolation/isolation.h"

#include <string.h>

#include "base/base.h"

/* ------------------------------------------------------------------ helpers */

static bool str_eq(struct iso_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

/* Next line of [*pos, end): *ret is the line without '\n'. False at the end. */
static bool next_line(const char **pos, const char *end, struct iso_str *ret)
{
    if (*pos >= end) {
        return false;
    }
    const char *nl = memchr(*pos, '\n', (size_t)(end - *pos));
    const char *stop = nl != NULL ? nl : end;
    ret->ptr = *pos;
    ret->len = (size_t)(stop - *pos);
    *pos = nl != NULL ? nl + 1 : end;
    return true;
}

/* Split off the next field ending at @sep (or the end). */
static struct iso_str next_field(struct iso_str *rest, char sep, bool *found)
{
    struct iso_str f = {rest->ptr, rest->len};
    const char *p = rest->len ? memchr(rest->ptr, sep, rest->len) : NULL;
    if (p == NULL) {
        *found = false;
        rest->ptr += rest->len;
        rest->len = 0;
        return f;
    }
    *found = true;
    f.len = (size_t)(p - rest->ptr);
    rest->ptr = p + 1;
    rest->len -= f.len + 1;
    return f;
}

/* A whole unsigned decimal string, no sign, no spaces. */
static int parse_dec(struct iso_str s, uint64_t *ret)
{
    if (s.len == 0 || s.len > 20) {
        return s.len == 0 ? CM_EMALFORMED : CM_ERANGE;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c < '0' || c > '9') {
            return CM_EMALFORMED;
        }
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return CM_ERANGE;
        }
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

/* Drop one trailing '\n' (the way the kernel ends single-value files). */
static struct iso_str chomp(const char *text, size_t len)
{
    struct iso_str s = {text, len};
    if (s.len > 0 && s.ptr[s.len - 1] == '\n') {
        s.len--;
    }
    return s;
}

/* ------------------------------------------------------------------ /proc/<pid>/cgroup
 */

int iso_parse_proc_cgroup_line(const char *line, size_t len,
                               struct iso_proc_cgroup_line *ret)
{
    struct iso_str rest = chomp(line, len);
    bool found;
    struct iso_str id = next_field(&rest, ':', &found);
    if (!found) {
        return CM_EMALFORMED;
    }
    struct iso_str ctrls = next_field(&rest, ':', &found);
    if (!found) {
        return CM_EMALFORMED;
    }
    /* The path is the rest of the line: it may itself contain ':'. */
    uint64_t v;
    if (parse_dec(id, &v) != 0 || v > UINT32_MAX) {
        return CM_EMALFORMED;
    }
    if (rest.len == 0 || rest.ptr[0] != '/' || memchr(rest.ptr, '\n', rest.len)) {
        return CM_EMALFORMED;
    }
    /* v2 has id 0 and no controllers; v1 needs both. */
    if ((v == 0) != (ctrls.len == 0)) {
        return CM_EMALFORMED;
    }
    ret->id = (unsigned)v;
    ret->controllers = ctrls;
    ret->path = rest;
    return 0;
}

static bool list_has(struct iso_str list, const char *name)
{
    bool more = true;
    while (more) {
        struct iso_str item = next_field(&list, ',', &more);
        if (str_eq(item, name)) {
            return true;
        }
    }
    return false;
}

int iso_proc_cgroup_find(const char *text, size_t len, const char *controller,
                         struct iso_str *ret_path)
{
    const char *pos = text, *end = text + len;
    struct iso_str line;
    bool want_v2 = controller == NULL || controller[0] == '\0';
    bool found = false;
    struct iso_str path = {NULL, 0};
    while (next_line(&pos, end, &line)) {
        struct iso_proc_cgroup_line l;
        int rv = iso_parse_proc_cgroup_line(line.ptr, line.len, &l);
        if (rv != 0) {
            return rv;
        }
        if (found) {
            continue;
        }
        if (want_v2 ? l.id == 0 : list_has(l.controllers, controller)) {
            path = l.path;
            found = true;
        }
    }
    if (!found) {
        return CM_ENOTFOUND;
    }
    *ret_path = path;
    return 0;
}

/* ------------------------------------------------------------------ mountinfo */

/* proc(5): "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=..."
 * Fields are separated by single spaces; spaces inside paths are escaped as \040. */
static int unescape_octal(struct iso_str s, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '\\' && i + 3 < s.len && s.ptr[i + 1] >= '0' && s.ptr[i + 1] <= '3' &&
            s.ptr[i + 2] >= '0' && s.ptr[i + 2] <= '7' && s.ptr[i + 3] >= '0' &&
            s.ptr[i + 3] <= '7') {
            c = (char)((s.ptr[i + 1] - '0') * 64 + (s.ptr[i + 2] - '0') * 8 +
                       (s.ptr[i + 3] - '0'));
            i += 3;
        }
        if (c == '\0') {
            return CM_EMALFORMED;
        }
        if (o + 1 >= cap) {
            return CM_ETOOBIG;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int iso_parse_mountinfo_line(const char *line, size_t len, struct iso_mountinfo_line *ret)
{
    struct iso_str rest = chomp(line, len);
    struct iso_str f[6];
    bool found = true;
    if (memchr(rest.ptr, '\n', rest.len) != NULL) {
        return CM_EMALFORMED;
    }
    /* mount id, parent id, major:minor, root, mount point, mount options */
    for (int i = 0; i < 6; i++) {
        if (!found) {
            return CM_EMALFORMED;
        }
        f[i] = next_field(&rest, ' ', &found);
        if (f[i].len == 0) {
            return CM_EMALFORMED;
        }
    }
    uint64_t v;
    if (parse_dec(f[0], &v) != 0 || parse_dec(f[1], &v) != 0 ||
        memchr(f[2].ptr, ':', f[2].len) == NULL) {
        return CM_EMALFORMED;
    }
    /* Optional fields up to the "-" separator. */
    for (;;) {
        if (!found) {
            return CM_EMALFORMED;
        }
        struct iso_str opt = next_field(&rest, ' ', &found);
        if (str_eq(opt, "-")) {
            break;
        }
    }
    if (!found) {
        return CM_EMALFORMED;
    }
    struct iso_str fstype = next_field(&rest, ' ', &found);
    if (!found || fstype.len == 0) {
        return CM_EMALFORMED;
    }
    (void)next_field(&rest, ' ', &found); /* mount source */
    if (!found) {
        return CM_EMALFORMED;
    }
    struct iso_str super = next_field(&rest, ' ', &found);
    if (found) {
        return CM_EMALFORMED; /* trailing fields */
    }
    struct iso_mountinfo_line out;
    int rv = unescape_octal(f[4], out.mount_point, sizeof(out.mount_point));
    if (rv != 0) {
        return rv;
    }
    if (out.mount_point[0] != '/') {
        return CM_EMALFORMED;
    }
    out.root = f[3];
    out.fstype = fstype;
    out.options = super;
    *ret = out;
    return 0;
}

static const char *const ctrl_names[ISO_CTRL__COUNT] = {
    [ISO_CTRL_CPU] = "cpu",         [ISO_CTRL_CPUACCT] = "cpuacct",
    [ISO_CTRL_MEMORY] = "memory",   [ISO_CTRL_PIDS] = "pids",
    [ISO_CTRL_FREEZER] = "freezer",
};

const char *iso_ctrl_name(enum iso_ctrl c)
{
    return (unsigned)c < ISO_CTRL__COUNT ? ctrl_names[c] : "?";
}

/* Controllers a v1 mount carries that count for "this host uses v1": any known
 * controller name in its super options, not the named (name=...) hierarchies. */
static bool v1_has_any_controller(struct iso_str opts)
{
    static const char *const known[] = {
        "cpu",   "cpuacct",    "cpuset",   "memory",  "devices", "freezer", "net_cls",
        "blkio", "perf_event", "net_prio", "hugetlb", "pids",    "rdma",    "misc"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(known); i++) {
        if (list_has(opts, known[i])) {
            return true;
        }
    }
    return false;
}

int iso_parse_cg_layout(const char *text, size_t len, struct iso_cg_layout *ret)
{
    struct iso_cg_layout out;
    memset(&out, 0, sizeof(out));
    bool any_v1 = false;
    const char *pos = text, *end = text + len;
    struct iso_str line;
    while (next_line(&pos, end, &line)) {
        if (line.len == 0) {
            continue;
        }
        struct iso_mountinfo_line mi;
        int rv = iso_parse_mountinfo_line(line.ptr, line.len, &mi);
        if (rv != 0) {
            return rv;
        }
        if (str_eq(mi.fstype, "cgroup2")) {
            if (out.v2_mount[0] == '\0') {
                memcpy(out.v2_mount, mi.mount_point, sizeof(out.v2_mount));
            }
            continue;
        }
        if (!str_eq(mi.fstype, "cgroup") || !v1_has_any_controller(mi.options)) {
            continue;
        }
        any_v1 = true;
        for (int c = 0; c < ISO_CTRL__COUNT; c++) {
            if (out.v1_mount[c][0] == '\0' && list_has(mi.options, ctrl_names[c])) {
                memcpy(out.v1_mount[c], mi.mount_point, sizeof(out.v1_mount[c]));
            }
        }
    }
    if (any_v1) {
        out.mode = out.v2_mount[0] ? ISO_CG_MODE_HYBRID : ISO_CG_MODE_LEGACY;
    } else {
        out.mode = out.v2_mount[0] ? ISO_CG_MODE_UNIFIED : ISO_CG_MODE_NONE;
    }
    *ret = out;
    return 0;
}

/* ------------------------------------------------------------------ value files */

int iso_parse_u64(const char *text, size_t len, uint64_t *ret)
{
    return parse_dec(chomp(text, len), ret);
}

int iso_parse_status_file(const char *text, size_t len, int *ret_code)
{
    uint64_t v;
    int rv = parse_dec(chomp(text, len), &v);
    if (rv != 0) {
        return rv;
    }
    if (v > 255) {
        return CM_ERANGE;
    }
    *ret_code = (int)v;
    return 0;
}

int iso_parse_limit(const char *text, size_t len, uint64_t *ret)
{
    struct iso_str s = chomp(text, len);
    if (str_eq(s, "max")) {
        *ret = ISO_UNLIMITED;
        return 0;
    }
    return parse_dec(s, ret);
}

int iso_parse_cpu_max(const char *text, size_t len, struct iso_cpu_max *ret)
{
    struct iso_str rest = chomp(text, len);
    bool found;
    struct iso_str q = next_field(&rest, ' ', &found);
    if (!found) {
        return CM_EMALFORMED;
    }
    struct iso_cpu_max out;
    int rv;
    if (str_eq(q, "max")) {
        out.quota_us = ISO_UNLIMITED;
    } else if ((rv = parse_dec(q, &out.quota_us)) != 0) {
        return rv;
    }
    if ((rv = parse_dec(rest, &out.period_us)) != 0) {
        return rv;
    }
    if (out.period_us == 0) {
        return CM_EMALFORMED;
    }
    *ret = out;
    return 0;
}

/* Walk "key value" lines; @fn sees each pair. Any malformed line fails the text. */
typedef void (*keyed_fn)(struct iso_str key, uint64_t value, void *arg);

static int keyed_walk(const char *text, size_t len, keyed_fn fn, void *arg)
{
    const char *pos = text, *end = text + len;
    struct iso_str line;
    while (next_line(&pos, end, &line)) {
        bool found;
        struct iso_str key = next_field(&line, ' ', &found);
        if (!found || key.len == 0) {
            return CM_EMALFORMED;
        }
        uint64_t v;
        int rv = parse_dec(line, &v);
        if (rv != 0) {
            return CM_EMALFORMED;
        }
        fn(key, v, arg);
    }
    return 0;
}

struct keyed_find {
    const char *key;
    bool found;
    uint64_t value;
};

static void keyed_find_fn(struct iso_str key, uint64_t value, void *arg)
{
    struct keyed_find *kf = arg;
    if (!kf->found && str_eq(key, kf->key)) {
        kf->found = true;
        kf->value = value;
    }
}

int iso_parse_keyed(const char *text, size_t len, const char *key, uint64_t *ret)
{
    struct keyed_find kf = {key, false, 0};
    int rv = keyed_walk(text, len, keyed_find_fn, &kf);
    if (rv != 0) {
        return rv;
    }
    if (!kf.found) {
        return CM_ENOTFOUND;
    }
    *ret = kf.value;
    return 0;
}

/* A table-driven mapping from keys to uint64_t fields of a struct. */
struct key_field {
    const char *key;
    size_t offset;
};

struct keyed_fill {
    const struct key_field *fields;
    size_t n;
    void *out;
};

static void keyed_fill_fn(struct iso_str key, uint64_t value, void *arg)
{
    struct keyed_fill *kf = arg;
    for (size_t i = 0; i < kf->n; i++) {
        if (str_eq(key, kf->fields[i].key)) {
            memcpy((char *)kf->out + kf->fields[i].offset, &value, sizeof(value));
            return;
        }
    }
}

static int keyed_fill(const char *text, size_t len, const struct key_field *fields,
                      size_t n, void *out)
{
    struct keyed_fill kf = {fields, n, out};
    return keyed_walk(text, len, keyed_fill_fn, &kf);
}

#define KF(type, key, field)       \
    {                              \
        key, offsetof(type, field) \
    }

int iso_parse_mem_events(const char *text, size_t len, struct iso_mem_events *ret)
{
    static const struct key_field fields[] = {
        KF(struct iso_mem_events, "low", low),
        KF(struct iso_mem_events, "high", high),
        KF(struct iso_mem_events, "max", max),
        KF(struct iso_mem_events, "oom", oom),
        KF(struct iso_mem_events, "oom_kill", oom_kill),
        KF(struct iso_mem_events, "oom_group_kill", oom_group_kill),
    };
    struct iso_mem_events out;
    memset(&out, 0, sizeof(out));
    int rv = keyed_fill(text, len, fields, CM_ARRAY_SIZE(fields), &out);
    if (rv == 0) {
        *ret = out;
    }
    return rv;
}

int iso_parse_oom_control(const char *text, size_t len, struct iso_oom_control *ret)
{
    struct raw {
        uint64_t disable, under, kill;
    } raw = {0, 0, 0};
    static const struct key_field fields[] = {
        KF(struct raw, "oom_kill_disable", disable),
        KF(struct raw, "under_oom", under),
        KF(struct raw, "oom_kill", kill),
    };
    int rv = keyed_fill(text, len, fields, CM_ARRAY_SIZE(fields), &raw);
    if (rv != 0) {
        return rv;
    }
    if (raw.disable > 1 || raw.under > 1) {
        return CM_EMALFORMED;
    }
    ret->oom_kill_disable = raw.disable != 0;
    ret->under_oom = raw.under != 0;
    ret->oom_kill = raw.kill;
    return 0;
}

int iso_parse_cpu_stat(const char *text, size_t len, struct iso_cpu_stat *ret)
{
    struct raw {
        struct iso_cpu_stat s;
        uint64_t throttled_ns; /* v1 throttled_time */
    } raw;
    static const struct key_field fields[] = {
        KF(struct raw, "usage_usec", s.usage_usec),
        KF(struct raw, "user_usec", s.user_usec),
        KF(struct raw, "system_usec", s.system_usec),
        KF(struct raw, "nr_periods", s.nr_periods),
        KF(struct raw, "nr_throttled", s.nr_throttled),
        KF(struct raw, "throttled_usec", s.throttled_usec),
        KF(struct raw, "throttled_time", throttled_ns),
    };
    memset(&raw, 0, sizeof(raw));
    int rv = keyed_fill(text, len, fields, CM_ARRAY_SIZE(fields), &raw);
    if (rv != 0) {
        return rv;
    }
    if (raw.s.throttled_usec == 0) {
        raw.s.throttled_usec = raw.throttled_ns / 1000;
    }
    *ret = raw.s;
    return 0;
}

int iso_parse_mem_stat(const char *text, size_t len, struct iso_mem_stat *ret)
{
    /* v1 has both the cgroup's own counters and hierarchical totals; the totals
     * win, since a task's processes may sit in child cgroups. */
    struct raw {
        struct iso_mem_stat s;
        uint64_t rss, cache, shmem, swap;
        uint64_t total_rss, total_cache, total_shmem, total_swap;
        uint64_t seen_total;
    } raw;
    static const struct key_field fields[] = {
        KF(struct raw, "anon", s.anon),
        KF(struct raw, "file", s.file),
        KF(struct raw, "shmem", shmem),
        KF(struct raw, "pgfault", s.pgfault),
        KF(struct raw, "pgmajfault", s.pgmajfault),
        KF(struct raw, "rss", rss),
        KF(struct raw, "cache", cache),
        KF(struct raw, "swap", swap),
        KF(struct raw, "total_rss", total_rss),
        KF(struct raw, "total_cache", total_cache),
        KF(struct raw, "total_shmem", total_shmem),
        KF(struct raw, "total_swap", total_swap),
        KF(struct raw, "total_pgfault", seen_total),
    };
    memset(&raw, 0, sizeof(raw));
    int rv = keyed_fill(text, len, fields, CM_ARRAY_SIZE(fields), &raw);
    if (rv != 0) {
        return rv;
    }
    struct iso_mem_stat out = raw.s;
    out.shmem = raw.shmem;
    if (raw.rss || raw.cache || raw.swap || raw.total_rss || raw.total_cache ||
        raw.total_swap || raw.seen_total) {
        bool total = raw.total_rss || raw.total_cache || raw.total_shmem ||
                     raw.total_swap || raw.seen_total;
        out.anon = total ? raw.total_rss : raw.rss;
        out.file = total ? raw.total_cache : raw.cache;
        out.shmem = total ? raw.total_shmem : raw.shmem;
        out.swap = total ? raw.total_swap : raw.swap;
    }
    *ret = out;
    return 0;
}

/* ------------------------------------------------------------------ cgroup.procs */

int iso__parse_pids(const char *text, size_t len, pid_t **ret, size_t *ret_n)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        n += text[i] == '\n';
    }
    n += len > 0 && text[len - 1] != '\n';
    pid_t *pids = cm_malloc((n ? n : 1) * sizeof(*pids));
    if (pids == NULL) {
        return CM_ENOMEM;
    }
    const char *pos = text, *end = text + len;
    struct iso_str line;
    size_t k = 0;
    while (next_line(&pos, end, &line)) {
        uint64_t v;
        if (parse_dec(line, &v) != 0 || v == 0 || v > INT32_MAX) {
            cm_free(&pids);
            return CM_EMALFORMED;
        }
        pids[k++] = (pid_t)v;
    }
    *ret = pids;
    *ret_n = k;
    return 0;
}

/* ------------------------------------------------------------------ limits */

uint64_t iso_cpu_shares(double cpus)
{
    if (!(cpus > 0)) {
        return 1024;
    }
    double v = cpus * 1024.0;
    if (v > 262144.0) {
        return 262144; /* the kernel's MAX_SHARES */
    }
    return v < 2.0 ? 2 : (uint64_t)v;
}

uint64_t iso_cpu_weight(double cpus)
{
    if (!(cpus > 0)) {
        return 100;
    }
    double v = cpus * 100.0 + 0.5;
    if (v > 10000.0) {
        return 10000;
    }
    return v < 1.0 ? 1 : (uint64_t)v;
}

uint64_t iso_cpu_quota_us(double cpus, uint64_t period_us)
{
    double v = cpus * (double)period_us + 0.5;
    if (!(v >= 1000.0)) {
        return 1000;
    }
    if (v > 1e15) {
        return 1000000000000000ull;
    }
    return (uint64_t)v;
}

uint64_t iso_mem_bytes(double mib)
{
    double v = mib * 1048576.0;
    if (!(v >= 4096.0)) {
        return 4096;
    }
    if (v >= 9.2e18) {
        return ISO_UNLIMITED;
    }
    uint64_t b = (uint64_t)v;
    return b & ~(uint64_t)4095;
}
