/* The host driver: the core, raft.db and the TCP transport on one libev loop, and
 * a state machine behind struct raft_fsm (see raft.h, section "host").
 *
 * The core's update is carried out in the order raft.h documents. Two things make
 * that safe and fast:
 *  - user callbacks never run while an update is being carried out (the next
 *    raft_step would invalidate it): completions are queued and run afterwards;
 *  - group commit: proposals are queued and submitted together, and appends are
 *    made durable by one raft_store_flush() in an ev_prepare watcher, i.e. once
 *    per loop iteration, just before the loop would block.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "raft/raft.h"

#define HOST_MAX_PROPOSAL (8u * 1024 * 1024) /* one command */
#define HOST_MAX_BATCH    4096               /* proposals per SUBMIT */

struct pending {
    raft_index index; /* where the entry went (0: read waiting for its index) */
    raft_term term;
    uint64_t read_id; /* reads: the id given to the core */
    raft_host_done_fn cb;
    void *data;
};

/* A growable array of struct pending, kept sorted by index where it matters. */
struct pending_vec {
    struct pending *items;
    size_t n;
    size_t cap;
};

struct completion {
    raft_host_done_fn cb;
    void *data;
    int status;
    raft_index index;
};

struct queued_proposal {
    void *buf;
    size_t len;
    raft_host_done_fn cb;
    void *data;
};

struct raft_host {
    struct ev_loop *loop;
    struct raft *raft;
    struct raft_store *store;
    struct raft_transport *transport;
    struct raft_host_options o;
    char *data_dir;
    struct cm_clock *clock;

    ev_timer tick_w;
    ev_prepare flush_w;

    bool flush_pending;   /* appends queued in the store, not yet durable */
    bool snapshot_wanted; /* the core asked for a snapshot */
    bool failed;          /* a fatal error happened; ignore everything */
    bool stepping;        /* inside host_step (re-entrancy guard) */

    struct queued_proposal *queue; /* proposals waiting for the next SUBMIT */
    size_t queue_n;
    size_t queue_cap;
    size_t queue_bytes;

    struct pending_vec proposals; /* submitted, waiting for their index to apply */
    struct pending_vec reads;     /* waiting for the core's read result */
    struct pending_vec read_wait; /* have an index, waiting for apply to reach it */
    uint64_t next_read_id;

    struct completion *done; /* completions to run after the current update */
    size_t done_n;
    size_t done_cap;

    uint8_t *chunk_buf; /* snapshot chunks read for outgoing messages */
    size_t chunk_cap;

    raft_index applied; /* last index handed to the state machine */
    raft_id lost[8];    /* peers whose connection closed, for the next prepare */
    unsigned n_lost;
    enum raft_role last_role;
    raft_term last_term;
    raft_id last_leader;
};

static int host_step(struct raft_host *h, struct raft_event *ev);

static uint64_t host_now(struct raft_host *h)
{
    return cm_clock_mono_ms(h->clock);
}

static void host_fatal(struct raft_host *h, const struct cm_errbuf *eb)
{
    if (h->failed) {
        return;
    }
    h->failed = true;
    ev_timer_stop(h->loop, &h->tick_w);
    ev_prepare_stop(h->loop, &h->flush_w);
    if (h->o.on_fatal != NULL) {
        h->o.on_fatal(h->o.data, eb);
        return;
    }
    cm_error("raft", "fatal: %s", eb->msg);
    exit(1);
}

static int pending_push(struct pending_vec *v, const struct pending *p)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        struct pending *items = cm_reallocarray(v->items, cap, sizeof(*items));
        if (items == NULL) {
            return CM_ENOMEM;
        }
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = *p;
    return 0;
}

/* Remove the first @k items. */
static void pending_drop_front(struct pending_vec *v, size_t k)
{
    memmove(v->items, v->items + k, (v->n - k) * sizeof(*v->items));
    v->n -= k;
}

/* Queue a user callback to run once the current update is done. On OOM the
 * callback runs right away: better early than never, and every caller of
 * complete() is outside the core's update arrays by construction except for
 * apply, where a lost callback would hang a client forever. */
