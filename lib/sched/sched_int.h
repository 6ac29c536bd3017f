/* lib/sched internals: shared by the files of lib/sched only. */
#ifndef CM_SCHED_INT_H
#define CM_SCHED_INT_H

#include <regex.h>

#include "sched/sched.h"

#define SCHED__NONE UINT32_MAX
/* Attribute key of the implicit `hostname` field. */
#define SCHED__KEY_HOST (UINT32_MAX - 1)
#define NRES            SCHED_RES__COUNT

/* ---- integer map: uint32 key -> uint32 value, open addressing, linear probing,
 * deletion by backward shift (so removal never allocates). */
struct sched__imap {
    uint32_t *keys; /* SCHED__NONE = empty */
    uint32_t *vals;
    uint32_t mask; /* cap - 1; cap 0 when keys == NULL */
    uint32_t len;
};

/* Room for @extra more keys without allocating. 0 or CM_ENOMEM. */
int sched__imap_reserve(struct sched__imap *m, uint32_t extra);
/* The value of @key, or NULL. */
static inline uint32_t *sched__imap_find(const struct sched__imap *m, uint32_t key)
{
    if (m->len == 0) {
        return NULL;
    }
    uint32_t i = (key * 0x9E3779B1u) & m->mask;
    for (;;) {
        uint32_t k = m->keys[i];
        if (k == key) {
            return &m->vals[i];
        }
        if (k == SCHED__NONE) {
            return NULL;
        }
        i = (i + 1) & m->mask;
    }
}
/* The value of @key, inserted as 0 when absent. Needs room (reserve). */
uint32_t *sched__imap_upsert(struct sched__imap *m, uint32_t key);
void sched__imap_remove(struct sched__imap *m, uint32_t key);
void sched__imap_done(struct sched__imap *m);

/* ---- string map: string -> uint32 index into the owner's table; the owner says
 * which string an index stands for. */
typedef const char *(*sched__key_fn)(const void *ctx, uint32_t idx);
struct sched__smap {
    uint32_t *idx; /* SCHED__NONE = empty */
    uint32_t *hash;
    uint32_t mask;
    uint32_t len;
};
uint32_t sched__hash(const char *s);
uint32_t sched__smap_find(const struct sched__smap *m, const char *s, uint32_t h,
                          sched__key_fn key, const void *ctx);
int sched__smap_reserve(struct sched__smap *m, uint32_t extra);
void sched__smap_insert(struct sched__smap *m, uint32_t h, uint32_t idx);
void sched__smap_remove(struct sched__smap *m, uint32_t h, uint32_t idx);
void sched__smap_done(struct sched__smap *m);

/* ---- interned strings (ids >= 1; id 0 stands for "absent"). Never shrinks:
 * node ids, hostnames, attribute keys and values, app ids, role names. */
struct sched__strtab {
    char **s;
    uint32_t n, cap;
    struct sched__smap map;
};
uint32_t sched__str_find(const struct sched__strtab *t, const char *s);
int sched__str_intern(struct sched__strtab *t, const char *s, uint32_t *ret_id);

/* ---- model */

struct sched__rsv {
    uint32_t role; /* role index */
    uint64_t cap[NRES];
    uint64_t used[NRES];
};

struct sched__attr {
    uint32_t key; /* string id */
    uint32_t val; /* string id (scalars in "0.###" form) */
    bool scalar;
};

struct sched__node {
    uint32_t id_str, host_str;
    uint8_t state;
    bool live;
    uint32_t live_pos;
    uint64_t total[NRES];
    uint64_t ext_used[NRES];
    uint64_t star_cap[NRES];  /* total minus reservations */
    uint64_t star_used[NRES]; /* external use and tasks' unreserved part */
    uint64_t used[NRES];      /* everything */
    struct sched__rsv *rsv;
    uint32_t n_rsv;
    struct sched__attr *attrs;
    uint32_t n_attrs;
    struct sched_port_range *ranges;
    uint32_t n_ranges;
    uint32_t ports_total, ports_free;
    uint64_t *port_bits; /* bit i set = the i-th port of the ranges is in use */
    uint16_t *ext_ports;
    uint32_t n_ext_ports;
    uint32_t task_head; /* first task on the node, SCHED__NONE */
    uint32_t n_tasks;
};

