/* Many nodes, one cluster: write forwarding, consistent reads, heartbeats,
 * members and the autopilot adapter (cluster_int.h).
 *
 * Everything here runs on the daemon's loop. The leader is whatever raft says
 * it is at the moment of each attempt; a follower that has no leader to talk to
 * retries for a while (an election takes one to two seconds) and then refuses
 * with CM_ENOTLEADER, which the API turns into a 503. */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "node/cluster_int.h"
#include "node/node_int.h"
#include "raft/raft.h"
#include "state/db.h"
#include "state/state.h"

/* How long a write or a read waits for a leader to appear. */
#define FORWARD_DEADLINE_MS 6000
/* Between attempts while no leader is known. */
#define FORWARD_RETRY_MS 100
/* A forwarded command or read the leader does not answer within this fails:
 * it may or may not have been applied, so it is not sent again. */
#define FORWARD_TIMEOUT_MS 10000
/* Waiting for this replica to apply an index the leader gave. */
#define APPLY_WAIT_MS 10000
/* Heartbeats, autopilot rounds and expiry sweeps. */
#define TICK_MS 1000
/* Adding a learner: retried while another change is in progress. */
#define ADD_LEARNER_DEADLINE_MS 15000
#define ADD_LEARNER_RETRY_MS    200

/* What this node knows of a member beyond the raft configuration. The leader
 * fills it from heartbeats; followers copy the leader's view from each
 * heartbeat answer. */
struct member_rec {
    uint64_t id;
    char name[64];
    char http[96];
    int64_t heard_mono; /* monotonic ms of the last heartbeat; 0: never */
    uint64_t match;     /* the leader's match index (followers: as reported) */
};

struct wait {
    struct wait *next;
    uint64_t index;
    int64_t deadline;
    cm_api_done_fn done;
    void *arg;
};

enum forward_kind {
    FWD_PROPOSE = 0, /* a command */
    FWD_READ,        /* a ReadIndex */
};

struct forward {
    struct cm_cluster *c;
    struct forward *prev;
    struct forward *next;
    enum forward_kind kind;
    char *cmd;
    size_t len;
    cm_api_done_fn done;
    void *arg;
    int64_t deadline;
    ev_timer retry;
    bool in_call; /* an RPC is out for it */
    bool linked;  /* in c->forwards */
};

struct learner_add {
    struct cm_cluster *c;
    struct learner_add *prev;
    struct learner_add *next;
    uint64_t id;
    char address[RAFT_ADDRESS_MAX];
    cm_api_done_fn done;
    void *arg;
    int64_t deadline;
    ev_timer retry;
    bool in_flight;
};

struct cm_cluster {
    struct cm_cluster_options o;
    char name[64];
    char http[96];
    struct raft_host *raft;
    struct cm_rpc *rpc;
    ev_timer tick;
    struct member_rec *recs;
    size_t n_recs;
    struct wait *waits;
    struct forward *forwards;
    struct learner_add *adds;
    bool autopilot_busy; /* a change of ours is not committed yet */
    bool closing;
    uint64_t forwarded;     /* commands sent to the leader */
    uint64_t forward_fails; /* of those, failed for want of a leader */
};

static int64_t mono(struct cm_cluster *c)
{
    return (int64_t)cm_clock_mono_ms(c->o.clock);
}

static const struct raft *core(struct cm_cluster *c)
{
    return raft_host_core(c->raft);
}

static bool is_leader(struct cm_cluster *c)
{
    return raft_role(core(c)) == RAFT_LEADER;
}

/* ------------------------------------------------------------------ members */

