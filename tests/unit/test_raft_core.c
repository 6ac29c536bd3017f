/* Unit tests for the pure raft core (raft/core.c, raft/replication.c): one core
 * driven by hand-made events, checking its rules one at a time. */
#include <stdlib.h>

#include "base/base.h"
#include "raft/raft.h"
#include "test.h"

/* ------------------------------------------------------------------ fixture */

struct fx {
    struct raft *r;
    struct raft_update u;
    raft_time now;
    struct cm_buf trace;
    struct raft_options o;
};

static void fx_tracer(void *data, raft_id id, raft_time now, const char *msg)
{
    struct fx *f = data;
    cm_buf_printf(&f->trace, "%llu %llu: %s\n", (unsigned long long)now,
                  (unsigned long long)id, msg);
}

/* Server @id of a cluster whose configuration (entry 1) has @voters voters
 * (ids 1..voters) and @learners learners after them; @n extra entries of
 * terms @terms follow. */
static void fx_init_opts(struct fx *f, raft_id id, unsigned voters, unsigned learners,
                         const raft_term *terms, unsigned n, raft_term term,
                         const struct raft_options *o)
{
    memset(f, 0, sizeof *f);
    if (o != NULL) {
        f->o = *o;
    } else {
        raft_options_default(&f->o);
    }
    f->o.id = id;
    f->o.seed = 42;
    f->o.tracer.data = f;
    f->o.tracer.emit = fx_tracer;
    f->r = raft_new(&f->o);
    ASSERT_NOT_NULL(f->r);
    /* Room for the trace up front, so the tracer never allocates during the
     * steps the OOM tests walk. */
    ASSERT_OK(cm_buf_reserve(&f->trace, 1 << 16));
    struct raft_config c = {0, NULL};
    for (unsigned i = 0; i < voters + learners; i++) {
        ASSERT_OK(raft_config_add(&c, i + 1, "", i < voters ? RAFT_VOTER : RAFT_LEARNER));
    }
    struct raft_entry entries[32];
    ASSERT_TRUE(n < CM_ARRAY_SIZE(entries));
    ASSERT_OK(raft_bootstrap_entry(&c, &entries[0]));
    for (unsigned i = 0; i < n; i++) {
        entries[i + 1] = (struct raft_entry){terms[i], RAFT_COMMAND, {(void *)"x", 1}};
    }
    struct raft_load l;
    memset(&l, 0, sizeof l);
    l.term = term;
    l.first_index = 1;
    l.n_entries = n + 1;
    l.entries = entries;
    ASSERT_OK(raft_start(f->r, &l, 0, &f->u));
    cm_free(&entries[0].buf.base);
    raft_config_close(&c);
}

static void fx_init(struct fx *f, raft_id id, unsigned voters, unsigned learners,
                    const raft_term *terms, unsigned n, raft_term term)
{
    fx_init_opts(f, id, voters, learners, terms, n, term, NULL);
}

static void fx_close(struct fx *f)
{
    raft_free(f->r);
    cm_buf_done(&f->trace);
}

static int fx_step(struct fx *f, struct raft_event *ev)
{
    ev->now = f->now;
    return raft_step(f->r, ev, &f->u);
}

static void fx_tick(struct fx *f, raft_time to)
{
    f->now = to;
    struct raft_event ev = {.type = RAFT_EVENT_TICK};
    ASSERT_OK(fx_step(f, &ev));
}

static void fx_recv(struct fx *f, const struct raft_message *m)
{
    struct raft_event ev = {.type = RAFT_EVENT_RECEIVE};
    ev.receive = *m;
    ASSERT_OK(fx_step(f, &ev));
}

static void fx_persisted(struct fx *f, raft_index index, raft_term term)
{
    struct raft_event ev = {.type = RAFT_EVENT_PERSISTED};
    ev.persisted.index = index;
    ev.persisted.term = term;
    ASSERT_OK(fx_step(f, &ev));
}

static const struct raft_message *fx_msg(const struct fx *f, uint8_t type, raft_id to)
{
    for (unsigned i = 0; i < f->u.n_messages; i++) {
        if (f->u.messages[i].type == type && f->u.messages[i].to == to) {
            return &f->u.messages[i];
        }
    }
    return NULL;
}

static unsigned fx_count(const struct fx *f, uint8_t type)
{
    unsigned n = 0;
    for (unsigned i = 0; i < f->u.n_messages; i++) {
        n += f->u.messages[i].type == type;
    }
    return n;
}

static struct raft_message vote_result(raft_id from, raft_id to, raft_term term,
                                       bool granted, bool pre)
{
    struct raft_message m = {.type = RAFT_MSG_VOTE_RESULT, .from = from, .to = to};
    m.vote_result.term = term;
    m.vote_result.granted = granted;
    m.vote_result.pre_vote = pre;
    return m;
}

static struct raft_message append_result(raft_id from, raft_id to, raft_term term,
                                         raft_index last, uint64_t seq)
{
    struct raft_message m = {.type = RAFT_MSG_APPEND_RESULT, .from = from, .to = to};
    m.append_result.term = term;
    m.append_result.last_index = last;
    m.append_result.seq = seq;
    return m;
}

/* Make server 1 of @f leader: time out, win the pre-vote and the vote with
 * server 2's help, then persist the barrier. */
static void fx_elect(struct fx *f)
{
    fx_tick(f, f->now + 2 * f->o.election_ms);
    ASSERT_INT_EQ(raft_role(f->r), RAFT_PRECANDIDATE);
    raft_term t = raft_current_term(f->r);
    struct raft_message m = vote_result(2, 1, t + 1, true, true);
    fx_recv(f, &m);
    ASSERT_INT_EQ(raft_role(f->r), RAFT_CANDIDATE);
    ASSERT_TRUE(f->u.hard_state_changed);
    ASSERT_UINT_EQ(f->u.voted_for, 1);
    m = vote_result(2, 1, t + 1, true, false);
    fx_recv(f, &m);
    ASSERT_INT_EQ(raft_role(f->r), RAFT_LEADER);
    ASSERT_UINT_EQ(f->u.n_entries, 1);
    ASSERT_UINT_EQ(f->u.entries[0].type, RAFT_BARRIER);
    fx_persisted(f, raft_last_index(f->r), raft_current_term(f->r));
}

