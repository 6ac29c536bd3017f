/* tests/lib/cluster.c: deterministic raft cluster simulator (see cluster.h). */
#include "cluster.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "test.h"

#define TRACE_LINES 4096
#define TRACE_WIDTH 200

/* ------------------------------------------------------------------ types */

/* An append that is not durable yet. */
struct pending_write {
    raft_time due;
    raft_index truncate_from;
    raft_index first;
    unsigned n;
    struct raft_entry *entries; /* owned copies */
};

struct disk {
    raft_term term;
    raft_id voted_for;
    /* durable log: entries at log_offset+1 ... */
    raft_index log_offset;
    unsigned log_n;
    unsigned log_cap;
    struct raft_entry *log;
    /* durable snapshot */
    raft_index snap_index;
    raft_term snap_term;
    struct raft_config snap_config;
    raft_index snap_config_index;
    uint8_t *snap_data;
    size_t snap_size;
    /* appends in flight to the disk, in order */
    struct pending_write *writes;
    unsigned n_writes;
    unsigned writes_cap;
};

/* What a node has written, as (term, entry hash) per index: the harness's
 * view of its log, used for the safety checks. */
struct shadow_entry {
    raft_term term;
    uint64_t hash;
};

struct node {
    raft_id id;
    bool up;
    bool started_once;
    struct raft *r;
    struct disk disk;
    /* state machine */
    raft_index sm_applied;
    uint64_t sm_hash;
    struct raft_config sm_config;
    raft_index sm_config_index;
    /* incoming snapshot */
    uint8_t *recv;
    size_t recv_len;
    /* snapshot being taken */
    bool snap_pending;
    raft_time snap_due;
    raft_index snap_at;
    uint64_t snap_size;
    /* shadow log */
    raft_index sh_offset;
    raft_term sh_offset_term;
    unsigned sh_n;
    unsigned sh_cap;
    struct shadow_entry *sh;
    /* last observed */
    raft_index last_commit;
    enum raft_role last_role;
    raft_term last_term;
};

struct flight {
    raft_time due;
    uint64_t seq;
    struct raft_message m; /* deep copy */
};

struct link {
    bool cut;
};

struct reg_version {
    raft_term term;
    uint64_t hash;
    raft_term prev_term;
};

struct reg_slot {
    unsigned n;
    struct reg_version v[6];
};

struct read_req {
    uint64_t id;
    raft_index min_index;
};

struct cluster {
    struct cluster_options o;
    struct cm_rng rng;
    raft_time now;
    struct node nodes[CLUSTER_MAX];
    struct link links[CLUSTER_MAX][CLUSTER_MAX];
    unsigned loss;
    unsigned dup;
    struct flight *flights;
    unsigned n_flights;
    unsigned flights_cap;
    uint64_t flight_seq;
    /* checks */
    raft_id *term_leader; /* by term */
    raft_term term_leader_cap;
    struct reg_slot *reg; /* (index, term) -> entry */
    raft_index reg_cap;
    struct shadow_entry *committed; /* by index, term 0 unknown */
    raft_index committed_cap;
    raft_index max_committed;
    uint64_t *sm_hash; /* state machine hash after each index, 0 unknown */
    raft_index sm_hash_cap;
    struct read_req reads[64];
    unsigned n_reads;
    uint64_t next_read_id;
    unsigned reads_done;
    unsigned reads_failed;
    uint64_t payload_seq;
    /* trace */
    char (*trace)[TRACE_WIDTH];
    unsigned trace_head;
    unsigned trace_count;
    bool capture;
    struct cm_buf captured;
};

/* ------------------------------------------------------------------ small helpers */

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t entry_hash(const struct raft_entry *e)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, &e->type, 1);
    return fnv(h, e->buf.base, e->buf.len);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = cm_calloc(n ? n : 1, size ? size : 1);
    CM_BUG_ON(p == NULL);
    return p;
}

/* Grow *arr (of elements of @size) so that index @need is valid; new memory is
 * zeroed. */
static void grow(void **arr, uint64_t *cap, uint64_t need, size_t size)
{
    if (need < *cap) {
        return;
    }
    uint64_t n = *cap ? *cap : 64;
    while (n <= need) {
        n *= 2;
    }
    void *p = cm_reallocarray(*arr, n, size);
    CM_BUG_ON(p == NULL);
    memset((char *)p + *cap * size, 0, (n - *cap) * size);
    *arr = p;
    *cap = n;
}

static void entry_copy(const struct raft_entry *src, struct raft_entry *dst)
{
    *dst = *src;
    dst->buf.base = NULL;
    if (src->buf.len > 0) {
        dst->buf.base = cm_memdup(src->buf.base, src->buf.len);
        CM_BUG_ON(dst->buf.base == NULL);
    }
}

static struct node *node_get(struct cluster *c, raft_id id)
{
    CM_BUG_ON(id == 0 || id > c->o.n);
    return &c->nodes[id - 1];
}

/* ------------------------------------------------------------------ trace */

/* The cluster whose step is running, for the assertion hook: a CM_BUG_ON in
 * the core then prints the seed and the trace like any invariant failure. */
static struct cluster *cluster_current;

static void trace_line(struct cluster *c, raft_id id, raft_time now, const char *text)
{
    char *line = c->trace[(c->trace_head + c->trace_count) % TRACE_LINES];
    int k = snprintf(line, TRACE_WIDTH, "%6llu %llu: ", (unsigned long long)now,
                     (unsigned long long)id);
    if (k > 0 && k < TRACE_WIDTH) {
        size_t room = TRACE_WIDTH - (size_t)k;
        size_t len = strnlen(text, room - 1);
        memcpy(line + k, text, len);
        line[(size_t)k + len] = '\0';
    }
    if (c->trace_count < TRACE_LINES) {
        c->trace_count++;
    } else {
        c->trace_head = (c->trace_head + 1) % TRACE_LINES;
    }
    if (c->o.trace_stdout) {
        printf("# %s\n", line);
    }
    if (c->capture) {
        cm_buf_puts(&c->captured, line);
        cm_buf_puts(&c->captured, "\n");
    }
}

void cluster_tracef(struct cluster *c, raft_id id, const char *fmt, ...)
{
    char text[TRACE_WIDTH];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    trace_line(c, id, c->now, text);
}

static void tracer_emit(void *data, raft_id id, raft_time now, const char *msg)
{
    trace_line(data, id, now, msg);
}

void cluster_capture(struct cluster *c, bool on)
{
    c->capture = on;
}

const char *cluster_captured(const struct cluster *c)
{
    return c->captured.data ? c->captured.data : "";
}

void cluster_capture_reset(struct cluster *c)
{
    cm_buf_clear(&c->captured);
}

void cluster_dump(const struct cluster *c, FILE *f, unsigned n)
{
    fprintf(f, "# cluster seed %llu, time %llu; last %u trace lines:\n",
            (unsigned long long)c->o.seed, (unsigned long long)c->now,
            CM_MIN(n, c->trace_count));
    unsigned start = c->trace_count > n ? c->trace_count - n : 0;
    for (unsigned i = start; i < c->trace_count; i++) {
        fprintf(f, "# %s\n", c->trace[(c->trace_head + i) % TRACE_LINES]);
    }
    fflush(f);
}