struct sched__task {
    char *id; /* NULL = free slot */
    uint32_t hash;
    uint32_t app, role, node;
    uint64_t res[NRES];
    uint64_t rsv_part[NRES]; /* taken from the node's reservation for its role */
    uint16_t *ports;
    uint32_t n_ports;
    uint32_t prev, next; /* on the node's list; next doubles as the free list */
};

/* Tasks of one app counted by the value of one attribute (or hostname). */
struct sched__keyidx {
    uint32_t key;
    struct sched__imap counts; /* value id (0 = node lacks it) -> tasks */
    uint32_t n_groups;         /* values with tasks */
    uint32_t min, n_at_min;    /* smallest count and how many values have it */
    bool min_valid;
};

struct sched__app {
    uint32_t name_str;
    uint32_t n_tasks;
    struct sched__imap nodes; /* node slot -> tasks */
    struct sched__keyidx *keys;
    uint32_t n_keys;
    uint32_t gen_seq; /* for generated task ids */
};

struct sched__role {
    uint32_t name_str;
    double weight;
    bool has_quota;
    uint64_t quota[NRES];
    uint64_t used[NRES];
    /* sched_place's work fields */
    double share;
    uint32_t heap_pos;
    uint32_t q_head, q_tail;
};

/* What the candidate walk reads for every node, packed densely in the order of
 * `live` so a walk touches one or two cache lines per node. Mirrors the node
 * (sched__hot_sync after every change). */
struct sched__hot {
    uint64_t avail[NRES]; /* unreserved resources free */
    uint64_t used[2];     /* cpus and mem in use, all pools */
    double inv_total[2];  /* 1 / total cpus and mem, 0 when total is 0 */
    uint32_t slot;
    uint32_t ports_free;
    uint8_t up;    /* state == SCHED_NODE_UP */
    uint8_t n_rsv; /* has reservations */
};

/* One attribute (or hostname) of every node, parallel to `live`: value id, with
 * SCHED__COL_SCALAR set for scalars. Built on the first constraint on that key. */
#define SCHED__COL_SCALAR 0x80000000u
struct sched__col {
    uint32_t key;
    uint32_t *vals;
};

struct sched {
    struct sched_options opts;
    struct cm_rng rng;
    struct sched__strtab strs;

    struct sched__node *nodes; /* slots; !live = free */
    uint32_t n_nodes, cap_nodes;
    uint32_t *live;         /* slots of the known nodes, dense */
    struct sched__hot *hot; /* parallel to live */
    uint32_t n_live, cap_live;
    struct sched__col *cols;
    uint32_t n_cols;
    struct sched__imap node_by_id; /* id string -> slot */
    uint64_t cluster_total[NRES];  /* sum over up nodes */

    struct sched__task *tasks;
    uint32_t n_tasks_slots, cap_tasks, task_free, n_tasks;
    struct sched__smap task_by_id;

    struct sched__app *apps;
    uint32_t n_apps, cap_apps;
    struct sched__imap app_by_name;

    struct sched__role *roles;
    uint32_t n_roles, cap_roles;
    struct sched__imap role_by_name;
};