static void complete(struct raft_host *h, raft_host_done_fn cb, void *data, int status,
                     raft_index index)
{
    if (cb == NULL) {
        return;
    }
    if (h->done_n == h->done_cap) {
        size_t cap = h->done_cap ? h->done_cap * 2 : 64;
        struct completion *d = cm_reallocarray(h->done, cap, sizeof(*d));
        if (d == NULL) {
            cm_warn("raft", "out of memory queueing a completion; dropping it");
            return;
        }
        h->done = d;
        h->done_cap = cap;
    }
    h->done[h->done_n++] = (struct completion){cb, data, status, index};
}

/* Run queued completions. Callbacks may propose again (re-entering host_step),
 * which may queue more completions: loop until empty. */
static void run_completions(struct raft_host *h)
{
    /* Take the array: a nested run (a callback that steps again) works on a
     * fresh one and never sees these items twice. */
    while (h->done_n > 0) {
        struct completion *items = h->done;
        size_t n = h->done_n;
        h->done = NULL;
        h->done_n = 0;
        h->done_cap = 0;
        for (size_t i = 0; i < n; i++) {
            items[i].cb(items[i].data, items[i].status, items[i].index);
        }
        cm_free(&items);
    }
}

static void reschedule_tick(struct raft_host *h)
{
    if (h->failed) {
        return;
    }
    uint64_t now = host_now(h);
    raft_time at = raft_timeout(h->raft);
    double delay = at > now ? (double)(at - now) / 1000.0 : 0.0;
    ev_timer_stop(h->loop, &h->tick_w);
    ev_timer_set(&h->tick_w, delay, 0.0);
    ev_timer_start(h->loop, &h->tick_w);
}

/* Tell the transport where every member lives. */
static void sync_peers(struct raft_host *h)
{
    const struct raft_config *c = raft_config_current(h->raft);
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id != h->o.id) {
            int rv = raft_transport_set_peer(h->transport, c->servers[i].id,
                                             c->servers[i].address);
            if (rv != 0) {
                cm_warn("raft", "peer %llu at %s: %s",
                        (unsigned long long)c->servers[i].id, c->servers[i].address,
                        cm_strerror(rv));
            }
        }
    }
}

/* Fill the chunk of an outgoing InstallSnapshot from the stored snapshot. Returns
 * false when the message must be dropped (the core will resend). */
static bool fill_snapshot_chunk(struct raft_host *h, struct raft_message *m)
{
    struct raft_snapshot_msg *s = &m->snapshot;
    if (s->chunk.len > h->chunk_cap) {
        uint8_t *b = cm_realloc(h->chunk_buf, s->chunk.len);
        if (b == NULL) {
            return false;
        }
        h->chunk_buf = b;
        h->chunk_cap = s->chunk.len;
    }
    struct cm_errbuf eb;
    int rv = raft_store_snapshot_read(h->store, s->last_index, s->offset, h->chunk_buf,
                                      s->chunk.len, &eb);
    if (rv != 0) {
        cm_warn("raft", "snapshot chunk for %llu: %s", (unsigned long long)m->to, eb.msg);
        return false;
    }
    s->chunk.base = h->chunk_buf;
    return true;
}

/* Complete proposals whose index is now applied: success when the entry at that
 * index is the one we proposed (same term), else it was overwritten. */
static void settle_proposals(struct raft_host *h, raft_index index, raft_term term)
{
    size_t k = 0;
    while (k < h->proposals.n && h->proposals.items[k].index <= index) {
        struct pending *p = &h->proposals.items[k];
        if (p->index == index) {
            complete(h, p->cb, p->data, p->term == term ? 0 : CM_ENOTLEADER, index);
        } else {
            /* Skipped over (a snapshot installed past it): its fate is unknown
             * to us, report it as not committed by this leader. */
            complete(h, p->cb, p->data, CM_ENOTLEADER, p->index);
        }
        k++;
    }
    if (k > 0) {
        pending_drop_front(&h->proposals, k);
    }
}