void cluster_fail(struct cluster *c, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cluster_current = NULL;
    cluster_dump(c, stdout, 200);
    test__fail(__FILE__, __LINE__, "seed %llu: invariant violated: %s",
               (unsigned long long)c->o.seed, text);
}

static void cluster_assert_hook(const char *msg)
{
    struct cluster *c = cluster_current;
    cluster_current = NULL;
    if (c != NULL) {
        cluster_dump(c, stdout, 200);
        test__fail("library", 0, "seed %llu: %s", (unsigned long long)c->o.seed, msg);
    }
    test__fail("library", 0, "%s", msg);
}

/* ------------------------------------------------------------------ messages */

static const char *msg_name(uint8_t type)
{
    static const char *names[] = {
        "?",           "append",   "append-result",   "vote",
        "vote-result", "snapshot", "snapshot-result", "timeout-now"};
    return type < CM_ARRAY_SIZE(names) ? names[type] : "?";
}

static void msg_describe(const struct raft_message *m, char *buf, size_t len)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
        snprintf(buf, len, "append t%llu prev %llu/%llu n %u commit %llu",
                 (unsigned long long)m->append.term,
                 (unsigned long long)m->append.prev_index,
                 (unsigned long long)m->append.prev_term, m->append.n_entries,
                 (unsigned long long)m->append.commit);
        break;
    case RAFT_MSG_APPEND_RESULT:
        snprintf(buf, len, "append-result t%llu %s last %llu",
                 (unsigned long long)m->append_result.term,
                 m->append_result.rejected ? "reject" : "ok",
                 (unsigned long long)m->append_result.last_index);
        break;
    case RAFT_MSG_VOTE:
        snprintf(buf, len, "%s t%llu last %llu/%llu",
                 m->vote.pre_vote ? "pre-vote" : "vote", (unsigned long long)m->vote.term,
                 (unsigned long long)m->vote.last_index,
                 (unsigned long long)m->vote.last_term);
        break;
    case RAFT_MSG_VOTE_RESULT:
        snprintf(buf, len, "%s-result t%llu %s",
                 m->vote_result.pre_vote ? "pre-vote" : "vote",
                 (unsigned long long)m->vote_result.term,
                 m->vote_result.granted ? "granted" : "denied");
        break;
    case RAFT_MSG_SNAPSHOT:
        snprintf(buf, len, "snapshot t%llu %llu off %llu len %zu%s",
                 (unsigned long long)m->snapshot.term,
                 (unsigned long long)m->snapshot.last_index,
                 (unsigned long long)m->snapshot.offset, m->snapshot.chunk.len,
                 m->snapshot.done ? " done" : "");
        break;
    case RAFT_MSG_SNAPSHOT_RESULT:
        snprintf(buf, len, "snapshot-result t%llu %llu next %llu%s",
                 (unsigned long long)m->snapshot_result.term,
                 (unsigned long long)m->snapshot_result.last_index,
                 (unsigned long long)m->snapshot_result.next_offset,
                 m->snapshot_result.rejected ? " reject" : "");
        break;
    default:
        snprintf(buf, len, "%s", msg_name(m->type));
        break;
    }
}

static void msg_free(struct raft_message *m)
{
    if (m->type == RAFT_MSG_APPEND) {
        for (unsigned i = 0; i < m->append.n_entries; i++) {
            cm_free(&m->append.entries[i].buf.base);
        }
        cm_free(&m->append.entries);
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        raft_config_close(&m->snapshot.config);
        cm_free(&m->snapshot.chunk.base);
    }
}

static void msg_copy(const struct raft_message *src, struct raft_message *dst)
{
    *dst = *src;
    if (src->type == RAFT_MSG_APPEND) {
        dst->append.entries = NULL;
        if (src->append.n_entries > 0) {
            dst->append.entries =
                xcalloc(src->append.n_entries, sizeof(struct raft_entry));
            for (unsigned i = 0; i < src->append.n_entries; i++) {
                entry_copy(&src->append.entries[i], &dst->append.entries[i]);
            }
        }
    } else if (src->type == RAFT_MSG_SNAPSHOT) {
        CM_BUG_ON(raft_config_copy(&src->snapshot.config, &dst->snapshot.config) != 0);
        dst->snapshot.chunk.base = NULL;
        if (src->snapshot.chunk.len > 0) {
            dst->snapshot.chunk.base =
                cm_memdup(src->snapshot.chunk.base, src->snapshot.chunk.len);
            CM_BUG_ON(dst->snapshot.chunk.base == NULL);
        }
    }
}

static struct link *link_get(struct cluster *c, raft_id a, raft_id b)
{
    return &c->links[a - 1][b - 1];
}

static void flight_add(struct cluster *c, const struct raft_message *m, raft_time due)
{
    if (c->n_flights == c->flights_cap) {
        unsigned cap = c->flights_cap ? 2 * c->flights_cap : 64;
        struct flight *f = cm_reallocarray(c->flights, cap, sizeof *f);
        CM_BUG_ON(f == NULL);
        c->flights = f;
        c->flights_cap = cap;
    }
    struct flight *f = &c->flights[c->n_flights++];
    f->due = due;
    f->seq = c->flight_seq++;
    msg_copy(m, &f->m);
}

static raft_time net_delay(struct cluster *c)
{
    return cm_rng_range(&c->rng, c->o.net_delay_min, (uint64_t)c->o.net_delay_max + 1);
}

static void send_message(struct cluster *c, struct node *n, struct raft_message *m)
{
    char desc[128];
    if (m->to == 0 || m->to > c->o.n) {
        return;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        /* Fill in the chunk from our snapshot, as a host does. */
        if (n->disk.snap_index != m->snapshot.last_index ||
            m->snapshot.offset + m->snapshot.chunk.len > n->disk.snap_size ||
            m->snapshot.size != n->disk.snap_size) {
            cluster_tracef(
                c, n->id, "host: drop snapshot chunk to %llu: no snapshot %llu",
                (unsigned long long)m->to, (unsigned long long)m->snapshot.last_index);
            return;
        }
        m->snapshot.chunk.base = n->disk.snap_data + m->snapshot.offset;
    }
    msg_describe(m, desc, sizeof desc);
    if (link_get(c, n->id, m->to)->cut) {
        cluster_tracef(c, 0, "drop %llu->%llu %s: partition", (unsigned long long)n->id,
                       (unsigned long long)m->to, desc);
        return;
    }
    if (c->loss > 0 && cm_rng_below(&c->rng, 1000) < c->loss) {
        cluster_tracef(c, 0, "drop %llu->%llu %s: loss", (unsigned long long)n->id,
                       (unsigned long long)m->to, desc);
        return;
    }
    flight_add(c, m, c->now + net_delay(c));
    if (c->dup > 0 && cm_rng_below(&c->rng, 1000) < c->dup) {
        cluster_tracef(c, 0, "duplicate %llu->%llu %s", (unsigned long long)n->id,
                       (unsigned long long)m->to, desc);
        flight_add(c, m, c->now + net_delay(c));
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        m->snapshot.chunk.base = NULL;
    }
}

