/* isolation/: task isolation for clusterctl (DESIGN.md §7).
 *
 * Three layers behind this one header:
 *
 *  1. Pure parsers (string to struct, no syscalls; STYLE.md rule 19) for the kernel
 *     files we read: /proc/<pid>/cgroup, /proc/self/mountinfo, cpu.max,
 *     memory.max, memory.events, memory.stat, cpu.stat, v1 memory.oom_control and
 *     the single-number files. They never allocate and never read outside the
 *     bytes given (the input need not be NUL-terminated).
 *  2. The cgroup manager (struct iso_cgroup_manager): one directory per task under a
 *     clusterctl-owned parent, limits, membership, kill, OOM and usage. cgroupfs v2
 *     first, v1 (legacy or hybrid) second, behind a small vtable picked at start-up
 *     by iso_cgroup_detect(). Every file is opened with openat() relative to a
 *     directory fd, O_CLOEXEC, and every syscall goes through a swappable table
 *     (struct iso_sys) and is retried on EINTR (rules 3 and 21).
 *  3. Launch (iso_spawn): a child in new PID, mount, UTS and IPC namespaces
 *     (network optional) that joins the task's cgroup, gets a private /tmp and a
 *     fresh /proc, and runs the task under a small init (PID 1 of the namespace).
 *     Errors before exec come back over a sync socket as (errno, message).
 *
 * Errors are negative cm_err codes (lib/base/base.h). Boundary functions take a
 * caller-owned struct cm_errbuf (may be NULL) filled with the context. Unless said
 * otherwise, pointers passed in are borrowed for the duration of the call.
 *
 * Thread safety: none; each manager and cgroup is used from one thread. iso_spawn
 * clones the caller: the child uses only async-signal-safe calls (and snprintf)
 * until it execs, and the fork-based init forks the task with _Fork(). A
 * multi-threaded daemon should still prefer the re-exec'd init
 * (iso_spawn_opts.init_path), which starts from a fresh image.
 */
#ifndef ISO_H
#define ISO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct cm_errbuf;

/* "max" in a limit file. */
#define ISO_UNLIMITED UINT64_MAX

/* ======================================================================= parsers */

/* A borrowed slice of the input. Not NUL-terminated. */
struct iso_str {
    const char *ptr;
    size_t len;
};

/* One line of /proc/<pid>/cgroup: "hierarchy-ID:controller-list:cgroup-path".
 * v2 is the line with id 0 and an empty controller list ("0::/path"); v1 lines
 * name their controllers ("4:memory:/x", "2:cpu,cpuacct:/x", "1:name=systemd:/"). */
struct iso_proc_cgroup_line {
    unsigned id;
    struct iso_str controllers; /* comma separated; empty for v2 */
    struct iso_str path;        /* starts with '/' */
};

/* Parse one line (without or with its trailing '\n').
 * Errors: CM_EMALFORMED (missing fields, bad id, path not absolute). */
int iso_parse_proc_cgroup_line(const char *line, size_t len,
                               struct iso_proc_cgroup_line *ret);

/* Find in a whole /proc/<pid>/cgroup text the path of @controller ("memory"), or of
 * the v2 hierarchy when @controller is NULL or "". Lines that fail to parse make
 * the whole text malformed.
 * Errors: CM_EMALFORMED, CM_ENOTFOUND (no such hierarchy). */
int iso_proc_cgroup_find(const char *text, size_t len, const char *controller,
                         struct iso_str *ret_path);

/* The cgroup-related content of one /proc/self/mountinfo line. The mount point is
 * unescaped (\040 and friends) into @mount_point. */
#define ISO_MOUNT_PATH_MAX 256
struct iso_mountinfo_line {
    char mount_point[ISO_MOUNT_PATH_MAX];
    struct iso_str root;    /* root of the mount within its filesystem */
    struct iso_str fstype;  /* "cgroup", "cgroup2", "tmpfs", ... */
    struct iso_str options; /* super options: "rw,memory" for v1 cgroups */
};

/* Parse one mountinfo line (proc(5) format, optional fields and all).
 * Errors: CM_EMALFORMED, CM_ETOOBIG (mount point longer than ISO_MOUNT_PATH_MAX-1). */