static struct member_rec *rec_get(struct cm_cluster *c, uint64_t id, bool create)
{
    for (size_t i = 0; i < c->n_recs; i++) {
        if (c->recs[i].id == id) {
            return &c->recs[i];
        }
    }
    if (!create) {
        return NULL;
    }
    struct member_rec *v = cm_reallocarray(c->recs, c->n_recs + 1, sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    c->recs = v;
    struct member_rec *r = &c->recs[c->n_recs++];
    memset(r, 0, sizeof(*r));
    r->id = id;
    return r;
}

static void rec_heard(struct cm_cluster *c, uint64_t id, const char *name,
                      const char *http)
{
    struct member_rec *r = rec_get(c, id, true);
    if (r == NULL) {
        return;
    }
    if (name != NULL && name[0] != '\0') {
        snprintf(r->name, sizeof(r->name), "%s", name);
    }
    if (http != NULL && http[0] != '\0') {
        snprintf(r->http, sizeof(r->http), "%s", http);
    }
    r->heard_mono = mono(c);
}

int cm_cluster_members_json(struct cm_cluster *c, struct cm_buf *out)
{
    if (c->raft == NULL) {
        return CM_ESHUTDOWN;
    }
    const struct raft *r = core(c);
    const struct raft_config *cfg = raft_config_current(r);
    bool leader = raft_role(r) == RAFT_LEADER;
    raft_id lid = raft_leader(r);
    int64_t now = mono(c);
    int rv = cm_buf_puts(out, "[");
    for (unsigned i = 0; rv == 0 && i < cfg->n; i++) {
        const struct raft_server *s = &cfg->servers[i];
        const struct member_rec *m = rec_get(c, s->id, false);
        cJSON *o = cJSON_CreateObject();
        char id[24];
        snprintf(id, sizeof(id), "%llx", (unsigned long long)s->id);
        bool ok = o != NULL && cJSON_AddStringToObject(o, "id", id) != NULL &&
                  cJSON_AddStringToObject(o, "name", m != NULL ? m->name : "") != NULL &&
                  cJSON_AddStringToObject(o, "address", s->address) != NULL &&
                  cJSON_AddStringToObject(
                      o, "role", s->role == RAFT_VOTER ? "voter" : "learner") != NULL &&
                  cJSON_AddBoolToObject(o, "leader", s->id == lid) != NULL;
        if (ok && m != NULL && m->http[0] != '\0') {
            ok = cJSON_AddStringToObject(o, "http", m->http) != NULL;
        }
        if (ok) {
            uint64_t match = leader ? (s->id == c->o.raft_id ? raft_last_index(r)
                                                             : raft_match_index(r, s->id))
                                    : (m != NULL ? m->match : 0);
            ok = (leader || m != NULL)
                     ? cJSON_AddNumberToObject(o, "match_index", (double)match) != NULL
                     : cJSON_AddNullToObject(o, "match_index") != NULL;
        }
        if (ok) {
            ok = m != NULL && m->heard_mono > 0
                     ? cJSON_AddNumberToObject(o, "heartbeat_age_ms",
                                               (double)(now - m->heard_mono)) != NULL
                     : cJSON_AddNullToObject(o, "heartbeat_age_ms") != NULL;
        }
        char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (text == NULL) {
            return CM_ENOMEM;
        }
        rv = cm_buf_printf(out, "%s%s", i > 0 ? "," : "", text);
        cJSON_free(text);
    }
    return rv ? rv : cm_buf_puts(out, "]");
}

/* A follower takes the leader's view from a heartbeat answer. Bad data only
 * means an older view: nothing to report. */
static void members_from_leader(struct cm_cluster *c, const char *json)
{
    cJSON *a = json != NULL ? cJSON_Parse(json) : NULL;
    int64_t now = mono(c);
    const cJSON *o;
    cJSON_ArrayForEach(o, a)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        if (!cJSON_IsString(id)) {
            continue;
        }
        char *end;
        unsigned long long v = strtoull(id->valuestring, &end, 16);
        if (*end != '\0' || v == 0) {
            continue;
        }
        struct member_rec *r = rec_get(c, v, true);
        if (r == NULL) {
            break;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        const cJSON *http = cJSON_GetObjectItemCaseSensitive(o, "http");
        const cJSON *match = cJSON_GetObjectItemCaseSensitive(o, "match_index");
        const cJSON *age = cJSON_GetObjectItemCaseSensitive(o, "heartbeat_age_ms");
        if (cJSON_IsString(name) && name->valuestring[0] != '\0') {
            snprintf(r->name, sizeof(r->name), "%s", name->valuestring);
        }
        if (cJSON_IsString(http)) {
            snprintf(r->http, sizeof(r->http), "%s", http->valuestring);
        }
        r->match = cJSON_IsNumber(match) && match->valuedouble >= 0
                       ? (uint64_t)match->valuedouble
                       : 0;
        r->heard_mono = cJSON_IsNumber(age) && age->valuedouble >= 0
                            ? now - (int64_t)age->valuedouble
                            : 0;
        if (r->heard_mono <= 0 && cJSON_IsNumber(age)) {
            r->heard_mono = 1;
        }
    }
    cJSON_Delete(a);
}

bool cm_cluster_http_of(struct cm_cluster *c, uint64_t id, char *buf, size_t cap)
{
    const struct member_rec *r = rec_get(c, id, false);
    if (r == NULL || r->http[0] == '\0') {
        return false;
    }
    snprintf(buf, cap, "%s", r->http);
    return true;
}

/* ------------------------------------------------------------------ waits */

static void wait_add(struct cm_cluster *c, uint64_t index, cm_api_done_fn done, void *arg)
{
    if (cm_state_applied_index(c->o.state) >= index) {
        done(arg, 0, index, NULL);
        return;
    }
    struct wait *w = cm_calloc(1, sizeof(*w));
    if (w == NULL) {
        done(arg, CM_ENOMEM, 0, "out of memory");
        return;
    }
    w->index = index;
    w->deadline = mono(c) + APPLY_WAIT_MS;
    w->done = done;
    w->arg = arg;
    w->next = c->waits;
    c->waits = w;
}

/* Complete waits that are applied (or expired when @expire). Callbacks may add
 * new waits: take the list first. */
static void waits_settle(struct cm_cluster *c, bool expire)
{
    if (c->waits == NULL) {
        return;
    }
    uint64_t applied = cm_state_applied_index(c->o.state);
    int64_t now = mono(c);
    struct wait *list = c->waits, *keep = NULL, *ready = NULL;
    c->waits = NULL;
    while (list != NULL) {
        struct wait *w = list;
        list = w->next;
        if (w->index <= applied || (expire && now >= w->deadline) || c->closing) {
            w->next = ready;
            ready = w;
        } else {
            w->next = keep;
            keep = w;
        }
    }
    /* Put the survivors back in front of anything added meanwhile. */
    struct wait **tail = &keep;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = c->waits;
    c->waits = keep;
    while (ready != NULL) {
        struct wait *w = ready;
        ready = w->next;
        if (w->index <= applied) {
            w->done(w->arg, 0, w->index, NULL);
        } else if (c->closing) {
            w->done(w->arg, CM_ESHUTDOWN, 0, "the node is shutting down");
        } else {
            w->done(w->arg, CM_ETIMEDOUT, 0,
                    "this node has not applied the leader's index in time (is it "
                    "cut off from the leader?)");
        }
        cm_free(&w);
    }
}

void cm_cluster_applied(struct cm_cluster *c)
{
    waits_settle(c, false);
}

/* ------------------------------------------------------------------ local propose */

struct local_prop {
    cm_api_done_fn done;
    void *arg;
};

static void local_proposed(void *data, int status, raft_index index)
{
    struct local_prop *p = data;
    p->done(p->arg, status, index,
            status == CM_ENOTLEADER ? "leadership changed before the change committed"
                                    : NULL);
    cm_free(&p);
}

/* Validate against this replica and propose here (the leader). */
static int local_propose(struct cm_cluster *c, const char *cmd, size_t len,
                         cm_api_done_fn done, void *arg, struct cm_errbuf *eb)
{
    int rv = cm_state_validate(c->o.state, cmd, len, eb);
    if (rv != 0) {
        return rv;
    }
    struct local_prop *p = cm_malloc(sizeof(*p));
    if (p == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "out of memory");
    }
    p->done = done;
    p->arg = arg;
    rv = raft_host_propose(c->raft, cmd, len, local_proposed, p);
    if (rv != 0) {
        cm_free(&p);
        return cm_err_setf(
            eb, rv, "%s",
            rv == CM_ENOTLEADER ? "this node is not the leader" : cm_strerror(rv));
    }
    return 0;
}

