/* raft/codec.c: frames, HELLO and every raft message type; strict rejection of
 * malformed bodies; allocation failures while decoding. */
#include <stdlib.h>

#include "base/base.h"
#include "raft/raft.h"
#include "test.h"

/* ---- helpers */

/* Encode @m, check the frame header and return the body (in @buf). */
static const uint8_t *encode_body(const struct raft_message *m, struct cm_buf *buf,
                                  size_t *ret_len)
{
    ASSERT_OK(raft_msg_encode(m, buf));
    uint8_t channel;
    const void *body;
    size_t len;
    ASSERT_OK(raft_frame_decode(buf->data, buf->len, &channel, &body, &len));
    ASSERT_INT_EQ(channel, RAFT_CHANNEL_RAFT);
    *ret_len = len;
    return body;
}

static void assert_config_eq(const struct raft_config *a, const struct raft_config *b)
{
    ASSERT_UINT_EQ(a->n, b->n);
    for (unsigned i = 0; i < a->n; i++) {
        ASSERT_UINT_EQ(a->servers[i].id, b->servers[i].id);
        ASSERT_UINT_EQ(a->servers[i].role, b->servers[i].role);
        ASSERT_STR_EQ(a->servers[i].address, b->servers[i].address);
    }
}

/* Encode, decode, compare field by field, re-encode and compare bytes. */
static void roundtrip(const struct raft_message *m)
{
    struct cm_buf buf = {0};
    struct cm_buf again = {0};
    size_t len;
    const uint8_t *body = encode_body(m, &buf, &len);
    struct raft_message d;
    ASSERT_OK(raft_msg_decode(body, len, &d));
    ASSERT_UINT_EQ(d.type, m->type);
    ASSERT_UINT_EQ(d.from, m->from);
    ASSERT_UINT_EQ(d.to, m->to);
    switch (m->type) {
    case RAFT_MSG_APPEND:
        ASSERT_UINT_EQ(d.append.term, m->append.term);
        ASSERT_UINT_EQ(d.append.prev_index, m->append.prev_index);
        ASSERT_UINT_EQ(d.append.prev_term, m->append.prev_term);
        ASSERT_UINT_EQ(d.append.commit, m->append.commit);
        ASSERT_UINT_EQ(d.append.seq, m->append.seq);
        ASSERT_UINT_EQ(d.append.n_entries, m->append.n_entries);
        for (unsigned i = 0; i < m->append.n_entries; i++) {
            const struct raft_entry *a = &m->append.entries[i];
            const struct raft_entry *b = &d.append.entries[i];
            ASSERT_UINT_EQ(b->term, a->term);
            ASSERT_UINT_EQ(b->type, a->type);
            ASSERT_UINT_EQ(b->buf.len, a->buf.len);
            /* Zero-copy: the entry points into the body. */
            if (b->buf.len > 0) {
                ASSERT_MEM_EQ(b->buf.base, a->buf.base, a->buf.len);
                ASSERT_TRUE((const uint8_t *)b->buf.base >= body &&
                            (const uint8_t *)b->buf.base < body + len);
            }
        }
        break;
    case RAFT_MSG_APPEND_RESULT:
        ASSERT_UINT_EQ(d.append_result.term, m->append_result.term);
        ASSERT_UINT_EQ(d.append_result.rejected, m->append_result.rejected);
        ASSERT_UINT_EQ(d.append_result.last_index, m->append_result.last_index);
        ASSERT_UINT_EQ(d.append_result.reject_index, m->append_result.reject_index);
        ASSERT_UINT_EQ(d.append_result.seq, m->append_result.seq);
        break;
    case RAFT_MSG_VOTE:
        ASSERT_UINT_EQ(d.vote.term, m->vote.term);
        ASSERT_UINT_EQ(d.vote.last_index, m->vote.last_index);
        ASSERT_UINT_EQ(d.vote.last_term, m->vote.last_term);
        ASSERT_UINT_EQ(d.vote.pre_vote, m->vote.pre_vote);
        ASSERT_UINT_EQ(d.vote.disrupt, m->vote.disrupt);
        break;
    case RAFT_MSG_VOTE_RESULT:
        ASSERT_UINT_EQ(d.vote_result.term, m->vote_result.term);
        ASSERT_UINT_EQ(d.vote_result.granted, m->vote_result.granted);
        ASSERT_UINT_EQ(d.vote_result.pre_vote, m->vote_result.pre_vote);
        break;
    case RAFT_MSG_SNAPSHOT:
        ASSERT_UINT_EQ(d.snapshot.term, m->snapshot.term);
        ASSERT_UINT_EQ(d.snapshot.last_index, m->snapshot.last_index);
        ASSERT_UINT_EQ(d.snapshot.last_term, m->snapshot.last_term);
        ASSERT_UINT_EQ(d.snapshot.config_index, m->snapshot.config_index);
        ASSERT_UINT_EQ(d.snapshot.size, m->snapshot.size);
        ASSERT_UINT_EQ(d.snapshot.offset, m->snapshot.offset);
        ASSERT_UINT_EQ(d.snapshot.done, m->snapshot.done);
        ASSERT_UINT_EQ(d.snapshot.chunk.len, m->snapshot.chunk.len);
        if (m->snapshot.chunk.len > 0) {
            ASSERT_MEM_EQ(d.snapshot.chunk.base, m->snapshot.chunk.base,
                          m->snapshot.chunk.len);
        }
        assert_config_eq(&d.snapshot.config, &m->snapshot.config);
        break;
    case RAFT_MSG_SNAPSHOT_RESULT:
        ASSERT_UINT_EQ(d.snapshot_result.term, m->snapshot_result.term);
        ASSERT_UINT_EQ(d.snapshot_result.last_index, m->snapshot_result.last_index);
        ASSERT_UINT_EQ(d.snapshot_result.next_offset, m->snapshot_result.next_offset);
        ASSERT_UINT_EQ(d.snapshot_result.rejected, m->snapshot_result.rejected);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        ASSERT_UINT_EQ(d.timeout_now.term, m->timeout_now.term);
        ASSERT_UINT_EQ(d.timeout_now.last_index, m->timeout_now.last_index);
        ASSERT_UINT_EQ(d.timeout_now.last_term, m->timeout_now.last_term);
        break;
    default:
        ASSERT_TRUE(false);
    }
    ASSERT_OK(raft_msg_encode(&d, &again));
    ASSERT_UINT_EQ(again.len, buf.len);
    ASSERT_MEM_EQ(again.data, buf.data, buf.len);
    raft_msg_close(&d);
    cm_buf_done(&buf);
    cm_buf_done(&again);
}