int iso_parse_mountinfo_line(const char *line, size_t len,
                             struct iso_mountinfo_line *ret);

/* The controllers the manager uses. */
enum iso_ctrl {
    ISO_CTRL_CPU = 0, /* weight/shares and quota */
    ISO_CTRL_CPUACCT, /* v1 CPU usage (v2: part of the core, cpu.stat) */
    ISO_CTRL_MEMORY,  /* limit, usage, OOM */
    ISO_CTRL_PIDS,    /* process count limit */
    ISO_CTRL_FREEZER, /* v1 freeze for kill (v2: cgroup.freeze in the core) */
    ISO_CTRL__COUNT,
};

/* The kernel name of @c ("cpu", "memory", ...). */
const char *iso_ctrl_name(enum iso_ctrl c);

enum iso_cg_mode {
    ISO_CG_MODE_NONE = 0, /* no cgroup filesystem found */
    ISO_CG_MODE_LEGACY,   /* v1 controller hierarchies only */
    ISO_CG_MODE_HYBRID,   /* v1 controllers plus a (usually empty) v2 mount */
    ISO_CG_MODE_UNIFIED,  /* v2 only */
};

/* Where the cgroup filesystems are mounted. Empty strings mean "not mounted". For
 * v1, controllers mounted together ("cpu,cpuacct") have the same path. */
struct iso_cg_layout {
    enum iso_cg_mode mode;
    char v2_mount[ISO_MOUNT_PATH_MAX];
    char v1_mount[ISO_CTRL__COUNT][ISO_MOUNT_PATH_MAX];
};

/* Classify the cgroup mounts of a whole /proc/self/mountinfo text. The first mount
 * of each kind wins; v1 hierarchies without any controller (name=systemd) do not
 * count. Errors: CM_EMALFORMED, CM_ETOOBIG (see iso_parse_mountinfo_line). */
int iso_parse_cg_layout(const char *text, size_t len, struct iso_cg_layout *ret);

/* A limit file: "max" -> ISO_UNLIMITED, or a decimal number, optionally followed by
 * '\n' (memory.max, pids.max, memory.swap.max). Errors: CM_EMALFORMED, CM_ERANGE. */
int iso_parse_limit(const char *text, size_t len, uint64_t *ret);

/* A file holding one unsigned decimal number and an optional '\n'
 * (pids.current, memory.current, memory.max_usage_in_bytes, cpuacct.usage,
 * memory.failcnt). Errors: CM_EMALFORMED, CM_ERANGE. */
int iso_parse_u64(const char *text, size_t len, uint64_t *ret);

/* v2 cpu.max: "$MAX $PERIOD" where $MAX is "max" or a number. */
struct iso_cpu_max {
    uint64_t quota_us; /* ISO_UNLIMITED for "max" */
    uint64_t period_us;
};
/* Errors: CM_EMALFORMED, CM_ERANGE. A period of 0 is malformed. */
int iso_parse_cpu_max(const char *text, size_t len, struct iso_cpu_max *ret);

/* Flat keyed files, "key value\n" per line: look up @key.
 * Errors: CM_EMALFORMED (a line is not "key number"), CM_ENOTFOUND. */
int iso_parse_keyed(const char *text, size_t len, const char *key, uint64_t *ret);

/* v2 memory.events. Missing keys are 0. */
struct iso_mem_events {
    uint64_t low, high, max;
    uint64_t oom;            /* the limit was hit and the OOM path ran */
    uint64_t oom_kill;       /* processes killed by the OOM killer */
    uint64_t oom_group_kill; /* whole-group kills (memory.oom.group) */
};
/* Errors: CM_EMALFORMED. */
int iso_parse_mem_events(const char *text, size_t len, struct iso_mem_events *ret);

/* v1 memory.oom_control. oom_kill is missing before Linux 4.13 (then 0). */
struct iso_oom_control {
    bool oom_kill_disable;
    bool under_oom;
    uint64_t oom_kill;
};
/* Errors: CM_EMALFORMED. */
int iso_parse_oom_control(const char *text, size_t len, struct iso_oom_control *ret);