struct local_read {
    cm_api_done_fn done;
    void *arg;
};

static void local_read_done(void *data, int status, raft_index index)
{
    struct local_read *p = data;
    p->done(p->arg, status, index,
            status == CM_ENOTLEADER ? "leadership changed during the read" : NULL);
    cm_free(&p);
}

static int local_read(struct cm_cluster *c, cm_api_done_fn done, void *arg)
{
    struct local_read *p = cm_malloc(sizeof(*p));
    if (p == NULL) {
        return CM_ENOMEM;
    }
    p->done = done;
    p->arg = arg;
    int rv = raft_host_read_index(c->raft, local_read_done, p);
    if (rv != 0) {
        cm_free(&p);
    }
    return rv;
}

/* ------------------------------------------------------------------ forwarding */

static void forward_try(struct forward *f);

/* Take @f off the retry list (idempotent): it then only waits for raft, an RPC
 * reply or this replica. */
static void forward_unlink(struct forward *f)
{
    struct cm_cluster *c = f->c;
    ev_timer_stop(c->o.loop, &f->retry);
    if (!f->linked) {
        return;
    }
    if (f->prev != NULL) {
        f->prev->next = f->next;
    } else {
        c->forwards = f->next;
    }
    if (f->next != NULL) {
        f->next->prev = f->prev;
    }
    f->prev = f->next = NULL;
    f->linked = false;
}

static void forward_link(struct forward *f)
{
    struct cm_cluster *c = f->c;
    f->prev = NULL;
    f->next = c->forwards;
    if (f->next != NULL) {
        f->next->prev = f;
    }
    c->forwards = f;
    f->linked = true;
}

static void forward_free(struct forward *f)
{
    forward_unlink(f);
    cm_free(&f->cmd);
    cm_free(&f);
}

static void forward_finish(struct forward *f, int status, uint64_t index, const char *msg)
{
    cm_api_done_fn done = f->done;
    void *arg = f->arg;
    forward_free(f);
    done(arg, status, index, msg);
}

static void forward_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    forward_try(cm_container_of(w, struct forward, retry));
}

