/* raft/replication.c: log replication (Raft §5.3), commitment (§5.4.2),
 * snapshots and InstallSnapshot (§7, thesis §5), one-at-a-time membership
 * changes (thesis §4.1-§4.3), proposals and ReadIndex (thesis §6.4). */
#include <string.h>

#include "raft/core_int.h"

static void append_local(struct raft *r, const struct raft_entry *e)
{
    raft__log_push(&r->log, e);
    raft_index index = raft__log_last(&r->log);
    if (r->out_append_from == 0 || index < r->out_append_from) {
        r->out_append_from = index;
    }
}

/* ------------------------------------------------------------------ leader: send */

static void inflight_push(struct raft *r, struct raft__progress *pr, raft_index last)
{
    if (pr->in_count == 0) {
        pr->last_advance = r->now;
    }
    unsigned slot = (pr->in_head + pr->in_count) % RAFT__INFLIGHT_MAX;
    pr->inflight[slot] = last;
    pr->in_count++;
}

static void inflight_free_to(struct raft__progress *pr, raft_index match)
{
    while (pr->in_count > 0 && pr->inflight[pr->in_head] <= match) {
        pr->in_head = (pr->in_head + 1) % RAFT__INFLIGHT_MAX;
        pr->in_count--;
    }
}

static void become_probe(struct raft *r, struct raft__progress *pr, raft_index next)
{
    pr->state = RAFT__PROBE;
    pr->next = CM_MAX(next, pr->match + 1);
    pr->paused = false;
    pr->in_head = 0;
    pr->in_count = 0;
    pr->last_advance = r->now;
}

static void send_snapshot_chunk(struct raft *r, struct raft__progress *pr)
{
    if (pr->snap_index != r->snap.index) {
        /* A newer snapshot replaced the one being sent: start over. */
        pr->snap_index = r->snap.index;
        pr->snap_offset = 0;
    }
    struct raft_message *m = raft__send(r, RAFT_MSG_SNAPSHOT, pr->id);
    if (m == NULL) {
        return;
    }
    uint64_t left = r->snap.size - CM_MIN(pr->snap_offset, r->snap.size);
    size_t len = (size_t)CM_MIN(left, (uint64_t)r->o.snapshot_chunk);
    struct raft_snapshot_msg *s = &m->snapshot;
    s->term = r->term;
    s->last_index = r->snap.index;
    s->last_term = r->snap.term;
    s->config = r->snap.config; /* borrowed until the next step */
    s->config_index = r->snap.config_index;
    s->size = r->snap.size;
    s->offset = pr->snap_offset;
    s->chunk.base = NULL; /* the host fills in the bytes */
    s->chunk.len = len;
    s->done = pr->snap_offset + len >= r->snap.size;
    pr->snap_sent = r->now;
    if (pr->snap_offset == 0) {
        raft__tracef(r, "send snapshot %llu to %llu", (unsigned long long)r->snap.index,
                     (unsigned long long)pr->id);
    }
}

static void become_snapshot(struct raft *r, struct raft__progress *pr)
{
    pr->state = RAFT__SNAPSHOT;
    pr->snap_index = r->snap.index;
    pr->snap_offset = 0;
    pr->in_head = 0;
    pr->in_count = 0;
    send_snapshot_chunk(r, pr);
}

/* AppendEntries with as many entries from next_index as the batching limits
 * allow (or none for a heartbeat). */
void raft__send_append(struct raft *r, struct raft__progress *pr, bool heartbeat)
{
    if (pr->id == r->o.id || pr->state == RAFT__SNAPSHOT) {
        return;
    }
    raft_index prev = pr->next - 1;
    raft_term prev_term;
    if (!raft__term_at(r, prev, &prev_term) || prev < r->log.offset) {
        /* The entries it needs are compacted (§7). */
        become_snapshot(r, pr);
        return;
    }
    raft_index last = raft__last_index(r);
    unsigned n = 0;
    size_t bytes = 0;
    if (!heartbeat) {
        while (prev + n < last && n < r->o.max_append_entries) {
            const struct raft_entry *e = raft__log_get(&r->log, prev + n + 1);
            if (n > 0 && bytes + e->buf.len > r->o.max_append_bytes) {
                break;
            }
            bytes += e->buf.len;
            n++;
        }
    }
    struct raft_message *m = raft__send(r, RAFT_MSG_APPEND, pr->id);
    if (m == NULL) {
        return;
    }
    m->append.term = r->term;
    m->append.prev_index = prev;
    m->append.prev_term = prev_term;
    m->append.commit = r->commit;
    m->append.seq = r->seq;
    m->append.n_entries = n;
    r->msg_first[r->n_msgs - 1] = prev + 1;
    if (pr->state == RAFT__PIPELINE) {
        if (n > 0) {
            pr->next = prev + n + 1;
            inflight_push(r, pr, prev + n);
        }
    } else {
        pr->paused = true;
    }
}