/* ------------------------------------------------------------------ disk */

static void disk_log_truncate(struct disk *d, raft_index from)
{
    while (d->log_n > 0 && d->log_offset + d->log_n >= from) {
        d->log_n--;
        cm_free(&d->log[d->log_n].buf.base);
    }
}

static void disk_log_push(struct disk *d, const struct raft_entry *e)
{
    if (d->log_n == d->log_cap) {
        unsigned cap = d->log_cap ? 2 * d->log_cap : 64;
        struct raft_entry *l = cm_reallocarray(d->log, cap, sizeof *l);
        CM_BUG_ON(l == NULL);
        d->log = l;
        d->log_cap = cap;
    }
    entry_copy(e, &d->log[d->log_n++]);
}

static void disk_log_compact(struct disk *d, raft_index upto)
{
    if (upto <= d->log_offset) {
        return;
    }
    unsigned k = (unsigned)CM_MIN(upto - d->log_offset, (raft_index)d->log_n);
    for (unsigned i = 0; i < k; i++) {
        cm_free(&d->log[i].buf.base);
    }
    memmove(d->log, d->log + k, (d->log_n - k) * sizeof *d->log);
    d->log_n -= k;
    d->log_offset = upto;
}

static void write_free(struct pending_write *w)
{
    for (unsigned i = 0; i < w->n; i++) {
        cm_free(&w->entries[i].buf.base);
    }
    cm_free(&w->entries);
}

static void disk_drop_writes(struct disk *d)
{
    for (unsigned i = 0; i < d->n_writes; i++) {
        write_free(&d->writes[i]);
    }
    d->n_writes = 0;
}

static void disk_close(struct disk *d)
{
    disk_drop_writes(d);
    cm_free(&d->writes);
    disk_log_truncate(d, 0);
    cm_free(&d->log);
    raft_config_close(&d->snap_config);
    cm_free(&d->snap_data);
}

/* ------------------------------------------------------------------ checks */

static raft_term shadow_term(const struct node *n, raft_index index, bool *known)
{
    *known = true;
    if (index == n->sh_offset) {
        *known = n->sh_offset_term != 0 || index == 0;
        return n->sh_offset_term;
    }
    if (index < n->sh_offset || index > n->sh_offset + n->sh_n) {
        *known = false;
        return 0;
    }
    return n->sh[index - n->sh_offset - 1].term;
}

/* Log matching (Raft §5.3): an (index, term) pair names one entry, and the
 * entry before it has one term. */
static void check_registry(struct cluster *c, struct node *n, raft_index index,
                           raft_term term, uint64_t hash)
{
    bool known;
    raft_term prev = shadow_term(n, index - 1, &known);
    grow((void **)&c->reg, &c->reg_cap, index, sizeof *c->reg);
    struct reg_slot *s = &c->reg[index];
    for (unsigned i = 0; i < s->n; i++) {
        if (s->v[i].term != term) {
            continue;
        }
        if (s->v[i].hash != hash) {
            cluster_fail(c, "log matching: node %llu entry %llu/%llu differs",
                         (unsigned long long)n->id, (unsigned long long)index,
                         (unsigned long long)term);
        }
        if (known && s->v[i].prev_term != 0 && s->v[i].prev_term != prev) {
            cluster_fail(c,
                         "log matching: node %llu entry %llu/%llu follows term %llu, "
                         "elsewhere %llu",
                         (unsigned long long)n->id, (unsigned long long)index,
                         (unsigned long long)term, (unsigned long long)prev,
                         (unsigned long long)s->v[i].prev_term);
        }
        if (known && s->v[i].prev_term == 0) {
            s->v[i].prev_term = prev;
        }
        return;
    }
    if (s->n < CM_ARRAY_SIZE(s->v)) {
        s->v[s->n++] = (struct reg_version){term, hash, known ? prev : 0};
    }
}

static void shadow_write(struct cluster *c, struct node *n, const struct raft_update *u)
{
    if (u->truncate_from != 0) {
        raft_index last = n->sh_offset + n->sh_n;
        for (raft_index i = CM_MAX(u->truncate_from, n->sh_offset + 1); i <= last; i++) {
            const struct shadow_entry *k = i < c->committed_cap ? &c->committed[i] : NULL;
            if (k != NULL && k->term != 0 &&
                k->term == n->sh[i - n->sh_offset - 1].term) {
                cluster_fail(c, "node %llu truncates committed entry %llu",
                             (unsigned long long)n->id, (unsigned long long)i);
            }
        }
        if (u->truncate_from <= last && u->truncate_from > n->sh_offset) {
            n->sh_n = (unsigned)(u->truncate_from - n->sh_offset - 1);
        }
    }
    if (u->n_entries == 0) {
        return;
    }
    if (u->entries_first > n->sh_offset + n->sh_n + 1 ||
        u->entries_first <= n->sh_offset) {
        cluster_fail(c, "node %llu writes at %llu, log ends at %llu",
                     (unsigned long long)n->id, (unsigned long long)u->entries_first,
                     (unsigned long long)(n->sh_offset + n->sh_n));
    }
    n->sh_n = (unsigned)(u->entries_first - n->sh_offset - 1);
    for (unsigned i = 0; i < u->n_entries; i++) {
        if (n->sh_n == n->sh_cap) {
            unsigned cap = n->sh_cap ? 2 * n->sh_cap : 256;
            struct shadow_entry *s = cm_reallocarray(n->sh, cap, sizeof *s);
            CM_BUG_ON(s == NULL);
            n->sh = s;
            n->sh_cap = cap;
        }
        uint64_t h = entry_hash(&u->entries[i]);
        raft_index index = u->entries_first + i;
        check_registry(c, n, index, u->entries[i].term, h);
        n->sh[n->sh_n++] = (struct shadow_entry){u->entries[i].term, h};
    }
}

static void check_commit(struct cluster *c, struct node *n)
{
    raft_index commit = raft_commit_index(n->r);
    if (commit < n->last_commit) {
        cluster_fail(c, "node %llu commit index went back %llu -> %llu",
                     (unsigned long long)n->id, (unsigned long long)n->last_commit,
                     (unsigned long long)commit);
    }
    for (raft_index i = n->last_commit + 1; i <= commit; i++) {
        if (i <= n->sh_offset || i > n->sh_offset + n->sh_n) {
            continue;
        }
        const struct shadow_entry *e = &n->sh[i - n->sh_offset - 1];
        grow((void **)&c->committed, &c->committed_cap, i, sizeof *c->committed);
        struct shadow_entry *k = &c->committed[i];
        if (k->term == 0) {
            *k = *e;
        } else if (k->term != e->term || k->hash != e->hash) {
            cluster_fail(c,
                         "node %llu commits %llu/%llu, committed elsewhere as term %llu",
                         (unsigned long long)n->id, (unsigned long long)i,
                         (unsigned long long)e->term, (unsigned long long)k->term);
        }
    }
    if (commit > c->max_committed) {
        c->max_committed = commit;
    }
    n->last_commit = commit;
}