/* No leader to ask right now: try again shortly, or give up at the deadline. */
static void forward_later(struct forward *f, const char *why)
{
    struct cm_cluster *c = f->c;
    if (mono(c) >= f->deadline || c->closing) {
        c->forward_fails++;
        forward_finish(f, CM_ENOTLEADER, 0, why);
        return;
    }
    ev_timer_stop(c->o.loop, &f->retry);
    ev_timer_set(&f->retry, FORWARD_RETRY_MS / 1000.0, 0.);
    ev_timer_start(c->o.loop, &f->retry);
}

/* The local part after the leader answered: wait until this replica has
 * applied the index, so the caller reads its own write here (api.h). */
static void forward_applied(void *arg, int status, uint64_t index, const char *msg)
{
    struct forward *f = arg;
    forward_finish(f, status, index, msg);
}

static void forward_reply(void *arg, int status, const struct cm_rpc_msg *reply)
{
    struct forward *f = arg;
    f->in_call = false;
    if (status != 0) {
        forward_finish(f, status == CM_ETIMEDOUT ? CM_ETIMEDOUT : status, 0,
                       status == CM_ETIMEDOUT
                           ? "the leader did not answer in time; the change may or "
                             "may not have been made"
                           : NULL);
        return;
    }
    if (reply->status == CM_ENOTLEADER) {
        /* The node we asked stopped leading before it proposed: safe to ask
         * the new leader. */
        forward_later(f, reply->msg != NULL ? reply->msg : "leadership is changing");
        return;
    }
    if (reply->status != 0) {
        forward_finish(f, reply->status, 0, reply->msg);
        return;
    }
    forward_unlink(f);
    wait_add(f->c, reply->index, forward_applied, f);
}

static void forward_local_done(void *arg, int status, uint64_t index, const char *msg)
{
    struct forward *f = arg;
    if (status == 0 && f->kind == FWD_READ) {
        forward_unlink(f);
        wait_add(f->c, index, forward_applied, f);
        return;
    }
    forward_finish(f, status, index, msg);
}

static void forward_try(struct forward *f)
{
    struct cm_cluster *c = f->c;
    if (c->raft == NULL) {
        forward_finish(f, CM_ESHUTDOWN, 0, "the node is shutting down");
        return;
    }
    const struct raft *r = core(c);
    raft_id leader = raft_leader(r);
    if (raft_role(r) == RAFT_LEADER) {
        /* We lead now: do it here. */
        struct cm_errbuf eb;
        cm_errbuf_clear(&eb);
        /* Raft completes it from now on (raft closes before us), maybe even
         * inside this call. */
        forward_unlink(f);
        int rv = f->kind == FWD_PROPOSE
                     ? local_propose(c, f->cmd, f->len, forward_local_done, f, &eb)
                     : local_read(c, forward_local_done, f);
        if (rv == 0) {
            return;
        }
        forward_link(f);
        if (rv == CM_ENOTLEADER) {
            forward_later(f, "leadership is changing");
        } else if (rv != 0) {
            forward_finish(f, rv, 0, eb.msg[0] != '\0' ? eb.msg : cm_strerror(rv));
        }
        return;
    }
    if (leader == 0 || leader == c->o.raft_id) {
        forward_later(f,
                      "no leader is known (an election is under way, or too few "
                      "voters are up)");
        return;
    }
    struct cm_rpc_msg m = {
        .type = f->kind == FWD_PROPOSE ? CM_RPC_PROPOSE : CM_RPC_READ_INDEX,
        .cmd = f->cmd};
    int rv = cm_rpc_call(c->rpc, leader, &m, FORWARD_TIMEOUT_MS, forward_reply, f);
    if (rv != 0) {
        forward_later(f, "the leader cannot be reached");
        return;
    }
    f->in_call = true;
    if (f->kind == FWD_PROPOSE) {
        c->forwarded++;
    }
}

static int forward_start(struct cm_cluster *c, enum forward_kind kind, const char *cmd,
                         size_t len, cm_api_done_fn done, void *arg)
{
    struct forward *f = cm_calloc(1, sizeof(*f));
    if (f == NULL) {
        return CM_ENOMEM;
    }
    if (cmd != NULL) {
        /* NUL-terminated: the RPC carries it as a JSON string. */
        f->cmd = cm_strndup(cmd, len);
        if (f->cmd == NULL) {
            cm_free(&f);
            return CM_ENOMEM;
        }
        f->len = len;
    }
    f->c = c;
    f->kind = kind;
    f->done = done;
    f->arg = arg;
    f->deadline = mono(c) + FORWARD_DEADLINE_MS;
    ev_timer_init(&f->retry, forward_retry_cb, 0., 0.);
    forward_link(f);
    /* The first attempt runs from the loop: the caller's done must never run
     * inside its own call. */
    ev_timer_start(c->o.loop, &f->retry);
    return 0;
}