/* cpu.stat, v2 (usage_usec, user_usec, system_usec, nr_periods, nr_throttled,
 * throttled_usec) or v1 (nr_periods, nr_throttled, throttled_time in ns).
 * Missing keys are 0; throttled_time is converted to microseconds. */
struct iso_cpu_stat {
    uint64_t usage_usec, user_usec, system_usec;
    uint64_t nr_periods, nr_throttled, throttled_usec;
};
/* Errors: CM_EMALFORMED. */
int iso_parse_cpu_stat(const char *text, size_t len, struct iso_cpu_stat *ret);

/* memory.stat, v2 or v1. Values are bytes (counts for the pg* fields). For v1 the
 * hierarchical totals (total_rss, total_cache, ...) are used when present. */
struct iso_mem_stat {
    uint64_t anon;  /* v2 anon, v1 total_rss or rss */
    uint64_t file;  /* v2 file, v1 total_cache or cache */
    uint64_t shmem; /* v2 shmem, v1 total_shmem or shmem */
    uint64_t swap;  /* v1 total_swap or swap; v2: 0 (see memory.swap.current) */
    uint64_t pgfault, pgmajfault;
};
/* Errors: CM_EMALFORMED. */
int iso_parse_mem_stat(const char *text, size_t len, struct iso_mem_stat *ret);

/* ======================================================================= limits */

/* What an app asks for (Marathon's cpus, mem, plus a pids limit). Zero means
 * "no limit" for each field. */
struct iso_limits {
    double cpus;       /* CPU share; also the quota when cpu_quota is set */
    bool cpu_quota;    /* enforce cpus as a hard quota (CFS bandwidth) */
    double mem_mib;    /* memory limit in MiB; swap is disabled where possible */
    uint64_t pids_max; /* maximum number of tasks (processes and threads) */
};

#define ISO_CPU_PERIOD_US 100000 /* 100 ms, the kernel's default period */

/* v1 cpu.shares for @cpus: cpus * 1024, at least 2 (the kernel's minimum). */
uint64_t iso_cpu_shares(double cpus);
/* v2 cpu.weight for @cpus: cpus * 100 (1 CPU = the default weight 100), clamped to
 * [1, 10000]. */
uint64_t iso_cpu_weight(double cpus);
/* CFS quota for @cpus per @period_us: at least 1000 us (the kernel's minimum). */
uint64_t iso_cpu_quota_us(double cpus, uint64_t period_us);
/* Bytes for @mib MiB, rounded down to a 4096-byte page, at least one page. */
uint64_t iso_mem_bytes(double mib);

/* ======================================================================= syscalls */

/* The syscalls the cgroup manager makes, swappable so tests can inject EINTR, EIO,
 * ENOSPC (STYLE.md rule 3). Each behaves like its libc namesake: -1 and errno on
 * failure. The manager retries EINTR itself. */
struct iso_sys {
    int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
    ssize_t (*read)(int fd, void *buf, size_t n);
    ssize_t (*write)(int fd, const void *buf, size_t n);
    int (*close)(int fd);
    int (*mkdirat)(int dirfd, const char *path, mode_t mode);
    int (*unlinkat)(int dirfd, const char *path, int flags);
    int (*kill)(pid_t pid, int sig);
    int (*nanosleep)(const struct timespec *req, struct timespec *rem);
};

/* The real syscalls. Static; never freed. */
const struct iso_sys *iso_sys_default(void);

/* ======================================================================= cgroups */

/* Read /proc/self/mountinfo and classify the cgroup mounts.
 * Errors: as iso_parse_cg_layout, plus the errno of reading the file. */
int iso_cg_layout_detect(struct iso_cg_layout *ret, struct cm_errbuf *eb);

struct iso_cgroup_manager; /* opaque */
struct iso_cgroup;         /* opaque: one task's cgroup */

struct iso_cg_opts {
    /* The clusterctl-owned parent, relative to each hierarchy's root, created when
     * missing ("clusterctl", or "system.slice/clusterctl.service/tasks"). NULL:
     * "clusterctl". Copied. */
    const char *parent;
    /* Syscall table; NULL: iso_sys_default(). Borrowed until the manager is freed. */
    const struct iso_sys *sys;
};