static void settle_reads(struct raft_host *h)
{
    size_t k = 0;
    for (size_t i = 0; i < h->read_wait.n; i++) {
        struct pending *p = &h->read_wait.items[i];
        if (p->index <= h->applied) {
            complete(h, p->cb, p->data, 0, p->index);
        } else {
            h->read_wait.items[k++] = *p;
        }
    }
    h->read_wait.n = k;
}

static int take_snapshot(struct raft_host *h)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    raft_index index = h->applied;
    raft_term term;
    struct raft_config config = {0};
    raft_index config_index;
    int rv = raft_snapshot_meta(h->raft, index, &term, &config, &config_index);
    if (rv != 0) {
        return rv == CM_ENOMEM ? rv : 0; /* nothing to snapshot at this index */
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/snapshot-%llu.tmp", h->data_dir,
             (unsigned long long)index);
    unlink(path);
    rv = h->o.fsm.snapshot(h->o.fsm.data, path, &eb);
    if (rv == 0) {
        rv = raft_store_snapshot_put(h->store, path, index, term, &config, config_index,
                                     &eb);
    }
    raft_config_close(&config);
    if (rv == CM_ESTALE) {
        /* A newer snapshot is already stored (e.g. installed from the leader
         * meanwhile): this one is not needed. */
        unlink(path);
        return 0;
    }
    if (rv != 0) {
        unlink(path);
        cm_err_wrapf(&eb, "snapshot at %llu", (unsigned long long)index);
        host_fatal(h, &eb);
        return rv;
    }
    const char *stored = raft_store_snapshot_path(h->store);
    struct stat st;
    uint64_t size = 0;
    if (stored != NULL && stat(stored, &st) == 0) {
        size = (uint64_t)st.st_size;
    }
    struct raft_event ev = {.type = RAFT_EVENT_SNAPSHOT_TAKEN, .now = host_now(h)};
    ev.snapshot.index = index;
    ev.snapshot.size = size;
    return host_step(h, &ev);
}