int cm_cluster_propose(struct cm_cluster *c, const char *cmd, size_t len,
                       cm_api_done_fn done, void *arg, struct cm_errbuf *eb)
{
    if (c->raft == NULL || c->closing) {
        return cm_err_setf(eb, CM_ESHUTDOWN, "the node is shutting down");
    }
    if (is_leader(c)) {
        int rv = local_propose(c, cmd, len, done, arg, eb);
        if (rv != CM_ENOTLEADER) {
            return rv;
        }
        cm_errbuf_clear(eb);
    }
    /* A follower validates too, so most mistakes are refused without a round
     * trip; the leader validates again against the latest state. */
    int rv = cm_state_validate(c->o.state, cmd, len, eb);
    if (rv != 0) {
        return rv;
    }
    if (memchr(cmd, '\0', len) != NULL) {
        return cm_err_setf(eb, CM_EINVAL, "command holds a NUL byte");
    }
    rv = forward_start(c, FWD_PROPOSE, cmd, len, done, arg);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "%s", cm_strerror(rv));
    }
    return 0;
}

int cm_cluster_read_barrier(struct cm_cluster *c, cm_api_done_fn done, void *arg)
{
    if (c->raft == NULL || c->closing) {
        return CM_ESHUTDOWN;
    }
    return forward_start(c, FWD_READ, NULL, 0, done, arg);
}

/* ------------------------------------------------------------------ learners */

static void add_try(struct learner_add *a);

static void add_finish(struct learner_add *a, int status, const char *msg)
{
    struct cm_cluster *c = a->c;
    ev_timer_stop(c->o.loop, &a->retry);
    if (a->prev != NULL) {
        a->prev->next = a->next;
    } else {
        c->adds = a->next;
    }
    if (a->next != NULL) {
        a->next->prev = a->prev;
    }
    cm_api_done_fn done = a->done;
    void *arg = a->arg;
    cm_free(&a);
    done(arg, status, 0, msg);
}

static void add_later(struct learner_add *a, int status, const char *why)
{
    struct cm_cluster *c = a->c;
    if (mono(c) >= a->deadline || c->closing) {
        add_finish(a, status, why);
        return;
    }
    ev_timer_stop(c->o.loop, &a->retry);
    ev_timer_set(&a->retry, ADD_LEARNER_RETRY_MS / 1000.0, 0.);
    ev_timer_start(c->o.loop, &a->retry);
}

static void add_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    add_try(cm_container_of(w, struct learner_add, retry));
}

static void add_changed(void *data, int status, raft_index index)
{
    (void)index;
    struct learner_add *a = data;
    a->in_flight = false;
    if (status == 0) {
        cm_info("cluster", "node %llx added as a learner", (unsigned long long)a->id);
        add_finish(a, 0, NULL);
    } else {
        add_later(a, status, "the change did not commit");
    }
}

static void add_reply(void *arg, int status, const struct cm_rpc_msg *reply)
{
    struct learner_add *a = arg;
    a->in_flight = false;
    if (status != 0) {
        add_later(a, status, "the leader did not answer");
    } else if (reply->status == CM_ENOTLEADER || reply->status == CM_EBUSY) {
        add_later(a, reply->status, reply->msg);
    } else {
        add_finish(a, reply->status, reply->msg);
    }
}

static void add_try(struct learner_add *a)
{
    struct cm_cluster *c = a->c;
    if (c->raft == NULL) {
        add_finish(a, CM_ESHUTDOWN, "the node is shutting down");
        return;
    }
    const struct raft *r = core(c);
    if (raft_config_get(raft_config_current(r), a->id) != NULL) {
        add_finish(a, 0, NULL); /* already a member (a join retried) */
        return;
    }
    if (raft_role(r) == RAFT_LEADER) {
        int rv = raft_host_change(c->raft, RAFT_CHANGE_ADD_LEARNER, a->id, a->address,
                                  add_changed, a);
        if (rv == 0) {
            a->in_flight = true;
        } else if (rv == CM_EBUSY || rv == CM_ENOTLEADER) {
            add_later(a, rv, "another membership change is in progress");
        } else {
            add_finish(a, rv, "the configuration refused the new member");
        }
        return;
    }
    raft_id leader = raft_leader(r);
    if (leader == 0 || leader == c->o.raft_id) {
        add_later(a, CM_ENOTLEADER, "no leader is known");
        return;
    }
    struct cm_rpc_msg m = {
        .type = CM_RPC_ADD_LEARNER,
        .raft_id = a->id,
        .address = a->address,
    };
    const struct member_rec *rec = rec_get(c, a->id, false);
    m.name = rec != NULL ? rec->name : "";
    if (cm_rpc_call(c->rpc, leader, &m, ADD_LEARNER_DEADLINE_MS, add_reply, a) != 0) {
        add_later(a, CM_ENOTLEADER, "the leader cannot be reached");
        return;
    }
    a->in_flight = true;
}