/* Make a manager for an explicit layout (tests point it at a fake tree).
 * ISO_CG_MODE_UNIFIED uses v2 at layout->v2_mount; LEGACY and HYBRID use the v1
 * controller hierarchies. Opens the hierarchy roots and creates the parent.
 * On success *ret is the manager (free with iso_cgroup_manager_free).
 * Errors: CM_ENOMEM, CM_EINVAL (bad parent path, mode NONE), CM_ENOTSUP (no
 * usable hierarchy), errno of open/mkdir (in @eb with the path). */
int iso_cgroup_manager_new(const struct iso_cg_layout *layout,
                           const struct iso_cg_opts *opts,
                           struct iso_cgroup_manager **ret, struct cm_errbuf *eb);

/* Detect the layout of this host (iso_cg_layout_detect) and make the manager:
 * unified -> v2; legacy -> v1; hybrid -> v2 when the v2 mount offers the memory
 * controller, else v1. Errors: as iso_cgroup_manager_new and detection; CM_ENOTSUP
 * when no cgroup filesystem is mounted. */
int iso_cgroup_detect(const struct iso_cg_opts *opts, struct iso_cgroup_manager **ret,
                      struct cm_errbuf *eb);

/* Accepts NULL. Does not remove any cgroup. */
void iso_cgroup_manager_free(struct iso_cgroup_manager *m);

/* "cgroupfs-v2" or "cgroupfs-v1". Static. */
const char *iso_cgroup_manager_name(const struct iso_cgroup_manager *m);
/* ISO_CG_MODE_UNIFIED for the v2 manager, ISO_CG_MODE_LEGACY for v1. */
enum iso_cg_mode iso_cgroup_manager_mode(const struct iso_cgroup_manager *m);
/* Whether the manager can apply limits through controller @c. */
bool iso_cgroup_manager_has(const struct iso_cgroup_manager *m, enum iso_ctrl c);

/* Names of the task cgroups that exist under the parent, for re-adoption after a
 * daemon restart. *ret_names is an array of *ret_n strings; free with
 * iso_names_free. Errors: CM_ENOMEM, errno of reading the directory. */
int iso_cgroup_manager_list(struct iso_cgroup_manager *m, char ***ret_names,
                            size_t *ret_n, struct cm_errbuf *eb);
void iso_names_free(char **names, size_t n);

/* Create the cgroup @name (one path component, e.g. the task id) under the parent,
 * enable the needed controllers (v2 cgroup.subtree_control of its ancestors), and
 * apply @lim (may be NULL). An existing cgroup of that name is reused. On success
 * *ret is the handle (iso_cgroup_free). On failure nothing created is left behind.
 * Errors: CM_EINVAL (bad name), CM_ENOTSUP (a limit needs a controller the
 * hierarchy lacks), CM_ENOMEM, errno of the syscalls. */
int iso_cgroup_create(struct iso_cgroup_manager *m, const char *name,
                      const struct iso_limits *lim, struct iso_cgroup **ret,
                      struct cm_errbuf *eb);

/* Open the existing cgroup @name (re-adoption). Errors: CM_ENOENT, as create. */
int iso_cgroup_open(struct iso_cgroup_manager *m, const char *name,
                    struct iso_cgroup **ret, struct cm_errbuf *eb);

/* Close the handle. Accepts NULL. The cgroup stays. */
void iso_cgroup_free(struct iso_cgroup *cg);

/* The name given at create/open. Borrowed until iso_cgroup_free. */
const char *iso_cgroup_name(const struct iso_cgroup *cg);

/* (Re)apply limits. Zero fields reset the limit to "max" (v1: -1 / unlimited).
 * Errors: CM_ENOTSUP, errno of the write with the file's name in @eb. */
int iso_cgroup_set_limits(struct iso_cgroup *cg, const struct iso_limits *lim,
                          struct cm_errbuf *eb);

/* Move process @pid (the whole thread group) into the cgroup, in every hierarchy.
 * Errors: errno of the write (CM_ENOENT/ESRCH: no such process). */
int iso_cgroup_add_pid(struct iso_cgroup *cg, pid_t pid, struct cm_errbuf *eb);

