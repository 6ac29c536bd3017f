/* lib/sched: the scheduler's pure core (DESIGN.md §6).
 *
 * The leader keeps one struct sched mirroring the cluster: nodes (resources,
 * attributes, reservations, port ranges, state), roles (DRF weight, quota) and the
 * tasks already placed. sched_place() takes pending task requests and decides,
 * without any I/O, which node each task goes to and which host ports it gets:
 *
 *   - DRF across roles (Ghodsi et al., NSDI 2011): the next placement goes to the
 *     role with the smallest weighted dominant share; quotas cap a role.
 *   - Filters: node state, role reservations and acceptedResourceRoles, cpus, mem,
 *     disk, gpus, ports, and Marathon's constraints (UNIQUE, CLUSTER, GROUP_BY,
 *     LIKE, UNLIKE, MAX_PER, IS) on `hostname` or any node attribute, with
 *     Marathon's semantics (shared/specs/compat.md §1.6).
 *   - Scoring by policy (binpack: fullest node first; spread: emptiest first) over
 *     a bounded random sample of feasible nodes, so one placement touches
 *     O(log nodes) nodes; a task is declared unplaceable only after every node was
 *     checked, so that verdict is exact, and it comes with a summary of how many
 *     nodes each filter rejected (sched_explain_text renders it).
 *
 * Determinism (DESIGN §1.3): the only randomness is a cm_rng seeded from
 * sched_options.seed; the same sequence of calls with the same inputs gives the
 * same outputs.
 *
 * Units: cpus in thousandths of a CPU (Marathon's cpus >= 0.001, so 0.5 CPU is
 * 500), mem and disk in MiB, gpus in units. Host ports are 1..65535.
 *
 * Thread safety: a struct sched is used by one thread at a time; distinct
 * schedulers are independent (no global state).
 */
#ifndef CM_SCHED_H
#define CM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* At most this many constraints per request (sched_constraints_validate refuses
 * more), so an explanation has a fixed size. */
#define SCHED_MAX_CONSTRAINTS 32
/* At most this many host ports per task. */
#define SCHED_MAX_PORTS 64
/* Bytes of a LIKE/UNLIKE regular expression (as lib/state's CM_APP_MAX_REGEX). */
#define SCHED_MAX_REGEX 256

/* ------------------------------------------------------------------ resources */

enum sched_res_kind {
    SCHED_RES_CPUS = 0, /* thousandths of a CPU */
    SCHED_RES_MEM,      /* MiB */
    SCHED_RES_DISK,     /* MiB */
    SCHED_RES_GPUS,     /* devices */
    SCHED_RES__COUNT,
};

/* An amount of each scalar resource, indexed by enum sched_res_kind:
 * `{.v = {[SCHED_RES_CPUS] = 500, [SCHED_RES_MEM] = 128}}`, or SCHED_RES(500, 128,
 * 0, 0). */
struct sched_resources {
    uint64_t v[SCHED_RES__COUNT];
};

#define SCHED_RES(cpus_milli, mem_mib, disk_mib, gpus) \
    ((struct sched_resources){.v = {(cpus_milli), (mem_mib), (disk_mib), (gpus)}})

/* Quota value meaning "no limit on this resource". */
#define SCHED_UNLIMITED UINT64_MAX

/* ------------------------------------------------------------------ scheduler */

enum sched_policy {
    SCHED_POLICY_BINPACK = 0, /* prefer the fullest node that fits (default) */
    SCHED_POLICY_SPREAD,      /* prefer the least loaded node */
};

struct sched_options {
    enum sched_policy policy;
    uint64_t seed; /* seeds the only PRNG; same seed + inputs => same outputs */
    /* Feasible candidates scored per placement: 0 = 2*ceil(log2(nodes)) + 4;
     * SIZE_MAX = every node (exact best score, O(nodes) per placement). */
    size_t sample;
};

struct sched;

/* A new, empty scheduler. @opts is copied; NULL means defaults (binpack, seed 0).
 * Returns NULL when out of memory. */
struct sched *sched_new(const struct sched_options *opts);

/* Free @s and everything it owns. Accepts NULL. */
void sched_free(struct sched *s);

/* ------------------------------------------------------------------ nodes */

enum sched_node_state {
    SCHED_NODE_UP = 0,      /* heartbeating; takes new tasks */
    SCHED_NODE_DRAINING,    /* keeps its tasks, takes no new ones */
    SCHED_NODE_UNREACHABLE, /* [transient] missed heartbeats; takes nothing */
    SCHED_NODE_DOWN,        /* gone; takes nothing */
};

struct sched_attr {
    const char *key;   /* attribute name (never "hostname": that one is implicit) */
    const char *value; /* text; a decimal number is a Mesos scalar, compared in
                          Marathon's "0.###" form (compat.md §1.6) */
};

struct sched_port_range {
    uint16_t begin; /* inclusive, >= 1 */
    uint16_t end;   /* inclusive, >= begin */
};