/* ------------------------------------------------------------------ elections */

struct vote_case {
    const char *name;
    raft_term term;      /* ours */
    raft_id voted_for;   /* ours, set by granting a first vote */
    raft_term last_term; /* of our last entry (index 2) */
    bool leader_contact; /* we heard from a leader just now */
    raft_term vote_term; /* the request */
    raft_index vote_last_index;
    raft_term vote_last_term;
    bool pre_vote;
    bool disrupt;
    int want; /* 1 granted, 0 denied, -1 ignored (no answer) */
    raft_term want_term;
};

TEST(core_vote_rules)
{
    static const struct vote_case cases[] = {
        {"grant up to date", 2, 0, 2, false, 3, 2, 2, false, false, 1, 3},
        {"grant longer log", 2, 0, 2, false, 3, 5, 2, false, false, 1, 3},
        {"deny shorter log", 2, 0, 2, false, 3, 1, 2, false, false, 0, 3},
        {"deny older last term", 2, 0, 2, false, 3, 9, 1, false, false, 0, 3},
        {"grant newer last term", 2, 0, 2, false, 3, 1, 3, false, false, 1, 3},
        {"deny stale term", 4, 0, 2, false, 3, 2, 2, false, false, 0, 4},
        {"deny second vote", 3, 3, 2, false, 3, 2, 2, false, false, 0, 3},
        {"grant same candidate again", 3, 2, 2, false, 3, 2, 2, false, false, 1, 3},
        {"pre-vote keeps term", 2, 0, 2, false, 3, 2, 2, true, false, 1, 2},
        {"pre-vote denied log", 2, 0, 2, false, 3, 1, 1, true, false, 0, 2},
        {"pre-vote same term denied", 2, 0, 2, false, 2, 2, 2, true, false, 0, 2},
        {"lease ignores vote", 2, 0, 2, true, 3, 2, 2, false, false, -1, 2},
        {"lease ignores pre-vote", 2, 0, 2, true, 3, 2, 2, true, false, -1, 2},
        {"disrupt overrides lease", 2, 0, 2, true, 3, 2, 2, false, true, 1, 3},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        const struct vote_case *k = &cases[i];
        struct fx f;
        raft_term terms[] = {k->last_term};
        fx_init(&f, 1, 3, 0, terms, 1, k->term);
        f.now = 10;
        if (k->leader_contact) {
            struct raft_message a = {.type = RAFT_MSG_APPEND, .from = 3, .to = 1};
            a.append.term = k->term;
            a.append.prev_index = 2;
            a.append.prev_term = k->last_term;
            fx_recv(&f, &a);
            ASSERT_UINT_EQ(raft_leader(f.r), 3);
        }
        if (k->voted_for != 0) {
            struct raft_message v = {
                .type = RAFT_MSG_VOTE, .from = k->voted_for, .to = 1};
            v.vote.term = k->term;
            v.vote.last_index = 2;
            v.vote.last_term = k->last_term;
            fx_recv(&f, &v);
        }
        struct raft_message v = {.type = RAFT_MSG_VOTE, .from = 2, .to = 1};
        v.vote.term = k->vote_term;
        v.vote.last_index = k->vote_last_index;
        v.vote.last_term = k->vote_last_term;
        v.vote.pre_vote = k->pre_vote;
        v.vote.disrupt = k->disrupt;
        fx_recv(&f, &v);
        const struct raft_message *res = fx_msg(&f, RAFT_MSG_VOTE_RESULT, 2);
        if (k->want < 0) {
            if (res != NULL) {
                test__fail(__FILE__, __LINE__, "%s: answered", k->name);
            }
        } else if (res == NULL || res->vote_result.granted != k->want) {
            test__fail(__FILE__, __LINE__, "%s: want granted=%d", k->name, k->want);
        }
        if (raft_current_term(f.r) != k->want_term) {
            test__fail(__FILE__, __LINE__, "%s: term %llu, want %llu", k->name,
                       (unsigned long long)raft_current_term(f.r),
                       (unsigned long long)k->want_term);
        }
        /* A granted real vote is durable before the answer goes out. */
        if (k->want == 1 && !k->pre_vote && k->voted_for == 0) {
            ASSERT_TRUE(f.u.hard_state_changed);
            ASSERT_UINT_EQ(f.u.voted_for, 2);
            ASSERT_UINT_EQ(f.u.term, k->want_term);
        }
        if (k->pre_vote) {
            ASSERT_FALSE(f.u.hard_state_changed);
        }
        fx_close(&f);
    }
}

TEST(core_election_and_barrier)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 0);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_FOLLOWER);
    raft_time t = raft_timeout(f.r);
    ASSERT_INT_OP(t, >=, 1000);
    ASSERT_INT_OP(t, <, 2000);
    fx_tick(&f, t - 1);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_FOLLOWER);
    fx_tick(&f, t);
    /* Pre-vote: term unchanged, nothing durable, term+1 proposed. */
    ASSERT_INT_EQ(raft_role(f.r), RAFT_PRECANDIDATE);
    ASSERT_UINT_EQ(raft_current_term(f.r), 0);
    ASSERT_FALSE(f.u.hard_state_changed);
    ASSERT_UINT_EQ(fx_count(&f, RAFT_MSG_VOTE), 2);
    const struct raft_message *v = fx_msg(&f, RAFT_MSG_VOTE, 3);
    ASSERT_TRUE(v->vote.pre_vote);
    ASSERT_UINT_EQ(v->vote.term, 1);
    /* A stale or denied answer changes nothing. */
    struct raft_message m = vote_result(2, 1, 0, false, true);
    fx_recv(&f, &m);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_PRECANDIDATE);
    m = vote_result(3, 1, 1, true, true);
    fx_recv(&f, &m);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_CANDIDATE);
    ASSERT_UINT_EQ(raft_current_term(f.r), 1);
    ASSERT_TRUE(f.u.hard_state_changed);
    ASSERT_UINT_EQ(f.u.voted_for, 1);
    ASSERT_UINT_EQ(fx_count(&f, RAFT_MSG_VOTE), 2);
    m = vote_result(3, 1, 1, true, false);
    fx_recv(&f, &m);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_LEADER);
    ASSERT_TRUE(f.u.role_changed);
    /* The new leader appends a barrier and sends it in parallel. */
    ASSERT_UINT_EQ(f.u.entries_first, 2);
    ASSERT_UINT_EQ(f.u.n_entries, 1);
    ASSERT_UINT_EQ(f.u.entries[0].type, RAFT_BARRIER);
    ASSERT_UINT_EQ(fx_count(&f, RAFT_MSG_APPEND), 2);
    fx_close(&f);
}