/* An empty AppendEntries at the match index: it always succeeds on a follower
 * of this term, so it asserts leadership and carries the read round. */
static void send_heartbeat(struct raft *r, struct raft__progress *pr)
{
    raft_term t;
    if (pr->id == r->o.id || !raft__term_at(r, pr->match, &t)) {
        return;
    }
    struct raft_message *m = raft__send(r, RAFT_MSG_APPEND, pr->id);
    if (m == NULL) {
        return;
    }
    m->append.term = r->term;
    m->append.prev_index = pr->match;
    m->append.prev_term = t;
    m->append.commit = r->commit;
    m->append.seq = r->seq;
}

/* Send what the follower's state allows: one probe, or fill the pipeline. */
static void replicate(struct raft *r, struct raft__progress *pr)
{
    raft_index last = raft__last_index(r);
    switch (pr->state) {
    case RAFT__PROBE:
        if (!pr->paused) {
            raft__send_append(r, pr, false);
        }
        break;
    case RAFT__PIPELINE:
        while (pr->in_count < r->o.max_inflight && pr->next <= last &&
               pr->state == RAFT__PIPELINE) {
            raft__send_append(r, pr, false);
        }
        break;
    case RAFT__SNAPSHOT:
        break;
    }
}

void raft__replicate_all(struct raft *r)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        replicate(r, &r->progress[i]);
    }
}

void raft__heartbeat(struct raft *r)
{
    r->heartbeat_due = r->now + r->o.heartbeat_ms;
    for (unsigned i = 0; i < r->config.n; i++) {
        struct raft__progress *pr = &r->progress[i];
        if (pr->id == r->o.id) {
            continue;
        }
        switch (pr->state) {
        case RAFT__PROBE:
            pr->paused = false;
            raft__send_append(r, pr, false);
            break;
        case RAFT__PIPELINE:
            if (pr->in_count > 0 && r->now >= pr->last_advance + r->o.election_ms / 2) {
                /* No progress for a while: messages were lost; probe again. */
                become_probe(r, pr, pr->match + 1);
                raft__send_append(r, pr, false);
            } else {
                send_heartbeat(r, pr);
                replicate(r, pr);
            }
            break;
        case RAFT__SNAPSHOT:
            if (r->now >= pr->snap_sent + r->o.heartbeat_ms) {
                send_snapshot_chunk(r, pr);
            }
            break;
        }
    }
}

/* Raft §5.4.2 / thesis §3.6.2: a new leader appends a no-op so that an entry of
 * its own term commits, which also commits everything before it. */
void raft__leader_init(struct raft *r)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        struct raft__progress *pr = &r->progress[i];
        raft_id id = pr->id;
        memset(pr, 0, sizeof *pr);
        pr->id = id;
        pr->next = raft__last_index(r) + 1;
        pr->state = RAFT__PROBE;
        pr->last_advance = r->now;
    }
    r->transfer_to = 0;
    r->n_reads = 0;
    struct raft_entry barrier = {r->term, RAFT_BARRIER, {NULL, 0}};
    append_local(r, &barrier); /* room reserved by out_reserve() */
    r->term_start = raft__last_index(r);
    r->heartbeat_due = r->now + r->o.heartbeat_ms;
    r->quorum_check_due = r->now + r->o.election_ms;
    raft__replicate_all(r);
}

/* ------------------------------------------------------------------ commitment */

static void commit_to(struct raft *r, raft_index index)
{
    if (index <= r->commit) {
        return;
    }
    raft__tracef(r, "commit %llu -> %llu", (unsigned long long)r->commit,
                 (unsigned long long)index);
    r->commit = index;
    raft__config_committed(r);
}

/* The leader counts itself only for what it has persisted. */
static raft_index progress_match(const struct raft *r, unsigned i)
{
    return r->progress[i].id == r->o.id ? r->persisted : r->progress[i].match;
}

/* Raft §5.3/§5.4.2: the highest index stored on a majority of voters commits,
 * but only if it belongs to the current term (counting replicas of older terms
 * is unsafe, Fig. 8). A leader outside the configuration does not count itself
 * (thesis §4.2.2): only voters of the configuration count. */