/* Leader completeness (Raft §5.4): a new leader holds every committed entry. */
static void check_new_leader(struct cluster *c, struct node *n)
{
    raft_term term = raft_current_term(n->r);
    grow((void **)&c->term_leader, &c->term_leader_cap, term, sizeof *c->term_leader);
    if (c->term_leader[term] != 0 && c->term_leader[term] != n->id) {
        cluster_fail(c, "two leaders in term %llu: %llu and %llu",
                     (unsigned long long)term, (unsigned long long)c->term_leader[term],
                     (unsigned long long)n->id);
    }
    c->term_leader[term] = n->id;
    if (n->sh_offset + n->sh_n < c->max_committed) {
        cluster_fail(c, "leader %llu log ends at %llu before committed %llu",
                     (unsigned long long)n->id,
                     (unsigned long long)(n->sh_offset + n->sh_n),
                     (unsigned long long)c->max_committed);
    }
    for (raft_index i = n->sh_offset + 1; i <= c->max_committed; i++) {
        const struct shadow_entry *k = i < c->committed_cap ? &c->committed[i] : NULL;
        const struct shadow_entry *e = &n->sh[i - n->sh_offset - 1];
        if (k != NULL && k->term != 0 && (k->term != e->term || k->hash != e->hash)) {
            cluster_fail(c, "leader %llu lacks committed entry %llu/%llu",
                         (unsigned long long)n->id, (unsigned long long)i,
                         (unsigned long long)k->term);
        }
    }
}

static void check_node(struct cluster *c, struct node *n)
{
    check_commit(c, n);
    enum raft_role role = raft_role(n->r);
    raft_term term = raft_current_term(n->r);
    if (role == RAFT_LEADER && (n->last_role != RAFT_LEADER || n->last_term != term)) {
        check_new_leader(c, n);
    }
    if (term < n->last_term) {
        cluster_fail(c, "node %llu term went back", (unsigned long long)n->id);
    }
    n->last_role = role;
    n->last_term = term;
}

/* ------------------------------------------------------------------ state machine */

static void sm_check(struct cluster *c, struct node *n)
{
    grow((void **)&c->sm_hash, &c->sm_hash_cap, n->sm_applied, sizeof *c->sm_hash);
    uint64_t *h = &c->sm_hash[n->sm_applied];
    if (*h == 0) {
        *h = n->sm_hash;
    } else if (*h != n->sm_hash) {
        cluster_fail(c, "state machine safety: node %llu differs at %llu",
                     (unsigned long long)n->id, (unsigned long long)n->sm_applied);
    }
}

static void sm_apply(struct cluster *c, struct node *n, raft_index index,
                     const struct raft_entry *e)
{
    if (index != n->sm_applied + 1) {
        cluster_fail(c, "node %llu applies %llu after %llu", (unsigned long long)n->id,
                     (unsigned long long)index, (unsigned long long)n->sm_applied);
    }
    uint64_t eh = entry_hash(e);
    n->sm_hash = fnv(n->sm_hash ^ eh, &index, sizeof index);
    n->sm_applied = index;
    if (e->type == RAFT_CHANGE) {
        struct raft_config cfg;
        CM_BUG_ON(raft_config_decode(e->buf.base, e->buf.len, &cfg) != 0);
        raft_config_close(&n->sm_config);
        n->sm_config = cfg;
        n->sm_config_index = index;
    }
    sm_check(c, n);
}

/* Snapshot layout: u64 applied | u64 hash | padding derived from the hash. */
static void sm_serialize(struct cluster *c, struct node *n, uint8_t **ret, size_t *len)
{
    size_t size = 16 + c->o.snapshot_pad + (size_t)(n->sm_hash % 17);
    uint8_t *p = xcalloc(size, 1);
    struct cm_wbuf b;
    cm_wbuf_init(&b, p, size);
    cm_wbuf_u64(&b, n->sm_applied);
    cm_wbuf_u64(&b, n->sm_hash);
    for (size_t i = 16; i < size; i++) {
        p[i] = (uint8_t)(n->sm_hash >> (i % 8));
    }
    *ret = p;
    *len = size;
}

static void sm_restore(struct cluster *c, struct node *n, const uint8_t *data, size_t len,
                       raft_index index, const struct raft_config *cfg, raft_index ci)
{
    struct cm_wire w;
    cm_wire_init(&w, data, len);
    raft_index applied = cm_wire_u64(&w);
    uint64_t hash = cm_wire_u64(&w);
    if (cm_wire_err(&w) != 0 || applied != index) {
        cluster_fail(c, "node %llu: bad snapshot %llu", (unsigned long long)n->id,
                     (unsigned long long)index);
    }
    for (size_t i = 16; i < len; i++) {
        if (data[i] != (uint8_t)(hash >> (i % 8))) {
            cluster_fail(c, "node %llu: snapshot %llu corrupt at byte %zu",
                         (unsigned long long)n->id, (unsigned long long)index, i);
        }
    }
    n->sm_applied = applied;
    n->sm_hash = hash;
    raft_config_close(&n->sm_config);
    CM_BUG_ON(raft_config_copy(cfg, &n->sm_config) != 0);
    n->sm_config_index = ci;
    if (applied > 0) {
        sm_check(c, n);
    }
}

/* ------------------------------------------------------------------ updates */

static void process_update(struct cluster *c, struct node *n,
                           const struct raft_update *u);

static void node_step(struct cluster *c, struct node *n, const struct raft_event *ev)
{
    struct raft_update u;
    int rv = raft_step(n->r, ev, &u);
    if (rv != 0) {
        cluster_fail(c, "node %llu: raft_step(%u) failed: %s", (unsigned long long)n->id,
                     ev->type, cm_strerror(rv));
    }
    process_update(c, n, &u);
}