TEST(core_single_voter_commits_on_persist)
{
    struct fx f;
    fx_init(&f, 1, 1, 0, NULL, 0, 0);
    fx_tick(&f, raft_timeout(f.r));
    ASSERT_INT_EQ(raft_role(f.r), RAFT_LEADER);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 0);
    /* Commit only once the leader's own write is durable. */
    fx_persisted(&f, 2, 1);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    ASSERT_UINT_EQ(f.u.apply_first, 1);
    ASSERT_UINT_EQ(f.u.n_apply, 2);
    fx_close(&f);
}

/* ------------------------------------------------------------------ replication */

TEST(core_append_conflict_truncates_and_acks_after_persist)
{
    struct fx f;
    raft_term terms[] = {1, 2}; /* log: 1/1 (config), 2/1, 3/2 */
    fx_init(&f, 2, 3, 0, terms, 2, 2);
    struct raft_entry e[2] = {{3, RAFT_COMMAND, {(void *)"a", 1}},
                              {3, RAFT_COMMAND, {(void *)"b", 1}}};
    struct raft_message a = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2};
    a.append.term = 3;
    a.append.prev_index = 2;
    a.append.prev_term = 1;
    a.append.commit = 2;
    a.append.seq = 7;
    a.append.n_entries = 2;
    a.append.entries = e;
    fx_recv(&f, &a);
    ASSERT_UINT_EQ(f.u.truncate_from, 3);
    ASSERT_UINT_EQ(f.u.entries_first, 3);
    ASSERT_UINT_EQ(f.u.n_entries, 2);
    ASSERT_UINT_EQ(raft_last_index(f.r), 4);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    ASSERT_UINT_EQ(f.u.apply_first, 1); /* durable since the start */
    ASSERT_UINT_EQ(f.u.n_apply, 2);
    /* The answer waits until the new entries are durable. */
    ASSERT_NULL(fx_msg(&f, RAFT_MSG_APPEND_RESULT, 1));
    /* A persisted event for the truncated entry is ignored. */
    fx_persisted(&f, 3, 2);
    ASSERT_NULL(fx_msg(&f, RAFT_MSG_APPEND_RESULT, 1));
    fx_persisted(&f, 4, 3);
    const struct raft_message *r = fx_msg(&f, RAFT_MSG_APPEND_RESULT, 1);
    ASSERT_NOT_NULL(r);
    ASSERT_FALSE(r->append_result.rejected);
    ASSERT_UINT_EQ(r->append_result.last_index, 4);
    ASSERT_UINT_EQ(r->append_result.seq, 7);
    /* A duplicate is acknowledged at once and writes nothing. */
    fx_recv(&f, &a);
    ASSERT_UINT_EQ(f.u.n_entries, 0);
    ASSERT_UINT_EQ(f.u.truncate_from, 0);
    ASSERT_NOT_NULL(fx_msg(&f, RAFT_MSG_APPEND_RESULT, 1));
    fx_close(&f);
}

struct reject_case {
    const char *name;
    raft_index prev_index;
    raft_term prev_term;
    raft_index want_hint;
};

TEST(core_append_reject_hints)
{
    /* Our log: 1/1, 2/1, 3/2, 4/2, 5/4. */
    static const struct reject_case cases[] = {
        {"beyond our log", 9, 4, 5},
        {"term mismatch skips newer terms", 5, 3, 4},
        {"term mismatch back to older term", 4, 1, 2},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct fx f;
        raft_term terms[] = {1, 2, 2, 4};
        fx_init(&f, 2, 3, 0, terms, 4, 4);
        struct raft_message a = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2};
        a.append.term = 5;
        a.append.prev_index = cases[i].prev_index;
        a.append.prev_term = cases[i].prev_term;
        fx_recv(&f, &a);
        const struct raft_message *r = fx_msg(&f, RAFT_MSG_APPEND_RESULT, 1);
        ASSERT_NOT_NULL(r);
        ASSERT_TRUE(r->append_result.rejected);
        if (r->append_result.last_index != cases[i].want_hint) {
            test__fail(__FILE__, __LINE__, "%s: hint %llu want %llu", cases[i].name,
                       (unsigned long long)r->append_result.last_index,
                       (unsigned long long)cases[i].want_hint);
        }
        ASSERT_UINT_EQ(r->append_result.reject_index, cases[i].prev_index);
        ASSERT_UINT_EQ(raft_last_index(f.r), 5);
        fx_close(&f);
    }
}

TEST(core_stale_append_answered_with_our_term)
{
    struct fx f;
    fx_init(&f, 2, 3, 0, NULL, 0, 5);
    struct raft_message a = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2};
    a.append.term = 4;
    fx_recv(&f, &a);
    const struct raft_message *r = fx_msg(&f, RAFT_MSG_APPEND_RESULT, 1);
    ASSERT_NOT_NULL(r);
    ASSERT_UINT_EQ(r->append_result.term, 5);
    ASSERT_TRUE(r->append_result.rejected);
    ASSERT_UINT_EQ(raft_leader(f.r), 0);
    /* A stale answer is dropped. */
    struct raft_message m = vote_result(1, 2, 3, true, false);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(f.u.n_messages, 0);
    fx_close(&f);
}

