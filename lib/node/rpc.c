/* Node RPC over the raft transport's RPC channel (cluster_int.h).
 *
 * The transport sends only on the connection a node dialled to a configured
 * peer and receives on the connections peers dialled to it, so a reply travels
 * back on the replier's own outgoing connection, exactly like a request: every
 * message names its type and id, and a reply is matched to its call by (peer,
 * id). A call that gets no reply within its timeout fails with CM_ETIMEDOUT;
 * a late reply is then dropped (counted). */
#include <ev.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "node/cluster_int.h"
#include "state/state.h"

/* ------------------------------------------------------------------ codec */

static const char *const type_names[] = {
    [CM_RPC_REPLY] = "reply",
    [CM_RPC_PROPOSE] = "propose",
    [CM_RPC_READ_INDEX] = "read_index",
    [CM_RPC_HEARTBEAT] = "heartbeat",
    [CM_RPC_ADD_LEARNER] = "add_learner",
};

const char *cm_rpc_type_name(enum cm_rpc_type t)
{
    if ((unsigned)t < CM_ARRAY_SIZE(type_names) && type_names[t] != NULL) {
        return type_names[t];
    }
    return "?";
}

static bool add_str(cJSON *o, const char *k, const char *v)
{
    return v == NULL || cJSON_AddStringToObject(o, k, v) != NULL;
}

/* Integers travel as JSON numbers while cJSON prints them exactly (it prints
 * 15 significant digits); larger ids and indices as decimal strings. */
static bool add_u64(cJSON *o, const char *k, uint64_t v)
{
    if (v < UINT64_C(1000000000000000)) {
        return cJSON_AddNumberToObject(o, k, (double)v) != NULL;
    }
    char s[24];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
    return cJSON_AddStringToObject(o, k, s) != NULL;
}

int cm_rpc_encode(const struct cm_rpc_msg *m, struct cm_buf *out)
{
    if ((unsigned)m->type >= CM_ARRAY_SIZE(type_names)) {
        return CM_EINVAL;
    }
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return CM_ENOMEM;
    }
    bool ok = cJSON_AddNumberToObject(o, "v", CM_RPC_VERSION) != NULL &&
              cJSON_AddStringToObject(o, "t", type_names[m->type]) != NULL &&
              add_u64(o, "id", m->id);
    switch (m->type) {
    case CM_RPC_REPLY:
        ok = ok && cJSON_AddNumberToObject(o, "status", m->status) != NULL &&
             add_u64(o, "index", m->index) && add_str(o, "msg", m->msg) &&
             add_str(o, "data", m->data);
        break;
    case CM_RPC_PROPOSE:
        ok = ok && add_str(o, "cmd", m->cmd != NULL ? m->cmd : "");
        break;
    case CM_RPC_READ_INDEX:
        break;
    case CM_RPC_HEARTBEAT:
        ok = ok && add_str(o, "name", m->name != NULL ? m->name : "") &&
             add_u64(o, "raft_id", m->raft_id) &&
             cJSON_AddNumberToObject(o, "at", (double)m->at) != NULL &&
             add_str(o, "http", m->http);
        break;
    case CM_RPC_ADD_LEARNER:
        ok = ok && add_str(o, "name", m->name != NULL ? m->name : "") &&
             add_u64(o, "raft_id", m->raft_id) &&
             add_str(o, "address", m->address != NULL ? m->address : "");
        break;
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (text == NULL) {
        return CM_ENOMEM;
    }
    int rv = cm_buf_puts(out, text);
    cJSON_free(text);
    return rv;
}

/* An unsigned integer field: a number (exact, >= 0) or a decimal string. */
static int get_u64(const cJSON *o, const char *k, bool required, uint64_t *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (v == NULL) {
        *ret = 0;
        return required ? CM_EMALFORMED : 0;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!(d >= 0 && d < 9007199254740992.0) || d != (double)(uint64_t)d) {
            return CM_EMALFORMED;
        }
        *ret = (uint64_t)d;
        return 0;
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        uint64_t x = 0;
        if (*s == '\0' || strlen(s) > 20) {
            return CM_EMALFORMED;
        }
        for (; *s != '\0'; s++) {
            if (*s < '0' || *s > '9' || x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) {
                return CM_EMALFORMED;
            }
            x = x * 10 + (uint64_t)(*s - '0');
        }
        *ret = x;
        return 0;
    }
    return CM_EMALFORMED;
}