static struct raft_message msg(uint8_t type)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.from = 1;
    m.to = 0x0102030405060708ull;
    return m;
}

static void make_config(struct raft_config *c)
{
    memset(c, 0, sizeof(*c));
    ASSERT_OK(raft_config_add(c, 1, "127.0.0.1:7001", RAFT_VOTER));
    ASSERT_OK(raft_config_add(c, 2, "127.0.0.1:7002", RAFT_VOTER));
    ASSERT_OK(raft_config_add(c, 9, "[::1]:7009", RAFT_LEARNER));
}

/* ---- roundtrips */

TEST(roundtrip_append_with_entries)
{
    static char big[3000];
    memset(big, 'x', sizeof(big));
    struct raft_entry e[4] = {
        {.term = 3, .type = RAFT_COMMAND, .buf = {"hello", 5}},
        {.term = 3, .type = RAFT_BARRIER, .buf = {NULL, 0}},
        {.term = 4, .type = RAFT_CHANGE, .buf = {"cfg", 3}},
        {.term = UINT64_MAX, .type = RAFT_COMMAND, .buf = {big, sizeof(big)}},
    };
    struct raft_message m = msg(RAFT_MSG_APPEND);
    m.append.term = 4;
    m.append.prev_index = 10;
    m.append.prev_term = 3;
    m.append.commit = 9;
    m.append.seq = 77;
    m.append.n_entries = 4;
    m.append.entries = e;
    roundtrip(&m);
}