TEST(core_commit_only_current_term)
{
    struct fx f;
    raft_term terms[] = {1}; /* index 2 of term 1, not committed */
    fx_init(&f, 1, 3, 0, terms, 1, 1);
    fx_elect(&f); /* term 2, barrier at 3 */
    ASSERT_UINT_EQ(raft_current_term(f.r), 2);
    ASSERT_UINT_EQ(raft_last_index(f.r), 3);
    /* A majority holds index 2 (of term 1): not enough (Raft §5.4.2). */
    struct raft_message m = append_result(2, 1, 2, 2, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_match_index(f.r, 2), 2);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 0);
    m = append_result(2, 1, 2, 3, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 3);
    ASSERT_UINT_EQ(f.u.n_apply, 3);
    fx_close(&f);
}

TEST(core_leader_counts_itself_only_when_persisted)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 0);
    fx_elect(&f);
    struct raft_message m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m); /* the barrier commits; 2 leaves the probe state */
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    struct raft_entry e[3] = {{0, RAFT_COMMAND, {(void *)"a", 1}},
                              {0, RAFT_COMMAND, {(void *)"b", 1}},
                              {0, RAFT_COMMAND, {(void *)"c", 1}}};
    struct raft_event ev = {.type = RAFT_EVENT_SUBMIT};
    ev.submit.n = 3;
    ev.submit.entries = e;
    ASSERT_OK(fx_step(&f, &ev));
    ASSERT_UINT_EQ(f.u.submitted_index, 3);
    ASSERT_UINT_EQ(f.u.submitted_term, 1);
    ASSERT_UINT_EQ(f.u.entries_first, 3);
    ASSERT_UINT_EQ(f.u.n_entries, 3);
    ASSERT_UINT_EQ(f.u.entries[2].term, 1);
    /* Sent to the followers in parallel with the local write, batched. */
    const struct raft_message *a = fx_msg(&f, RAFT_MSG_APPEND, 2);
    ASSERT_NOT_NULL(a);
    ASSERT_UINT_EQ(a->append.n_entries, 3);
    /* One follower holds them; the leader has not persisted: no commit. */
    m = append_result(2, 1, 1, 5, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    fx_persisted(&f, 5, 1);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 5);
    fx_close(&f);
}

TEST(core_pipelining_and_batching)
{
    struct raft_options o;
    raft_options_default(&o);
    o.max_append_entries = 2;
    o.max_inflight = 3;
    struct fx f;
    fx_init_opts(&f, 1, 2, 0, NULL, 0, 0, &o);
    fx_elect(&f);
    struct raft_message m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m); /* follower 2 caught up: pipeline */
    struct raft_entry e[10];
    for (unsigned i = 0; i < 10; i++) {
        e[i] = (struct raft_entry){0, RAFT_COMMAND, {(void *)"p", 1}};
    }
    struct raft_event ev = {.type = RAFT_EVENT_SUBMIT};
    ev.submit.n = 10;
    ev.submit.entries = e;
    ASSERT_OK(fx_step(&f, &ev));
    /* Three AppendEntries of two entries each are in flight. */
    ASSERT_UINT_EQ(fx_count(&f, RAFT_MSG_APPEND), 3);
    ASSERT_UINT_EQ(f.u.messages[0].append.prev_index, 2);
    ASSERT_UINT_EQ(f.u.messages[1].append.prev_index, 4);
    ASSERT_UINT_EQ(f.u.messages[2].append.prev_index, 6);
    ASSERT_UINT_EQ(f.u.messages[2].append.n_entries, 2);
    /* An answer for the first frees one slot. */
    m = append_result(2, 1, 1, 4, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(fx_count(&f, RAFT_MSG_APPEND), 1);
    ASSERT_UINT_EQ(f.u.messages[0].append.prev_index, 8);
    /* A rejection falls back to probing from the hint. */
    m = append_result(2, 1, 1, 5, 0);
    m.append_result.rejected = 1;
    m.append_result.reject_index = 6;
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(fx_count(&f, RAFT_MSG_APPEND), 1);
    ASSERT_UINT_EQ(f.u.messages[0].append.prev_index, 5);
    fx_close(&f);
}

TEST(core_learners_are_not_counted)
{
    struct fx f;
    fx_init(&f, 1, 2, 1, NULL, 0, 0); /* voters 1, 2; learner 3 */
    fx_elect(&f);
    ASSERT_NOT_NULL(fx_msg(&f, RAFT_MSG_APPEND, 3) ? fx_msg(&f, RAFT_MSG_APPEND, 3)
                                                   : (void *)f.r);
    struct raft_message m = append_result(3, 1, 1, 2, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_match_index(f.r, 3), 2);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 0);
    m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    fx_close(&f);
    /* A learner never campaigns. */
    fx_init(&f, 3, 2, 1, NULL, 0, 0);
    fx_tick(&f, 10000);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_FOLLOWER);
    ASSERT_UINT_EQ(f.u.n_messages, 0);
    fx_close(&f);
}

TEST(core_check_quorum_step_down)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 0);
    fx_elect(&f);
    raft_time t0 = f.now;
    /* Heard from one follower in the first round: stays. */
    struct raft_message m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m);
    fx_tick(&f, t0 + 1000);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_LEADER);
    /* Nothing in the second round: steps down. */
    fx_tick(&f, t0 + 2000);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_FOLLOWER);
    ASSERT_TRUE(f.u.role_changed);
    ASSERT_UINT_EQ(raft_leader(f.r), 0);
    fx_close(&f);
}

/* ------------------------------------------------------------------ membership */