static int get_str(const cJSON *o, const char *k, bool required, const char **ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (v == NULL) {
        *ret = NULL;
        return required ? CM_EMALFORMED : 0;
    }
    if (!cJSON_IsString(v)) {
        return CM_EMALFORMED;
    }
    *ret = v->valuestring;
    return 0;
}

static int get_i64(const cJSON *o, const char *k, int64_t lo, int64_t hi, int64_t *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (v == NULL) {
        *ret = 0;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)lo) ||
        !(v->valuedouble <= (double)hi)) {
        return CM_EMALFORMED;
    }
    *ret = (int64_t)v->valuedouble;
    return 0;
}

int cm_rpc_decode(const void *body, size_t len, struct cm_rpc_msg *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (len > CM_RPC_MAX_BODY) {
        return CM_ETOOBIG;
    }
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (o == NULL) {
        return CM_EMALFORMED;
    }
    struct cm_rpc_msg m = {.doc = o};
    int rv = CM_EMALFORMED;
    int64_t v;
    const char *t;
    if (!cJSON_IsObject(o) || !cJSON_HasObjectItem(o, "v") ||
        get_i64(o, "v", 0, 1000000, &v) != 0 || get_str(o, "t", true, &t) != 0 ||
        get_u64(o, "id", false, &m.id) != 0) {
        goto fail;
    }
    if (v != CM_RPC_VERSION) {
        rv = CM_EPROTO;
        goto fail;
    }
    rv = CM_EUNSUPPORTED;
    for (unsigned i = 0; i < CM_ARRAY_SIZE(type_names); i++) {
        if (strcmp(t, type_names[i]) == 0) {
            m.type = (enum cm_rpc_type)i;
            rv = 0;
            break;
        }
    }
    if (rv != 0) {
        goto fail;
    }
    switch (m.type) {
    case CM_RPC_REPLY: {
        int64_t st;
        rv = get_i64(o, "status", -100000, 0, &st);
        m.status = (int)st;
        rv = rv ? rv : get_u64(o, "index", false, &m.index);
        rv = rv ? rv : get_str(o, "msg", false, &m.msg);
        rv = rv ? rv : get_str(o, "data", false, &m.data);
        break;
    }
    case CM_RPC_PROPOSE:
        rv = get_str(o, "cmd", true, &m.cmd);
        break;
    case CM_RPC_READ_INDEX:
        rv = 0;
        break;
    case CM_RPC_HEARTBEAT:
        rv = get_str(o, "name", true, &m.name);
        rv = rv ? rv : get_u64(o, "raft_id", true, &m.raft_id);
        rv = rv ? rv : get_i64(o, "at", 0, INT64_C(1) << 52, &m.at);
        rv = rv ? rv : get_str(o, "http", false, &m.http);
        break;
    case CM_RPC_ADD_LEARNER:
        rv = get_str(o, "name", true, &m.name);
        rv = rv ? rv : get_u64(o, "raft_id", true, &m.raft_id);
        rv = rv ? rv : get_str(o, "address", true, &m.address);
        if (rv == 0 && (m.raft_id == 0 || m.address[0] == '\0')) {
            rv = CM_EMALFORMED;
        }
        break;
    }
    if (rv != 0) {
        goto fail;
    }
    *ret = m;
    return 0;
fail:
    cJSON_Delete(o);
    return rv;
}