void raft__maybe_commit(struct raft *r)
{
    if (r->role != RAFT_LEADER) {
        return;
    }
    /* The largest match index held by a majority of voters: configurations
     * are small, so count for each candidate value instead of sorting. */
    unsigned voters = raft_config_voter_count(&r->config);
    raft_index q = 0;
    for (unsigned i = 0; i < r->config.n; i++) {
        if (r->config.servers[i].role != RAFT_VOTER) {
            continue;
        }
        raft_index m = progress_match(r, i);
        if (m <= q) {
            continue;
        }
        unsigned n = 0;
        for (unsigned j = 0; j < r->config.n; j++) {
            if (r->config.servers[j].role == RAFT_VOTER && progress_match(r, j) >= m) {
                n++;
            }
        }
        if (n * 2 > voters) {
            q = m;
        }
    }
    raft_term t;
    if (q > r->commit && raft__term_at(r, q, &t) && t == r->term) {
        commit_to(r, q);
        raft__reads_check(r);
    }
}

/* Thesis §4.2.2: once a configuration without it commits, a leader that is no
 * longer a voter steps down. */
void raft__config_committed(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->config_index > r->commit) {
        return;
    }
    if (!raft__is_voter(r, r->o.id)) {
        raft__tracef(r, "step down: not a voter in configuration %llu",
                     (unsigned long long)r->config_index);
        raft__become_follower(r, r->term, 0);
    }
}

/* ------------------------------------------------------------------ follower: append */

void raft__append_plan_close(struct raft__append_plan *p)
{
    for (unsigned i = 0; i < p->n_copies; i++) {
        cm_free(&p->copies[i].buf.base);
    }
    cm_free(&p->copies);
    p->n_copies = 0;
    raft_config_close(&p->config);
}

int raft__append_prepare(struct raft *r, const struct raft_message *m,
                         struct raft__append_plan *p)
{
    const struct raft_append *a = &m->append;
    memset(p, 0, sizeof *p);
    raft_term t;
    if (a->prev_index > raft__last_index(r)) {
        return 0;
    }
    if (raft__term_at(r, a->prev_index, &t)) {
        if (t != a->prev_term) {
            return 0;
        }
    } else {
        /* Compacted, hence committed: it matches (Log Matching, §5.3). */
        CM_BUG_ON(a->prev_index > r->commit);
    }
    p->match = true;

    /* Skip what we already have; the first entry that is new or conflicts
     * starts the write (§5.3: delete the conflicting entry and all after it). */
    unsigned k;
    raft_index last = raft__last_index(r);
    for (k = 0; k < a->n_entries; k++) {
        raft_index idx = a->prev_index + 1 + k;
        if (idx <= r->commit) {
            continue;
        }
        if (idx > last) {
            break;
        }
        if (!raft__term_at(r, idx, &t) || t != a->entries[k].term) {
            p->truncate = true;
            break;
        }
    }
    if (k == a->n_entries) {
        return 0;
    }
    p->first = a->prev_index + 1 + k;
    CM_BUG_ON(p->first <= r->commit);
    unsigned n = a->n_entries - k;
    int rv = CM_ENOMEM;
    p->copies = cm_calloc(n, sizeof *p->copies);
    if (p->copies == NULL) {
        goto err;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct raft_entry *e = &a->entries[k + i];
        if (e->type < RAFT_COMMAND || e->type > RAFT_CHANGE) {
            rv = CM_EINVAL;
            goto err;
        }
        rv = raft__entry_copy(e, &p->copies[i]);
        if (rv != 0) {
            goto err;
        }
        p->n_copies++;
    }
    rv = raft__log_reserve(&r->log, n);
    if (rv != 0) {
        goto err;
    }
    /* Thesis §4.1: a server uses the latest configuration in its log, whether
     * committed or not; truncating a configuration entry reverts to the one
     * before it. */
    for (unsigned i = n; i-- > 0;) {
        if (p->copies[i].type == RAFT_CHANGE) {
            rv = raft_config_decode(p->copies[i].buf.base, p->copies[i].buf.len,
                                    &p->config);
            if (rv != 0) {
                goto err;
            }
            p->has_config = true;
            p->config_index = p->first + i;
            break;
        }
    }
    if (!p->has_config && p->truncate && r->config_index >= p->first) {
        rv = raft__config_at(r, p->first - 1, &p->config, &p->config_index);
        if (rv != 0) {
            goto err;
        }
        p->has_config = true;
    }
    if (p->has_config) {
        rv = raft__progress_reserve(r, p->config.n);
        if (rv != 0) {
            goto err;
        }
    }
    return 0;

err:
    raft__append_plan_close(p);
    /* A malformed configuration entry from the leader is dropped like a
     * corrupt message; only CM_ENOMEM is reported. */
    if (rv != CM_ENOMEM) {
        memset(p, 0, sizeof *p);
        return CM_EINVAL;
    }
    return rv;
}