TEST(core_config_change_one_at_a_time)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 0);
    fx_elect(&f);
    struct raft_event ev = {.type = RAFT_EVENT_CHANGE};
    ev.change.op = RAFT_CHANGE_ADD_LEARNER;
    ev.change.id = 4;
    strcpy(ev.change.address, "10.0.0.4:7000");
    /* Not before an entry of this term commits. */
    ASSERT_ERR(fx_step(&f, &ev), CM_EBUSY);
    struct raft_message m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    ASSERT_OK(fx_step(&f, &ev));
    ASSERT_UINT_EQ(f.u.submitted_index, 3);
    ASSERT_UINT_EQ(f.u.entries[0].type, RAFT_CHANGE);
    /* Effective at once (thesis §4.1): the learner gets AppendEntries. */
    ASSERT_UINT_EQ(raft_config_current(f.r)->n, 4);
    ASSERT_NOT_NULL(fx_msg(&f, RAFT_MSG_APPEND, 4));
    /* A second change waits for the first to commit. */
    ev.change.op = RAFT_CHANGE_PROMOTE;
    raft_index last = raft_last_index(f.r);
    ASSERT_ERR(fx_step(&f, &ev), CM_EBUSY);
    ASSERT_UINT_EQ(raft_last_index(f.r), last);
    ASSERT_UINT_EQ(f.u.n_entries, 0);
    fx_persisted(&f, 3, 1);
    m = append_result(2, 1, 1, 3, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 3);
    /* Bad changes. */
    struct raft_event bad = ev;
    bad.change.op = RAFT_CHANGE_PROMOTE;
    bad.change.id = 2; /* already a voter */
    ASSERT_ERR(fx_step(&f, &bad), CM_EINVAL);
    bad.change.op = RAFT_CHANGE_ADD_LEARNER; /* exists */
    ASSERT_ERR(fx_step(&f, &bad), CM_EINVAL);
    bad.change.op = 9;
    ASSERT_ERR(fx_step(&f, &bad), CM_EINVAL);
    bad.change.op = RAFT_CHANGE_REMOVE;
    bad.change.id = 9;
    ASSERT_ERR(fx_step(&f, &bad), CM_EINVAL);
    /* Promotion. */
    ASSERT_OK(fx_step(&f, &ev));
    ASSERT_UINT_EQ(raft_config_voter_count(raft_config_current(f.r)), 4);
    fx_close(&f);
}

TEST(core_removed_leader_steps_down_after_commit)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 0);
    fx_elect(&f);
    struct raft_message m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m);
    struct raft_event ev = {.type = RAFT_EVENT_CHANGE};
    ev.change.op = RAFT_CHANGE_REMOVE;
    ev.change.id = 1;
    ASSERT_OK(fx_step(&f, &ev));
    ASSERT_INT_EQ(raft_role(f.r), RAFT_LEADER);
    /* The leader is not counted any more: its own write does not help. */
    fx_persisted(&f, 3, 1);
    m = append_result(2, 1, 1, 3, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    m = append_result(3, 1, 1, 3, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 3);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_FOLLOWER);
    fx_close(&f);
}

TEST(core_new_server_accepts_append_with_empty_config)
{
    struct fx f;
    memset(&f, 0, sizeof f);
    raft_options_default(&f.o);
    f.o.id = 4;
    f.r = raft_new(&f.o);
    struct raft_load l;
    memset(&l, 0, sizeof l);
    ASSERT_OK(raft_start(f.r, &l, 0, &f.u));
    ASSERT_UINT_EQ(raft_config_current(f.r)->n, 0);
    struct raft_message a = {.type = RAFT_MSG_APPEND, .from = 1, .to = 4};
    a.append.term = 2;
    a.append.prev_index = 3;
    a.append.prev_term = 1;
    fx_recv(&f, &a);
    const struct raft_message *r = fx_msg(&f, RAFT_MSG_APPEND_RESULT, 1);
    ASSERT_NOT_NULL(r);
    ASSERT_TRUE(r->append_result.rejected);
    ASSERT_UINT_EQ(r->append_result.last_index, 0);
    ASSERT_UINT_EQ(raft_leader(f.r), 1);
    /* It never campaigns while outside the configuration. */
    fx_tick(&f, 100000);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_FOLLOWER);
    fx_close(&f);
}

/* ------------------------------------------------------------------ snapshots */

TEST(core_snapshot_threshold_compaction_and_chunks)
{
    struct raft_options o;
    raft_options_default(&o);
    o.snapshot_threshold = 4;
    o.snapshot_trailing = 1;
    o.snapshot_chunk = 30;
    struct fx f;
    fx_init_opts(&f, 1, 3, 0, NULL, 0, 0, &o); /* 3 never answers */
    fx_elect(&f);
    struct raft_message m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m);
    struct raft_entry e[3] = {{0, RAFT_COMMAND, {(void *)"a", 1}},
                              {0, RAFT_COMMAND, {(void *)"b", 1}},
                              {0, RAFT_COMMAND, {(void *)"c", 1}}};
    struct raft_event ev = {.type = RAFT_EVENT_SUBMIT};
    ev.submit.n = 3;
    ev.submit.entries = e;
    ASSERT_OK(fx_step(&f, &ev));
    fx_persisted(&f, 5, 1);
    m = append_result(2, 1, 1, 5, 0);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_applied_index(f.r), 5);
    ASSERT_UINT_EQ(f.u.snapshot_at, 5);
    /* Asking again is not repeated while the host works on it. */
    fx_tick(&f, f.now + 1);
    ASSERT_UINT_EQ(f.u.snapshot_at, 0);
    struct raft_event se = {.type = RAFT_EVENT_SNAPSHOT_TAKEN};
    se.snapshot.index = 9; /* beyond applied */
    se.snapshot.size = 100;
    ASSERT_ERR(fx_step(&f, &se), CM_EINVAL);
    se.snapshot.index = 5;
    ASSERT_OK(fx_step(&f, &se));
    ASSERT_UINT_EQ(f.u.compact_to, 4);
    /* Follower 3 needs compacted entries: it gets the snapshot in chunks at
     * the next heartbeat. */
    fx_tick(&f, raft_timeout(f.r));
    const struct raft_message *s = fx_msg(&f, RAFT_MSG_SNAPSHOT, 3);
    ASSERT_NOT_NULL(s);
    ASSERT_NULL(s->snapshot.chunk.base);
    ASSERT_UINT_EQ(s->snapshot.chunk.len, 30);
    ASSERT_UINT_EQ(s->snapshot.offset, 0);
    ASSERT_UINT_EQ(s->snapshot.last_index, 5);
    ASSERT_UINT_EQ(s->snapshot.size, 100);
    ASSERT_UINT_EQ(s->snapshot.config.n, 3);
    ASSERT_FALSE(s->snapshot.done);
    uint64_t offs[] = {30, 60, 90};
    for (unsigned i = 0; i < 3; i++) {
        struct raft_message sr = {.type = RAFT_MSG_SNAPSHOT_RESULT, .from = 3, .to = 1};
        sr.snapshot_result.term = 1;
        sr.snapshot_result.last_index = 5;
        sr.snapshot_result.next_offset = offs[i];
        fx_recv(&f, &sr);
        s = fx_msg(&f, RAFT_MSG_SNAPSHOT, 3);
        ASSERT_NOT_NULL(s);
        ASSERT_UINT_EQ(s->snapshot.offset, offs[i]);
        ASSERT_UINT_EQ(s->snapshot.chunk.len, i == 2 ? 10 : 30);
        ASSERT_INT_EQ(s->snapshot.done, i == 2);
    }
    struct raft_message sr = {.type = RAFT_MSG_SNAPSHOT_RESULT, .from = 3, .to = 1};
    sr.snapshot_result.term = 1;
    sr.snapshot_result.last_index = 5;
    sr.snapshot_result.next_offset = 100;
    fx_recv(&f, &sr);
    ASSERT_UINT_EQ(raft_match_index(f.r, 3), 5);
    ASSERT_NOT_NULL(fx_msg(&f, RAFT_MSG_APPEND, 3));
    fx_close(&f);
}

