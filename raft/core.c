/* raft/core.c: the pure Raft state machine: lifecycle, event dispatch, terms,
 * elections (Raft §5.2, pre-vote thesis §9.6, check-quorum and leader lease
 * thesis §6.2/§4.2.3, leadership transfer thesis §3.10) and the construction of
 * struct raft_update. Replication, commitment, snapshots, membership and reads
 * are in raft/replication.c. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "raft/core_int.h"

/* ------------------------------------------------------------------ options */

void raft_options_default(struct raft_options *o)
{
    memset(o, 0, sizeof *o);
    o->heartbeat_ms = 100;
    o->election_ms = 1000;
    o->max_append_entries = 512;
    o->max_append_bytes = 1024 * 1024;
    o->max_inflight = 32;
    o->snapshot_threshold = 8192;
    o->snapshot_trailing = 2048;
    o->snapshot_chunk = 256 * 1024;
}

static void options_sanitize(struct raft_options *o)
{
    if (o->heartbeat_ms == 0) {
        o->heartbeat_ms = 100;
    }
    if (o->election_ms == 0) {
        o->election_ms = 1000;
    }
    if (o->max_append_entries == 0) {
        o->max_append_entries = 512;
    }
    if (o->max_append_bytes == 0) {
        o->max_append_bytes = 1024 * 1024;
    }
    if (o->max_inflight == 0) {
        o->max_inflight = 1;
    }
    if (o->max_inflight > RAFT__INFLIGHT_MAX) {
        o->max_inflight = RAFT__INFLIGHT_MAX;
    }
    if (o->snapshot_threshold == 0) {
        o->snapshot_threshold = 8192;
    }
    if (o->snapshot_chunk == 0) {
        o->snapshot_chunk = 256 * 1024;
    }
}

/* ------------------------------------------------------------------ tracer */

void raft__tracef(struct raft *r, const char *fmt, ...)
{
    if (r->o.tracer.emit == NULL) {
        return;
    }
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->o.tracer.emit(r->o.tracer.data, r->o.id, r->now, line);
}

static const char *role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRECANDIDATE:
        return "pre-candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "?";
}

/* ------------------------------------------------------------------ lifecycle */

struct raft *raft_new(const struct raft_options *o)
{
    struct raft *r = cm_calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->o = *o;
    options_sanitize(&r->o);
    cm_rng_seed(&r->rng, o->seed ^ (o->id * 0x9e3779b97f4a7c15ull));
    r->role = RAFT_FOLLOWER;
    return r;
}

static void raft_reset_state(struct raft *r)
{
    raft__log_close(&r->log);
    raft_config_close(&r->snap.config);
    raft_config_close(&r->config);
    cm_free(&r->progress);
    r->progress_cap = 0;
    cm_free(&r->reads);
    r->n_reads = 0;
    r->reads_cap = 0;
    cm_free(&r->recv.buf);
    r->recv.buf_cap = 0;
}

void raft_free(struct raft *r)
{
    if (r == NULL) {
        return;
    }
    raft_reset_state(r);
    cm_free(&r->msgs);
    cm_free(&r->msg_first);
    cm_free(&r->read_out);
    cm_free_raw(r);
}

/* ------------------------------------------------------------------ helpers */

raft_index raft__last_index(const struct raft *r)
{
    raft_index last = raft__log_last(&r->log);
    return last > r->snap.index ? last : r->snap.index;
}

bool raft__term_at(const struct raft *r, raft_index index, raft_term *ret)
{
    if (index == 0) {
        *ret = 0;
        return true;
    }
    const struct raft_entry *e = raft__log_get(&r->log, index);
    if (e != NULL) {
        *ret = e->term;
        return true;
    }
    if (index == r->snap.index) {
        *ret = r->snap.term;
        return true;
    }
    return false;
}

raft_term raft__last_term(const struct raft *r)
{
    raft_term t = 0;
    raft__term_at(r, raft__last_index(r), &t);
    return t;
}

bool raft__is_voter(const struct raft *r, raft_id id)
{
    const struct raft_server *s = raft_config_get(&r->config, id);
    return s != NULL && s->role == RAFT_VOTER;
}

struct raft__progress *raft__progress_get(struct raft *r, raft_id id)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        if (r->progress[i].id == id) {
            return &r->progress[i];
        }
    }
    return NULL;
}

int raft__progress_reserve(struct raft *r, unsigned n)
{
    /* Room for the current entries plus @n new ones (raft__config_set). */
    n += r->config.n;
    if (n <= r->progress_cap) {
        return 0;
    }
    struct raft__progress *p = cm_reallocarray(r->progress, n, sizeof *p);
    if (p == NULL) {
        return CM_ENOMEM;
    }
    r->progress = p;
    r->progress_cap = n;
    return 0;
}