static void send_append_result(struct raft *r, raft_id to, bool rejected,
                               raft_index last_index, raft_index reject_index)
{
    struct raft_message *m = raft__send(r, RAFT_MSG_APPEND_RESULT, to);
    if (m == NULL) {
        return;
    }
    m->append_result.term = r->term;
    m->append_result.rejected = rejected;
    m->append_result.last_index = last_index;
    m->append_result.reject_index = reject_index;
    m->append_result.seq = r->leader_seq;
}

/* Accept a message from the leader of the current term. */
static void follow(struct raft *r, raft_id from)
{
    if (r->role != RAFT_FOLLOWER || r->leader != from) {
        raft__become_follower(r, r->term, from);
    }
    r->leader_contact = r->now;
    raft__reset_election_timer(r);
}

/* The follower's durable match index for the current leader: a reply for new
 * entries waits until they are persisted. */
static raft_index follower_ack(const struct raft *r)
{
    return CM_MIN(r->persisted, r->match_hint);
}

void raft__recv_append(struct raft *r, const struct raft_message *m,
                       struct raft__append_plan *p)
{
    const struct raft_append *a = &m->append;
    if (r->role == RAFT_LEADER) {
        /* Two leaders in one term cannot happen (§5.2); drop it. */
        raft__tracef(r, "drop append from %llu: leader of the same term",
                     (unsigned long long)m->from);
        raft__append_plan_close(p);
        return;
    }
    follow(r, m->from);
    if (a->seq > r->leader_seq) {
        r->leader_seq = a->seq;
    }
    if (!p->match) {
        /* Fast back-off: hint the last index that can still match, skipping
         * entries whose term is newer than prev_term. */
        raft_index hint = CM_MIN(raft__last_index(r), a->prev_index - 1);
        raft_term t;
        while (hint > r->commit && raft__term_at(r, hint, &t) && t > a->prev_term) {
            hint--;
        }
        send_append_result(r, m->from, true, hint, a->prev_index);
        return;
    }
    if (p->first != 0) {
        if (p->truncate) {
            raft__tracef(r, "truncate log from %llu", (unsigned long long)p->first);
            raft__log_truncate(&r->log, p->first);
            if (r->persisted >= p->first) {
                r->persisted = p->first - 1;
            }
            if (r->out->truncate_from == 0 || p->first < r->out->truncate_from) {
                r->out->truncate_from = p->first;
            }
        }
        CM_BUG_ON(raft__last_index(r) + 1 != p->first);
        for (unsigned i = 0; i < p->n_copies; i++) {
            append_local(r, &p->copies[i]);
        }
        p->n_copies = 0; /* the log owns the buffers now */
        cm_free(&p->copies);
        if (p->has_config) {
            raft__config_set(r, &p->config, p->config_index);
            raft__tracef(r, "configuration %llu: %u servers, %u voters",
                         (unsigned long long)r->config_index, r->config.n,
                         raft_config_voter_count(&r->config));
        }
    }
    raft__append_plan_close(p);
    raft_index matched = a->prev_index + a->n_entries;
    if (matched > r->match_hint) {
        r->match_hint = matched;
    }
    /* Raft §5.3: commit up to the leader's commit index, bounded by what is
     * known to match. */
    raft_index c = CM_MIN(a->commit, matched);
    if (c > r->commit) {
        commit_to(r, c);
    }
    if (matched <= r->persisted) {
        send_append_result(r, m->from, false, follower_ack(r), 0);
    }
}

void raft__persisted(struct raft *r, raft_index index, raft_term term)
{
    raft_term t;
    if (index <= r->persisted || !raft__term_at(r, index, &t) || t != term) {
        return; /* old news, or for entries since truncated */
    }
    r->persisted = index;
    if (r->role == RAFT_LEADER) {
        raft__maybe_commit(r);
    } else if (r->role == RAFT_FOLLOWER && r->leader != 0 && r->match_hint > 0) {
        send_append_result(r, r->leader, false, follower_ack(r), 0);
    }
}

/* ------------------------------------------------------------------ leader: results */