TEST(core_snapshot_install_on_follower)
{
    struct fx f;
    raft_term terms[] = {1, 1};
    fx_init(&f, 2, 2, 0, terms, 2, 1);
    struct raft_config c = {0, NULL};
    ASSERT_OK(raft_config_add(&c, 1, "", RAFT_VOTER));
    ASSERT_OK(raft_config_add(&c, 2, "", RAFT_VOTER));
    uint8_t data[50];
    memset(data, 7, sizeof data);
    struct raft_message s = {.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2};
    s.snapshot.term = 2;
    s.snapshot.last_index = 10;
    s.snapshot.last_term = 2;
    s.snapshot.config = c;
    s.snapshot.config_index = 1;
    s.snapshot.size = 50;
    s.snapshot.chunk = (struct raft_buffer){data, 30};
    fx_recv(&f, &s);
    ASSERT_UINT_EQ(f.u.snapshot_chunk.offset, 0);
    ASSERT_UINT_EQ(f.u.snapshot_chunk.chunk.len, 30);
    ASSERT_FALSE(f.u.snapshot_install);
    const struct raft_message *r = fx_msg(&f, RAFT_MSG_SNAPSHOT_RESULT, 1);
    ASSERT_UINT_EQ(r->snapshot_result.next_offset, 30);
    /* An out-of-order chunk says where to resume. */
    s.snapshot.offset = 40;
    s.snapshot.chunk.len = 10;
    fx_recv(&f, &s);
    r = fx_msg(&f, RAFT_MSG_SNAPSHOT_RESULT, 1);
    ASSERT_TRUE(r->snapshot_result.rejected);
    ASSERT_UINT_EQ(r->snapshot_result.next_offset, 30);
    ASSERT_UINT_EQ(f.u.snapshot_chunk.chunk.len, 0);
    s.snapshot.offset = 30;
    s.snapshot.chunk = (struct raft_buffer){data + 30, 20};
    s.snapshot.done = 1;
    fx_recv(&f, &s);
    ASSERT_TRUE(f.u.snapshot_install);
    ASSERT_UINT_EQ(f.u.snapshot_chunk.last_index, 10);
    ASSERT_UINT_EQ(f.u.snapshot_config.n, 2);
    ASSERT_UINT_EQ(raft_last_index(f.r), 10);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 10);
    ASSERT_UINT_EQ(raft_applied_index(f.r), 10);
    r = fx_msg(&f, RAFT_MSG_SNAPSHOT_RESULT, 1);
    ASSERT_UINT_EQ(r->snapshot_result.next_offset, 50);
    ASSERT_FALSE(r->snapshot_result.rejected);
    raft_config_close(&c);
    fx_close(&f);
}

/* ------------------------------------------------------------------ transfer, reads */

TEST(core_transfer)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 0);
    fx_elect(&f);
    struct raft_message m = append_result(2, 1, 1, 2, 0);
    fx_recv(&f, &m);
    struct raft_event ev = {.type = RAFT_EVENT_TRANSFER};
    ev.transfer.id = 1;
    ASSERT_ERR(fx_step(&f, &ev), CM_EINVAL);
    ev.transfer.id = 3; /* behind: catch it up first */
    ASSERT_OK(fx_step(&f, &ev));
    ASSERT_NULL(fx_msg(&f, RAFT_MSG_TIMEOUT_NOW, 3));
    /* Proposals stop. */
    struct raft_entry e = {0, RAFT_COMMAND, {(void *)"a", 1}};
    struct raft_event sub = {.type = RAFT_EVENT_SUBMIT};
    sub.submit.n = 1;
    sub.submit.entries = &e;
    ASSERT_ERR(fx_step(&f, &sub), CM_EBUSY);
    ASSERT_ERR(fx_step(&f, &ev), CM_EBUSY);
    m = append_result(3, 1, 1, 2, 0);
    fx_recv(&f, &m);
    const struct raft_message *t = fx_msg(&f, RAFT_MSG_TIMEOUT_NOW, 3);
    ASSERT_NOT_NULL(t);
    ASSERT_UINT_EQ(t->timeout_now.term, 1);
    /* Gives up after an election timeout. */
    fx_tick(&f, f.now + 1000);
    ASSERT_OK(fx_step(&f, &sub));
    ASSERT_INT_EQ(raft_role(f.r), RAFT_LEADER);
    fx_close(&f);

    /* The target campaigns at once, with disrupt set and no pre-vote. */
    fx_init(&f, 3, 3, 0, NULL, 0, 1);
    struct raft_message tn = {.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 3};
    tn.timeout_now.term = 1;
    fx_recv(&f, &tn);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_CANDIDATE);
    ASSERT_UINT_EQ(raft_current_term(f.r), 2);
    const struct raft_message *v = fx_msg(&f, RAFT_MSG_VOTE, 2);
    ASSERT_TRUE(v->vote.disrupt);
    ASSERT_FALSE(v->vote.pre_vote);
    fx_close(&f);
}