static void progress_init(struct raft *r, struct raft__progress *pr, raft_id id)
{
    memset(pr, 0, sizeof *pr);
    pr->id = id;
    pr->next = raft__last_index(r) + 1;
    pr->state = RAFT__PROBE;
    pr->last_advance = r->now;
}

void raft__config_set(struct raft *r, struct raft_config *c, raft_index index)
{
    /* raft__progress_reserve() left room for the old and the new entries side
     * by side: park the old ones at the tail, then rebuild the head in the new
     * configuration's order, keeping what we know about servers that stay. */
    unsigned n_old = r->config.n;
    CM_BUG_ON(r->progress_cap < c->n + n_old);
    struct raft__progress *old = r->progress + (r->progress_cap - n_old);
    memmove(old, r->progress, n_old * sizeof *old);
    for (unsigned i = 0; i < c->n; i++) {
        raft_id id = c->servers[i].id;
        unsigned j;
        for (j = 0; j < n_old && old[j].id != id; j++) {
        }
        if (j < n_old) {
            r->progress[i] = old[j];
        } else {
            progress_init(r, &r->progress[i], id);
        }
    }
    raft_config_close(&r->config);
    r->config = *c;
    r->config_index = index;
    c->n = 0;
    c->servers = NULL;
}

int raft__config_at(const struct raft *r, raft_index index, struct raft_config *ret,
                    raft_index *ret_index)
{
    raft_index lo = r->log.offset + 1;
    for (raft_index i = CM_MIN(index, raft__log_last(&r->log)); i >= lo && i > 0; i--) {
        const struct raft_entry *e = raft__log_get(&r->log, i);
        if (e->type == RAFT_CHANGE) {
            int rv = raft_config_decode(e->buf.base, e->buf.len, ret);
            if (rv != 0) {
                return rv == CM_ENOMEM ? rv : CM_ECORRUPT;
            }
            *ret_index = i;
            return 0;
        }
    }
    *ret_index = r->snap.config_index;
    return raft_config_copy(&r->snap.config, ret);
}

struct raft_message *raft__send(struct raft *r, uint8_t type, raft_id to)
{
    if (r->n_msgs >= r->msgs_cap) {
        raft__tracef(r, "drop message to %llu: output full", (unsigned long long)to);
        return NULL;
    }
    struct raft_message *m = &r->msgs[r->n_msgs];
    memset(m, 0, sizeof *m);
    r->msg_first[r->n_msgs] = 0;
    r->n_msgs++;
    m->type = type;
    m->from = r->o.id;
    m->to = to;
    return m;
}

/* ------------------------------------------------------------------ roles */

void raft__reset_election_timer(struct raft *r)
{
    unsigned e = r->o.election_ms;
    r->election_start = r->now;
    r->election_timeout = (unsigned)cm_rng_range(&r->rng, e, 2 * (uint64_t)e);
}

static void set_term(struct raft *r, raft_term term)
{
    if (term != r->term) {
        raft__tracef(r, "term %llu -> %llu", (unsigned long long)r->term,
                     (unsigned long long)term);
        r->term = term;
        r->voted_for = 0;
        r->match_hint = 0;
        r->leader_seq = 0;
    }
}

void raft__become_follower(struct raft *r, raft_term term, raft_id leader)
{
    enum raft_role old = r->role;
    set_term(r, term);
    if (old == RAFT_LEADER) {
        raft__fail_reads(r);
        if (r->transfer_to != 0) {
            raft__tracef(r, "transfer to %llu ends: stepped down",
                         (unsigned long long)r->transfer_to);
        }
        r->transfer_to = 0;
    }
    r->role = RAFT_FOLLOWER;
    if (old != RAFT_FOLLOWER) {
        raft__tracef(r, "%s -> follower term %llu", role_name(old),
                     (unsigned long long)r->term);
    }
    if (leader != r->leader && leader != 0) {
        raft__tracef(r, "leader is %llu term %llu", (unsigned long long)leader,
                     (unsigned long long)r->term);
    }
    r->leader = leader;
    if (leader != 0) {
        r->leader_contact = r->now;
    }
    /* Raft §5.2: only a leader's message or a granted vote restarts a
     * follower's timer; a mere newer term must not, or a server that keeps
     * campaigning in vain (e.g. one removed without knowing it) would keep
     * everyone else from ever timing out. */
    if (old != RAFT_FOLLOWER || leader != 0) {
        raft__reset_election_timer(r);
    }
}

static void become_leader(struct raft *r)
{
    raft__tracef(r, "%s -> leader term %llu", role_name(r->role),
                 (unsigned long long)r->term);
    r->role = RAFT_LEADER;
    r->leader = r->o.id;
    raft__leader_init(r);
}