int cm_cluster_add_learner(struct cm_cluster *c, uint64_t id, const char *name,
                           const char *address, cm_api_done_fn done, void *arg)
{
    if (id == 0 || id == c->o.raft_id || address == NULL ||
        strlen(address) >= RAFT_ADDRESS_MAX) {
        return CM_EINVAL;
    }
    struct learner_add *a = cm_calloc(1, sizeof(*a));
    if (a == NULL) {
        return CM_ENOMEM;
    }
    struct member_rec *rec = rec_get(c, id, true);
    if (rec != NULL && name != NULL) {
        snprintf(rec->name, sizeof(rec->name), "%s", name);
    }
    a->c = c;
    a->id = id;
    snprintf(a->address, sizeof(a->address), "%s", address);
    a->done = done;
    a->arg = arg;
    a->deadline = mono(c) + ADD_LEARNER_DEADLINE_MS;
    ev_timer_init(&a->retry, add_retry_cb, 0., 0.);
    a->next = c->adds;
    if (a->next != NULL) {
        a->next->prev = a;
    }
    c->adds = a;
    ev_timer_start(c->o.loop, &a->retry); /* first attempt from the loop */
    return 0;
}

/* ------------------------------------------------------------------ serving RPCs */

/* The context of a request answered later. */
struct pending_reply {
    struct cm_cluster *c;
    uint64_t to;
    uint64_t id;
};

static void reply(struct cm_cluster *c, uint64_t to, uint64_t id, int status,
                  uint64_t index, const char *msg, const char *data)
{
    if (id == 0) {
        return;
    }
    struct cm_rpc_msg m = {
        .type = CM_RPC_REPLY,
        .id = id,
        .status = status,
        .index = index,
        .msg = msg,
        .data = data,
    };
    int rv = cm_rpc_send(c->rpc, to, &m);
    if (rv != 0) {
        cm_debug("cluster", "reply to %llx: %s", (unsigned long long)to, cm_strerror(rv));
    }
}

static struct pending_reply *pending_new(struct cm_cluster *c, uint64_t to, uint64_t id)
{
    struct pending_reply *p = cm_malloc(sizeof(*p));
    if (p != NULL) {
        *p = (struct pending_reply){c, to, id};
    }
    return p;
}

/* A pending reply may outlive the cluster object only through raft's
 * completions, which raft_host_close runs before the cluster is freed. */
static void pending_done(void *arg, int status, uint64_t index, const char *msg)
{
    struct pending_reply *p = arg;
    if (!p->c->closing) {
        reply(p->c, p->to, p->id, status, index, msg, NULL);
    }
    cm_free(&p);
}

static void serve_propose(struct cm_cluster *c, uint64_t from, const struct cm_rpc_msg *m)
{
    if (!is_leader(c)) {
        reply(c, from, m->id, CM_ENOTLEADER, 0, "this node is not the leader", NULL);
        return;
    }
    struct pending_reply *p = pending_new(c, from, m->id);
    if (p == NULL) {
        reply(c, from, m->id, CM_ENOMEM, 0, "out of memory", NULL);
        return;
    }
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = local_propose(c, m->cmd, strlen(m->cmd), pending_done, p, &eb);
    if (rv != 0) {
        reply(c, from, m->id, rv, 0, eb.msg, NULL);
        cm_free(&p);
    }
}

static void serve_read(struct cm_cluster *c, uint64_t from, const struct cm_rpc_msg *m)
{
    struct pending_reply *p = is_leader(c) ? pending_new(c, from, m->id) : NULL;
    int rv = p != NULL ? local_read(c, pending_done, p) : CM_ENOTLEADER;
    if (rv != 0) {
        reply(c, from, m->id, rv, 0,
              rv == CM_ENOTLEADER ? "this node is not the leader" : cm_strerror(rv),
              NULL);
        cm_free(&p);
    }
}

static void serve_heartbeat(struct cm_cluster *c, uint64_t from,
                            const struct cm_rpc_msg *m)
{
    if (!is_leader(c)) {
        reply(c, from, m->id, CM_ENOTLEADER, 0, "this node is not the leader", NULL);
        return;
    }
    /* The transport authenticated @from; the message names the node. */
    rec_heard(c, from, m->name, m->http);
    cm_controller_heartbeat(c->o.controller, m->name, cm_clock_real_ms(c->o.clock));
    struct cm_buf b = {0};
    if (cm_cluster_members_json(c, &b) == 0) {
        reply(c, from, m->id, 0, 0, NULL, b.data);
    }
    cm_buf_done(&b);
}

static void serve_add_learner(struct cm_cluster *c, uint64_t from,
                              const struct cm_rpc_msg *m)
{
    if (!is_leader(c)) {
        reply(c, from, m->id, CM_ENOTLEADER, 0, "this node is not the leader", NULL);
        return;
    }
    struct pending_reply *p = pending_new(c, from, m->id);
    int rv = p != NULL ? cm_cluster_add_learner(c, m->raft_id, m->name, m->address,
                                                pending_done, p)
                       : CM_ENOMEM;
    if (rv != 0) {
        reply(c, from, m->id, rv, 0, cm_strerror(rv), NULL);
        cm_free(&p);
    }
}