/* Carry out one update, in the order raft.h documents. */
static void carry_out(struct raft_host *h, struct raft_update *u)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv;

    /* 1. Term and vote, durable before any message that depends on them. */
    if (u->hard_state_changed) {
        rv = raft_store_set_hard_state(h->store, u->term, u->voted_for, &eb);
        if (rv != 0) {
            host_fatal(h, &eb);
            return;
        }
    }

    /* 2. Incoming snapshot. Queued appends go first so the store's order holds. */
    bool config_changed = false;
    if (u->snapshot_chunk.chunk.len > 0 || u->snapshot_install) {
        if (h->flush_pending) {
            raft_index i;
            raft_term t;
            rv = raft_store_flush(h->store, &i, &t, &eb);
            if (rv != 0) {
                host_fatal(h, &eb);
                return;
            }
            h->flush_pending = false;
        }
        if (u->snapshot_chunk.chunk.len > 0) {
            rv = raft_store_snapshot_write_chunk(
                h->store, u->snapshot_chunk.last_index, u->snapshot_chunk.offset,
                u->snapshot_chunk.chunk.base, u->snapshot_chunk.chunk.len, &eb);
            if (rv != 0) {
                host_fatal(h, &eb);
                return;
            }
        }
        if (u->snapshot_install) {
            const char *path = NULL;
            rv = raft_store_snapshot_finish(
                h->store, u->snapshot_chunk.last_index, u->snapshot_chunk.last_term,
                &u->snapshot_config, u->snapshot_config_index, &path, &eb);
            if (rv == 0) {
                rv = h->o.fsm.restore(h->o.fsm.data, path, u->snapshot_chunk.last_index,
                                      &eb);
            }
            if (rv != 0) {
                host_fatal(h, &eb);
                return;
            }
            h->applied = u->snapshot_chunk.last_index;
            settle_proposals(h, h->applied, 0);
            config_changed = true;
        }
    }

    /* 3. Log: truncate and append; durability comes with the next flush. */
    if (u->truncate_from != 0 || u->n_entries > 0) {
        rv = raft_store_append(h->store, u->truncate_from, u->entries_first, u->entries,
                               u->n_entries, &eb);
        if (rv != 0) {
            host_fatal(h, &eb);
            return;
        }
        if (u->n_entries > 0) {
            h->flush_pending = true;
            ev_prepare_start(h->loop, &h->flush_w);
        }
        for (unsigned i = 0; i < u->n_entries; i++) {
            config_changed |= u->entries[i].type == RAFT_CHANGE;
        }
        config_changed |= u->truncate_from != 0;
    }

    /* 4. Compaction. */
    if (u->compact_to != 0) {
        rv = raft_store_compact(h->store, u->compact_to, &eb);
        if (rv != 0) {
            cm_warn("raft", "compaction to %llu: %s", (unsigned long long)u->compact_to,
                    eb.msg);
        }
    }

    if (config_changed) {
        sync_peers(h);
    }

    /* 5. Messages. */
    for (unsigned i = 0; i < u->n_messages; i++) {
        struct raft_message *m = &u->messages[i];
        if (m->type == RAFT_MSG_SNAPSHOT && m->snapshot.chunk.base == NULL &&
            m->snapshot.chunk.len > 0 && !fill_snapshot_chunk(h, m)) {
            continue;
        }
        rv = raft_transport_send(h->transport, m);
        if (rv != 0 && rv != CM_EAGAIN && rv != CM_ENOTFOUND) {
            cm_debug("raft", "send to %llu: %s", (unsigned long long)m->to,
                     cm_strerror(rv));
        }
    }

    /* 6. Apply. */
    for (unsigned i = 0; i < u->n_apply; i++) {
        raft_index index = u->apply_first + i;
        const struct raft_entry *e = &u->apply[i];
        if (index <= h->applied) {
            continue;
        }
        rv = h->o.fsm.apply(h->o.fsm.data, index, e->type, e->buf.base, e->buf.len);
        if (rv != 0) {
            cm_err_setf(&eb, rv, "state machine failed to apply entry %llu: %s",
                        (unsigned long long)index, cm_strerror(rv));
            host_fatal(h, &eb);
            return;
        }
        h->applied = index;
        settle_proposals(h, index, e->term);
    }

    /* 7. Snapshot request: taken after this update, outside the core's arrays. */
    if (u->snapshot_at != 0) {
        h->snapshot_wanted = true;
        ev_prepare_start(h->loop, &h->flush_w);
    }

    /* 8. Reads. */
    for (unsigned i = 0; i < u->n_reads; i++) {
        const struct raft_read_result *r = &u->reads[i];
        for (size_t j = 0; j < h->reads.n; j++) {
            struct pending *p = &h->reads.items[j];
            if (p->read_id != r->id) {
                continue;
            }
            struct pending w = *p;
            memmove(p, p + 1, (h->reads.n - j - 1) * sizeof(*p));
            h->reads.n--;
            if (r->status != 0) {
                complete(h, w.cb, w.data, r->status, 0);
            } else {
                w.index = r->index;
                if (pending_push(&h->read_wait, &w) != 0) {
                    complete(h, w.cb, w.data, CM_ENOMEM, 0);
                }
            }
            break;
        }
    }
    settle_reads(h);

    if (u->role_changed) {
        enum raft_role role = raft_role(h->raft);
        raft_term term = raft_current_term(h->raft);
        raft_id leader = raft_leader(h->raft);
        if (role != RAFT_LEADER) {
            /* Reads in flight on a former leader can no longer be confirmed. */
            for (size_t j = 0; j < h->reads.n; j++) {
                complete(h, h->reads.items[j].cb, h->reads.items[j].data, CM_ENOTLEADER,
                         0);
            }
            h->reads.n = 0;
        }
        if (role != h->last_role || term != h->last_term || leader != h->last_leader) {
            h->last_role = role;
            h->last_term = term;
            h->last_leader = leader;
            if (h->o.on_change != NULL) {
                h->o.on_change(h->o.data, role, term, leader);
            }
        }
    }
}