static void process_update(struct cluster *c, struct node *n, const struct raft_update *u)
{
    struct disk *d = &n->disk;
    /* 1. hard state */
    if (u->hard_state_changed) {
        d->term = u->term;
        d->voted_for = u->voted_for;
    }
    /* 2. snapshot chunk / install */
    if (u->snapshot_chunk.chunk.len > 0 || u->snapshot_install) {
        size_t end = (size_t)u->snapshot_chunk.offset + u->snapshot_chunk.chunk.len;
        if (u->snapshot_chunk.offset == 0) {
            cm_free(&n->recv);
            n->recv = xcalloc(u->snapshot_chunk.size + 1, 1);
            n->recv_len = 0;
        }
        if (n->recv == NULL || u->snapshot_chunk.offset != n->recv_len ||
            end > u->snapshot_chunk.size) {
            cluster_fail(c, "node %llu: snapshot chunk at %llu, have %zu",
                         (unsigned long long)n->id,
                         (unsigned long long)u->snapshot_chunk.offset, n->recv_len);
        }
        if (u->snapshot_chunk.chunk.len > 0) {
            memcpy(n->recv + u->snapshot_chunk.offset, u->snapshot_chunk.chunk.base,
                   u->snapshot_chunk.chunk.len);
        }
        n->recv_len = end;
    }
    if (u->snapshot_install) {
        if (n->recv_len != u->snapshot_chunk.size) {
            cluster_fail(c, "node %llu: install of an incomplete snapshot",
                         (unsigned long long)n->id);
        }
        cm_free(&d->snap_data);
        d->snap_data = n->recv;
        d->snap_size = n->recv_len;
        n->recv = NULL;
        n->recv_len = 0;
        d->snap_index = u->snapshot_chunk.last_index;
        d->snap_term = u->snapshot_chunk.last_term;
        raft_config_close(&d->snap_config);
        CM_BUG_ON(raft_config_copy(&u->snapshot_config, &d->snap_config) != 0);
        d->snap_config_index = u->snapshot_config_index;
        disk_drop_writes(d);
        disk_log_truncate(d, 0);
        d->log_offset = d->snap_index;
        n->snap_pending = false;
        sm_restore(c, n, d->snap_data, d->snap_size, d->snap_index, &d->snap_config,
                   d->snap_config_index);
        n->sh_offset = d->snap_index;
        n->sh_offset_term = d->snap_term;
        n->sh_n = 0;
        cluster_tracef(c, n->id, "host: installed snapshot %llu (%zu bytes)",
                       (unsigned long long)d->snap_index, d->snap_size);
    }
    /* 3. truncate and append */
    shadow_write(c, n, u);
    if (u->truncate_from != 0 || u->n_entries > 0) {
        if (d->n_writes == d->writes_cap) {
            unsigned cap = d->writes_cap ? 2 * d->writes_cap : 16;
            struct pending_write *w = cm_reallocarray(d->writes, cap, sizeof *w);
            CM_BUG_ON(w == NULL);
            d->writes = w;
            d->writes_cap = cap;
        }
        struct pending_write *w = &d->writes[d->n_writes++];
        raft_time due = c->now + cm_rng_range(&c->rng, c->o.disk_delay_min,
                                              (uint64_t)c->o.disk_delay_max + 1);
        if (d->n_writes > 1 && d->writes[d->n_writes - 2].due > due) {
            due = d->writes[d->n_writes - 2].due; /* the disk is FIFO */
        }
        w->due = due;
        w->truncate_from = u->truncate_from;
        w->first = u->entries_first;
        w->n = u->n_entries;
        w->entries = NULL;
        if (u->n_entries > 0) {
            w->entries = xcalloc(u->n_entries, sizeof *w->entries);
            for (unsigned i = 0; i < u->n_entries; i++) {
                entry_copy(&u->entries[i], &w->entries[i]);
            }
        }
    }
    /* 4. compaction */
    if (u->compact_to != 0) {
        if (u->compact_to > d->snap_index) {
            cluster_fail(c, "node %llu compacts to %llu beyond snapshot %llu",
                         (unsigned long long)n->id, (unsigned long long)u->compact_to,
                         (unsigned long long)d->snap_index);
        }
        disk_log_compact(d, u->compact_to);
    }
    /* 5. messages */
    for (unsigned i = 0; i < u->n_messages; i++) {
        send_message(c, n, &u->messages[i]);
    }
    /* 6. apply */
    for (unsigned i = 0; i < u->n_apply; i++) {
        sm_apply(c, n, u->apply_first + i, &u->apply[i]);
    }
    /* 7. snapshot: taken at once, reported after a disk delay */
    if (u->snapshot_at != 0) {
        if (u->snapshot_at > n->sm_applied) {
            cluster_fail(c, "node %llu: snapshot at %llu beyond applied %llu",
                         (unsigned long long)n->id, (unsigned long long)u->snapshot_at,
                         (unsigned long long)n->sm_applied);
        }
        uint8_t *data;
        size_t len;
        sm_serialize(c, n, &data, &len);
        cm_free(&d->snap_data);
        d->snap_data = data;
        d->snap_size = len;
        d->snap_index = n->sm_applied;
        bool known;
        d->snap_term = shadow_term(n, n->sm_applied, &known);
        CM_BUG_ON(!known);
        raft_config_close(&d->snap_config);
        CM_BUG_ON(raft_config_copy(&n->sm_config, &d->snap_config) != 0);
        d->snap_config_index = n->sm_config_index;
        n->snap_pending = true;
        n->snap_at = n->sm_applied;
        n->snap_size = len;
        n->snap_due = c->now + c->o.disk_delay_max;
    }
    /* 8. reads */
    for (unsigned i = 0; i < u->n_reads; i++) {
        const struct raft_read_result *rr = &u->reads[i];
        unsigned j;
        for (j = 0; j < c->n_reads && c->reads[j].id != rr->id; j++) {
        }
        if (j == c->n_reads) {
            cluster_fail(c, "unknown read %llu", (unsigned long long)rr->id);
        }
        if (rr->status == 0) {
            if (rr->index < c->reads[j].min_index) {
                cluster_fail(c, "read %llu at %llu misses committed %llu",
                             (unsigned long long)rr->id, (unsigned long long)rr->index,
                             (unsigned long long)c->reads[j].min_index);
            }
            c->reads_done++;
        } else {
            c->reads_failed++;
        }
        cluster_tracef(c, n->id, "host: read %llu -> %s index %llu",
                       (unsigned long long)rr->id, rr->status == 0 ? "ok" : "not leader",
                       (unsigned long long)rr->index);
        c->reads[j] = c->reads[--c->n_reads];
    }
    check_node(c, n);
}

/* ------------------------------------------------------------------ lifecycle */

void cluster_options_default(struct cluster_options *o)
{
    memset(o, 0, sizeof *o);
    o->n = 3;
    o->voters = 3;
    o->seed = 1;
    o->net_delay_min = 5;
    o->net_delay_max = 15;
    o->disk_delay_min = 1;
    o->disk_delay_max = 5;
    o->snapshot_pad = 100;
    raft_options_default(&o->raft);
}

struct cluster *cluster_new(const struct cluster_options *o)
{
    CM_BUG_ON(o->n == 0 || o->n > CLUSTER_MAX || o->voters > o->n);
    struct cluster *c = xcalloc(1, sizeof *c);
    c->o = *o;
    c->capture = o->capture;
    cluster_current = c;
    cm_assert_set_hook(cluster_assert_hook);
    cm_rng_seed(&c->rng, o->seed);
    c->trace = xcalloc(TRACE_LINES, TRACE_WIDTH);
    struct raft_config boot = {0, NULL};
    for (unsigned i = 0; i < o->voters; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "10.0.0.%u:7000", i + 1);
        CM_BUG_ON(raft_config_add(&boot, i + 1, addr, RAFT_VOTER) != 0);
    }
    for (unsigned i = 0; i < o->n; i++) {
        struct node *n = &c->nodes[i];
        n->id = i + 1;
        n->sm_hash = 0x1234;
        if (i < o->voters) {
            struct raft_entry e;
            CM_BUG_ON(raft_bootstrap_entry(&boot, &e) != 0);
            disk_log_push(&n->disk, &e);
            cm_free(&e.buf.base);
        }
    }
    raft_config_close(&boot);
    for (unsigned i = 0; i < o->voters; i++) {
        cluster_start(c, i + 1);
    }
    return c;
}