static void send_votes(struct raft *r, bool pre_vote, bool disrupt)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        const struct raft_server *s = &r->config.servers[i];
        if (s->id == r->o.id || s->role != RAFT_VOTER) {
            continue;
        }
        struct raft_message *m = raft__send(r, RAFT_MSG_VOTE, s->id);
        if (m == NULL) {
            continue;
        }
        m->vote.term = pre_vote ? r->term + 1 : r->term;
        m->vote.last_index = raft__last_index(r);
        m->vote.last_term = raft__last_term(r);
        m->vote.pre_vote = pre_vote;
        m->vote.disrupt = disrupt;
    }
}

static bool votes_quorum(struct raft *r)
{
    unsigned voters = 0;
    unsigned granted = 0;
    for (unsigned i = 0; i < r->config.n; i++) {
        if (r->config.servers[i].role != RAFT_VOTER) {
            continue;
        }
        voters++;
        if (r->progress[i].granted) {
            granted++;
        }
    }
    return granted * 2 > voters;
}

static void clear_votes(struct raft *r)
{
    for (unsigned i = 0; i < r->config.n; i++) {
        r->progress[i].granted = r->progress[i].id == r->o.id;
    }
}

/* Raft §5.2: increment the term, vote for ourselves, ask the others. */
static void start_election(struct raft *r, bool disrupt)
{
    set_term(r, r->term + 1);
    r->voted_for = r->o.id;
    raft__tracef(r, "%s -> candidate term %llu", role_name(r->role),
                 (unsigned long long)r->term);
    r->role = RAFT_CANDIDATE;
    r->leader = 0;
    raft__reset_election_timer(r);
    clear_votes(r);
    if (votes_quorum(r)) {
        become_leader(r);
        return;
    }
    send_votes(r, false, disrupt);
}

/* Thesis §9.6: ask whether we could win before disrupting anyone's term. */
static void start_pre_vote(struct raft *r)
{
    raft__tracef(r, "%s -> pre-candidate term %llu", role_name(r->role),
                 (unsigned long long)r->term);
    r->role = RAFT_PRECANDIDATE;
    r->leader = 0;
    raft__reset_election_timer(r);
    clear_votes(r);
    if (votes_quorum(r)) {
        start_election(r, false);
        return;
    }
    send_votes(r, true, false);
}

/* Whether this server may start an election: it is a voter in its latest
 * configuration, or that configuration is not committed yet and it was a
 * voter in the one before. The second case keeps the cluster live when a
 * leader appended a configuration without itself and lost its quorum before
 * replicating it: the only servers holding that entry are no longer members,
 * yet they alone can win (votes still count in the latest configuration,
 * thesis §4.1, so safety is unchanged). */
static bool can_campaign(const struct raft *r)
{
    if (raft__is_voter(r, r->o.id)) {
        return true;
    }
    if (r->config_index <= r->commit) {
        return false;
    }
    for (raft_index i = r->config_index - 1; i > r->log.offset; i--) {
        const struct raft_entry *e = raft__log_get(&r->log, i);
        if (e->type == RAFT_CHANGE) {
            return raft__config_role_in(e->buf.base, e->buf.len, r->o.id) == RAFT_VOTER;
        }
    }
    const struct raft_server *s = raft_config_get(&r->snap.config, r->o.id);
    return r->snap.config_index < r->config_index && s != NULL && s->role == RAFT_VOTER;
}

static void election_timeout(struct raft *r)
{
    if (!can_campaign(r)) {
        /* Learners and servers outside the configuration never campaign. */
        raft__reset_election_timer(r);
        return;
    }
    if (r->o.disable_pre_vote) {
        start_election(r, false);
    } else {
        start_pre_vote(r);
    }
}

/* The transport saw the leader's connection close: most likely it crashed or
 * exited. Waiting a whole election timeout (thesis §3.4) would leave the cluster
 * without a leader for 1-2 s; instead forget the leader (which drops its lease,
 * thesis §4.2.3) and campaign after a short delay. If the leader is in fact alive, the
 * other followers still hold its lease and refuse the pre-vote (§9.6), so nothing is
 * disrupted. */
static void peer_lost(struct raft *r, raft_id id)
{
    if (r->role != RAFT_FOLLOWER || id == 0 || id != r->leader) {
        return;
    }
    raft__tracef(r, "lost connection from leader %llu", (unsigned long long)id);
    r->leader = 0;
    if (!can_campaign(r)) {
        return;
    }
    /* Stagger by rank among the other voters so that the followers which all
     * saw the close campaign one after another, a heartbeat apart, instead of
     * splitting the vote (which would cost a whole election timeout). */
    unsigned rank = 0;
    for (unsigned i = 0; i < r->config.n; i++) {
        const struct raft_server *sv = &r->config.servers[i];
        if (sv->role == RAFT_VOTER && sv->id != id && sv->id < r->o.id) {
            rank++;
        }
    }
    unsigned hb = r->o.heartbeat_ms;
    r->election_start = r->now;
    r->election_timeout =
        hb / 4 + rank * hb + (unsigned)cm_rng_below(&r->rng, hb / 4 + 1);
}