TEST(roundtrip_append_heartbeat_no_entries)
{
    struct raft_message m = msg(RAFT_MSG_APPEND);
    m.append.term = 1;
    m.append.seq = UINT64_MAX;
    roundtrip(&m);

    struct cm_buf buf = {0};
    size_t len;
    const uint8_t *body = encode_body(&m, &buf, &len);
    struct raft_message d;
    ASSERT_OK(raft_msg_decode(body, len, &d));
    ASSERT_UINT_EQ(d.append.n_entries, 0);
    ASSERT_NULL(d.append.entries);
    raft_msg_close(&d);
    cm_buf_done(&buf);
}

TEST(roundtrip_append_result)
{
    struct raft_message m = msg(RAFT_MSG_APPEND_RESULT);
    m.append_result.term = 5;
    m.append_result.rejected = 1;
    m.append_result.last_index = 100;
    m.append_result.reject_index = 120;
    m.append_result.seq = 3;
    roundtrip(&m);
    m.append_result.rejected = 0;
    roundtrip(&m);
}

TEST(roundtrip_vote_and_result)
{
    struct raft_message m = msg(RAFT_MSG_VOTE);
    m.vote.term = 8;
    m.vote.last_index = 44;
    m.vote.last_term = 7;
    for (uint8_t pv = 0; pv <= 1; pv++) {
        for (uint8_t d = 0; d <= 1; d++) {
            m.vote.pre_vote = pv;
            m.vote.disrupt = d;
            roundtrip(&m);
        }
    }
    struct raft_message r = msg(RAFT_MSG_VOTE_RESULT);
    r.vote_result.term = 8;
    r.vote_result.granted = 1;
    r.vote_result.pre_vote = 1;
    roundtrip(&r);
}

TEST(roundtrip_snapshot_with_config)
{
    struct raft_message m = msg(RAFT_MSG_SNAPSHOT);
    make_config(&m.snapshot.config);
    m.snapshot.term = 6;
    m.snapshot.last_index = 1000;
    m.snapshot.last_term = 5;
    m.snapshot.config_index = 900;
    m.snapshot.size = 1 << 20;
    m.snapshot.offset = 4096;
    m.snapshot.chunk.base = "chunk-bytes";
    m.snapshot.chunk.len = 11;
    m.snapshot.done = 0;
    roundtrip(&m);
    /* Last chunk, empty chunk, empty config. */
    m.snapshot.offset = m.snapshot.size;
    m.snapshot.chunk.base = NULL;
    m.snapshot.chunk.len = 0;
    m.snapshot.done = 1;
    roundtrip(&m);
    raft_config_close(&m.snapshot.config);
    roundtrip(&m);
}

TEST(roundtrip_snapshot_result_and_timeout_now)
{
    struct raft_message m = msg(RAFT_MSG_SNAPSHOT_RESULT);
    m.snapshot_result.term = 2;
    m.snapshot_result.last_index = 50;
    m.snapshot_result.next_offset = 65536;
    m.snapshot_result.rejected = 1;
    roundtrip(&m);
    struct raft_message t = msg(RAFT_MSG_TIMEOUT_NOW);
    t.timeout_now.term = 9;
    t.timeout_now.last_index = 99;
    t.timeout_now.last_term = 8;
    roundtrip(&t);
}

