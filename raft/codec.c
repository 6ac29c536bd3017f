/* raft/codec.c: versioned frames for the raft transport (format in raft.h).
 *
 * Encoding sizes the body first, reserves it in one go and writes through a
 * cm_wbuf, so a failure leaves the output buffer as it was. Decoding reads only
 * through a cm_wire cursor (STYLE.md rule 13) and is strict, so that every body
 * it accepts has exactly one encoding (the fuzz target checks this). */
#include <string.h>

#include "base/base.h"
#include "raft/raft.h"

#define MSG_HEAD   (1 + 8 + 8) /* type, from, to */
#define ENTRY_HEAD (8 + 1 + 4) /* term, type, len */

static bool flag_ok(uint8_t v)
{
    return v <= 1;
}

static bool entry_type_ok(uint8_t t)
{
    return t == RAFT_COMMAND || t == RAFT_BARRIER || t == RAFT_CHANGE;
}

/* ------------------------------------------------------------------ frames */

/* Reserve a frame with a body of @body_len at the end of @out and write its
 * header; the body is written by the caller into the returned cursor. */
static int frame_begin(struct cm_buf *out, uint8_t channel, size_t body_len,
                       struct cm_wbuf *w)
{
    if (body_len > RAFT_FRAME_MAX) {
        return CM_ETOOBIG;
    }
    int rv = cm_buf_reserve(out, RAFT_FRAME_HEADER + body_len);
    if (rv != 0) {
        return rv;
    }
    cm_wbuf_init(w, out->data + out->len, RAFT_FRAME_HEADER + body_len);
    cm_wbuf_u32(w, (uint32_t)(2 + body_len));
    cm_wbuf_u8(w, RAFT_WIRE_VERSION);
    cm_wbuf_u8(w, channel);
    return 0;
}

/* Commit the frame written through @w: it must be exactly full. */
static void frame_end(struct cm_buf *out, struct cm_wbuf *w)
{
    CM_BUG_ON(w->err != 0 || cm_wbuf_avail(w) != 0);
    out->len += cm_wbuf_len(w);
    out->data[out->len] = '\0';
}

int raft_frame_encode(uint8_t channel, const void *body, size_t len, struct cm_buf *out)
{
    if (channel > RAFT_CHANNEL_JOIN) {
        return CM_EINVAL;
    }
    struct cm_wbuf w;
    int rv = frame_begin(out, channel, len, &w);
    if (rv != 0) {
        return rv;
    }
    cm_wbuf_write(&w, body, len);
    frame_end(out, &w);
    return 0;
}

int raft_frame_header(const void *data, size_t len, uint8_t *ret_channel,
                      uint32_t *ret_body_len)
{
    struct cm_wire r;
    cm_wire_init(&r, data, len < RAFT_FRAME_HEADER ? len : RAFT_FRAME_HEADER);
    uint32_t flen = cm_wire_u32(&r);
    uint8_t version = cm_wire_u8(&r);
    uint8_t channel = cm_wire_u8(&r);
    if (cm_wire_err(&r) != 0) {
        return CM_ETRUNC;
    }
    if (version != RAFT_WIRE_VERSION) {
        return CM_EPROTO;
    }
    if (channel > RAFT_CHANNEL_JOIN || flen < 2) {
        return CM_EMALFORMED;
    }
    if (flen - 2 > RAFT_FRAME_MAX) {
        return CM_ETOOBIG;
    }
    *ret_channel = channel;
    *ret_body_len = flen - 2;
    return 0;
}

int raft_frame_decode(const void *data, size_t len, uint8_t *ret_channel,
                      const void **ret_body, size_t *ret_body_len)
{
    uint8_t channel;
    uint32_t blen;
    int rv = raft_frame_header(data, len, &channel, &blen);
    if (rv != 0) {
        return rv;
    }
    if (len - RAFT_FRAME_HEADER < blen) {
        return CM_ETRUNC;
    }
    if (len - RAFT_FRAME_HEADER > blen) {
        return CM_EMALFORMED;
    }
    *ret_channel = channel;
    *ret_body = (const uint8_t *)data + RAFT_FRAME_HEADER;
    *ret_body_len = blen;
    return 0;
}

/* ------------------------------------------------------------------ hello */

int raft_hello_encode(raft_id id, uint64_t cluster_id, struct cm_buf *out)
{
    if (id == 0) {
        return CM_EINVAL;
    }
    struct cm_wbuf w;
    int rv = frame_begin(out, RAFT_CHANNEL_HELLO, RAFT_HELLO_BODY, &w);
    if (rv != 0) {
        return rv;
    }
    cm_wbuf_u64(&w, id);
    cm_wbuf_u64(&w, cluster_id);
    frame_end(out, &w);
    return 0;
}