/* Thesis §6.2 check-quorum: a leader that has not heard from a majority of
 * voters within an election timeout steps down, so that a partitioned leader
 * stops serving (and stops holding its followers' leases). */
static void check_quorum(struct raft *r)
{
    unsigned voters = 0;
    unsigned active = 0;
    for (unsigned i = 0; i < r->config.n; i++) {
        struct raft__progress *pr = &r->progress[i];
        if (r->config.servers[i].role == RAFT_VOTER) {
            voters++;
            if (pr->recent || pr->id == r->o.id) {
                active++;
            }
        }
        pr->recent = false;
    }
    if (active * 2 <= voters) {
        raft__tracef(r, "step down: no quorum heard within %u ms", r->o.election_ms);
        raft__become_follower(r, r->term, 0);
    }
}

static void tick(struct raft *r)
{
    switch (r->role) {
    case RAFT_FOLLOWER:
    case RAFT_PRECANDIDATE:
    case RAFT_CANDIDATE:
        if (r->now >= r->election_start + r->election_timeout) {
            election_timeout(r);
        }
        break;
    case RAFT_LEADER:
        if (r->transfer_to != 0 && r->now >= r->transfer_due) {
            raft__tracef(r, "transfer to %llu aborted: timeout",
                         (unsigned long long)r->transfer_to);
            r->transfer_to = 0;
        }
        if (!r->o.disable_check_quorum && r->now >= r->quorum_check_due) {
            r->quorum_check_due = r->now + r->o.election_ms;
            check_quorum(r);
            if (r->role != RAFT_LEADER) {
                break;
            }
        }
        if (r->now >= r->heartbeat_due) {
            raft__heartbeat(r);
        }
        break;
    }
}

raft_time raft_timeout(const struct raft *r)
{
    if (r->role != RAFT_LEADER) {
        return r->election_start + r->election_timeout;
    }
    raft_time t = r->heartbeat_due;
    if (!r->o.disable_check_quorum && r->quorum_check_due < t) {
        t = r->quorum_check_due;
    }
    if (r->transfer_to != 0 && r->transfer_due < t) {
        t = r->transfer_due;
    }
    return t;
}

/* ------------------------------------------------------------------ votes */

/* Raft §5.4.1: the candidate's log is at least as up to date as ours. */
static bool log_up_to_date(const struct raft *r, raft_index index, raft_term term)
{
    raft_term last_term = raft__last_term(r);
    if (term != last_term) {
        return term > last_term;
    }
    return index >= raft__last_index(r);
}

/* Thesis §4.2.3: a server that heard from a current leader within the minimum
 * election timeout does not grant votes (nor update its term), so removed or
 * partitioned servers cannot disrupt a healthy cluster. A leader-transfer vote
 * (disrupt) overrides it. */
static bool in_lease(const struct raft *r)
{
    if (r->o.disable_check_quorum || r->leader == 0) {
        return false;
    }
    if (r->role == RAFT_LEADER) {
        return true;
    }
    return r->now < r->leader_contact + r->o.election_ms;
}

static void recv_vote(struct raft *r, const struct raft_message *m)
{
    const struct raft_vote *v = &m->vote;
    const char *kind = v->pre_vote ? "pre-vote" : "vote";
    bool grant = false;
    const char *why = NULL;
    if (v->term < r->term) {
        why = "stale term";
    } else if (v->pre_vote && v->term == r->term) {
        why = "term not newer";
    } else if (!v->pre_vote && r->voted_for != 0 && r->voted_for != m->from) {
        why = "already voted";
    } else if (!log_up_to_date(r, v->last_index, v->last_term)) {
        why = "log not up to date";
    } else {
        grant = true;
    }
    if (grant) {
        raft__tracef(r, "grant %s to %llu term %llu", kind, (unsigned long long)m->from,
                     (unsigned long long)v->term);
        if (!v->pre_vote) {
            r->voted_for = m->from;
            raft__reset_election_timer(r);
        }
    } else {
        raft__tracef(r, "deny %s to %llu term %llu: %s", kind,
                     (unsigned long long)m->from, (unsigned long long)v->term, why);
    }
    struct raft_message *out = raft__send(r, RAFT_MSG_VOTE_RESULT, m->from);
    if (out != NULL) {
        /* A granted pre-vote echoes the proposed term; anything else carries
         * ours so that a stale candidate learns it. */
        out->vote_result.term = (grant && v->pre_vote) ? v->term : r->term;
        out->vote_result.granted = grant;
        out->vote_result.pre_vote = v->pre_vote;
    }
}