static void node_stop(struct node *n)
{
    raft_free(n->r);
    n->r = NULL;
    n->up = false;
    cm_free(&n->recv);
    n->recv_len = 0;
    n->snap_pending = false;
}

void cluster_free(struct cluster *c)
{
    if (c == NULL) {
        return;
    }
    if (cluster_current == c) {
        cluster_current = NULL;
    }
    for (unsigned i = 0; i < c->o.n; i++) {
        struct node *n = &c->nodes[i];
        node_stop(n);
        disk_close(&n->disk);
        raft_config_close(&n->sm_config);
        cm_free(&n->sh);
    }
    for (unsigned i = 0; i < c->n_flights; i++) {
        msg_free(&c->flights[i].m);
    }
    cm_free(&c->flights);
    cm_free(&c->term_leader);
    cm_free(&c->reg);
    cm_free(&c->committed);
    cm_free(&c->sm_hash);
    cm_free(&c->trace);
    cm_buf_done(&c->captured);
    cm_free_raw(c);
}

void cluster_start(struct cluster *c, raft_id id)
{
    struct node *n = node_get(c, id);
    if (n->up) {
        return;
    }
    struct disk *d = &n->disk;
    struct raft_options ro = c->o.raft;
    ro.id = id;
    ro.seed = c->o.seed * 1000003u + id * 7919u + cm_rng_next(&c->rng) % 1000;
    ro.tracer.data = c;
    ro.tracer.emit = tracer_emit;
    n->r = raft_new(&ro);
    CM_BUG_ON(n->r == NULL);
    /* State machine from the snapshot (it does not survive a crash). */
    n->sm_applied = 0;
    n->sm_hash = 0x1234;
    raft_config_close(&n->sm_config);
    n->sm_config_index = 0;
    if (d->snap_index > 0) {
        sm_restore(c, n, d->snap_data, d->snap_size, d->snap_index, &d->snap_config,
                   d->snap_config_index);
    }
    struct raft_load l;
    memset(&l, 0, sizeof l);
    l.term = d->term;
    l.voted_for = d->voted_for;
    l.snapshot_index = d->snap_index;
    l.snapshot_term = d->snap_term;
    l.snapshot_config = d->snap_config;
    l.snapshot_config_index = d->snap_config_index;
    l.snapshot_size = d->snap_size;
    l.first_index = d->log_offset + 1;
    l.n_entries = d->log_n;
    l.entries = d->log;
    l.applied_index = d->snap_index;
    /* The shadow log restarts from what is durable. */
    n->sh_offset = d->log_offset;
    n->sh_offset_term = d->log_offset == d->snap_index ? d->snap_term : 0;
    n->sh_n = 0;
    for (unsigned i = 0; i < d->log_n; i++) {
        if (n->sh_n == n->sh_cap) {
            unsigned cap = n->sh_cap ? 2 * n->sh_cap : 256;
            struct shadow_entry *s = cm_reallocarray(n->sh, cap, sizeof *s);
            CM_BUG_ON(s == NULL);
            n->sh = s;
            n->sh_cap = cap;
        }
        n->sh[n->sh_n++] = (struct shadow_entry){d->log[i].term, entry_hash(&d->log[i])};
    }
    if (d->snap_index > 0 && d->log_offset + d->log_n < d->snap_index) {
        /* The core drops a log that ends before its snapshot. */
        n->sh_offset = d->snap_index;
        n->sh_offset_term = d->snap_term;
        n->sh_n = 0;
    }
    struct raft_update u;
    int rv = raft_start(n->r, &l, c->now, &u);
    if (rv != 0) {
        cluster_fail(c, "node %llu: raft_start: %s", (unsigned long long)id,
                     cm_strerror(rv));
    }
    n->up = true;
    n->started_once = true;
    n->last_commit = raft_commit_index(n->r);
    n->last_role = RAFT_FOLLOWER;
    n->last_term = raft_current_term(n->r);
    cluster_tracef(c, 0, "start %llu: term %llu log %llu..%llu snapshot %llu",
                   (unsigned long long)id, (unsigned long long)d->term,
                   (unsigned long long)(d->log_offset + 1),
                   (unsigned long long)(d->log_offset + d->log_n),
                   (unsigned long long)d->snap_index);
    process_update(c, n, &u);
}

void cluster_crash(struct cluster *c, raft_id id)
{
    struct node *n = node_get(c, id);
    if (!n->up) {
        return;
    }
    cluster_tracef(c, 0, "crash %llu (%u writes lost)", (unsigned long long)id,
                   n->disk.n_writes);
    disk_drop_writes(&n->disk);
    node_stop(n);
    if (c->o.peer_lost_on_crash) {
        /* The connection's close reaches each peer after the data already in
         * flight on it, as with TCP: a marker flight (type 0) queued behind
         * them. */
        for (unsigned i = 0; i < c->o.n; i++) {
            raft_id other = i + 1;
            if (other == id) {
                continue;
            }
            raft_time due = c->now + net_delay(c);
            for (unsigned k = 0; k < c->n_flights; k++) {
                const struct flight *f = &c->flights[k];
                if (f->m.from == id && f->m.to == other && f->due >= due) {
                    due = f->due + 1;
                }
            }
            struct raft_message close_marker;
            memset(&close_marker, 0, sizeof close_marker);
            close_marker.from = id;
            close_marker.to = other;
            flight_add(c, &close_marker, due);
        }
    }
}

void cluster_peer_lost(struct cluster *c, raft_id to, raft_id from)
{
    struct node *n = node_get(c, to);
    if (!n->up) {
        return;
    }
    cluster_tracef(c, to, "connection from %llu lost", (unsigned long long)from);
    struct raft_event ev = {.type = RAFT_EVENT_PEER_LOST, .now = c->now};
    ev.peer.id = from;
    node_step(c, n, &ev);
}

/* ------------------------------------------------------------------ stepping */

static void complete_write(struct cluster *c, struct node *n)
{
    struct disk *d = &n->disk;
    struct pending_write w = d->writes[0];
    memmove(d->writes, d->writes + 1, (d->n_writes - 1) * sizeof *d->writes);
    d->n_writes--;
    if (w.truncate_from != 0) {
        disk_log_truncate(d, w.truncate_from);
    }
    raft_index last = 0;
    raft_term term = 0;
    for (unsigned i = 0; i < w.n; i++) {
        raft_index index = w.first + i;
        if (index <= d->log_offset) {
            continue; /* compacted meanwhile */
        }
        if (index <= d->log_offset + d->log_n) {
            disk_log_truncate(d, index);
        }
        CM_BUG_ON(index != d->log_offset + d->log_n + 1);
        disk_log_push(d, &w.entries[i]);
        last = index;
        term = w.entries[i].term;
    }
    write_free(&w);
    if (last != 0) {
        struct raft_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = RAFT_EVENT_PERSISTED;
        ev.now = c->now;
        ev.persisted.index = last;
        ev.persisted.term = term;
        node_step(c, n, &ev);
    }
}