int raft_hello_decode(const void *body, size_t len, raft_id *ret_id,
                      uint64_t *ret_cluster_id)
{
    struct cm_wire r;
    cm_wire_init(&r, body, len);
    raft_id id = cm_wire_u64(&r);
    uint64_t cluster = cm_wire_u64(&r);
    if (cm_wire_err(&r) != 0) {
        return cm_wire_err(&r);
    }
    if (cm_wire_remaining(&r) != 0 || id == 0) {
        return CM_EMALFORMED;
    }
    *ret_id = id;
    *ret_cluster_id = cluster;
    return 0;
}

/* ------------------------------------------------------------------ encode */

/* The body size of @m without the snapshot config (@config_len is added), or 0
 * when the message cannot be encoded (*err says why). */
static size_t body_size(const struct raft_message *m, size_t config_len, int *err)
{
    size_t n = MSG_HEAD;
    switch (m->type) {
    case RAFT_MSG_APPEND: {
        const struct raft_append *a = &m->append;
        n += 5 * 8 + 4;
        if (a->n_entries > 0 && a->entries == NULL) {
            *err = CM_EINVAL;
            return 0;
        }
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            if (!entry_type_ok(e->type) || (e->buf.len > 0 && e->buf.base == NULL)) {
                *err = CM_EINVAL;
                return 0;
            }
            if (e->buf.len > UINT32_MAX) {
                *err = CM_ETOOBIG;
                return 0;
            }
            n += ENTRY_HEAD + e->buf.len;
            if (n > RAFT_FRAME_MAX) {
                /* Stops the sum before it can overflow. */
                *err = CM_ETOOBIG;
                return 0;
            }
        }
        return n;
    }
    case RAFT_MSG_APPEND_RESULT:
        if (!flag_ok(m->append_result.rejected)) {
            break;
        }
        return n + 8 + 1 + 3 * 8;
    case RAFT_MSG_VOTE:
        if (!flag_ok(m->vote.pre_vote) || !flag_ok(m->vote.disrupt)) {
            break;
        }
        return n + 3 * 8 + 2;
    case RAFT_MSG_VOTE_RESULT:
        if (!flag_ok(m->vote_result.granted) || !flag_ok(m->vote_result.pre_vote)) {
            break;
        }
        return n + 8 + 2;
    case RAFT_MSG_SNAPSHOT: {
        const struct raft_snapshot_msg *s = &m->snapshot;
        uint64_t end;
        if (!flag_ok(s->done) || (s->chunk.len > 0 && s->chunk.base == NULL) ||
            __builtin_add_overflow(s->offset, (uint64_t)s->chunk.len, &end) ||
            end > s->size) {
            break;
        }
        if (config_len > RAFT_FRAME_MAX || s->chunk.len > RAFT_FRAME_MAX) {
            *err = CM_ETOOBIG;
            return 0;
        }
        return n + 6 * 8 + 1 + 4 + config_len + 4 + s->chunk.len;
    }
    case RAFT_MSG_SNAPSHOT_RESULT:
        if (!flag_ok(m->snapshot_result.rejected)) {
            break;
        }
        return n + 3 * 8 + 1;
    case RAFT_MSG_TIMEOUT_NOW:
        return n + 3 * 8;
    default:
        break;
    }
    *err = CM_EINVAL;
    return 0;
}