/* The processes in the cgroup (cgroup.procs), in kernel order. *ret_pids is
 * allocated with cm_malloc (free with cm_free) even when *ret_n is 0.
 * Errors: CM_ENOMEM, CM_EMALFORMED, errno of the read. */
int iso_cgroup_pids(struct iso_cgroup *cg, pid_t **ret_pids, size_t *ret_n,
                    struct cm_errbuf *eb);

/* One kill pass without waiting: SIGKILL every current member (v2 cgroup.kill
 * when the kernel has it, else freeze, SIGKILL each pid, thaw; the v1 freeze may
 * wait up to ~100 ms for FROZEN). For event loops: the caller learns that the
 * processes are gone from its own watchers and may call it again.
 * Errors: errno of the syscalls. */
int iso_cgroup_kill_start(struct iso_cgroup *cg, struct cm_errbuf *eb);

/* Kill every process in the cgroup with SIGKILL and wait until it is empty: v2
 * cgroup.kill when the kernel has it, else freeze, SIGKILL each pid, thaw; looping
 * until cgroup.procs is empty or @timeout_ms passes.
 * Errors: CM_ETIMEDOUT (processes remain), errno of the syscalls. */
int iso_cgroup_kill(struct iso_cgroup *cg, unsigned timeout_ms, struct cm_errbuf *eb);

/* OOM information. */
struct iso_cg_oom {
    uint64_t oom_kill; /* processes the OOM killer killed in this cgroup */
    uint64_t oom;      /* v2: times the OOM path ran; v1: 0 */
    uint64_t failcnt;  /* v1: times the limit was hit (memory.failcnt); v2: 0 */
    bool under_oom;    /* v1: the cgroup is stuck in OOM (oom_kill_disable) */
};
/* Read the OOM state (v2 memory.events; v1 memory.oom_control + memory.failcnt).
 * A task was OOM-killed when oom_kill > 0.
 * Errors: CM_ENOTSUP (no memory controller), errno of the reads, CM_EMALFORMED. */
int iso_cgroup_oom(struct iso_cgroup *cg, struct iso_cg_oom *ret, struct cm_errbuf *eb);

/* Usage. Fields the hierarchy cannot provide are 0. */
struct iso_cg_stats {
    uint64_t cpu_usage_ns;  /* total CPU time */
    uint64_t cpu_user_ns;   /* v2 only */
    uint64_t cpu_system_ns; /* v2 only */
    uint64_t nr_throttled;  /* periods throttled by the quota */
    uint64_t throttled_ns;
    uint64_t mem_current; /* bytes charged now */
    uint64_t mem_peak;    /* high-water mark (v2 memory.peak needs Linux 5.19) */
    uint64_t mem_limit;   /* ISO_UNLIMITED when none */
    struct iso_mem_stat mem;
    uint64_t pids_current;
};
/* Errors: errno of the reads, CM_EMALFORMED. Missing optional files are not errors. */
int iso_cgroup_stats(struct iso_cgroup *cg, struct iso_cg_stats *ret,
                     struct cm_errbuf *eb);

/* Remove the cgroup directories (rmdir in every hierarchy), retrying for up to
 * @timeout_ms while processes are still leaving it (EBUSY). Already-removed
 * directories are fine. The handle stays valid for iso_cgroup_free only.
 * Errors: CM_EBUSY (still in use after the timeout), errno of rmdir. */
int iso_cgroup_remove(struct iso_cgroup *cg, unsigned timeout_ms, struct cm_errbuf *eb);

/* ======================================================================= launch */

enum iso_spawn_flags {
    ISO_SPAWN_NEWNET = 1u << 0,   /* also a new network namespace (loopback only) */
    ISO_SPAWN_NO_TMPFS = 1u << 1, /* keep the host /tmp instead of a private tmpfs */
    ISO_SPAWN_NO_NEWNS = 1u << 2, /* tests only: no namespaces at all */
};