static void deliver(struct cluster *c, unsigned k)
{
    struct flight f = c->flights[k];
    c->flights[k] = c->flights[--c->n_flights];
    struct node *n = node_get(c, f.m.to);
    if (f.m.type == 0) {
        /* A connection-close marker (cluster_crash): like a FIN, it is lost
         * with the link. */
        if (n->up && !link_get(c, f.m.from, f.m.to)->cut) {
            cluster_peer_lost(c, f.m.to, f.m.from);
        }
        return;
    }
    char desc[128];
    msg_describe(&f.m, desc, sizeof desc);
    if (!n->up || link_get(c, f.m.from, f.m.to)->cut) {
        cluster_tracef(c, 0, "drop %llu->%llu %s: %s", (unsigned long long)f.m.from,
                       (unsigned long long)f.m.to, desc, n->up ? "partition" : "down");
    } else {
        cluster_tracef(c, 0, "deliver %llu->%llu %s", (unsigned long long)f.m.from,
                       (unsigned long long)f.m.to, desc);
        struct raft_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = RAFT_EVENT_RECEIVE;
        ev.now = c->now;
        ev.receive = f.m;
        node_step(c, n, &ev);
    }
    msg_free(&f.m);
}

bool cluster_step(struct cluster *c)
{
    /* Find the earliest thing; ties go to disks, then snapshots, then the
     * network (oldest message first), then timers, each by node id. */
    enum { NONE, WRITE, SNAP, MSG, TIMER } kind = NONE;
    raft_time best = UINT64_MAX;
    unsigned who = 0;
    for (unsigned i = 0; i < c->o.n; i++) {
        struct node *n = &c->nodes[i];
        if (n->up && n->disk.n_writes > 0 && n->disk.writes[0].due < best) {
            best = n->disk.writes[0].due;
            kind = WRITE;
            who = i;
        }
    }
    for (unsigned i = 0; i < c->o.n; i++) {
        struct node *n = &c->nodes[i];
        if (n->up && n->snap_pending && n->snap_due < best) {
            best = n->snap_due;
            kind = SNAP;
            who = i;
        }
    }
    for (unsigned i = 0; i < c->n_flights; i++) {
        const struct flight *f = &c->flights[i];
        if (f->due < best ||
            (f->due == best && kind == MSG && f->seq < c->flights[who].seq)) {
            best = f->due;
            kind = MSG;
            who = i;
        }
    }
    for (unsigned i = 0; i < c->o.n; i++) {
        struct node *n = &c->nodes[i];
        if (n->up && raft_timeout(n->r) < best) {
            best = raft_timeout(n->r);
            kind = TIMER;
            who = i;
        }
    }
    if (kind == NONE) {
        return false;
    }
    if (best > c->now) {
        c->now = best;
    }
    struct raft_event ev;
    memset(&ev, 0, sizeof ev);
    ev.now = c->now;
    switch (kind) {
    case WRITE:
        complete_write(c, &c->nodes[who]);
        break;
    case SNAP: {
        struct node *n = &c->nodes[who];
        n->snap_pending = false;
        ev.type = RAFT_EVENT_SNAPSHOT_TAKEN;
        ev.snapshot.index = n->snap_at;
        ev.snapshot.size = n->snap_size;
        node_step(c, n, &ev);
        break;
    }
    case MSG:
        deliver(c, who);
        break;
    case TIMER:
        ev.type = RAFT_EVENT_TICK;
        node_step(c, &c->nodes[who], &ev);
        break;
    case NONE:
        break;
    }
    return true;
}

void cluster_run(struct cluster *c, raft_time ms)
{
    raft_time end = c->now + ms;
    for (;;) {
        /* Peek: stop before anything due after @end. */
        raft_time next = UINT64_MAX;
        for (unsigned i = 0; i < c->o.n; i++) {
            struct node *n = &c->nodes[i];
            if (!n->up) {
                continue;
            }
            next = CM_MIN(next, raft_timeout(n->r));
            if (n->disk.n_writes > 0) {
                next = CM_MIN(next, n->disk.writes[0].due);
            }
            if (n->snap_pending) {
                next = CM_MIN(next, n->snap_due);
            }
        }
        for (unsigned i = 0; i < c->n_flights; i++) {
            next = CM_MIN(next, c->flights[i].due);
        }
        if (next > end) {
            c->now = end;
            return;
        }
        cluster_step(c);
    }
}

bool cluster_run_until(struct cluster *c, bool (*pred)(struct cluster *c, void *arg),
                       void *arg, raft_time ms)
{
    raft_time end = c->now + ms;
    while (!pred(c, arg)) {
        if (c->now >= end) {
            return false;
        }
        cluster_run(c, CM_MIN((raft_time)10, end - c->now));
    }
    return true;
}

/* ------------------------------------------------------------------ queries */

raft_time cluster_now(const struct cluster *c)
{
    return c->now;
}

raft_id cluster_leader(const struct cluster *c)
{
    raft_id best = 0;
    raft_term term = 0;
    for (unsigned i = 0; i < c->o.n; i++) {
        const struct node *n = &c->nodes[i];
        if (n->up && raft_role(n->r) == RAFT_LEADER && raft_current_term(n->r) >= term) {
            best = n->id;
            term = raft_current_term(n->r);
        }
    }
    return best;
}

struct raft *cluster_raft(struct cluster *c, raft_id id)
{
    struct node *n = node_get(c, id);
    return n->up ? n->r : NULL;
}

bool cluster_is_up(const struct cluster *c, raft_id id)
{
    return id >= 1 && id <= c->o.n && c->nodes[id - 1].up;
}

raft_index cluster_applied(const struct cluster *c, raft_id id)
{
    return c->nodes[id - 1].sm_applied;
}

raft_index cluster_committed(const struct cluster *c)
{
    return c->max_committed;
}

unsigned cluster_reads_done(const struct cluster *c)
{
    return c->reads_done;
}

unsigned cluster_reads_failed(const struct cluster *c)
{
    return c->reads_failed;
}

/* ------------------------------------------------------------------ operations */

static struct node *op_node(struct cluster *c, raft_id id)
{
    if (id == 0) {
        id = cluster_leader(c);
    }
    if (id == 0) {
        return NULL;
    }
    struct node *n = node_get(c, id);
    return n->up ? n : NULL;
}

static int op_step(struct cluster *c, struct node *n, struct raft_event *ev,
                   struct raft_update *u)
{
    ev->now = c->now;
    int rv = raft_step(n->r, ev, u);
    if (rv == 0) {
        process_update(c, n, u);
    }
    return rv;
}