TEST(encode_appends_and_keeps_buffer_on_error)
{
    struct cm_buf buf = {0};
    ASSERT_OK(cm_buf_append(&buf, "xy", 2));
    struct raft_message m = msg(RAFT_MSG_TIMEOUT_NOW);
    ASSERT_OK(raft_msg_encode(&m, &buf));
    ASSERT_UINT_EQ(buf.len, 2 + RAFT_FRAME_HEADER + 17 + 24);
    ASSERT_MEM_EQ(buf.data, "xy", 2);
    size_t before = buf.len;

    m.type = 42;
    ASSERT_ERR(raft_msg_encode(&m, &buf), CM_EINVAL);
    m = msg(RAFT_MSG_VOTE);
    m.vote.pre_vote = 2;
    ASSERT_ERR(raft_msg_encode(&m, &buf), CM_EINVAL);
    m = msg(RAFT_MSG_VOTE);
    m.from = 0;
    ASSERT_ERR(raft_msg_encode(&m, &buf), CM_EINVAL);
    m = msg(RAFT_MSG_SNAPSHOT);
    m.snapshot.chunk.len = 10; /* the host did not fill it in */
    m.snapshot.size = 10;
    ASSERT_ERR(raft_msg_encode(&m, &buf), CM_EINVAL);
    m.snapshot.chunk.base = "0123456789";
    m.snapshot.size = 9; /* chunk past the end */
    ASSERT_ERR(raft_msg_encode(&m, &buf), CM_EINVAL);

    /* Over the frame limit. */
    struct raft_entry e = {.term = 1, .type = RAFT_COMMAND};
    e.buf.len = RAFT_FRAME_MAX;
    e.buf.base = cm_malloc(e.buf.len);
    ASSERT_NOT_NULL(e.buf.base);
    m = msg(RAFT_MSG_APPEND);
    m.append.n_entries = 1;
    m.append.entries = &e;
    ASSERT_ERR(raft_msg_encode(&m, &buf), CM_ETOOBIG);
    cm_free(&e.buf.base);
    ASSERT_UINT_EQ(buf.len, before);

    /* OOM while growing the output. */
    cm_alloc_fault_set(0, -1);
    struct cm_buf empty = {0};
    m = msg(RAFT_MSG_TIMEOUT_NOW);
    ASSERT_ERR(raft_msg_encode(&m, &empty), CM_ENOMEM);
    cm_alloc_fault_reset();
    ASSERT_UINT_EQ(empty.len, 0);
    cm_buf_done(&buf);
}

/* ---- frames and HELLO */

TEST(hello_roundtrip)
{
    struct cm_buf buf = {0};
    ASSERT_OK(raft_hello_encode(7, 0xabcdef, &buf));
    ASSERT_UINT_EQ(buf.len, RAFT_FRAME_HEADER + RAFT_HELLO_BODY);
    uint8_t ch;
    const void *body;
    size_t len;
    ASSERT_OK(raft_frame_decode(buf.data, buf.len, &ch, &body, &len));
    ASSERT_INT_EQ(ch, RAFT_CHANNEL_HELLO);
    raft_id id;
    uint64_t cluster;
    ASSERT_OK(raft_hello_decode(body, len, &id, &cluster));
    ASSERT_UINT_EQ(id, 7);
    ASSERT_UINT_EQ(cluster, 0xabcdef);
    ASSERT_ERR(raft_hello_decode(body, len - 1, &id, &cluster), CM_ETRUNC);
    uint8_t longer[RAFT_HELLO_BODY + 1] = {0};
    memcpy(longer, body, len);
    ASSERT_ERR(raft_hello_decode(longer, sizeof(longer), &id, &cluster), CM_EMALFORMED);
    uint8_t zero[RAFT_HELLO_BODY] = {0};
    ASSERT_ERR(raft_hello_decode(zero, sizeof(zero), &id, &cluster), CM_EMALFORMED);
    ASSERT_ERR(raft_hello_encode(0, 1, &buf), CM_EINVAL);
    cm_buf_done(&buf);
}