static void on_request(void *data, uint64_t from, const struct cm_rpc_msg *m)
{
    struct cm_cluster *c = data;
    switch (m->type) {
    case CM_RPC_PROPOSE:
        serve_propose(c, from, m);
        break;
    case CM_RPC_READ_INDEX:
        serve_read(c, from, m);
        break;
    case CM_RPC_HEARTBEAT:
        serve_heartbeat(c, from, m);
        break;
    case CM_RPC_ADD_LEARNER:
        serve_add_learner(c, from, m);
        break;
    case CM_RPC_REPLY:
        break; /* handled by the rpc layer */
    }
}

static int rpc_send(void *data, uint64_t to, const void *body, size_t len)
{
    struct cm_cluster *c = data;
    if (c->raft == NULL) {
        return CM_ESHUTDOWN;
    }
    return raft_host_send_rpc(c->raft, to, body, len);
}

void cm_cluster_rpc(void *data, uint64_t from, const void *body, size_t len)
{
    struct cm_cluster *c = data;
    if (!c->closing) {
        cm_rpc_receive(c->rpc, from, body, len);
    }
}

/* ------------------------------------------------------------------ autopilot */

static void autopilot_changed(void *data, int status, raft_index index)
{
    (void)index;
    struct cm_cluster *c = data;
    c->autopilot_busy = false;
    if (status != 0 && status != CM_ESHUTDOWN) {
        cm_warn("autopilot", "membership change failed: %s", cm_strerror(status));
    }
}

static void autopilot_round(struct cm_cluster *c)
{
    const struct raft *r = core(c);
    const struct raft_config *cfg = raft_config_current(r);
    struct cm_autopilot_server sv[64];
    unsigned n = 0;
    int64_t now = mono(c);
    raft_index commit = raft_commit_index(r);
    for (unsigned i = 0; i < cfg->n && n < CM_ARRAY_SIZE(sv); i++) {
        const struct raft_server *s = &cfg->servers[i];
        const struct member_rec *m = rec_get(c, s->id, false);
        bool self = s->id == c->o.raft_id;
        int64_t silent =
            self ? 0
                 : (m != NULL && m->heard_mono > 0 ? now - m->heard_mono : INT64_MAX / 2);
        raft_index match = self ? raft_last_index(r) : raft_match_index(r, s->id);
        sv[n++] = (struct cm_autopilot_server){
            .id = s->id,
            .voter = s->role == RAFT_VOTER,
            .healthy = silent <= CM_AUTOPILOT_HEALTHY_MS,
            .caught_up = match + CM_AUTOPILOT_MAX_LAG >= commit,
            .silent_ms = silent,
        };
    }
    /* A leader that just took over has heard from nobody yet: give every
     * member one grace period from now before judging it silent. */
    struct cm_autopilot_input in = {
        .self = c->o.raft_id,
        .want_voters = c->o.voters,
        .change_pending = c->autopilot_busy,
        .n = n,
        .servers = sv,
    };
    struct cm_autopilot_action a;
    cm_autopilot_decide(&in, &a);
    if (a.op == CM_AUTOPILOT_NONE) {
        return;
    }
    enum raft_change_op op =
        a.op == CM_AUTOPILOT_PROMOTE ? RAFT_CHANGE_PROMOTE : RAFT_CHANGE_DEMOTE;
    int rv = raft_host_change(c->raft, op, a.id, NULL, autopilot_changed, c);
    if (rv == 0) {
        c->autopilot_busy = true;
        const struct member_rec *m = rec_get(c, a.id, false);
        cm_info("autopilot", "%s %llx (%s): %s",
                a.op == CM_AUTOPILOT_PROMOTE ? "promoting" : "demoting",
                (unsigned long long)a.id, m != NULL ? m->name : "?", a.why);
    } else if (rv != CM_EBUSY) {
        cm_warn("autopilot", "cannot change %llx: %s", (unsigned long long)a.id,
                cm_strerror(rv));
    }
}

/* ------------------------------------------------------------------ heartbeats */