static int host_step(struct raft_host *h, struct raft_event *ev)
{
    if (h->failed) {
        return CM_ESHUTDOWN;
    }
    struct raft_update u;
    int rv = raft_step(h->raft, ev, &u);
    if (rv != 0) {
        return rv;
    }
    bool outer = !h->stepping;
    h->stepping = true;
    carry_out(h, &u);
    if (outer) {
        h->stepping = false;
        reschedule_tick(h);
        run_completions(h);
    }
    return 0;
}

/* Submit every queued proposal as one batch. */
static void submit_queue(struct raft_host *h)
{
    while (h->queue_n > 0 && !h->failed) {
        size_t n = CM_MIN(h->queue_n, (size_t)HOST_MAX_BATCH);
        struct raft_entry entries[64];
        struct raft_entry *es = n <= CM_ARRAY_SIZE(entries)
                                    ? entries
                                    : cm_calloc(n, sizeof(struct raft_entry));
        int rv = CM_ENOMEM;
        raft_index first = 0;
        raft_term term = 0;
        if (es != NULL) {
            for (size_t i = 0; i < n; i++) {
                es[i].type = RAFT_COMMAND;
                es[i].buf.base = h->queue[i].buf;
                es[i].buf.len = h->queue[i].len;
            }
            struct raft_event ev = {.type = RAFT_EVENT_SUBMIT, .now = host_now(h)};
            ev.submit.n = (unsigned)n;
            ev.submit.entries = es;
            struct raft_update u;
            rv = raft_step(h->raft, &ev, &u);
            if (rv == 0) {
                first = u.submitted_index;
                term = u.submitted_term;
                h->stepping = true;
                for (size_t i = 0; i < n; i++) {
                    struct pending p = {first + i, term, 0, h->queue[i].cb,
                                        h->queue[i].data};
                    if (pending_push(&h->proposals, &p) != 0) {
                        /* Cannot track it: the entry may still commit, but the
                         * caller must not wait forever. */
                        complete(h, p.cb, p.data, CM_ENOMEM, 0);
                    }
                }
                carry_out(h, &u);
                h->stepping = false;
            }
            if (es != entries) {
                cm_free(&es);
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (rv != 0) {
                complete(h, h->queue[i].cb, h->queue[i].data, rv, 0);
            }
            cm_free(&h->queue[i].buf);
            h->queue_bytes -= h->queue[i].len;
        }
        memmove(h->queue, h->queue + n, (h->queue_n - n) * sizeof(*h->queue));
        h->queue_n -= n;
        reschedule_tick(h);
        run_completions(h);
    }
}

/* ev_prepare: once per loop iteration, before blocking. Submit queued
 * proposals, make every append of this iteration durable with one flush, and
 * take a snapshot when asked. */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct raft_host *h = cm_container_of(w, struct raft_host, flush_w);
    for (unsigned i = 0; i < h->n_lost && !h->failed; i++) {
        struct raft_event ev = {.type = RAFT_EVENT_PEER_LOST, .now = host_now(h)};
        ev.peer.id = h->lost[i];
        host_step(h, &ev);
    }
    h->n_lost = 0;
    for (int round = 0; round < 8 && !h->failed; round++) {
        submit_queue(h);
        if (h->flush_pending) {
            struct cm_errbuf eb;
            raft_index index;
            raft_term term;
            h->flush_pending = false;
            int rv = raft_store_flush(h->store, &index, &term, &eb);
            if (rv != 0) {
                host_fatal(h, &eb);
                return;
            }
            struct raft_event ev = {.type = RAFT_EVENT_PERSISTED, .now = host_now(h)};
            ev.persisted.index = index;
            ev.persisted.term = term;
            host_step(h, &ev);
            continue;
        }
        if (h->snapshot_wanted) {
            h->snapshot_wanted = false;
            take_snapshot(h);
            continue;
        }
        break;
    }
    if (!h->flush_pending && !h->snapshot_wanted && h->queue_n == 0 && h->n_lost == 0) {
        ev_prepare_stop(h->loop, &h->flush_w);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct raft_host *h = cm_container_of(w, struct raft_host, tick_w);
    struct raft_event ev = {.type = RAFT_EVENT_TICK, .now = host_now(h)};
    if (host_step(h, &ev) != 0) {
        reschedule_tick(h);
    }
}

/* The transport may not be re-entered from this callback: note the peer and
 * let the next ev_prepare feed the core. */
static void peer_lost_cb(void *data, raft_id id)
{
    struct raft_host *h = data;
    if (h->n_lost < CM_ARRAY_SIZE(h->lost)) {
        h->lost[h->n_lost++] = id;
        ev_prepare_start(h->loop, &h->flush_w);
    }
}

static void recv_cb(void *data, const struct raft_message *m)
{
    struct raft_host *h = data;
    struct raft_event ev = {.type = RAFT_EVENT_RECEIVE, .now = host_now(h)};
    ev.receive = *m;
    host_step(h, &ev);
}

/* The transport's application hooks, passed on with the host's user data. */
static void rpc_cb(void *data, raft_id from, const void *body, size_t len)
{
    struct raft_host *h = data;
    if (!h->failed) {
        h->o.rpc(h->o.data, from, body, len);
    }
}

static int authorize_cb(void *data, const struct cm_stream *s, raft_id id)
{
    struct raft_host *h = data;
    return h->o.authorize(h->o.data, s, id);
}

static void join_cb(void *data, struct cm_stream *s, const void *body, size_t len)
{
    struct raft_host *h = data;
    h->o.join(h->o.data, s, body, len);
}

int raft_host_send_rpc(struct raft_host *h, raft_id to, const void *body, size_t len)
{
    if (h->failed) {
        return CM_ESHUTDOWN;
    }
    return raft_transport_send_rpc(h->transport, to, body, len);
}

int raft_host_set_peer(struct raft_host *h, raft_id id, const char *address)
{
    if (h->failed) {
        return CM_ESHUTDOWN;
    }
    return raft_transport_set_peer(h->transport, id, address);
}

void raft_host_transport_stats(const struct raft_host *h,
                               struct raft_transport_stats *ret)
{
    raft_transport_get_stats(h->transport, ret);
}

int raft_host_propose(struct raft_host *h, const void *buf, size_t len,
                      raft_host_done_fn cb, void *data)
{
    if (h->failed) {
        return CM_ESHUTDOWN;
    }
    if (raft_role(h->raft) != RAFT_LEADER) {
        return CM_ENOTLEADER;
    }
    if (len > HOST_MAX_PROPOSAL) {
        return CM_ETOOBIG;
    }
    if (h->queue_n == h->queue_cap) {
        size_t cap = h->queue_cap ? h->queue_cap * 2 : 64;
        struct queued_proposal *q = cm_reallocarray(h->queue, cap, sizeof(*q));
        if (q == NULL) {
            return CM_ENOMEM;
        }
        h->queue = q;
        h->queue_cap = cap;
    }
    void *copy = cm_memdup(buf, len);
    if (copy == NULL) {
        return CM_ENOMEM;
    }
    h->queue[h->queue_n++] = (struct queued_proposal){copy, len, cb, data};
    h->queue_bytes += len;
    ev_prepare_start(h->loop, &h->flush_w);
    return 0;
}

int raft_host_read_index(struct raft_host *h, raft_host_done_fn cb, void *data)
{
    if (h->failed) {
        return CM_ESHUTDOWN;
    }
    struct pending p = {0, 0, ++h->next_read_id, cb, data};
    int rv = pending_push(&h->reads, &p);
    if (rv != 0) {
        return rv;
    }
    struct raft_event ev = {.type = RAFT_EVENT_READ_INDEX, .now = host_now(h)};
    ev.read.id = p.read_id;
    rv = host_step(h, &ev);
    if (rv != 0) {
        /* Not registered with the core: forget it. */
        for (size_t j = 0; j < h->reads.n; j++) {
            if (h->reads.items[j].read_id == p.read_id) {
                memmove(&h->reads.items[j], &h->reads.items[j + 1],
                        (h->reads.n - j - 1) * sizeof(struct pending));
                h->reads.n--;
                break;
            }
        }
    }
    return rv;
}

int raft_host_change(struct raft_host *h, enum raft_change_op op, raft_id id,
                     const char *address, raft_host_done_fn cb, void *data)
{
    if (h->failed) {
        return CM_ESHUTDOWN;
    }
    struct raft_event ev = {.type = RAFT_EVENT_CHANGE, .now = host_now(h)};
    ev.change.op = (uint8_t)op;
    ev.change.id = id;
    if (address != NULL) {
        if (strlen(address) >= sizeof(ev.change.address)) {
            return CM_EINVAL;
        }
        snprintf(ev.change.address, sizeof(ev.change.address), "%s", address);
    }
    struct raft_update u;
    int rv = raft_step(h->raft, &ev, &u);
    if (rv != 0) {
        return rv;
    }
    struct pending p = {u.submitted_index, u.submitted_term, 0, cb, data};
    h->stepping = true;
    if (pending_push(&h->proposals, &p) != 0) {
        complete(h, cb, data, CM_ENOMEM, 0);
    }
    carry_out(h, &u);
    h->stepping = false;
    reschedule_tick(h);
    run_completions(h);
    return 0;
}

int raft_host_transfer(struct raft_host *h, raft_id id)
{
    struct raft_event ev = {.type = RAFT_EVENT_TRANSFER, .now = host_now(h)};
    ev.transfer.id = id;
    return host_step(h, &ev);
}

const struct raft *raft_host_core(const struct raft_host *h)
{
    return h->raft;
}

uint16_t raft_host_port(const struct raft_host *h)
{
    return raft_transport_port(h->transport);
}

/* Write the bootstrap configuration as entry 1 when the log is empty. */
static int maybe_bootstrap(struct raft_host *h, struct raft_load *load,
                           struct cm_errbuf *eb)
{
    if (h->o.bootstrap == NULL || load->n_entries > 0 || load->snapshot_index > 0) {
        return 0;
    }
    struct raft_entry e;
    int rv = raft_bootstrap_entry(h->o.bootstrap, &e);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "bootstrap entry: %s", cm_strerror(rv));
    }
    raft_index index;
    raft_term term;
    rv = raft_store_append(h->store, 0, 1, &e, 1, eb);
    if (rv == 0) {
        rv = raft_store_flush(h->store, &index, &term, eb);
    }
    cm_free(&e.buf.base);
    if (rv != 0) {
        return rv;
    }
    raft_load_close(load);
    return raft_store_load(h->store, load, eb);
}