TEST(frame_header_rejections)
{
    uint8_t ch;
    uint32_t blen;
    uint8_t h[RAFT_FRAME_HEADER] = {0, 0, 0, 2, RAFT_WIRE_VERSION, RAFT_CHANNEL_RPC};
    ASSERT_OK(raft_frame_header(h, sizeof(h), &ch, &blen));
    ASSERT_UINT_EQ(blen, 0);
    ASSERT_ERR(raft_frame_header(h, 5, &ch, &blen), CM_ETRUNC);
    ASSERT_ERR(raft_frame_header(h, 0, &ch, &blen), CM_ETRUNC);

    h[4] = RAFT_WIRE_VERSION + 1; /* wrong version */
    ASSERT_ERR(raft_frame_header(h, sizeof(h), &ch, &blen), CM_EPROTO);
    h[4] = 0;
    ASSERT_ERR(raft_frame_header(h, sizeof(h), &ch, &blen), CM_EPROTO);
    h[4] = RAFT_WIRE_VERSION;
    h[5] = RAFT_CHANNEL_JOIN;
    ASSERT_OK(raft_frame_header(h, sizeof(h), &ch, &blen));
    ASSERT_INT_EQ(ch, RAFT_CHANNEL_JOIN);
    h[5] = RAFT_CHANNEL_JOIN + 1; /* unknown channel */
    ASSERT_ERR(raft_frame_header(h, sizeof(h), &ch, &blen), CM_EMALFORMED);
    h[5] = RAFT_CHANNEL_RAFT;
    h[3] = 1; /* length too short for version + channel */
    ASSERT_ERR(raft_frame_header(h, sizeof(h), &ch, &blen), CM_EMALFORMED);

    /* Exactly the limit is fine, one more is not. */
    uint32_t max = RAFT_FRAME_MAX + 2;
    uint8_t big[RAFT_FRAME_HEADER] = {(uint8_t)(max >> 24), (uint8_t)(max >> 16),
                                      (uint8_t)(max >> 8),  (uint8_t)max,
                                      RAFT_WIRE_VERSION,    RAFT_CHANNEL_RAFT};
    ASSERT_OK(raft_frame_header(big, sizeof(big), &ch, &blen));
    ASSERT_UINT_EQ(blen, RAFT_FRAME_MAX);
    big[3]++;
    ASSERT_ERR(raft_frame_header(big, sizeof(big), &ch, &blen), CM_ETOOBIG);
    memset(big, 0xff, 4);
    ASSERT_ERR(raft_frame_header(big, sizeof(big), &ch, &blen), CM_ETOOBIG);

    /* Whole-frame decode: short body, trailing bytes. */
    struct cm_buf buf = {0};
    ASSERT_OK(raft_frame_encode(RAFT_CHANNEL_RPC, "abc", 3, &buf));
    const void *body;
    size_t len;
    ASSERT_OK(raft_frame_decode(buf.data, buf.len, &ch, &body, &len));
    ASSERT_UINT_EQ(len, 3);
    ASSERT_MEM_EQ(body, "abc", 3);
    ASSERT_ERR(raft_frame_decode(buf.data, buf.len - 1, &ch, &body, &len), CM_ETRUNC);
    ASSERT_OK(cm_buf_append(&buf, "!", 1));
    ASSERT_ERR(raft_frame_decode(buf.data, buf.len, &ch, &body, &len), CM_EMALFORMED);
    ASSERT_ERR(raft_frame_encode(7, "x", 1, &buf), CM_EINVAL);
    cm_buf_done(&buf);
}

/* ---- body rejections */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* The encoded body of @m copied into new memory (exact size, for ASan). */
static uint8_t *body_of(const struct raft_message *m, size_t *ret_len)
{
    struct cm_buf buf = {0};
    size_t len;
    const uint8_t *body = encode_body(m, &buf, &len);
    uint8_t *copy = malloc(len + 16);
    ASSERT_NOT_NULL(copy);
    memcpy(copy, body, len);
    cm_buf_done(&buf);
    *ret_len = len;
    return copy;
}

static void assert_rejects(const uint8_t *body, size_t len, int code)
{
    struct raft_message d;
    memset(&d, 0x5a, sizeof(d));
    struct raft_message before = d;
    ASSERT_ERR(raft_msg_decode(body, len, &d), code);
    ASSERT_MEM_EQ(&d, &before, sizeof(d)); /* untouched */
}

TEST(decode_rejects_every_truncation)
{
    struct raft_entry e[2] = {
        {.term = 3, .type = RAFT_COMMAND, .buf = {"hello", 5}},
        {.term = 3, .type = RAFT_BARRIER, .buf = {NULL, 0}},
    };
    struct raft_message ms[7];
    for (uint8_t t = 1; t <= 7; t++) {
        ms[t - 1] = msg(t);
    }
    ms[0].append.n_entries = 2;
    ms[0].append.entries = e;
    make_config(&ms[4].snapshot.config);
    ms[4].snapshot.size = 100;
    ms[4].snapshot.chunk.base = "abc";
    ms[4].snapshot.chunk.len = 3;
    for (int i = 0; i < 7; i++) {
        size_t len;
        uint8_t *body = body_of(&ms[i], &len);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *exact = malloc(cut + 1);
            memcpy(exact, body, cut);
            struct raft_message d;
            int rv = raft_msg_decode(exact, cut, &d);
            /* Truncated inside a length-prefixed field, the config decoder may see
             * its own bytes as short; otherwise a count can look too big. */
            ASSERT_TRUE(rv == CM_ETRUNC || rv == CM_ETOOBIG || rv == CM_EMALFORMED);
            free(exact);
        }
        /* Trailing byte. */
        body[len] = 0;
        assert_rejects(body, len + 1, CM_EMALFORMED);
        free(body);
    }
    raft_config_close(&ms[4].snapshot.config);
}