static void heartbeat_reply(void *arg, int status, const struct cm_rpc_msg *reply)
{
    struct cm_cluster *c = arg;
    if (status == 0 && reply->status == 0 && reply->data != NULL) {
        members_from_leader(c, reply->data);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cm_cluster *c = cm_container_of(w, struct cm_cluster, tick);
    if (c->raft == NULL) {
        return;
    }
    rec_heard(c, c->o.raft_id, c->name, c->http);
    const struct raft *r = core(c);
    raft_id leader = raft_leader(r);
    if (raft_role(r) == RAFT_LEADER) {
        /* The leader's own node counts as heard. */
        cm_controller_heartbeat(c->o.controller, c->name, cm_clock_real_ms(c->o.clock));
        autopilot_round(c);
    } else if (leader != 0 && leader != c->o.raft_id) {
        struct cm_rpc_msg m = {
            .type = CM_RPC_HEARTBEAT,
            .name = c->name,
            .raft_id = c->o.raft_id,
            .at = cm_clock_real_ms(c->o.clock),
            .http = c->http,
        };
        if (cm_rpc_call(c->rpc, leader, &m, 2 * TICK_MS, heartbeat_reply, c) != 0) {
            cm_debug("cluster", "no heartbeat to the leader %llx yet",
                     (unsigned long long)leader);
        }
    }
    waits_settle(c, true);
}

void cm_cluster_on_change(struct cm_cluster *c, bool leader)
{
    if (!leader) {
        c->autopilot_busy = false;
        return;
    }
    /* A new leader has heard from nobody: start every member's silence now,
     * so autopilot gives each one grace period before judging it. */
    const struct raft_config *cfg = raft_config_current(core(c));
    for (unsigned i = 0; i < cfg->n; i++) {
        struct member_rec *m = rec_get(c, cfg->servers[i].id, true);
        if (m != NULL) {
            m->heard_mono = mono(c);
        }
    }
}

/* ------------------------------------------------------------------ life cycle */

int cm_cluster_new(const struct cm_cluster_options *o, struct cm_cluster **ret)
{
    struct cm_cluster *c = cm_calloc(1, sizeof(*c));
    if (c == NULL) {
        return CM_ENOMEM;
    }
    c->o = *o;
    snprintf(c->name, sizeof(c->name), "%s", o->name);
    snprintf(c->http, sizeof(c->http), "%s",
             o->http_address != NULL ? o->http_address : "");
    c->o.name = c->name;
    c->o.http_address = c->http;
    int rv = cm_rpc_new(o->loop, rpc_send, on_request, c, &c->rpc);
    if (rv != 0) {
        cm_free(&c);
        return rv;
    }
    ev_timer_init(&c->tick, tick_cb, TICK_MS / 1000.0, TICK_MS / 1000.0);
    ev_timer_start(o->loop, &c->tick);
    *ret = c;
    return 0;
}

void cm_cluster_set_raft(struct cm_cluster *c, struct raft_host *raft)
{
    c->raft = raft;
}

void cm_cluster_set_http(struct cm_cluster *c, const char *http_address)
{
    snprintf(c->http, sizeof(c->http), "%s", http_address);
}

void cm_cluster_metrics(struct cm_cluster *c, struct cm_buf *out)
{
    struct cm_rpc_stats s;
    cm_rpc_get_stats(c->rpc, &s);
    struct raft_transport_stats t = {0};
    if (c->raft != NULL) {
        raft_host_transport_stats(c->raft, &t);
    }
    cm_buf_printf(out,
                  "# TYPE clusterctl_rpc_sent_total counter\n"
                  "clusterctl_rpc_sent_total %llu\n"
                  "# TYPE clusterctl_rpc_received_total counter\n"
                  "clusterctl_rpc_received_total %llu\n"
                  "# TYPE clusterctl_rpc_dropped_total counter\n"
                  "clusterctl_rpc_dropped_total %llu\n"
                  "# TYPE clusterctl_rpc_timeouts_total counter\n"
                  "clusterctl_rpc_timeouts_total %llu\n"
                  "# TYPE clusterctl_forwarded_total counter\n"
                  "clusterctl_forwarded_total %llu\n"
                  "# TYPE clusterctl_transport_refused_total counter\n"
                  "clusterctl_transport_refused_total %llu\n",
                  (unsigned long long)s.sent, (unsigned long long)s.received,
                  (unsigned long long)s.dropped, (unsigned long long)s.timeouts,
                  (unsigned long long)c->forwarded, (unsigned long long)t.refused);
}

int cm_cluster_config(struct cm_cluster *c, struct raft_config *ret)
{
    if (c->raft == NULL) {
        return CM_ESHUTDOWN;
    }
    return raft_config_copy(raft_config_current(core(c)), ret);
}

void cm_cluster_free(struct cm_cluster *c)
{
    if (c == NULL) {
        return;
    }
    c->closing = true;
    ev_timer_stop(c->o.loop, &c->tick);
    while (c->forwards != NULL) {
        struct forward *f = c->forwards;
        if (f->in_call) {
            forward_unlink(f); /* cm_rpc_free below fails the call */
            continue;
        }
        forward_finish(f, CM_ESHUTDOWN, 0, "the node is shutting down");
    }
    cm_rpc_free(c->rpc);
    while (c->adds != NULL) {
        add_finish(c->adds, CM_ESHUTDOWN, "the node is shutting down");
    }
    waits_settle(c, true);
    cm_free(&c->recs);
    cm_free(&c);
}