/* Resources a node sets aside for one role: only tasks of that role which accept
 * that role (acceptedResourceRoles) may use them. */
struct sched_reservation {
    const char *role;
    struct sched_resources res;
};

struct sched_node {
    const char *id;       /* unique, non-empty */
    const char *hostname; /* the `hostname` constraint field; NULL = id */
    enum sched_node_state state;
    struct sched_resources total;
    /* In use by something other than the tasks known through sched_task_add or
     * placed by sched_place (agent overhead, foreign processes). */
    struct sched_resources used;
    const struct sched_attr *attrs; /* unique keys */
    size_t n_attrs;
    const struct sched_reservation *reservations; /* unique roles, not "*" */
    size_t n_reservations;
    /* Host ports tasks may get; not overlapping. Ports are never reserved. */
    const struct sched_port_range *port_ranges;
    size_t n_port_ranges;
    /* Ports in use by something other than known tasks. Ports outside the ranges
     * are ignored. */
    const uint16_t *used_ports;
    size_t n_used_ports;
};

/* Add node @n, or replace the description of the node with its id. Everything is
 * copied. The tasks on a replaced node stay on it (their usage is re-counted
 * against the new totals and reservations, and may exceed them: the node is then
 * full, not corrupt).
 *
 * Errors: CM_EINVAL (empty id, bad state, reserved role "*", reservations
 * exceeding the total, bad or overlapping port range, duplicate attribute key or
 * reservation role, attribute named "hostname"), CM_ENOMEM. On error nothing
 * changed. */
int sched_node_upsert(struct sched *s, const struct sched_node *n);

/* Forget node @id and the tasks on it (as sched_task_remove would).
 * Errors: CM_ENOTFOUND. */
int sched_node_remove(struct sched *s, const char *id);

/* ------------------------------------------------------------------ roles */

struct sched_role {
    const char *name; /* "*" is the default role */
    double weight;    /* > 0; DRF divides a role's dominant share by it */
    /* Caps the sum of the role's tasks' resources (SCHED_UNLIMITED per kind);
     * NULL = no quota. Copied. */
    const struct sched_resources *quota;
};

/* Set (or create) role @r. Roles never set have weight 1 and no quota. A quota
 * lower than current usage only stops new placements.
 * Errors: CM_EINVAL (empty name, weight not > 0 or not finite), CM_ENOMEM. */
int sched_role_set(struct sched *s, const struct sched_role *r);

/* ------------------------------------------------------------------ tasks */

/* A task already placed (running, staging, ...) that uses resources and ports. */
struct sched_task {
    const char *id;   /* unique among the scheduler's tasks */
    const char *app;  /* app id; constraints count tasks per app */
    const char *role; /* NULL = "*" */
    const char *node; /* node id */
    struct sched_resources res;
    const uint16_t *ports; /* host ports it holds on the node */
    size_t n_ports;
};

/* Record task @t: its resources count against its node (its role's reservation
 * there first, then unreserved resources) and its role, its ports are taken, and
 * the app's constraints see it. A task may overcommit its node (the executor
 * reported it; the scheduler does not argue). Everything is copied.
 * Errors: CM_EEXIST (task id known), CM_ENOTFOUND (node unknown), CM_EINVAL (empty
 * id or app, too many ports), CM_ENOMEM. On error nothing changed. */
int sched_task_add(struct sched *s, const struct sched_task *t);

/* Forget task @id, giving back its resources and ports. Never allocates.
 * Errors: CM_ENOTFOUND. */
int sched_task_remove(struct sched *s, const char *id);

/* ------------------------------------------------------------------ constraints */

/* A Marathon constraint `[field, operator, value?]`. */
struct sched_constraint {
    const char *field; /* "hostname"/"@hostname", or a node attribute name */
    const char *op;    /* UNIQUE CLUSTER GROUP_BY LIKE UNLIKE MAX_PER IS, any case */
    const char *value; /* NULL when absent */
};

/* Check constraints as submitted (Marathon's validation, compat.md §1.6): known
 * operator, value present/absent as the operator wants, integer counts, regular
 * expressions that compile (POSIX extended, matched against the whole value).
 * On the first bad constraint returns CM_EVALIDATION, sets *@ret_index (may be
 * NULL) to its index and @eb (may be NULL) to the reason alone, in Marathon's
 * words ("Missing value"), for the API to report as field
 * `/constraints(<index>)`. Also refuses more than SCHED_MAX_CONSTRAINTS
 * (index = SCHED_MAX_CONSTRAINTS). Returns 0 when all are valid. */
int sched_constraints_validate(const struct sched_constraint *cs, size_t n,
                               size_t *ret_index, struct cm_errbuf *eb);

/* ------------------------------------------------------------------ placement */