TEST(decode_rejects_bad_type_ids_and_flags)
{
    struct raft_message m = msg(RAFT_MSG_VOTE);
    size_t len;
    uint8_t *body = body_of(&m, &len);
    body[0] = 0; /* type */
    assert_rejects(body, len, CM_EMALFORMED);
    body[0] = 8;
    assert_rejects(body, len, CM_EMALFORMED);
    body[0] = RAFT_MSG_VOTE;
    put_u64(body + 1, 0); /* from 0 */
    assert_rejects(body, len, CM_EMALFORMED);
    put_u64(body + 1, 1);
    put_u64(body + 9, 0); /* to 0 */
    assert_rejects(body, len, CM_EMALFORMED);
    put_u64(body + 9, 2);
    body[17 + 24] = 2; /* pre_vote */
    assert_rejects(body, len, CM_EMALFORMED);
    body[17 + 24] = 1;
    body[17 + 25] = 0xff; /* disrupt */
    assert_rejects(body, len, CM_EMALFORMED);
    free(body);

    m = msg(RAFT_MSG_APPEND_RESULT);
    body = body_of(&m, &len);
    body[17 + 8] = 2; /* rejected */
    assert_rejects(body, len, CM_EMALFORMED);
    free(body);

    m = msg(RAFT_MSG_VOTE_RESULT);
    body = body_of(&m, &len);
    body[17 + 8] = 3; /* granted */
    assert_rejects(body, len, CM_EMALFORMED);
    free(body);

    m = msg(RAFT_MSG_SNAPSHOT_RESULT);
    body = body_of(&m, &len);
    body[len - 1] = 2; /* rejected */
    assert_rejects(body, len, CM_EMALFORMED);
    free(body);
}

TEST(decode_rejects_bad_entry_type_and_huge_count)
{
    struct raft_entry e = {.term = 3, .type = RAFT_COMMAND, .buf = {"hi", 2}};
    struct raft_message m = msg(RAFT_MSG_APPEND);
    m.append.n_entries = 1;
    m.append.entries = &e;
    size_t len;
    uint8_t *body = body_of(&m, &len);
    size_t count_at = 17 + 40;
    size_t type_at = count_at + 4 + 8;
    body[type_at] = 0;
    assert_rejects(body, len, CM_EMALFORMED);
    body[type_at] = 4;
    assert_rejects(body, len, CM_EMALFORMED);
    body[type_at] = RAFT_COMMAND;

    /* A count the body cannot hold is refused before any allocation. */
    body[count_at] = 0xff;
    body[count_at + 1] = 0xff;
    body[count_at + 2] = 0xff;
    body[count_at + 3] = 0xff;
    cm_alloc_fault_set(0, -1);
    assert_rejects(body, len, CM_ETOOBIG);
    ASSERT_FALSE(cm_alloc_fault_fired());
    cm_alloc_fault_reset();
    /* Two entries claimed, room for exactly one header + data: truncated. */
    body[count_at] = 0;
    body[count_at + 1] = 0;
    body[count_at + 2] = 0;
    body[count_at + 3] = 2;
    assert_rejects(body, len, CM_ETOOBIG);
    /* An entry length past the end. */
    body[count_at + 3] = 1;
    body[type_at + 1] = 0x7f;
    assert_rejects(body, len, CM_ETRUNC);
    free(body);
}