TEST(core_read_index)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 0);
    fx_elect(&f);
    struct raft_event ev = {.type = RAFT_EVENT_READ_INDEX};
    ev.read.id = 77;
    /* Before the barrier commits the read waits. */
    ASSERT_OK(fx_step(&f, &ev));
    ASSERT_UINT_EQ(f.u.n_reads, 0);
    const struct raft_message *hb = fx_msg(&f, RAFT_MSG_APPEND, 2);
    ASSERT_NOT_NULL(hb);
    uint64_t seq = hb->append.seq;
    /* An answer to an older round does not confirm it. */
    struct raft_message m = append_result(2, 1, 1, 2, seq - 1);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(raft_commit_index(f.r), 2);
    ASSERT_UINT_EQ(f.u.n_reads, 0);
    m = append_result(3, 1, 1, 2, seq);
    fx_recv(&f, &m);
    ASSERT_UINT_EQ(f.u.n_reads, 1);
    ASSERT_UINT_EQ(f.u.reads[0].id, 77);
    ASSERT_INT_EQ(f.u.reads[0].status, 0);
    ASSERT_UINT_EQ(f.u.reads[0].index, 2);
    /* Pending reads fail when leadership is lost. */
    ev.read.id = 78;
    ASSERT_OK(fx_step(&f, &ev));
    m = append_result(2, 1, 5, 2, 0);
    m.append_result.rejected = 1;
    fx_recv(&f, &m);
    ASSERT_INT_EQ(raft_role(f.r), RAFT_FOLLOWER);
    ASSERT_UINT_EQ(f.u.n_reads, 1);
    ASSERT_UINT_EQ(f.u.reads[0].id, 78);
    ASSERT_INT_EQ(f.u.reads[0].status, CM_ENOTLEADER);
    ASSERT_TRUE(f.u.hard_state_changed);
    fx_close(&f);
}

/* ------------------------------------------------------------------ bad events */

TEST(core_bad_events_change_nothing)
{
    struct fx f;
    fx_init(&f, 1, 3, 0, NULL, 0, 3);
    struct raft_entry e = {0, RAFT_COMMAND, {(void *)"a", 1}};
    struct raft_event ev = {.type = RAFT_EVENT_SUBMIT};
    ev.submit.n = 1;
    ev.submit.entries = &e;
    ASSERT_ERR(fx_step(&f, &ev), CM_ENOTLEADER);
    ev.type = RAFT_EVENT_CHANGE;
    ASSERT_ERR(fx_step(&f, &ev), CM_ENOTLEADER);
    ev.type = RAFT_EVENT_TRANSFER;
    ASSERT_ERR(fx_step(&f, &ev), CM_ENOTLEADER);
    ev.type = RAFT_EVENT_READ_INDEX;
    ASSERT_ERR(fx_step(&f, &ev), CM_ENOTLEADER);
    ev.type = 99;
    ASSERT_ERR(fx_step(&f, &ev), CM_EINVAL);
    struct raft_message m = {.type = 42, .from = 2, .to = 1};
    struct raft_event rv = {.type = RAFT_EVENT_RECEIVE};
    rv.receive = m;
    ASSERT_ERR(fx_step(&f, &rv), CM_EINVAL);
    ASSERT_UINT_EQ(f.u.n_messages, 0);
    ASSERT_FALSE(f.u.hard_state_changed);
    ASSERT_UINT_EQ(raft_current_term(f.r), 3);
    ASSERT_UINT_EQ(raft_last_index(f.r), 1);

    fx_close(&f);
    fx_init(&f, 1, 1, 0, NULL, 0, 0);
    fx_tick(&f, raft_timeout(f.r));
    ASSERT_INT_EQ(raft_role(f.r), RAFT_LEADER);
    raft_index last = raft_last_index(f.r);
    ev.type = RAFT_EVENT_SUBMIT;
    ev.submit.n = 0;
    ASSERT_ERR(fx_step(&f, &ev), CM_EINVAL);
    e.type = RAFT_CHANGE;
    ev.submit.n = 1;
    ASSERT_ERR(fx_step(&f, &ev), CM_EINVAL);
    ASSERT_UINT_EQ(raft_last_index(f.r), last);
    fx_close(&f);

    /* raft_start rejects inconsistent loads. */
    struct raft_options o;
    raft_options_default(&o);
    o.id = 1;
    struct raft *r = raft_new(&o);
    struct raft_load l;
    memset(&l, 0, sizeof l);
    struct raft_entry bad = {0, RAFT_COMMAND, {NULL, 0}};
    l.first_index = 1;
    l.n_entries = 1;
    l.entries = &bad; /* term 0 */
    struct raft_update u;
    ASSERT_ERR(raft_start(r, &l, 0, &u), CM_EINVAL);
    l.n_entries = 0;
    l.applied_index = 5; /* beyond the log */
    ASSERT_ERR(raft_start(r, &l, 0, &u), CM_EINVAL);
    raft_free(r);
    raft_free(NULL);
}

/* ------------------------------------------------------------------ OOM */

/* test_alloc_walk() arms the fault before its callback runs, which would hit
 * the setup of the core too. To walk the failure over the allocations of one
 * raft_step() only, set up, then arm the fault for that step: every failure
 * must give CM_ENOMEM with nothing changed, and the core must go on working
 * (ASan checks for leaks). */
static int walk_step(void (*setup)(struct fx *), struct raft_event *(*event)(struct fx *),
                     void (*check)(struct fx *, int rv))
{
    int points = 0;
    for (int i = 0;; i++) {
        struct fx f;
        setup(&f);
        struct raft_event *ev = event(&f);
        cm_alloc_fault_set(i, 1);
        int rv = fx_step(&f, ev);
        bool fired = cm_alloc_fault_fired();
        cm_alloc_fault_reset();
        check(&f, fired ? rv : 0);
        if (fired) {
            ASSERT_ERR(rv, CM_ENOMEM);
        } else {
            ASSERT_OK(rv);
        }
        /* The core still works: a tick and a further step succeed. */
        fx_tick(&f, f.now + 5000);
        fx_close(&f);
        if (!fired) {
            return points;
        }
        points++;
    }
}