int raft_host_start(struct ev_loop *loop, const struct raft_host_options *o,
                    struct raft_host **ret, struct cm_errbuf *eb)
{
    int rv;
    struct raft_host *h = cm_calloc(1, sizeof(*h));
    if (h == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "raft host: out of memory");
    }
    h->loop = loop;
    h->o = *o;
    h->clock = cm_clock_system();
    h->data_dir = cm_strdup(o->data_dir);
    if (h->data_dir == NULL) {
        rv = cm_err_setf(eb, CM_ENOMEM, "raft host: out of memory");
        goto err_after_alloc;
    }
    ev_timer_init(&h->tick_w, tick_cb, 0.0, 0.0);
    ev_prepare_init(&h->flush_w, flush_cb);

    rv = raft_store_open(o->data_dir, &h->store, eb);
    if (rv != 0) {
        goto err_after_alloc;
    }
    struct raft_load load;
    rv = raft_store_load(h->store, &load, eb);
    if (rv != 0) {
        goto err_after_store;
    }
    rv = maybe_bootstrap(h, &load, eb);
    if (rv != 0) {
        goto err_after_load;
    }

    /* The state machine may be behind the latest snapshot (e.g. state.db lost, or
     * the snapshot was installed just before a crash): restore it first. */
    raft_index applied = o->fsm.applied_index(o->fsm.data);
    if (load.snapshot_index > applied) {
        const char *path = raft_store_snapshot_path(h->store);
        if (path == NULL) {
            rv = cm_err_setf(eb, CM_ECORRUPT,
                             "snapshot %llu recorded but its file is "
                             "missing in %s",
                             (unsigned long long)load.snapshot_index, o->data_dir);
            goto err_after_load;
        }
        rv = o->fsm.restore(o->fsm.data, path, load.snapshot_index, eb);
        if (rv != 0) {
            goto err_after_load;
        }
        applied = load.snapshot_index;
    }
    load.applied_index = applied;
    h->applied = applied;

    struct raft_options ro = o->raft;
    ro.id = o->id;
    h->raft = raft_new(&ro);
    if (h->raft == NULL) {
        rv = cm_err_setf(eb, CM_ENOMEM, "raft: out of memory");
        goto err_after_load;
    }

    struct raft_transport_options to = {
        .id = o->id,
        .cluster_id = o->cluster_id,
        .bind_address = o->bind_address,
        .recv = recv_cb,
        .peer_lost = peer_lost_cb,
        .data = h,
        .wrap = o->wrap,
        .wrap_data = o->wrap_data,
        .rpc = o->rpc != NULL ? rpc_cb : NULL,
        .authorize = o->authorize != NULL ? authorize_cb : NULL,
        .join = o->join != NULL ? join_cb : NULL,
    };
    rv = raft_transport_start(loop, &to, &h->transport, eb);
    if (rv != 0) {
        goto err_after_raft;
    }

    struct raft_update u;
    rv = raft_start(h->raft, &load, host_now(h), &u);
    if (rv != 0) {
        cm_err_setf(eb, rv, "raft start: %s", cm_strerror(rv));
        goto err_after_transport;
    }
    raft_load_close(&load);
    for (unsigned i = 0; i < o->n_peers; i++) {
        if (o->peers[i].id != o->id) {
            (void)raft_transport_set_peer(h->transport, o->peers[i].id,
                                          o->peers[i].address);
        }
    }
    sync_peers(h);
    h->stepping = true;
    carry_out(h, &u);
    h->stepping = false;
    reschedule_tick(h);
    run_completions(h);
    *ret = h;
    return 0;