int raft_msg_encode(const struct raft_message *m, struct cm_buf *out)
{
    struct raft_buffer config = {NULL, 0};
    struct cm_wbuf w;
    int rv = 0;

    if (m->from == 0 || m->to == 0) {
        return CM_EINVAL;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        rv = raft_config_encode(&m->snapshot.config, &config);
        if (rv != 0) {
            return rv;
        }
    }
    size_t blen = body_size(m, config.len, &rv);
    if (blen == 0) {
        goto out;
    }
    rv = frame_begin(out, RAFT_CHANNEL_RAFT, blen, &w);
    if (rv != 0) {
        goto out;
    }
    cm_wbuf_u8(&w, m->type);
    cm_wbuf_u64(&w, m->from);
    cm_wbuf_u64(&w, m->to);
    switch (m->type) {
    case RAFT_MSG_APPEND: {
        const struct raft_append *a = &m->append;
        cm_wbuf_u64(&w, a->term);
        cm_wbuf_u64(&w, a->prev_index);
        cm_wbuf_u64(&w, a->prev_term);
        cm_wbuf_u64(&w, a->commit);
        cm_wbuf_u64(&w, a->seq);
        cm_wbuf_u32(&w, a->n_entries);
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            cm_wbuf_u64(&w, e->term);
            cm_wbuf_u8(&w, e->type);
            cm_wbuf_u32(&w, (uint32_t)e->buf.len);
            cm_wbuf_write(&w, e->buf.base, e->buf.len);
        }
        break;
    }
    case RAFT_MSG_APPEND_RESULT: {
        const struct raft_append_result *a = &m->append_result;
        cm_wbuf_u64(&w, a->term);
        cm_wbuf_u8(&w, a->rejected);
        cm_wbuf_u64(&w, a->last_index);
        cm_wbuf_u64(&w, a->reject_index);
        cm_wbuf_u64(&w, a->seq);
        break;
    }
    case RAFT_MSG_VOTE: {
        const struct raft_vote *v = &m->vote;
        cm_wbuf_u64(&w, v->term);
        cm_wbuf_u64(&w, v->last_index);
        cm_wbuf_u64(&w, v->last_term);
        cm_wbuf_u8(&w, v->pre_vote);
        cm_wbuf_u8(&w, v->disrupt);
        break;
    }
    case RAFT_MSG_VOTE_RESULT: {
        const struct raft_vote_result *v = &m->vote_result;
        cm_wbuf_u64(&w, v->term);
        cm_wbuf_u8(&w, v->granted);
        cm_wbuf_u8(&w, v->pre_vote);
        break;
    }
    case RAFT_MSG_SNAPSHOT: {
        const struct raft_snapshot_msg *s = &m->snapshot;
        cm_wbuf_u64(&w, s->term);
        cm_wbuf_u64(&w, s->last_index);
        cm_wbuf_u64(&w, s->last_term);
        cm_wbuf_u64(&w, s->config_index);
        cm_wbuf_u64(&w, s->size);
        cm_wbuf_u64(&w, s->offset);
        cm_wbuf_u8(&w, s->done);
        cm_wbuf_u32(&w, (uint32_t)config.len);
        cm_wbuf_write(&w, config.base, config.len);
        cm_wbuf_u32(&w, (uint32_t)s->chunk.len);
        cm_wbuf_write(&w, s->chunk.base, s->chunk.len);
        break;
    }
    case RAFT_MSG_SNAPSHOT_RESULT: {
        const struct raft_snapshot_result *s = &m->snapshot_result;
        cm_wbuf_u64(&w, s->term);
        cm_wbuf_u64(&w, s->last_index);
        cm_wbuf_u64(&w, s->next_offset);
        cm_wbuf_u8(&w, s->rejected);
        break;
    }
    case RAFT_MSG_TIMEOUT_NOW: {
        const struct raft_timeout_now *t = &m->timeout_now;
        cm_wbuf_u64(&w, t->term);
        cm_wbuf_u64(&w, t->last_index);
        cm_wbuf_u64(&w, t->last_term);
        break;
    }
    }
    frame_end(out, &w);

out:
    cm_free(&config.base);
    return rv;
}

/* ------------------------------------------------------------------ decode */

static int decode_append(struct cm_wire *r, struct raft_append *a)
{
    a->term = cm_wire_u64(r);
    a->prev_index = cm_wire_u64(r);
    a->prev_term = cm_wire_u64(r);
    a->commit = cm_wire_u64(r);
    a->seq = cm_wire_u64(r);
    uint32_t n = cm_wire_u32(r);
    if (cm_wire_err(r) != 0) {
        return cm_wire_err(r);
    }
    /* Each entry takes at least ENTRY_HEAD bytes: refuse a count the body cannot
     * hold before allocating for it. */
    if (n > cm_wire_remaining(r) / ENTRY_HEAD) {
        return CM_ETOOBIG;
    }
    a->n_entries = n;
    a->entries = NULL;
    if (n == 0) {
        return 0;
    }
    a->entries = cm_calloc(n, sizeof(*a->entries));
    if (a->entries == NULL) {
        return CM_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct raft_entry *e = &a->entries[i];
        e->term = cm_wire_u64(r);
        e->type = cm_wire_u8(r);
        uint32_t len = cm_wire_u32(r);
        const uint8_t *p = cm_wire_take(r, len);
        if (cm_wire_err(r) != 0) {
            break;
        }
        if (!entry_type_ok(e->type)) {
            cm_wire_fail(r, CM_EMALFORMED);
            break;
        }
        e->buf.base = (void *)p;
        e->buf.len = len;
    }
    if (cm_wire_err(r) != 0) {
        cm_free(&a->entries);
        return cm_wire_err(r);
    }
    return 0;
}

