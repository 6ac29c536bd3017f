/* Fuzz the raft frame codec. The input is tried twice: as a whole frame (header,
 * then a HELLO or raft message body by channel) and as a bare raft message body.
 * Whatever decodes must re-encode to exactly the same bytes (the codec is strict,
 * raft.h) and decode again to the same message. */
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "raft/raft.h"

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static bool config_eq(const struct raft_config *a, const struct raft_config *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (unsigned i = 0; i < a->n; i++) {
        if (a->servers[i].id != b->servers[i].id ||
            a->servers[i].role != b->servers[i].role ||
            strcmp(a->servers[i].address, b->servers[i].address) != 0) {
            return false;
        }
    }
    return true;
}

static bool buf_eq(const struct raft_buffer *a, const struct raft_buffer *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->base, b->base, a->len) == 0);
}

static bool msg_eq(const struct raft_message *a, const struct raft_message *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to) {
        return false;
    }
    switch (a->type) {
    case RAFT_MSG_APPEND:
        if (a->append.term != b->append.term ||
            a->append.prev_index != b->append.prev_index ||
            a->append.prev_term != b->append.prev_term ||
            a->append.commit != b->append.commit || a->append.seq != b->append.seq ||
            a->append.n_entries != b->append.n_entries) {
            return false;
        }
        for (unsigned i = 0; i < a->append.n_entries; i++) {
            const struct raft_entry *x = &a->append.entries[i];
            const struct raft_entry *y = &b->append.entries[i];
            if (x->term != y->term || x->type != y->type || !buf_eq(&x->buf, &y->buf)) {
                return false;
            }
        }
        return true;
    case RAFT_MSG_SNAPSHOT:
        return a->snapshot.term == b->snapshot.term &&
               a->snapshot.last_index == b->snapshot.last_index &&
               a->snapshot.last_term == b->snapshot.last_term &&
               a->snapshot.config_index == b->snapshot.config_index &&
               a->snapshot.size == b->snapshot.size &&
               a->snapshot.offset == b->snapshot.offset &&
               a->snapshot.done == b->snapshot.done &&
               buf_eq(&a->snapshot.chunk, &b->snapshot.chunk) &&
               config_eq(&a->snapshot.config, &b->snapshot.config);
    case RAFT_MSG_APPEND_RESULT:
        return memcmp(&a->append_result, &b->append_result, sizeof(a->append_result)) ==
               0;
    case RAFT_MSG_VOTE:
        return a->vote.term == b->vote.term && a->vote.last_index == b->vote.last_index &&
               a->vote.last_term == b->vote.last_term &&
               a->vote.pre_vote == b->vote.pre_vote && a->vote.disrupt == b->vote.disrupt;
    case RAFT_MSG_VOTE_RESULT:
        return a->vote_result.term == b->vote_result.term &&
               a->vote_result.granted == b->vote_result.granted &&
               a->vote_result.pre_vote == b->vote_result.pre_vote;
    case RAFT_MSG_SNAPSHOT_RESULT:
        return a->snapshot_result.term == b->snapshot_result.term &&
               a->snapshot_result.last_index == b->snapshot_result.last_index &&
               a->snapshot_result.next_offset == b->snapshot_result.next_offset &&
               a->snapshot_result.rejected == b->snapshot_result.rejected;
    case RAFT_MSG_TIMEOUT_NOW:
        return memcmp(&a->timeout_now, &b->timeout_now, sizeof(a->timeout_now)) == 0;
    default:
        return false;
    }
}

/* Decode a raft message body; on success, re-encode, compare and decode again. */
static void fuzz_body(const uint8_t *body, size_t len)
{
    struct raft_message m;
    if (raft_msg_decode(body, len, &m) != 0) {
        return;
    }
    struct cm_buf out = {0};
    int rv = raft_msg_encode(&m, &out);
    if (rv == CM_ENOMEM) {
        raft_msg_close(&m);
        return;
    }
    check(rv == 0);
    uint8_t channel;
    const void *body2;
    size_t len2;
    check(raft_frame_decode(out.data, out.len, &channel, &body2, &len2) == 0);
    check(channel == RAFT_CHANNEL_RAFT);
    check(len2 == len && memcmp(body2, body, len) == 0);
    struct raft_message m2;
    rv = raft_msg_decode(body2, len2, &m2);
    if (rv == 0) {
        check(msg_eq(&m, &m2));
        raft_msg_close(&m2);
    } else {
        check(rv == CM_ENOMEM);
    }
    cm_buf_done(&out);
    raft_msg_close(&m);
}

static void fuzz_frame(const uint8_t *data, size_t size)
{
    uint8_t channel;
    uint32_t blen;
    int rv = raft_frame_header(data, size, &channel, &blen);
    if (rv != 0) {
        check(rv == CM_ETRUNC || rv == CM_EPROTO || rv == CM_EMALFORMED ||
              rv == CM_ETOOBIG);
        return;
    }
    check(blen <= RAFT_FRAME_MAX && channel <= RAFT_CHANNEL_JOIN);
    const void *body;
    size_t len;
    if (raft_frame_decode(data, size, &channel, &body, &len) != 0) {
        return;
    }
    check(len == blen && (const uint8_t *)body == data + RAFT_FRAME_HEADER);
    if (channel == RAFT_CHANNEL_HELLO) {
        raft_id id;
        uint64_t cluster;
        if (raft_hello_decode(body, len, &id, &cluster) == 0) {
            struct cm_buf out = {0};
            if (raft_hello_encode(id, cluster, &out) == 0) {
                check(out.len == size && memcmp(out.data, data, size) == 0);
            }
            cm_buf_done(&out);
        }
    } else if (channel == RAFT_CHANNEL_RAFT) {
        fuzz_body(body, len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_frame(data, size);
    fuzz_body(data, size);
    return 0;
}
