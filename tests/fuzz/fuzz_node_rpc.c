/* Fuzz the node RPC and JOIN body decoders (lib/node/rpc.c, join.c): bytes that
 * reach a node from its peers (RPC) and from unauthenticated joining clients
 * (JOIN request) or a pinned member (JOIN reply). Whatever decodes must encode
 * again and decode to the same fields. */
#include <stdlib.h>

#include "fuzz.h"
#include "node/cluster_int.h"

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void rpc(const uint8_t *data, size_t size)
{
    struct cm_rpc_msg m;
    if (cm_rpc_decode(data, size, &m) != 0) {
        return;
    }
    struct cm_buf b = {0};
    check(cm_rpc_encode(&m, &b) == 0);
    struct cm_rpc_msg d;
    check(cm_rpc_decode(b.data, b.len, &d) == 0);
    check(d.type == m.type && d.id == m.id && d.raft_id == m.raft_id);
    check(m.type != CM_RPC_REPLY || (d.status == m.status && d.index == m.index &&
                                     str_eq(d.msg, m.msg) && str_eq(d.data, m.data)));
    check(m.type != CM_RPC_PROPOSE || str_eq(d.cmd, m.cmd));
    check(m.type != CM_RPC_HEARTBEAT || (str_eq(d.name, m.name) && d.at == m.at));
    cm_rpc_msg_done(&d);
    cm_rpc_msg_done(&m);
    cm_buf_done(&b);
}

static void join(const uint8_t *data, size_t size)
{
    struct cm_join_req q;
    if (cm_join_req_decode(data, size, &q) == 0) {
        struct cm_buf b = {0};
        check(cm_join_req_encode(&q, &b) == 0);
        struct cm_join_req d;
        check(cm_join_req_decode(b.data, b.len, &d) == 0);
        check(d.raft_id == q.raft_id && str_eq(d.name, q.name) &&
              str_eq(d.address, q.address) && str_eq(d.csr, q.csr) &&
              str_eq(d.secret, q.secret));
        cm_join_req_done(&d);
        cm_join_req_done(&q);
        cm_buf_done(&b);
    }
    struct cm_join_reply r;
    if (cm_join_reply_decode(data, size, &r) == 0) {
        struct cm_buf b = {0};
        int rv = cm_join_reply_encode(&r, &b);
        check(rv == 0 || rv == CM_ETOOBIG);
        if (rv == 0) {
            struct cm_join_reply d;
            check(cm_join_reply_decode(b.data, b.len, &d) == 0);
            check(d.status == r.status && d.cluster_id == r.cluster_id &&
                  d.n_members == r.n_members && str_eq(d.cert, r.cert));
            cm_join_reply_done(&d);
        }
        cm_join_reply_done(&r);
        cm_buf_done(&b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rpc(data, size);
    join(data, size);
    return 0;
}