TEST(decode_rejects_bad_snapshot)
{
    struct raft_message m = msg(RAFT_MSG_SNAPSHOT);
    make_config(&m.snapshot.config);
    m.snapshot.size = 10;
    m.snapshot.offset = 7;
    m.snapshot.chunk.base = "abc";
    m.snapshot.chunk.len = 3;
    m.snapshot.done = 1;
    size_t len;
    uint8_t *body = body_of(&m, &len);
    size_t size_at = 17 + 32;
    size_t offset_at = size_at + 8;
    size_t done_at = offset_at + 8;
    struct raft_message d;
    ASSERT_OK(raft_msg_decode(body, len, &d));
    raft_msg_close(&d);

    put_u64(body + size_at, 9); /* chunk goes past the size */
    assert_rejects(body, len, CM_EMALFORMED);
    put_u64(body + size_at, UINT64_MAX);
    put_u64(body + offset_at, UINT64_MAX - 1); /* offset + len overflows */
    assert_rejects(body, len, CM_EMALFORMED);
    put_u64(body + offset_at, 7);
    put_u64(body + size_at, 10);
    body[done_at] = 2;
    assert_rejects(body, len, CM_EMALFORMED);
    body[done_at] = 1;
    /* Config with a bad server role: the config decoder refuses it. */
    size_t role_at = done_at + 1 + 4 + 1 + 4 + 8;
    body[role_at] = 7;
    assert_rejects(body, len, CM_EMALFORMED);
    body[role_at] = RAFT_VOTER;
    /* Config length past the end. */
    body[done_at + 1] = 0x10;
    assert_rejects(body, len, CM_ETRUNC);
    free(body);
    raft_config_close(&m.snapshot.config);
}

TEST(decode_garbage_never_crashes)
{
    struct cm_rng rng;
    cm_rng_seed(&rng, 12345);
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)cm_rng_below(&rng, 96);
        uint8_t *b = malloc(len + 1);
        for (size_t j = 0; j < len; j++) {
            b[j] = (uint8_t)cm_rng_next(&rng);
        }
        if (len > 0) {
            b[0] = (uint8_t)(1 + cm_rng_below(&rng, 7)); /* mostly valid types */
        }
        struct raft_message d;
        if (raft_msg_decode(b, len, &d) == 0) {
            raft_msg_close(&d);
        }
        free(b);
    }
}

/* ---- allocation failures */

struct oom_arg {
    const uint8_t *body;
    size_t len;
};

static int decode_and_close(void *arg)
{
    struct oom_arg *a = arg;
    struct raft_message d;
    int rv = raft_msg_decode(a->body, a->len, &d);
    if (rv == 0) {
        ASSERT_UINT_EQ(d.snapshot.config.n, 3);
        raft_msg_close(&d);
    }
    return rv;
}

TEST(decode_snapshot_oom_walk)
{
    struct raft_message m = msg(RAFT_MSG_SNAPSHOT);
    make_config(&m.snapshot.config);
    m.snapshot.size = 3;
    m.snapshot.chunk.base = "abc";
    m.snapshot.chunk.len = 3;
    size_t len;
    uint8_t *body = body_of(&m, &len);
    struct oom_arg a = {body, len};
    ASSERT_INT_OP(test_alloc_walk(decode_and_close, &a), >=, 1);
    free(body);
    raft_config_close(&m.snapshot.config);
}

static int decode_append_and_close(void *arg)
{
    struct oom_arg *a = arg;
    struct raft_message d;
    int rv = raft_msg_decode(a->body, a->len, &d);
    if (rv == 0) {
        raft_msg_close(&d);
    }
    return rv;
}

TEST(decode_append_oom_walk)
{
    struct raft_entry e[2] = {
        {.term = 3, .type = RAFT_COMMAND, .buf = {"hello", 5}},
        {.term = 3, .type = RAFT_BARRIER, .buf = {NULL, 0}},
    };
    struct raft_message m = msg(RAFT_MSG_APPEND);
    m.append.n_entries = 2;
    m.append.entries = e;
    size_t len;
    uint8_t *body = body_of(&m, &len);
    struct oom_arg a = {body, len};
    ASSERT_INT_EQ(test_alloc_walk(decode_append_and_close, &a), 1);
    free(body);
}

static int encode_snapshot(void *arg)
{
    const struct raft_message *m = arg;
    struct cm_buf buf = {0};
    int rv = raft_msg_encode(m, &buf);
    cm_buf_done(&buf);
    return rv;
}

TEST(encode_snapshot_oom_walk)
{
    struct raft_message m = msg(RAFT_MSG_SNAPSHOT);
    make_config(&m.snapshot.config);
    ASSERT_INT_OP(test_alloc_walk(encode_snapshot, &m), >=, 2);
    raft_config_close(&m.snapshot.config);
}