static void maybe_send_timeout_now(struct raft *r, struct raft__progress *pr)
{
    if (r->transfer_to != pr->id || r->transfer_sent ||
        pr->match != raft__last_index(r)) {
        return;
    }
    struct raft_message *m = raft__send(r, RAFT_MSG_TIMEOUT_NOW, pr->id);
    if (m == NULL) {
        return;
    }
    m->timeout_now.term = r->term;
    m->timeout_now.last_index = raft__last_index(r);
    m->timeout_now.last_term = raft__last_term(r);
    r->transfer_sent = true;
    raft__tracef(r, "transfer to %llu: send timeout-now", (unsigned long long)pr->id);
}

void raft__recv_append_result(struct raft *r, const struct raft_message *m)
{
    const struct raft_append_result *res = &m->append_result;
    struct raft__progress *pr = raft__progress_get(r, m->from);
    if (r->role != RAFT_LEADER || pr == NULL || pr->id == r->o.id) {
        return;
    }
    pr->recent = true;
    if (res->seq > pr->acked_seq) {
        pr->acked_seq = res->seq;
    }
    raft_index last = raft__last_index(r);
    if (res->rejected) {
        /* Ignore stale rejections (reordered or duplicated answers). */
        bool stale = pr->state == RAFT__SNAPSHOT ||
                     (pr->state == RAFT__PIPELINE && res->reject_index <= pr->match) ||
                     (pr->state == RAFT__PROBE && res->reject_index != pr->next - 1);
        if (!stale) {
            raft_index next = CM_MIN(res->reject_index, res->last_index + 1);
            become_probe(r, pr, next);
            raft__send_append(r, pr, false);
        }
    } else {
        raft_index match = CM_MIN(res->last_index, last);
        if (match > pr->match) {
            pr->match = match;
            pr->last_advance = r->now;
            inflight_free_to(pr, match);
        }
        if (pr->next <= pr->match) {
            pr->next = pr->match + 1;
        }
        if (pr->state == RAFT__PROBE) {
            pr->state = RAFT__PIPELINE;
            pr->paused = false;
            pr->in_head = 0;
            pr->in_count = 0;
            pr->next = pr->match + 1;
        } else if (pr->state == RAFT__SNAPSHOT && pr->match >= pr->snap_index) {
            become_probe(r, pr, pr->match + 1);
        }
        raft__maybe_commit(r);
        if (r->role != RAFT_LEADER) {
            return;
        }
        maybe_send_timeout_now(r, pr);
        replicate(r, pr);
    }
    raft__reads_check(r);
}

/* ------------------------------------------------------------------ snapshots */

static void snapshot_plan_close(struct raft__snapshot_plan *p)
{
    raft_config_close(&p->config);
    raft_config_close(&p->current);
    p->has_config = false;
}

int raft__snapshot_prepare(struct raft *r, const struct raft_message *m,
                           struct raft__snapshot_plan *p)
{
    const struct raft_snapshot_msg *s = &m->snapshot;
    memset(p, 0, sizeof *p);
    if (s->chunk.len > 0 && s->chunk.base == NULL) {
        return CM_EINVAL;
    }
    if (s->chunk.len > r->recv.buf_cap) {
        void *b = cm_realloc(r->recv.buf, s->chunk.len);
        if (b == NULL) {
            return CM_ENOMEM;
        }
        r->recv.buf = b;
        r->recv.buf_cap = s->chunk.len;
    }
    if (s->done) {
        int rv = raft_config_copy(&s->config, &p->config);
        if (rv != 0) {
            return rv;
        }
        rv = raft_config_copy(&s->config, &p->current);
        if (rv == 0) {
            rv = raft__progress_reserve(r, p->config.n);
        }
        if (rv != 0) {
            snapshot_plan_close(p);
            return rv;
        }
        p->has_config = true;
    }
    return 0;
}

static void send_snapshot_result(struct raft *r, raft_id to, raft_index index,
                                 uint64_t next_offset, bool rejected)
{
    struct raft_message *m = raft__send(r, RAFT_MSG_SNAPSHOT_RESULT, to);
    if (m == NULL) {
        return;
    }
    m->snapshot_result.term = r->term;
    m->snapshot_result.last_index = index;
    m->snapshot_result.next_offset = next_offset;
    m->snapshot_result.rejected = rejected;
}

/* §7 InstallSnapshot, in chunks. The host stores each chunk (update step 2) and
 * on the last one replaces its state machine and log. */