void cm_rpc_msg_done(struct cm_rpc_msg *m)
{
    cJSON_Delete(m->doc);
    memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------ calls */

struct rpc_call {
    struct cm_rpc *r;
    struct rpc_call *prev;
    struct rpc_call *next;
    uint64_t id;
    uint64_t to;
    ev_timer timer;
    cm_rpc_reply_fn cb;
    void *arg;
};

struct cm_rpc {
    struct ev_loop *loop;
    cm_rpc_send_fn send;
    cm_rpc_request_fn request;
    void *data;
    uint64_t next_id;
    struct rpc_call *calls;
    struct cm_rpc_stats stats;
};

int cm_rpc_new(struct ev_loop *loop, cm_rpc_send_fn send, cm_rpc_request_fn request,
               void *data, struct cm_rpc **ret)
{
    cm_state_json_init(); /* cJSON allocates through cm_malloc */
    struct cm_rpc *r = cm_calloc(1, sizeof(*r));
    if (r == NULL) {
        return CM_ENOMEM;
    }
    r->loop = loop;
    r->send = send;
    r->request = request;
    r->data = data;
    /* Ids start at a random point so replies to calls of a previous run of
     * this node (same raft id) are not taken for new ones. */
    if (cm_random_bytes(&r->next_id, sizeof(r->next_id)) != 0) {
        r->next_id = 1;
    }
    r->next_id = (r->next_id & ((1ull << 52) - 1)) | 1;
    *ret = r;
    return 0;
}

static void call_unlink(struct rpc_call *k)
{
    struct cm_rpc *r = k->r;
    ev_timer_stop(r->loop, &k->timer);
    if (k->prev != NULL) {
        k->prev->next = k->next;
    } else {
        r->calls = k->next;
    }
    if (k->next != NULL) {
        k->next->prev = k->prev;
    }
}

static void call_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct rpc_call *k = cm_container_of(w, struct rpc_call, timer);
    k->r->stats.timeouts++;
    call_unlink(k);
    k->cb(k->arg, CM_ETIMEDOUT, NULL);
    cm_free(&k);
}

void cm_rpc_free(struct cm_rpc *r)
{
    if (r == NULL) {
        return;
    }
    while (r->calls != NULL) {
        struct rpc_call *k = r->calls;
        call_unlink(k);
        k->cb(k->arg, CM_ESHUTDOWN, NULL);
        cm_free(&k);
    }
    cm_free(&r);
}

int cm_rpc_send(struct cm_rpc *r, uint64_t to, const struct cm_rpc_msg *m)
{
    struct cm_buf b = {0};
    int rv = cm_rpc_encode(m, &b);
    if (rv == 0) {
        rv = r->send(r->data, to, b.data, b.len);
    }
    cm_buf_done(&b);
    if (rv == 0) {
        r->stats.sent++;
    }
    return rv;
}

int cm_rpc_call(struct cm_rpc *r, uint64_t to, struct cm_rpc_msg *m, unsigned timeout_ms,
                cm_rpc_reply_fn cb, void *arg)
{
    struct rpc_call *k = cm_calloc(1, sizeof(*k));
    if (k == NULL) {
        return CM_ENOMEM;
    }
    m->id = r->next_id++;
    if (r->next_id >= (1ull << 53)) {
        r->next_id = 1;
    }
    int rv = cm_rpc_send(r, to, m);
    if (rv != 0) {
        cm_free(&k);
        return rv;
    }
    k->r = r;
    k->id = m->id;
    k->to = to;
    k->cb = cb;
    k->arg = arg;
    ev_timer_init(&k->timer, call_timeout, timeout_ms / 1000.0, 0.);
    ev_timer_start(r->loop, &k->timer);
    k->next = r->calls;
    if (k->next != NULL) {
        k->next->prev = k;
    }
    r->calls = k;
    return 0;
}

void cm_rpc_receive(struct cm_rpc *r, uint64_t from, const void *body, size_t len)
{
    struct cm_rpc_msg m;
    int rv = cm_rpc_decode(body, len, &m);
    if (rv != 0) {
        r->stats.dropped++;
        cm_debug("rpc", "dropped a message from %llx: %s", (unsigned long long)from,
                 cm_strerror(rv));
        return;
    }
    r->stats.received++;
    if (m.type != CM_RPC_REPLY) {
        r->request(r->data, from, &m);
        cm_rpc_msg_done(&m);
        return;
    }
    for (struct rpc_call *k = r->calls; k != NULL; k = k->next) {
        if (k->id == m.id && k->to == from) {
            call_unlink(k);
            k->cb(k->arg, 0, &m);
            cm_free(&k);
            cm_rpc_msg_done(&m);
            return;
        }
    }
    r->stats.dropped++; /* late (timed out) or never asked for */
    cm_rpc_msg_done(&m);
}

void cm_rpc_get_stats(const struct cm_rpc *r, struct cm_rpc_stats *ret)
{
    *ret = r->stats;
}