static int decode_snapshot(struct cm_wire *r, struct raft_snapshot_msg *s)
{
    s->term = cm_wire_u64(r);
    s->last_index = cm_wire_u64(r);
    s->last_term = cm_wire_u64(r);
    s->config_index = cm_wire_u64(r);
    s->size = cm_wire_u64(r);
    s->offset = cm_wire_u64(r);
    s->done = cm_wire_u8(r);
    uint32_t clen = cm_wire_u32(r);
    const uint8_t *cfg = cm_wire_take(r, clen);
    uint32_t len = cm_wire_u32(r);
    const uint8_t *chunk = cm_wire_take(r, len);
    if (cm_wire_err(r) != 0) {
        return cm_wire_err(r);
    }
    uint64_t end;
    if (!flag_ok(s->done) || __builtin_add_overflow(s->offset, (uint64_t)len, &end) ||
        end > s->size || cm_wire_remaining(r) != 0) {
        return CM_EMALFORMED;
    }
    s->chunk.base = (void *)chunk;
    s->chunk.len = len;
    /* Last, so that nothing can fail after the config is allocated. */
    return raft_config_decode(cfg, clen, &s->config);
}

int raft_msg_decode(const void *body, size_t len, struct raft_message *ret)
{
    struct raft_message m;
    struct cm_wire r;
    int rv;

    memset(&m, 0, sizeof(m));
    cm_wire_init(&r, body, len);
    m.type = cm_wire_u8(&r);
    m.from = cm_wire_u64(&r);
    m.to = cm_wire_u64(&r);
    if (cm_wire_err(&r) != 0) {
        return cm_wire_err(&r);
    }
    if (m.from == 0 || m.to == 0) {
        return CM_EMALFORMED;
    }
    switch (m.type) {
    case RAFT_MSG_APPEND:
        rv = decode_append(&r, &m.append);
        if (rv == 0 && cm_wire_remaining(&r) != 0) {
            cm_free(&m.append.entries);
            rv = CM_EMALFORMED;
        }
        if (rv != 0) {
            return rv;
        }
        *ret = m;
        return 0;
    case RAFT_MSG_SNAPSHOT:
        rv = decode_snapshot(&r, &m.snapshot);
        if (rv != 0) {
            return rv;
        }
        *ret = m;
        return 0;
    case RAFT_MSG_APPEND_RESULT: {
        struct raft_append_result *a = &m.append_result;
        a->term = cm_wire_u64(&r);
        a->rejected = cm_wire_u8(&r);
        a->last_index = cm_wire_u64(&r);
        a->reject_index = cm_wire_u64(&r);
        a->seq = cm_wire_u64(&r);
        if (!flag_ok(a->rejected)) {
            cm_wire_fail(&r, CM_EMALFORMED);
        }
        break;
    }
    case RAFT_MSG_VOTE: {
        struct raft_vote *v = &m.vote;
        v->term = cm_wire_u64(&r);
        v->last_index = cm_wire_u64(&r);
        v->last_term = cm_wire_u64(&r);
        v->pre_vote = cm_wire_u8(&r);
        v->disrupt = cm_wire_u8(&r);
        if (!flag_ok(v->pre_vote) || !flag_ok(v->disrupt)) {
            cm_wire_fail(&r, CM_EMALFORMED);
        }
        break;
    }
    case RAFT_MSG_VOTE_RESULT: {
        struct raft_vote_result *v = &m.vote_result;
        v->term = cm_wire_u64(&r);
        v->granted = cm_wire_u8(&r);
        v->pre_vote = cm_wire_u8(&r);
        if (!flag_ok(v->granted) || !flag_ok(v->pre_vote)) {
            cm_wire_fail(&r, CM_EMALFORMED);
        }
        break;
    }
    case RAFT_MSG_SNAPSHOT_RESULT: {
        struct raft_snapshot_result *s = &m.snapshot_result;
        s->term = cm_wire_u64(&r);
        s->last_index = cm_wire_u64(&r);
        s->next_offset = cm_wire_u64(&r);
        s->rejected = cm_wire_u8(&r);
        if (!flag_ok(s->rejected)) {
            cm_wire_fail(&r, CM_EMALFORMED);
        }
        break;
    }
    case RAFT_MSG_TIMEOUT_NOW: {
        struct raft_timeout_now *t = &m.timeout_now;
        t->term = cm_wire_u64(&r);
        t->last_index = cm_wire_u64(&r);
        t->last_term = cm_wire_u64(&r);
        break;
    }
    default:
        return CM_EMALFORMED;
    }
    if (cm_wire_err(&r) != 0) {
        return cm_wire_err(&r);
    }
    if (cm_wire_remaining(&r) != 0) {
        return CM_EMALFORMED;
    }
    *ret = m;
    return 0;
}

void raft_msg_close(struct raft_message *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
        cm_free(&m->append.entries);
        m->append.n_entries = 0;
        break;
    case RAFT_MSG_SNAPSHOT:
        raft_config_close(&m->snapshot.config);
        break;
    default:
        break;
    }
}