static void recv_vote_result(struct raft *r, const struct raft_message *m)
{
    const struct raft_vote_result *v = &m->vote_result;
    struct raft__progress *pr = raft__progress_get(r, m->from);
    if (pr == NULL || !raft__is_voter(r, m->from)) {
        return;
    }
    if (r->role == RAFT_PRECANDIDATE && v->pre_vote && v->term == r->term + 1) {
        if (!v->granted) {
            return;
        }
        pr->granted = true;
        if (votes_quorum(r)) {
            start_election(r, false);
        }
    } else if (r->role == RAFT_CANDIDATE && !v->pre_vote && v->term == r->term) {
        if (!v->granted) {
            return;
        }
        pr->granted = true;
        if (votes_quorum(r)) {
            become_leader(r);
        }
    }
}

static void recv_timeout_now(struct raft *r, const struct raft_message *m)
{
    if (m->timeout_now.term != r->term || r->role != RAFT_FOLLOWER ||
        !raft__is_voter(r, r->o.id)) {
        return;
    }
    raft__tracef(r, "timeout-now from %llu: start election", (unsigned long long)m->from);
    /* Thesis §3.10: skip pre-vote and override the voters' leader lease. */
    start_election(r, true);
}

/* ------------------------------------------------------------------ receive */

static int recv_message(struct raft *r, const struct raft_message *m)
{
    if (m->to != r->o.id || m->from == r->o.id || m->from == 0) {
        return 0;
    }
    raft_term term = 0;
    switch (m->type) {
    case RAFT_MSG_APPEND:
        term = m->append.term;
        break;
    case RAFT_MSG_APPEND_RESULT:
        term = m->append_result.term;
        break;
    case RAFT_MSG_VOTE:
        term = m->vote.term;
        break;
    case RAFT_MSG_VOTE_RESULT:
        term = m->vote_result.term;
        break;
    case RAFT_MSG_SNAPSHOT:
        term = m->snapshot.term;
        break;
    case RAFT_MSG_SNAPSHOT_RESULT:
        term = m->snapshot_result.term;
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        term = m->timeout_now.term;
        break;
    default:
        return CM_EINVAL;
    }

    /* Allocate what AppendEntries/InstallSnapshot need before any change. */
    struct raft__append_plan ap;
    struct raft__snapshot_plan sp;
    memset(&ap, 0, sizeof ap);
    memset(&sp, 0, sizeof sp);
    if (m->type == RAFT_MSG_APPEND && term >= r->term) {
        int rv = raft__append_prepare(r, m, &ap);
        if (rv != 0) {
            return rv;
        }
    } else if (m->type == RAFT_MSG_SNAPSHOT && term >= r->term) {
        int rv = raft__snapshot_prepare(r, m, &sp);
        if (rv != 0) {
            return rv;
        }
    }

    if (m->type == RAFT_MSG_VOTE && m->vote.term > r->term && !m->vote.disrupt &&
        in_lease(r)) {
        raft__tracef(r, "ignore %s from %llu term %llu: leader lease",
                     m->vote.pre_vote ? "pre-vote" : "vote", (unsigned long long)m->from,
                     (unsigned long long)m->vote.term);
        return 0;
    }

    if (term > r->term) {
        /* Raft §5.1: a newer term makes us a follower, except for pre-votes
         * (thesis §9.6), which change no state, and granted pre-vote answers,
         * which carry the proposed term. */
        bool pre = (m->type == RAFT_MSG_VOTE && m->vote.pre_vote) ||
                   (m->type == RAFT_MSG_VOTE_RESULT && m->vote_result.pre_vote &&
                    m->vote_result.granted);
        if (!pre) {
            raft_id leader = (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_SNAPSHOT)
                                 ? m->from
                                 : 0;
            raft__become_follower(r, term, leader);
        }
    } else if (term < r->term) {
        /* Stale: tell old leaders and candidates about the new term; drop
         * stale answers. */
        if (m->type == RAFT_MSG_APPEND) {
            struct raft_message *out = raft__send(r, RAFT_MSG_APPEND_RESULT, m->from);
            if (out != NULL) {
                out->append_result.term = r->term;
                out->append_result.rejected = 1;
                out->append_result.last_index = raft__last_index(r);
                out->append_result.reject_index = m->append.prev_index;
                out->append_result.seq = m->append.seq;
            }
        } else if (m->type == RAFT_MSG_SNAPSHOT) {
            struct raft_message *out = raft__send(r, RAFT_MSG_SNAPSHOT_RESULT, m->from);
            if (out != NULL) {
                out->snapshot_result.term = r->term;
                out->snapshot_result.last_index = m->snapshot.last_index;
                out->snapshot_result.rejected = 1;
            }
        } else if (m->type == RAFT_MSG_VOTE) {
            recv_vote(r, m);
        }
        return 0;
    }

    switch (m->type) {
    case RAFT_MSG_APPEND:
        raft__recv_append(r, m, &ap);
        return 0;
    case RAFT_MSG_APPEND_RESULT:
        raft__recv_append_result(r, m);
        return 0;
    case RAFT_MSG_VOTE:
        recv_vote(r, m);
        return 0;
    case RAFT_MSG_VOTE_RESULT:
        recv_vote_result(r, m);
        return 0;
    case RAFT_MSG_SNAPSHOT:
        raft__recv_snapshot(r, m, &sp);
        return 0;
    case RAFT_MSG_SNAPSHOT_RESULT:
        raft__recv_snapshot_result(r, m);
        return 0;
    case RAFT_MSG_TIMEOUT_NOW:
        recv_timeout_now(r, m);
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ transfer */

static int transfer(struct raft *r, raft_id id)
{
    if (r->role != RAFT_LEADER) {
        return CM_ENOTLEADER;
    }
    if (r->transfer_to != 0) {
        return CM_EBUSY;
    }
    if (id == 0) {
        /* Pick the most up-to-date voter (thesis §3.10). */
        raft_index best = 0;
        for (unsigned i = 0; i < r->config.n; i++) {
            const struct raft_server *s = &r->config.servers[i];
            if (s->id != r->o.id && s->role == RAFT_VOTER &&
                (id == 0 || r->progress[i].match > best)) {
                id = s->id;
                best = r->progress[i].match;
            }
        }
        if (id == 0) {
            return CM_EINVAL;
        }
    }
    if (id == r->o.id || !raft__is_voter(r, id)) {
        return CM_EINVAL;
    }
    r->transfer_to = id;
    r->transfer_due = r->now + r->o.election_ms;
    r->transfer_sent = false;
    raft__tracef(r, "transfer to %llu", (unsigned long long)id);
    /* Catch the target up; TIMEOUT_NOW goes out once its match index reaches
     * our last index (raft__recv_append_result). */
    struct raft__progress *pr = raft__progress_get(r, id);
    if (pr->match == raft__last_index(r)) {
        struct raft_message *m = raft__send(r, RAFT_MSG_TIMEOUT_NOW, id);
        if (m != NULL) {
            m->timeout_now.term = r->term;
            m->timeout_now.last_index = raft__last_index(r);
            m->timeout_now.last_term = raft__last_term(r);
            r->transfer_sent = true;
            raft__tracef(r, "transfer to %llu: send timeout-now", (unsigned long long)id);
        }
    } else {
        raft__send_append(r, pr, false);
    }
    return 0;
}

/* ------------------------------------------------------------------ step */

/* Make sure everything a step may produce has room before any state changes,
 * so that CM_ENOMEM leaves the core untouched. */
static int out_reserve(struct raft *r)
{
    unsigned want = (r->config.n + 2) * (r->o.max_inflight + 4);
    if (want > r->msgs_cap) {
        struct raft_message *m = cm_reallocarray(r->msgs, want, sizeof *m);
        if (m == NULL) {
            return CM_ENOMEM;
        }
        r->msgs = m;
        raft_index *f = cm_reallocarray(r->msg_first, want, sizeof *f);
        if (f == NULL) {
            return CM_ENOMEM;
        }
        r->msg_first = f;
        r->msgs_cap = want;
    }
    int rv = raft__log_reserve(&r->log, 1);
    if (rv != 0) {
        return rv;
    }
    return raft__progress_reserve(r, r->config.n + 1);
}

static void out_begin(struct raft *r, struct raft_update *out)
{
    memset(out, 0, sizeof *out);
    r->out = out;
    r->out_append_from = 0;
    r->n_msgs = 0;
}

/* Fill the parts of the update that point into the core's memory, now that
 * the log no longer changes during this step. */
static void out_finish(struct raft *r, raft_term term0, raft_id vote0,
                       enum raft_role role0, raft_id leader0)
{
    struct raft_update *out = r->out;
    if (r->term != term0 || r->voted_for != vote0) {
        out->hard_state_changed = true;
    }
    out->term = r->term;
    out->voted_for = r->voted_for;

    raft_index last = raft__log_last(&r->log);
    if (r->out_append_from != 0 && r->out_append_from <= last) {
        out->entries_first = r->out_append_from;
        out->n_entries = (unsigned)(last - r->out_append_from + 1);
        out->entries = raft__log_get(&r->log, r->out_append_from);
    }

    /* Apply committed entries in order (Raft §5.3), only those durable here so
     * that the state machine never runs ahead of the local log. */
    raft_index upto = CM_MIN(r->commit, r->persisted);
    if (upto > r->applied) {
        CM_BUG_ON(raft__log_get(&r->log, r->applied + 1) == NULL);
        out->apply_first = r->applied + 1;
        out->n_apply = (unsigned)(upto - r->applied);
        out->apply = raft__log_get(&r->log, r->applied + 1);
        r->applied = upto;
    }
    if (!r->snap.requested && r->applied >= r->snap.index + r->o.snapshot_threshold) {
        out->snapshot_at = r->applied;
        r->snap.requested = true;
    }

    for (unsigned i = 0; i < r->n_msgs; i++) {
        struct raft_message *m = &r->msgs[i];
        if (m->type == RAFT_MSG_APPEND && m->append.n_entries > 0) {
            m->append.entries = raft__log_get(&r->log, r->msg_first[i]);
            CM_BUG_ON(m->append.entries == NULL ||
                      raft__log_get(&r->log, r->msg_first[i] + m->append.n_entries - 1) ==
                          NULL);
        }
    }
    out->n_messages = r->n_msgs;
    out->messages = r->n_msgs > 0 ? r->msgs : NULL;
    if (out->n_reads == 0) {
        out->reads = NULL;
    }
    out->role_changed = r->term != term0 || r->role != role0 || r->leader != leader0;
    r->out = NULL;
}

int raft_step(struct raft *r, const struct raft_event *ev, struct raft_update *out)
{
    memset(out, 0, sizeof *out);
    if (!r->started) {
        return CM_EINVAL;
    }
    switch (ev->type) {
    case RAFT_EVENT_TICK:
    case RAFT_EVENT_RECEIVE:
    case RAFT_EVENT_PERSISTED:
    case RAFT_EVENT_SNAPSHOT_TAKEN:
    case RAFT_EVENT_PEER_LOST:
        break;
    case RAFT_EVENT_SUBMIT:
    case RAFT_EVENT_CHANGE:
    case RAFT_EVENT_TRANSFER:
    case RAFT_EVENT_READ_INDEX:
        if (r->role != RAFT_LEADER) {
            return CM_ENOTLEADER;
        }
        break;
    default:
        return CM_EINVAL;
    }
    int rv = out_reserve(r);
    if (rv != 0) {
        return rv;
    }
    raft_time now0 = r->now;
    raft_term term0 = r->term;
    raft_id vote0 = r->voted_for;
    enum raft_role role0 = r->role;
    raft_id leader0 = r->leader;
    if (ev->now > r->now) {
        r->now = ev->now;
    }
    out_begin(r, out);

    switch (ev->type) {
    case RAFT_EVENT_TICK:
        break;
    case RAFT_EVENT_RECEIVE:
        rv = recv_message(r, &ev->receive);
        break;
    case RAFT_EVENT_PERSISTED:
        raft__persisted(r, ev->persisted.index, ev->persisted.term);
        break;
    case RAFT_EVENT_SNAPSHOT_TAKEN:
        rv = raft__snapshot_taken(r, ev->snapshot.index, ev->snapshot.size);
        break;
    case RAFT_EVENT_SUBMIT:
        rv = raft__submit(r, ev->submit.entries, ev->submit.n);
        break;
    case RAFT_EVENT_CHANGE:
        rv = raft__change(r, ev);
        break;
    case RAFT_EVENT_TRANSFER:
        rv = transfer(r, ev->transfer.id);
        break;
    case RAFT_EVENT_READ_INDEX:
        rv = raft__read_index(r, ev->read.id);
        break;
    case RAFT_EVENT_PEER_LOST:
        peer_lost(r, ev->peer.id);
        break;
    }
    if (rv != 0) {
        /* Handlers fail only before changing anything. */
        CM_BUG_ON(r->term != term0 || r->role != role0 || r->n_msgs != 0);
        r->now = now0;
        r->out = NULL;
        memset(out, 0, sizeof *out);
        return rv;
    }
    /* Timers are checked on every event: the host may be late with ticks. */
    tick(r);
    out_finish(r, term0, vote0, role0, leader0);
    return 0;
}

/* ------------------------------------------------------------------ start */

static int load_check(const struct raft_load *l)
{
    if (l->n_entries > 0) {
        if (l->first_index == 0 || l->first_index > l->snapshot_index + 1) {
            return CM_EINVAL;
        }
        for (unsigned i = 0; i < l->n_entries; i++) {
            const struct raft_entry *e = &l->entries[i];
            if (e->type < RAFT_COMMAND || e->type > RAFT_CHANGE || e->term == 0 ||
                (i > 0 && e->term < l->entries[i - 1].term) ||
                (e->buf.len > 0 && e->buf.base == NULL)) {
                return CM_EINVAL;
            }
        }
    }
    if (l->snapshot_index == 0 && l->snapshot_term != 0) {
        return CM_EINVAL;
    }
    if (l->snapshot_index > 0 &&
        (l->snapshot_term == 0 || l->snapshot_config_index > l->snapshot_index)) {
        return CM_EINVAL;
    }
    return 0;
}

int raft_start(struct raft *r, const struct raft_load *l, raft_time now,
               struct raft_update *out)
{
    memset(out, 0, sizeof *out);
    if (r->started) {
        return CM_EINVAL;
    }
    int rv = load_check(l);
    if (rv != 0) {
        return rv;
    }
    r->now = now;
    r->term = l->term;
    r->voted_for = l->voted_for;
    r->snap.index = l->snapshot_index;
    r->snap.term = l->snapshot_term;
    r->snap.config_index = l->snapshot_config_index;
    r->snap.size = l->snapshot_size;
    rv = raft_config_copy(&l->snapshot_config, &r->snap.config);
    if (rv != 0) {
        goto err;
    }

    /* Entries: keep those that continue the snapshot. Entries that end before
     * the snapshot, or disagree with it, are stale: drop them. */
    unsigned n = l->n_entries;
    r->log.offset = l->snapshot_index;
    if (n > 0) {
        raft_index last = l->first_index + n - 1;
        bool usable = true;
        if (l->snapshot_index > 0) {
            if (last < l->snapshot_index) {
                usable = false;
            } else if (l->first_index <= l->snapshot_index &&
                       l->entries[l->snapshot_index - l->first_index].term !=
                           l->snapshot_term) {
                usable = false;
            }
        }
        if (usable) {
            r->log.offset = l->first_index - 1;
        } else {
            n = 0;
        }
    }
    rv = raft__log_reserve(&r->log, n + 1);
    if (rv != 0) {
        goto err;
    }
    for (unsigned i = 0; i < n; i++) {
        struct raft_entry e;
        rv = raft__entry_copy(&l->entries[i], &e);
        if (rv != 0) {
            goto err;
        }
        raft__log_push(&r->log, &e);
    }

    /* The configuration is the last one in the log (thesis §4.1). */
    struct raft_config c = {0, NULL};
    raft_index ci = 0;
    rv = raft__config_at(r, raft__last_index(r), &c, &ci);
    if (rv != 0) {
        goto err;
    }
    rv = raft__progress_reserve(r, c.n + 1);
    if (rv != 0) {
        raft_config_close(&c);
        goto err;
    }
    raft__config_set(r, &c, ci);

    r->applied = CM_MAX(l->snapshot_index, l->applied_index);
    if (r->applied > raft__last_index(r)) {
        rv = CM_EINVAL;
        goto err;
    }
    r->commit = r->applied;
    r->persisted = raft__last_index(r);
    r->role = RAFT_FOLLOWER;
    r->leader = 0;
    r->started = true;
    raft__reset_election_timer(r);
    if (raft_config_voter_count(&r->config) == 1 && raft__is_voter(r, r->o.id)) {
        /* The only voter cannot be disrupted by anyone nor split a vote: waiting
         * out an election timeout would only delay a single-node cluster. */
        r->election_timeout = 0;
    }
    raft__tracef(r, "start term %llu last %llu snapshot %llu voters %u",
                 (unsigned long long)r->term, (unsigned long long)raft__last_index(r),
                 (unsigned long long)r->snap.index, raft_config_voter_count(&r->config));
    return 0;

err:
    raft_reset_state(r);
    memset(&r->snap, 0, sizeof r->snap);
    r->term = 0;
    r->voted_for = 0;
    r->config_index = 0;
    return rv;
}

/* ------------------------------------------------------------------ getters */

enum raft_role raft_role(const struct raft *r)
{
    return r->role;
}

raft_id raft_id_of(const struct raft *r)
{
    return r->o.id;
}

raft_term raft_current_term(const struct raft *r)
{
    return r->term;
}

raft_id raft_leader(const struct raft *r)
{
    return r->leader;
}

raft_index raft_commit_index(const struct raft *r)
{
    return r->commit;
}

raft_index raft_last_index(const struct raft *r)
{
    return raft__last_index(r);
}

raft_index raft_applied_index(const struct raft *r)
{
    return r->applied;
}

const struct raft_config *raft_config_current(const struct raft *r)
{
    return &r->config;
}

raft_index raft_match_index(const struct raft *r, raft_id id)
{
    if (r->role != RAFT_LEADER) {
        return 0;
    }
    for (unsigned i = 0; i < r->config.n; i++) {
        if (r->progress[i].id == id) {
            return id == r->o.id ? r->persisted : r->progress[i].match;
        }
    }
    return 0;
}