static struct raft_entry oom_entries[4] = {{0, RAFT_COMMAND, {(void *)"aaaa", 4}},
                                           {0, RAFT_COMMAND, {(void *)"bbbb", 4}},
                                           {0, RAFT_BARRIER, {NULL, 0}},
                                           {0, RAFT_COMMAND, {(void *)"dddd", 4}}};
static struct raft_event oom_ev;
static raft_index oom_last;
static uint8_t oom_config[64];
static size_t oom_config_len;

static void setup_leader(struct fx *f)
{
    fx_init(f, 1, 3, 0, NULL, 0, 0);
    fx_elect(f);
    oom_last = raft_last_index(f->r);
}

static struct raft_event *event_submit(struct fx *f)
{
    (void)f;
    memset(&oom_ev, 0, sizeof oom_ev);
    oom_ev.type = RAFT_EVENT_SUBMIT;
    oom_ev.submit.n = 4;
    oom_ev.submit.entries = oom_entries;
    return &oom_ev;
}

static void check_submit(struct fx *f, int rv)
{
    if (rv != 0) {
        ASSERT_UINT_EQ(raft_last_index(f->r), oom_last);
        ASSERT_UINT_EQ(f->u.n_messages, 0);
        ASSERT_UINT_EQ(f->u.n_entries, 0);
    } else {
        ASSERT_UINT_EQ(raft_last_index(f->r), oom_last + 4);
    }
}

static void setup_follower(struct fx *f)
{
    raft_term terms[] = {1, 1};
    fx_init(f, 2, 3, 0, terms, 2, 1);
    oom_last = raft_last_index(f->r);
}

static struct raft_event *event_append(struct fx *f)
{
    (void)f;
    static struct raft_entry e[3];
    struct raft_config c = {0, NULL};
    CM_BUG_ON(raft_config_add(&c, 1, "", RAFT_VOTER) != 0);
    CM_BUG_ON(raft_config_add(&c, 2, "", RAFT_VOTER) != 0);
    CM_BUG_ON(raft_config_add(&c, 3, "", RAFT_VOTER) != 0);
    CM_BUG_ON(raft_config_add(&c, 4, "", RAFT_LEARNER) != 0);
    struct raft_buffer b;
    CM_BUG_ON(raft_config_encode(&c, &b) != 0);
    CM_BUG_ON(b.len > sizeof oom_config);
    memcpy(oom_config, b.base, b.len);
    oom_config_len = b.len;
    cm_free(&b.base);
    raft_config_close(&c);
    e[0] = (struct raft_entry){2, RAFT_COMMAND, {(void *)"aaaa", 4}};
    e[1] = (struct raft_entry){2, RAFT_CHANGE, {oom_config, oom_config_len}};
    e[2] = (struct raft_entry){2, RAFT_COMMAND, {(void *)"cccc", 4}};
    memset(&oom_ev, 0, sizeof oom_ev);
    oom_ev.type = RAFT_EVENT_RECEIVE;
    oom_ev.receive.type = RAFT_MSG_APPEND;
    oom_ev.receive.from = 1;
    oom_ev.receive.to = 2;
    oom_ev.receive.append.term = 2;
    oom_ev.receive.append.prev_index = 2; /* conflicts with 3/1 */
    oom_ev.receive.append.prev_term = 1;
    oom_ev.receive.append.commit = 2;
    oom_ev.receive.append.n_entries = 3;
    oom_ev.receive.append.entries = e;
    return &oom_ev;
}

static void check_append(struct fx *f, int rv)
{
    if (rv != 0) {
        ASSERT_UINT_EQ(raft_last_index(f->r), oom_last);
        ASSERT_UINT_EQ(raft_current_term(f->r), 1);
        ASSERT_UINT_EQ(raft_leader(f->r), 0);
        ASSERT_UINT_EQ(raft_config_current(f->r)->n, 3);
        ASSERT_UINT_EQ(f->u.n_messages, 0);
    } else {
        ASSERT_UINT_EQ(raft_last_index(f->r), 5);
        ASSERT_UINT_EQ(raft_current_term(f->r), 2);
        ASSERT_UINT_EQ(raft_config_current(f->r)->n, 4);
        ASSERT_UINT_EQ(f->u.truncate_from, 3);
    }
}

TEST(core_oom_submit)
{
    ASSERT_INT_OP(walk_step(setup_leader, event_submit, check_submit), >=, 4);
}

TEST(core_oom_receive_append)
{
    ASSERT_INT_OP(walk_step(setup_follower, event_append, check_append), >=, 4);
}

static int oom_start(void *arg)
{
    (void)arg;
    struct raft_options o;
    raft_options_default(&o);
    o.id = 1;
    struct raft *r = raft_new(&o);
    if (r == NULL) {
        return CM_ENOMEM;
    }
    struct raft_config c = {0, NULL};
    struct raft_entry e[2];
    int rv = raft_config_add(&c, 1, "a", RAFT_VOTER);
    if (rv == 0) {
        rv = raft_bootstrap_entry(&c, &e[0]);
    }
    raft_config_close(&c);
    if (rv != 0) {
        raft_free(r);
        return rv;
    }
    e[1] = (struct raft_entry){1, RAFT_COMMAND, {(void *)"x", 1}};
    struct raft_load l;
    memset(&l, 0, sizeof l);
    l.first_index = 1;
    l.n_entries = 2;
    l.entries = e;
    struct raft_update u;
    rv = raft_start(r, &l, 0, &u);
    cm_free(&e[0].buf.base);
    raft_free(r);
    return rv;
}

TEST(core_oom_start)
{
    ASSERT_INT_OP(test_alloc_walk(oom_start, NULL), >=, 5);
}