void raft__recv_snapshot(struct raft *r, const struct raft_message *m,
                         struct raft__snapshot_plan *p)
{
    const struct raft_snapshot_msg *s = &m->snapshot;
    if (r->role == RAFT_LEADER) {
        snapshot_plan_close(p);
        return;
    }
    follow(r, m->from);
    raft_term t;
    if (s->last_index <= r->commit) {
        /* Nothing new: everything up to it is committed here (possibly
         * compacted already). Say so, so that the leader moves on. */
        snapshot_plan_close(p);
        send_snapshot_result(r, m->from, s->last_index, s->size, false);
        return;
    }
    if (raft__term_at(r, s->last_index, &t) && t == s->last_term) {
        /* We already hold the entry the snapshot ends with, so the log up to
         * it is the leader's (Log Matching) and committed: no need for the
         * snapshot (§7: "retain log entries following it"). */
        if (s->last_index > r->match_hint) {
            r->match_hint = s->last_index;
        }
        commit_to(r, CM_MIN(s->last_index, raft__last_index(r)));
        snapshot_plan_close(p);
        send_snapshot_result(r, m->from, s->last_index, s->size, false);
        return;
    }
    if (s->offset == 0) {
        r->recv.index = s->last_index;
        r->recv.term = s->last_term;
        r->recv.next_offset = 0;
    }
    if (r->recv.index != s->last_index || r->recv.term != s->last_term ||
        s->offset != r->recv.next_offset || s->offset + s->chunk.len > s->size) {
        uint64_t resume = r->recv.index == s->last_index ? r->recv.next_offset : 0;
        snapshot_plan_close(p);
        send_snapshot_result(r, m->from, s->last_index, resume, true);
        return;
    }
    if (s->chunk.len > 0) {
        memcpy(r->recv.buf, s->chunk.base, s->chunk.len);
    }
    struct raft_update *out = r->out;
    out->snapshot_chunk.last_index = s->last_index;
    out->snapshot_chunk.last_term = s->last_term;
    out->snapshot_chunk.size = s->size;
    out->snapshot_chunk.offset = s->offset;
    out->snapshot_chunk.chunk.base = r->recv.buf;
    out->snapshot_chunk.chunk.len = s->chunk.len;
    r->recv.next_offset += s->chunk.len;
    if (!s->done || r->recv.next_offset != s->size) {
        snapshot_plan_close(p);
        send_snapshot_result(r, m->from, s->last_index, r->recv.next_offset, false);
        return;
    }

    /* Install: the snapshot replaces the whole log. */
    CM_BUG_ON(!p->has_config || s->last_index <= r->commit);
    raft__tracef(r, "install snapshot %llu term %llu from %llu",
                 (unsigned long long)s->last_index, (unsigned long long)s->last_term,
                 (unsigned long long)m->from);
    raft__log_reset(&r->log, s->last_index);
    r->out_append_from = 0;
    raft_config_close(&r->snap.config);
    r->snap.index = s->last_index;
    r->snap.term = s->last_term;
    r->snap.config = p->config;
    r->snap.config_index = s->config_index;
    r->snap.size = s->size;
    raft__config_set(r, &p->current, s->config_index);
    p->config.n = 0;
    p->config.servers = NULL;
    r->commit = s->last_index;
    r->applied = s->last_index;
    r->persisted = s->last_index;
    r->match_hint = s->last_index;
    r->recv.index = 0;
    r->recv.next_offset = 0;
    out->snapshot_install = true;
    out->snapshot_config = r->config;
    out->snapshot_config_index = s->config_index;
    send_snapshot_result(r, m->from, s->last_index, s->size, false);
}

void raft__recv_snapshot_result(struct raft *r, const struct raft_message *m)
{
    const struct raft_snapshot_result *res = &m->snapshot_result;
    struct raft__progress *pr = raft__progress_get(r, m->from);
    if (r->role != RAFT_LEADER || pr == NULL || pr->id == r->o.id) {
        return;
    }
    pr->recent = true;
    if (pr->state != RAFT__SNAPSHOT || res->last_index != pr->snap_index) {
        return;
    }
    if (pr->snap_index != r->snap.index) {
        send_snapshot_chunk(r, pr);
        return;
    }
    if (!res->rejected && res->next_offset >= r->snap.size) {
        raft__tracef(r, "snapshot %llu to %llu done", (unsigned long long)pr->snap_index,
                     (unsigned long long)pr->id);
        if (pr->snap_index > pr->match) {
            pr->match = pr->snap_index;
        }
        become_probe(r, pr, pr->match + 1);
        raft__maybe_commit(r);
        if (r->role == RAFT_LEADER) {
            maybe_send_timeout_now(r, pr);
            raft__send_append(r, pr, false);
        }
        return;
    }
    pr->snap_offset = CM_MIN(res->next_offset, r->snap.size);
    send_snapshot_chunk(r, pr);
}