struct iso_spawn_opts {
    /* Exactly one of cmd and argv. cmd (Marathon `cmd`) runs as `/bin/sh -c cmd`;
     * argv (Marathon `args`) is exec'd directly, argv[0] searched in the task's
     * PATH. Borrowed. */
    const char *cmd;
    char *const *argv;
    /* The task's whole environment ("K=V", NULL-terminated); NULL: empty. */
    char *const *envp;
    /* The sandbox directory, the task's working directory. Required. */
    const char *workdir;
    /* Hostname in the new UTS namespace; NULL keeps the host's. */
    const char *hostname;
    /* Where the task's stdout and stderr go (e.g. pipe write ends); -1: /dev/null.
     * Borrowed: the caller closes its copies after the call. stdin is /dev/null. */
    int stdout_fd;
    int stderr_fd;
    /* The cgroup to run in, joined before the task starts; NULL: stay. Borrowed. */
    struct iso_cgroup *cgroup;
    unsigned flags; /* enum iso_spawn_flags */
    /* When set, the init is this binary re-exec'd as `<init_path> __init ...`
     * (iso_init_main); else it runs in the forked child of this process. */
    const char *init_path;
    /* How long to wait for the child to report exec (ms); 0: 30 s. */
    unsigned timeout_ms;
    /* When set, the init writes the task's exit code (what it exits with, as
     * decimal text and '\n') to this file just before it exits: first to
     * "<status_file>.tmp", then renamed, so a reader sees all or nothing. A
     * supervisor that is not the init's parent (re-adopted after a daemon restart)
     * learns the status from it. A relative path is resolved against @workdir (the
     * init's working directory); an absolute one is seen through the task's mount
     * namespace (its private /tmp). Borrowed. */
    const char *status_file;
};

/* Start a task. The child is the init (PID 1 of its PID namespace): it forks the
 * task, reaps every zombie, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to the task and
 * exits with the task's status (128+signal when it was killed by one).
 * Returns once the task was exec'd (or failed to). On success *ret_pid is the
 * host-side pid of the init, a child of the caller (reap it with waitpid).
 * Errors: CM_EINVAL (bad options), CM_ETIMEDOUT, and the child's errno with its
 * context in @eb ("chdir `/x`: no such file or directory"); on failure the child
 * was reaped. */
int iso_spawn(const struct iso_spawn_opts *opts, pid_t *ret_pid, struct cm_errbuf *eb);

/* Parse the text an init wrote to its status_file: a decimal exit code 0-255 and
 * an optional '\n'. Errors: CM_EMALFORMED, CM_ERANGE. */
int iso_parse_status_file(const char *text, size_t len, int *ret_code);

/* The exit code a shell would report for a wait status: the exit status, or
 * 128+signal. */
int iso_exit_code(int wstatus);

/* Entry point for `clusterctl __init --sync-fd N [--status-file PATH] (--cmd CMD |
 * -- ARGV...)`, the re-exec'd init. argv[1] is "__init" (or argv[0], when the
 * caller strips the program name). Returns only on bad arguments (with exit code
 * 2); otherwise exits with the task's status. */
int iso_init_main(int argc, char **argv);

/* ======================================================================= internal
 * Shared by the isolation/ sources only; not API. Visible when ISO__INTERNAL is defined.
 */
#ifdef ISO__INTERNAL

#include <unistd.h>

#define ISO__SYNC_MSG_MAX 200

/* One sync-socket report from the child: errno and what failed. */
struct iso__sync_msg {
    int32_t err; /* positive errno */
    uint32_t len;
    char msg[ISO__SYNC_MSG_MAX];
};

void iso__closep(int *fd);
void iso__freep(void *pp); /* void ** */
#define iso__cleanup_close __attribute__((cleanup(iso__closep)))
#define iso__cleanup_free  __attribute__((cleanup(iso__freep)))
/* Hand an fd or pointer out of a cleanup variable. */
static inline int iso__steal_fd(int *fd)
{
    int r = *fd;
    *fd = -1;
    return r;
}
#define iso__steal_ptr(pp)            \
    __extension__({                   \
        __typeof__(*(pp)) p_ = *(pp); \
        *(pp) = NULL;                 \
        p_;                           \
    })