/* @count instances of one app's task, all alike. Borrowed during sched_place. */
struct sched_request {
    const char *app;  /* app id */
    const char *role; /* NULL = "*" */
    struct sched_resources res;
    uint32_t count; /* instances to place */
    /* Host ports, Marathon's portDefinitions/hostPort: 0 = any free port of the
     * node's ranges; a non-zero port is taken exactly when @require_ports is set,
     * otherwise it too is "any" (compat.md §1.4; bridge-mode hostPorts are exact,
     * so the caller sets require_ports for them). */
    const uint16_t *ports;
    size_t n_ports;
    bool require_ports;
    const struct sched_constraint *constraints; /* valid (sched_constraints_validate) */
    size_t n_constraints;
    /* acceptedResourceRoles: "*" = unreserved resources, the request's role = the
     * node's reservations for it; other names never match (a task only gets its
     * own role's reservations). n == 0 means {"*", role}. */
    const char *const *accepted_roles;
    size_t n_accepted_roles;
    /* @count ids for the placed tasks (copied into the scheduler and the result),
     * or NULL for generated ids "<app>#<n>". */
    const char *const *task_ids;
};

/* How many nodes each filter rejected when a request could not be placed (an
 * exact scan of every node). A node not up counts only under @state; a node the
 * request has no usable resources on (acceptedResourceRoles vs. reservations)
 * only under @role; otherwise a node counts under every filter it fails. */
struct sched_explain {
    uint32_t nodes;                             /* nodes known */
    uint32_t state;                             /* not up */
    uint32_t role;                              /* no resources for the role */
    uint32_t res[SCHED_RES__COUNT];             /* lacking cpus, mem, disk, gpus */
    uint32_t ports;                             /* lacking the ports */
    uint32_t constraint[SCHED_MAX_CONSTRAINTS]; /* failing constraint i */
    bool quota;                                 /* the role's quota would be exceeded */
};

struct sched_assignment {
    size_t req;            /* index into the request array */
    uint32_t instance;     /* 0..count-1 */
    const char *task_id;   /* owned by the result */
    const char *node_id;   /* borrowed from the scheduler until sched_free */
    const char *hostname;  /* idem */
    const uint16_t *ports; /* owned by the result; in the request's port order */
    size_t n_ports;
};

struct sched_unplaced {
    size_t req;     /* index into the request array */
    uint32_t first; /* first instance not placed; the rest are not placed either */
    uint32_t count; /* instances not placed */
    struct sched_explain explain;
};

/* Filled by sched_place; release with sched_result_done. */
struct sched_result {
    /* read-only */
    struct sched_assignment *assignments; /* in placement (DRF) order */
    size_t n_assignments;
    struct sched_unplaced *unplaced; /* in the order the verdicts were reached */
    size_t n_unplaced;
    /* private */
    char *strings;
    uint16_t *ports;
};

/* Place the @n requests: repeatedly give the next instance to the role with the
 * smallest weighted dominant share (DRF §4; ties: the role seen first), taking
 * that role's requests in array order; place it on the best sampled feasible
 * node, or, when no node fits it (or its role's quota would be exceeded), record
 * the rest of that request as unplaced with an explanation and move on. Nothing is
 * freed during a call, so a request that stops placing would not place later in
 * the same call either.
 *
 * The placements are applied: their tasks are known afterwards exactly as if
 * added by sched_task_add (under their task ids), so the next call sees them.
 *
 * @reqs is borrowed for the call. @out is overwritten (not released first).
 *
 * Errors: CM_EINVAL (a request with an empty app id, invalid constraints, too many
 * ports, a duplicate or known task id, a port 0 or duplicate fixed port),
 * CM_ENOMEM. On error nothing changed and @out is empty. */
int sched_place(struct sched *s, const struct sched_request *reqs, size_t n,
                struct sched_result *out);

/* Release what sched_place put in @res and empty it. Accepts an empty result. */
void sched_result_done(struct sched_result *res);

/* Render @e for request @req in words into @buf (@cap bytes, always terminated
 * when cap > 0), e.g. "3 of 5 nodes lack memory; 2 fail hostname:UNIQUE" or
 * "role quota reached for role 'batch'". Returns the length the whole text needs
 * (as snprintf does). */
size_t sched_explain_text(const struct sched_explain *e, const struct sched_request *req,
                          char *buf, size_t cap);

/* ------------------------------------------------------------------ queries */

/* Sums of the node's usage (tasks and external), in @ret_used; its state in
 * @ret_state (either may be NULL). Errors: CM_ENOTFOUND. */
int sched_node_usage(const struct sched *s, const char *id,
                     struct sched_resources *ret_used, enum sched_node_state *ret_state);

/* The role's usage and weighted dominant share (0 for an unknown role). */
double sched_role_share(const struct sched *s, const char *role,
                        struct sched_resources *ret_used);

/* Tasks known, in total and of @app on node @node (either may be NULL = any). */
size_t sched_task_count(const struct sched *s, const char *app, const char *node);

/* Whether port @port is in use on node @node. */
bool sched_port_used(const struct sched *s, const char *node, uint16_t port);

#endif /* CM_SCHED_H */