int raft__snapshot_taken(struct raft *r, raft_index index, uint64_t size)
{
    if (index > r->applied) {
        return CM_EINVAL;
    }
    if (index <= r->snap.index) {
        r->snap.requested = false;
        return 0;
    }
    struct raft_config c;
    raft_index ci;
    int rv = raft__config_at(r, index, &c, &ci);
    if (rv != 0) {
        return rv;
    }
    raft_term t;
    CM_BUG_ON(!raft__term_at(r, index, &t));
    r->snap.requested = false;
    raft_config_close(&r->snap.config);
    r->snap.index = index;
    r->snap.term = t;
    r->snap.config = c;
    r->snap.config_index = ci;
    r->snap.size = size;
    if (r->persisted < index) {
        r->persisted = index;
    }
    /* Keep snapshot_trailing entries so that slightly lagging followers can
     * still be served from the log. */
    raft_index keep = r->o.snapshot_trailing;
    if (index > keep && index - keep > r->log.offset) {
        raft__log_compact(&r->log, index - keep);
        r->out->compact_to = index - keep;
    }
    raft__tracef(r, "snapshot %llu taken, log from %llu", (unsigned long long)index,
                 (unsigned long long)(r->log.offset + 1));
    return 0;
}

/* ------------------------------------------------------------------ proposals */

int raft__submit(struct raft *r, const struct raft_entry *entries, unsigned n)
{
    if (r->transfer_to != 0) {
        return CM_EBUSY;
    }
    if (n == 0 || entries == NULL) {
        return CM_EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        if ((entries[i].type != RAFT_COMMAND && entries[i].type != RAFT_BARRIER) ||
            (entries[i].buf.len > 0 && entries[i].buf.base == NULL)) {
            return CM_EINVAL;
        }
    }
    struct raft_entry *copies = cm_calloc(n, sizeof *copies);
    if (copies == NULL) {
        return CM_ENOMEM;
    }
    unsigned done = 0;
    int rv = 0;
    for (; done < n; done++) {
        rv = raft__entry_copy(&entries[done], &copies[done]);
        if (rv != 0) {
            goto err;
        }
        copies[done].term = r->term;
    }
    rv = raft__log_reserve(&r->log, n);
    if (rv != 0) {
        goto err;
    }
    r->out->submitted_index = raft__last_index(r) + 1;
    r->out->submitted_term = r->term;
    for (unsigned i = 0; i < n; i++) {
        append_local(r, &copies[i]);
    }
    cm_free(&copies);
    raft__replicate_all(r);
    return 0;

err:
    for (unsigned i = 0; i < done; i++) {
        cm_free(&copies[i].buf.base);
    }
    cm_free(&copies);
    return rv;
}

static const char *change_name(uint8_t op)
{
    switch (op) {
    case RAFT_CHANGE_ADD_LEARNER:
        return "add learner";
    case RAFT_CHANGE_PROMOTE:
        return "promote";
    case RAFT_CHANGE_DEMOTE:
        return "demote";
    case RAFT_CHANGE_REMOVE:
        return "remove";
    }
    return "?";
}

/* Thesis §4.1: one server at a time; the new configuration takes effect as soon
 * as it is appended. Thesis §4.1 (and the 2015 fix on raft-dev): only once an
 * entry of the current term is committed, and only one change uncommitted. */