err_after_transport:
    raft_transport_close(h->transport);
err_after_raft:
    raft_free(h->raft);
err_after_load:
    raft_load_close(&load);
err_after_store:
    raft_store_close(h->store);
err_after_alloc:
    cm_free(&h->data_dir);
    cm_free(&h);
    return rv;
}

static void fail_vec(struct raft_host *h, struct pending_vec *v)
{
    for (size_t i = 0; i < v->n; i++) {
        complete(h, v->items[i].cb, v->items[i].data, CM_ESHUTDOWN, 0);
    }
    v->n = 0;
    cm_free(&v->items);
    v->cap = 0;
}

void raft_host_close(struct raft_host *h)
{
    if (h == NULL) {
        return;
    }
    ev_timer_stop(h->loop, &h->tick_w);
    ev_prepare_stop(h->loop, &h->flush_w);
    if (h->flush_pending && !h->failed) {
        struct cm_errbuf eb;
        raft_index index;
        raft_term term;
        if (raft_store_flush(h->store, &index, &term, &eb) != 0) {
            cm_warn("raft", "final flush: %s", eb.msg);
        }
    }
    h->failed = true; /* nothing re-enters from here on */
    for (size_t i = 0; i < h->queue_n; i++) {
        complete(h, h->queue[i].cb, h->queue[i].data, CM_ESHUTDOWN, 0);
        cm_free(&h->queue[i].buf);
    }
    h->queue_n = 0;
    cm_free(&h->queue);
    fail_vec(h, &h->proposals);
    fail_vec(h, &h->reads);
    fail_vec(h, &h->read_wait);
    run_completions(h);
    cm_free(&h->done);
    raft_transport_close(h->transport);
    raft_free(h->raft);
    raft_store_close(h->store);
    cm_free(&h->chunk_buf);
    cm_free(&h->data_dir);
    cm_free(&h);
}