/* Syscall helpers over a table, retrying EINTR. Return 0/fd or a negative errno. */
int iso__openat(const struct iso_sys *s, int dirfd, const char *path, int flags);
int iso__close(const struct iso_sys *s, int fd);
int iso__mkdirat(const struct iso_sys *s, int dirfd, const char *path);
int iso__rmdirat(const struct iso_sys *s, int dirfd, const char *path);
int iso__sleep_ms(const struct iso_sys *s, unsigned ms);
/* Read the whole file @name under @dirfd into @buf (cap bytes, NUL-terminated);
 * *ret_len gets the length. CM_ETOOBIG when it does not fit. */
int iso__read_at(const struct iso_sys *s, int dirfd, const char *name, char *buf,
                 size_t cap, size_t *ret_len);
/* Read a growing file (cgroup.procs) into cm_malloc'd memory. */
int iso__read_all_at(const struct iso_sys *s, int dirfd, const char *name, char **ret_buf,
                     size_t *ret_len);
/* Write @val (one write) to the existing file @name under @dirfd. */
int iso__write_at(const struct iso_sys *s, int dirfd, const char *name, const char *val);
/* Read a one-number file (@limit: "max" allowed, as ISO_UNLIMITED). */
int iso__read_u64_at(const struct iso_sys *s, int dirfd, const char *name, bool limit,
                     uint64_t *ret);
/* Whether @name exists under @dirfd (faccessat; not through the table). */
bool iso__exists_at(int dirfd, const char *name);
/* Parse cgroup.procs text into a cm_malloc'd array. */
int iso__parse_pids(const char *text, size_t len, pid_t **ret, size_t *ret_n);

struct iso__cg_ops;

struct iso_cgroup_manager {
    const struct iso__cg_ops *ops;
    const struct iso_sys *sys;
    char *parent;
    /* v2: slot 0 is the cgroup2 hierarchy. v1: one slot per controller; -1 when
     * the controller is not mounted. */
    int root_fd[ISO_CTRL__COUNT];
    int parent_fd[ISO_CTRL__COUNT];
    /* v1: the first controller sharing this one's hierarchy (itself if none). */
    int same_as[ISO_CTRL__COUNT];
    /* v2: controllers enabled for the task cgroups (bit per enum iso_ctrl). */
    unsigned v2_ctrls;
};

struct iso_cgroup {
    struct iso_cgroup_manager *m; /* borrowed */
    char *name;
    int fd[ISO_CTRL__COUNT]; /* owned where same_as[c] == c, else aliases */
};

struct iso__cg_ops {
    const char *name;
    enum iso_cg_mode mode;
    int (*init)(struct iso_cgroup_manager *m, const struct iso_cg_layout *layout,
                struct cm_errbuf *eb);
    int (*create)(struct iso_cgroup *cg, bool create, struct cm_errbuf *eb);
    int (*set_limits)(struct iso_cgroup *cg, const struct iso_limits *lim,
                      struct cm_errbuf *eb);
    int (*add_pid)(struct iso_cgroup *cg, pid_t pid, struct cm_errbuf *eb);
    /* The hierarchy whose cgroup.procs lists the members. */
    int (*procs_fd)(struct iso_cgroup *cg);
    /* One kill pass over the current members. */
    int (*kill_pass)(struct iso_cgroup *cg, struct cm_errbuf *eb);
    int (*oom)(struct iso_cgroup *cg, struct iso_cg_oom *ret, struct cm_errbuf *eb);
    int (*stats)(struct iso_cgroup *cg, struct iso_cg_stats *ret, struct cm_errbuf *eb);
};

extern const struct iso__cg_ops iso__cg_v2_ops;
extern const struct iso__cg_ops iso__cg_v1_ops;

/* Run the init: fork the task, forward signals, reap, exit with its status.
 * @sync_fd (or -1) receives exec errors from the task child and is closed by the
 * init once the task is forked. */
struct iso__init_args {
    int sync_fd;
    const char *status_file; /* or NULL: see iso_spawn_opts.status_file */
    const char *cmd;
    char *const *argv;
    char *const *envp;
};
_Noreturn void iso__init_run(const struct iso__init_args *a);
/* Report (errno, formatted message) on @sync_fd; async-signal-safe enough for a
 * forked child (snprintf + send). */
void iso__sync_report(int sync_fd, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* ISO__INTERNAL */

#endif /* ISO_H */