int raft__change(struct raft *r, const struct raft_event *ev)
{
    uint8_t op = ev->change.op;
    raft_id id = ev->change.id;
    if (op < RAFT_CHANGE_ADD_LEARNER || op > RAFT_CHANGE_REMOVE || id == 0) {
        return CM_EINVAL;
    }
    if (r->transfer_to != 0 || r->config_index > r->commit || r->commit < r->term_start) {
        return CM_EBUSY;
    }
    const struct raft_server *s = raft_config_get(&r->config, id);
    unsigned voters = raft_config_voter_count(&r->config);
    switch (op) {
    case RAFT_CHANGE_ADD_LEARNER:
        if (s != NULL ||
            strnlen(ev->change.address, RAFT_ADDRESS_MAX) >= RAFT_ADDRESS_MAX) {
            return CM_EINVAL;
        }
        break;
    case RAFT_CHANGE_PROMOTE:
        if (s == NULL || s->role != RAFT_LEARNER) {
            return CM_EINVAL;
        }
        break;
    case RAFT_CHANGE_DEMOTE:
        if (s == NULL || s->role != RAFT_VOTER || voters <= 1) {
            return CM_EINVAL;
        }
        break;
    case RAFT_CHANGE_REMOVE:
        if (s == NULL || (s->role == RAFT_VOTER && voters <= 1)) {
            return CM_EINVAL;
        }
        break;
    }
    struct raft_config c;
    int rv = raft_config_copy(&r->config, &c);
    if (rv != 0) {
        return rv;
    }
    switch (op) {
    case RAFT_CHANGE_ADD_LEARNER:
        rv = raft_config_add(&c, id, ev->change.address, RAFT_LEARNER);
        break;
    case RAFT_CHANGE_PROMOTE:
    case RAFT_CHANGE_DEMOTE:
        for (unsigned i = 0; i < c.n; i++) {
            if (c.servers[i].id == id) {
                c.servers[i].role = op == RAFT_CHANGE_PROMOTE ? RAFT_VOTER : RAFT_LEARNER;
            }
        }
        break;
    case RAFT_CHANGE_REMOVE:
        rv = raft_config_remove(&c, id);
        break;
    }
    if (rv != 0) {
        raft_config_close(&c);
        return rv == CM_ENOMEM ? rv : CM_EINVAL;
    }
    struct raft_entry e;
    rv = raft_config_encode(&c, &e.buf);
    if (rv != 0) {
        goto err;
    }
    e.term = r->term;
    e.type = RAFT_CHANGE;
    rv = raft__log_reserve(&r->log, 1);
    if (rv == 0) {
        rv = raft__progress_reserve(r, c.n);
    }
    if (rv != 0) {
        cm_free(&e.buf.base);
        goto err;
    }
    append_local(r, &e);
    raft_index index = raft__last_index(r);
    r->out->submitted_index = index;
    r->out->submitted_term = r->term;
    raft__config_set(r, &c, index);
    raft__tracef(r, "configuration %llu: %s %llu (%u servers, %u voters)",
                 (unsigned long long)index, change_name(op), (unsigned long long)id,
                 r->config.n, raft_config_voter_count(&r->config));
    raft__replicate_all(r);
    /* With a single voter the quorum may already hold. */
    raft__maybe_commit(r);
    return 0;

err:
    raft_config_close(&c);
    return rv;
}

/* ------------------------------------------------------------------ reads */

static void read_emit(struct raft *r, uint64_t id, int status, raft_index index)
{
    struct raft_update *out = r->out;
    CM_BUG_ON(out->n_reads >= r->read_out_cap);
    r->read_out[out->n_reads++] = (struct raft_read_result){id, status, index};
    out->reads = r->read_out;
}

void raft__fail_reads(struct raft *r)
{
    for (unsigned i = 0; i < r->n_reads; i++) {
        read_emit(r, r->reads[i].id, CM_ENOTLEADER, 0);
    }
    r->n_reads = 0;
}

/* Thesis §6.4: answer reads whose heartbeat round a majority acknowledged, once
 * an entry of this term is committed (so the commit index is current). */
void raft__reads_check(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->n_reads == 0 || r->commit < r->term_start) {
        return;
    }
    unsigned done = 0;
    while (done < r->n_reads) {
        const struct raft__read *rd = &r->reads[done];
        unsigned voters = 0;
        unsigned acked = 0;
        for (unsigned i = 0; i < r->config.n; i++) {
            if (r->config.servers[i].role != RAFT_VOTER) {
                continue;
            }
            voters++;
            if (r->progress[i].id == r->o.id || r->progress[i].acked_seq >= rd->seq) {
                acked++;
            }
        }
        if (acked * 2 <= voters) {
            break;
        }
        read_emit(r, rd->id, 0, CM_MAX(rd->index, r->term_start));
        done++;
    }
    if (done > 0) {
        memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof *r->reads);
        r->n_reads -= done;
    }
}

int raft__read_index(struct raft *r, uint64_t id)
{
    unsigned want = r->n_reads + 1;
    if (want > r->reads_cap) {
        unsigned cap = CM_MAX(want, 2 * r->reads_cap);
        struct raft__read *rd = cm_reallocarray(r->reads, cap, sizeof *rd);
        if (rd == NULL) {
            return CM_ENOMEM;
        }
        r->reads = rd;
        r->reads_cap = cap;
    }
    if (r->reads_cap > r->read_out_cap) {
        struct raft_read_result *o =
            cm_reallocarray(r->read_out, r->reads_cap, sizeof *o);
        if (o == NULL) {
            return CM_ENOMEM;
        }
        r->read_out = o;
        r->read_out_cap = r->reads_cap;
    }
    r->seq++;
    r->reads[r->n_reads++] = (struct raft__read){id, r->seq, r->commit};
    for (unsigned i = 0; i < r->config.n; i++) {
        send_heartbeat(r, &r->progress[i]);
    }
    raft__reads_check(r);
    return 0;
}