int cluster_submit(struct cluster *c, raft_id id, unsigned n, raft_index *ret_index)
{
    struct node *nd = op_node(c, id);
    if (nd == NULL) {
        return CM_ENOTLEADER;
    }
    struct raft_entry entries[16];
    char payload[16][24];
    CM_BUG_ON(n == 0 || n > CM_ARRAY_SIZE(entries));
    for (unsigned i = 0; i < n; i++) {
        int len = snprintf(payload[i], sizeof payload[i], "cmd-%llu",
                           (unsigned long long)++c->payload_seq);
        entries[i].term = 0;
        entries[i].type = RAFT_COMMAND;
        entries[i].buf.base = payload[i];
        entries[i].buf.len = (size_t)len;
    }
    struct raft_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_EVENT_SUBMIT;
    ev.submit.n = n;
    ev.submit.entries = entries;
    struct raft_update u;
    int rv = op_step(c, nd, &ev, &u);
    cluster_tracef(c, 0, "submit %u to %llu: %s", n, (unsigned long long)nd->id,
                   rv == 0 ? "ok" : cm_strerror(rv));
    if (rv == 0 && ret_index != NULL) {
        *ret_index = u.submitted_index + n - 1;
    }
    return rv;
}

int cluster_change(struct cluster *c, raft_id id, uint8_t op, raft_id target)
{
    struct node *nd = op_node(c, id);
    if (nd == NULL) {
        return CM_ENOTLEADER;
    }
    struct raft_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_EVENT_CHANGE;
    ev.change.op = op;
    ev.change.id = target;
    snprintf(ev.change.address, sizeof ev.change.address, "10.0.0.%llu:7000",
             (unsigned long long)target);
    struct raft_update u;
    int rv = op_step(c, nd, &ev, &u);
    cluster_tracef(c, 0, "change op %u server %llu on %llu: %s", op,
                   (unsigned long long)target, (unsigned long long)nd->id,
                   rv == 0 ? "ok" : cm_strerror(rv));
    return rv;
}

int cluster_transfer(struct cluster *c, raft_id id, raft_id target)
{
    struct node *nd = op_node(c, id);
    if (nd == NULL) {
        return CM_ENOTLEADER;
    }
    struct raft_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_EVENT_TRANSFER;
    ev.transfer.id = target;
    struct raft_update u;
    int rv = op_step(c, nd, &ev, &u);
    cluster_tracef(c, 0, "transfer %llu -> %llu: %s", (unsigned long long)nd->id,
                   (unsigned long long)target, rv == 0 ? "ok" : cm_strerror(rv));
    return rv;
}

int cluster_read(struct cluster *c, raft_id id, uint64_t *ret_read_id)
{
    struct node *nd = op_node(c, id);
    if (nd == NULL) {
        return CM_ENOTLEADER;
    }
    if (c->n_reads == CM_ARRAY_SIZE(c->reads)) {
        return CM_EBUSY;
    }
    uint64_t rid = ++c->next_read_id;
    c->reads[c->n_reads++] = (struct read_req){rid, c->max_committed};
    struct raft_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_EVENT_READ_INDEX;
    ev.read.id = rid;
    struct raft_update u;
    int rv = op_step(c, nd, &ev, &u);
    cluster_tracef(c, 0, "read %llu on %llu: %s", (unsigned long long)rid,
                   (unsigned long long)nd->id, rv == 0 ? "ok" : cm_strerror(rv));
    if (rv != 0) {
        for (unsigned j = 0; j < c->n_reads; j++) {
            if (c->reads[j].id == rid) {
                c->reads[j] = c->reads[--c->n_reads];
                break;
            }
        }
    } else if (ret_read_id != NULL) {
        *ret_read_id = rid;
    }
    return rv;
}

/* ------------------------------------------------------------------ network */

void cluster_partition(struct cluster *c, const raft_id *group, unsigned n)
{
    bool in[CLUSTER_MAX] = {false};
    char list[64] = "";
    for (unsigned i = 0; i < n; i++) {
        in[group[i] - 1] = true;
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%llu", i ? "," : "",
                 (unsigned long long)group[i]);
    }
    for (unsigned a = 0; a < c->o.n; a++) {
        for (unsigned b = 0; b < c->o.n; b++) {
            c->links[a][b].cut = in[a] != in[b];
        }
    }
    cluster_tracef(c, 0, "partition {%s} from the rest", list);
}

void cluster_cut(struct cluster *c, raft_id a, raft_id b, bool cut)
{
    link_get(c, a, b)->cut = cut;
    cluster_tracef(c, 0, "%s link %llu->%llu", cut ? "cut" : "restore",
                   (unsigned long long)a, (unsigned long long)b);
}

void cluster_set_faults(struct cluster *c, unsigned loss, unsigned dup)
{
    c->loss = loss;
    c->dup = dup;
    cluster_tracef(c, 0, "faults: loss %u/1000 duplication %u/1000", loss, dup);
}

void cluster_set_delay(struct cluster *c, unsigned min, unsigned max)
{
    c->o.net_delay_min = min;
    c->o.net_delay_max = max;
}

void cluster_heal(struct cluster *c)
{
    memset(c->links, 0, sizeof c->links);
    c->loss = 0;
    c->dup = 0;
    cluster_tracef(c, 0, "heal");
}

/* ------------------------------------------------------------------ liveness */

static const struct raft_config *leader_config(struct cluster *c)
{
    raft_id l = cluster_leader(c);
    return l ? raft_config_current(node_get(c, l)->r) : NULL;
}

static bool converged(struct cluster *c, void *arg)
{
    raft_index target = *(raft_index *)arg;
    raft_id l = cluster_leader(c);
    if (l == 0) {
        return false;
    }
    struct raft *lr = node_get(c, l)->r;
    if (raft_commit_index(lr) < target) {
        return false;
    }
    const struct raft_config *cfg = raft_config_current(lr);
    for (unsigned i = 0; i < cfg->n; i++) {
        const struct node *n = &c->nodes[cfg->servers[i].id - 1];
        if (!n->up || n->sm_applied < target) {
            return false;
        }
    }
    return true;
}

static bool has_leader(struct cluster *c, void *arg)
{
    (void)arg;
    return cluster_leader(c) != 0;
}

void cluster_check_converges(struct cluster *c, raft_time leader_ms, raft_time apply_ms)
{
    cluster_heal(c);
    for (unsigned i = 0; i < c->o.n; i++) {
        if (c->nodes[i].started_once) {
            cluster_start(c, c->nodes[i].id);
        }
    }
    raft_time t0 = c->now;
    if (!cluster_run_until(c, has_leader, NULL, leader_ms)) {
        cluster_fail(c, "no leader %llu ms after healing", (unsigned long long)leader_ms);
    }
    /* Servers added to the configuration but never started must run too. */
    const struct raft_config *cfg = leader_config(c);
    for (unsigned i = 0; cfg != NULL && i < cfg->n; i++) {
        cluster_start(c, cfg->servers[i].id);
    }
    raft_index target = c->max_committed;
    if (!cluster_run_until(c, converged, &target, apply_ms)) {
        cluster_fail(c, "committed %llu not applied everywhere %llu ms after healing",
                     (unsigned long long)target, (unsigned long long)(c->now - t0));
    }
}