/* sched.c */
int sched__role_get(struct sched *s, const char *name, uint32_t *ret);
int sched__app_get(struct sched *s, const char *name, uint32_t *ret);
/* Index of the app's task counts by @key, built on first use. */
int sched__app_key(struct sched *s, uint32_t app, uint32_t key, uint32_t *ret_j);
static inline uint32_t sched__node_val(const struct sched__node *n, uint32_t key,
                                       bool *ret_scalar)
{
    if (key == SCHED__KEY_HOST) {
        *ret_scalar = false;
        return n->host_str;
    }
    for (uint32_t i = 0; i < n->n_attrs; i++) {
        if (n->attrs[i].key == key) {
            *ret_scalar = n->attrs[i].scalar;
            return n->attrs[i].val;
        }
    }
    *ret_scalar = false;
    return 0;
}
/* Add a task; @rsv_ok/@star_ok say which pools it may take from (for a placement)
 * or NULL pools = reservation first, then unreserved without limit (existing
 * task). @id is copied. 0, CM_ENOMEM. */
int sched__task_insert(struct sched *s, const char *id, uint32_t app, uint32_t role,
                       uint32_t node, const uint64_t res[NRES], bool rsv_ok,
                       const uint16_t *ports, uint32_t n_ports, uint32_t *ret_idx);
void sched__task_delete(struct sched *s, uint32_t idx);
bool sched__task_exists(const struct sched *s, const char *id);
void sched__hot_sync(struct sched *s, const struct sched__node *n);
/* The reservation of @node for @role, or NULL. */
struct sched__rsv *sched__node_rsv(struct sched__node *n, uint32_t role);
/* Port bitmap helpers. */
bool sched__port_is_used(const struct sched__node *n, uint16_t port);
int32_t sched__port_bit(const struct sched__node *n, uint16_t port);
uint16_t sched__bit_port(const struct sched__node *n, uint32_t bit);
double sched__role_share_of(const struct sched *s, const struct sched__role *r);

/* constraint.c */
enum sched__op {
    SCHED__OP_UNIQUE = 0, /* no two tasks share the value */
    SCHED__OP_CLUSTER,    /* all tasks on one value (the given one) */
    SCHED__OP_GROUP_BY,   /* even spread over values */
    SCHED__OP_LIKE,       /* value matches regex */
    SCHED__OP_UNLIKE,     /* value does not match regex (or is absent) */
    SCHED__OP_MAX_PER,    /* at most N tasks per value */
    SCHED__OP_IS,         /* value equals */
};

struct sched__pcons {
    enum sched__op op;
    uint32_t key;        /* string id, SCHED__KEY_HOST, or 0 (no node has it) */
    uint32_t keyidx;     /* into the app's keys, for counting operators */
    uint32_t col;        /* into s->cols, SCHED__NONE when key == 0 */
    uint32_t val_raw;    /* string id of the value as given (0 = absent/unknown) */
    uint32_t val_scalar; /* string id of the value in "0.###" form (IS) */
    bool has_value;
    uint32_t n; /* GROUP_BY / MAX_PER count */
    bool has_regex;
    regex_t re;
    uint8_t *memo; /* per value id: 0 unknown, 1 match, 2 no match */
    uint32_t memo_len;
};

int sched__op_parse(const char *op, enum sched__op *ret);
/* Prepare @c for @app. 0, CM_ENOMEM. */
int sched__cons_prepare(struct sched *s, uint32_t app, const struct sched_constraint *c,
                        struct sched__pcons *pc);
void sched__cons_done(struct sched__pcons *pc);
/* Whether a node whose value for the constraint's field is @val (a column entry:
 * value id | SCHED__COL_SCALAR, 0 = absent) satisfies it. */
bool sched__cons_ok(const struct sched *s, const struct sched__app *app,
                    struct sched__pcons *pc, uint32_t val);
static inline uint32_t sched__col_entry(const struct sched__node *n, uint32_t key)
{
    bool scalar = false;
    uint32_t v = key ? sched__node_val(n, key, &scalar) : 0;
    return v | (scalar ? SCHED__COL_SCALAR : 0);
}
/* The column of @key (built on first use). 0 or CM_ENOMEM. */
int sched__col_get(struct sched *s, uint32_t key, uint32_t *ret_col);
/* "0.###" form of a decimal number into @out; false when @s is not one. */
bool sched__scalar_format(const char *s, char out[64]);

#endif
