/* Node RPC and JOIN codecs (lib/node/rpc.c, join.c): round trips, strictness on
 * bad input, version and size checks. */
#include <stdlib.h>

#include "node/cluster_int.h"
#include "raft/raft.h"
#include "test.h"

static void roundtrip(const struct cm_rpc_msg *m, struct cm_rpc_msg *out)
{
    struct cm_buf b = {0};
    ASSERT_OK(cm_rpc_encode(m, &b));
    ASSERT_OK(cm_rpc_decode(b.data, b.len, out));
    cm_buf_done(&b);
}

TEST(rpc_roundtrip_every_type)
{
    struct cm_rpc_msg m, d;
    m = (struct cm_rpc_msg){.type = CM_RPC_PROPOSE,
                            .id = 7,
                            .cmd = "{\"type\":\"app.put\",\"x\":\"\\u00e9\\n\"}"};
    roundtrip(&m, &d);
    ASSERT_INT_EQ(d.type, CM_RPC_PROPOSE);
    ASSERT_UINT_EQ(d.id, 7);
    ASSERT_STR_EQ(d.cmd, m.cmd);
    cm_rpc_msg_done(&d);

    m = (struct cm_rpc_msg){.type = CM_RPC_REPLY,
                            .id = UINT64_C(0x7fffffffffffffff),
                            .status = CM_EVALIDATION,
                            .index = UINT64_C(1) << 60,
                            .msg = "instances: must be >= 0",
                            .data = "[1,2]"};
    roundtrip(&m, &d);
    ASSERT_INT_EQ(d.type, CM_RPC_REPLY);
    ASSERT_UINT_EQ(d.id, UINT64_C(0x7fffffffffffffff)); /* beyond 2^53: a string */
    ASSERT_INT_EQ(d.status, CM_EVALIDATION);
    ASSERT_UINT_EQ(d.index, UINT64_C(1) << 60);
    ASSERT_STR_EQ(d.msg, "instances: must be >= 0");
    ASSERT_STR_EQ(d.data, "[1,2]");
    cm_rpc_msg_done(&d);

    m = (struct cm_rpc_msg){.type = CM_RPC_HEARTBEAT,
                            .name = "n1",
                            .raft_id = 0x1234,
                            .at = 1700000000000,
                            .http = "127.0.0.1:7070"};
    roundtrip(&m, &d);
    ASSERT_INT_EQ(d.type, CM_RPC_HEARTBEAT);
    ASSERT_UINT_EQ(d.id, 0);
    ASSERT_STR_EQ(d.name, "n1");
    ASSERT_UINT_EQ(d.raft_id, 0x1234);
    ASSERT_INT_EQ(d.at, 1700000000000);
    ASSERT_STR_EQ(d.http, "127.0.0.1:7070");
    cm_rpc_msg_done(&d);

    m = (struct cm_rpc_msg){.type = CM_RPC_ADD_LEARNER,
                            .id = 3,
                            .name = "n4",
                            .raft_id = 99,
                            .address = "10.0.0.4:7071"};
    roundtrip(&m, &d);
    ASSERT_STR_EQ(d.address, "10.0.0.4:7071");
    ASSERT_UINT_EQ(d.raft_id, 99);
    cm_rpc_msg_done(&d);

    m = (struct cm_rpc_msg){.type = CM_RPC_READ_INDEX, .id = 1};
    roundtrip(&m, &d);
    ASSERT_INT_EQ(d.type, CM_RPC_READ_INDEX);
    cm_rpc_msg_done(&d);
    ASSERT_STR_EQ(cm_rpc_type_name(CM_RPC_HEARTBEAT), "heartbeat");
    ASSERT_STR_EQ(cm_rpc_type_name((enum cm_rpc_type)42), "?");
}

TEST(rpc_refuses_bad_bodies)
{
    static const struct {
        const char *body;
        int err;
    } bad[] = {
        {"", CM_EMALFORMED},
        {"not json", CM_EMALFORMED},
        {"[]", CM_EMALFORMED},
        {"{\"t\":\"propose\",\"cmd\":\"x\"}", CM_EMALFORMED}, /* no version */
        {"{\"v\":2,\"t\":\"propose\",\"cmd\":\"x\"}", CM_EPROTO},
        {"{\"v\":1,\"t\":\"nope\"}", CM_EUNSUPPORTED},
        {"{\"v\":1,\"t\":\"propose\"}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"propose\",\"cmd\":5}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"reply\",\"id\":-1}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"reply\",\"id\":1.5}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"reply\",\"id\":\"12x\"}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"reply\",\"id\":\"99999999999999999999999\"}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"reply\",\"status\":5}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"heartbeat\",\"name\":\"a\"}", CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"add_learner\",\"name\":\"a\",\"raft_id\":0,\"address\":\"x:"
         "1\"}",
         CM_EMALFORMED},
        {"{\"v\":1,\"t\":\"add_learner\",\"name\":\"a\",\"raft_id\":5,\"address\":\"\"}",
         CM_EMALFORMED},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        struct cm_rpc_msg m;
        int rv = cm_rpc_decode(bad[i].body, strlen(bad[i].body), &m);
        if (rv != bad[i].err) {
            test__fail(__FILE__, __LINE__, "'%s': got %s, want %s", bad[i].body,
                       cm_errname(rv), cm_errname(bad[i].err));
        }
        ASSERT_NULL(m.doc);
    }
    /* Unknown fields are ignored (a newer node may add some). */
    struct cm_rpc_msg m;
    const char *ok = "{\"v\":1,\"t\":\"read_index\",\"id\":4,\"future\":[1]}";
    ASSERT_OK(cm_rpc_decode(ok, strlen(ok), &m));
    ASSERT_UINT_EQ(m.id, 4);
    cm_rpc_msg_done(&m);
    ASSERT_ERR(cm_rpc_decode(ok, CM_RPC_MAX_BODY + 1, &m), CM_ETOOBIG);
}

TEST(join_roundtrip)
{
    struct cm_join_req q = {.secret = "00112233445566778899aabbccddeeff",
                            .name = "node-2",
                            .raft_id = UINT64_C(0x7edcba9876543210),
                            .address = "127.0.0.1:7171",
                            .csr = "-----BEGIN CERTIFICATE REQUEST-----\nAA==\n"};
    struct cm_buf b = {0};
    ASSERT_OK(cm_join_req_encode(&q, &b));
    struct cm_join_req dq;
    ASSERT_OK(cm_join_req_decode(b.data, b.len, &dq));
    ASSERT_STR_EQ(dq.secret, q.secret);
    ASSERT_STR_EQ(dq.name, q.name);
    ASSERT_UINT_EQ(dq.raft_id, q.raft_id);
    ASSERT_STR_EQ(dq.address, q.address);
    ASSERT_STR_EQ(dq.csr, q.csr);
    cm_join_req_done(&dq);
    cm_buf_clear(&b);

    struct cm_join_reply r = {.status = 0,
                              .cluster_id = UINT64_C(0xfedcba9876543210),
                              .ca = "CA",
                              .ca_key = "KEY",
                              .cert = "CERT",
                              .secret = "s",
                              .n_members = 2};
    r.members[0] = (struct cm_join_member){1, "127.0.0.1:7071"};
    r.members[1] = (struct cm_join_member){0xabc, "[::1]:7071"};
    ASSERT_OK(cm_join_reply_encode(&r, &b));
    struct cm_join_reply dr;
    ASSERT_OK(cm_join_reply_decode(b.data, b.len, &dr));
    ASSERT_INT_EQ(dr.status, 0);
    ASSERT_UINT_EQ(dr.cluster_id, r.cluster_id);
    ASSERT_STR_EQ(dr.ca, "CA");
    ASSERT_STR_EQ(dr.ca_key, "KEY");
    ASSERT_STR_EQ(dr.cert, "CERT");
    ASSERT_UINT_EQ(dr.n_members, 2);
    ASSERT_UINT_EQ(dr.members[1].id, 0xabc);
    ASSERT_STR_EQ(dr.members[1].address, "[::1]:7071");
    cm_join_reply_done(&dr);
    cm_buf_clear(&b);

    /* A refusal carries only the status and why. */
    struct cm_join_reply no = {.status = CM_EPERM,
                               .msg = "the join token's secret is wrong"};
    ASSERT_OK(cm_join_reply_encode(&no, &b));
    ASSERT_OK(cm_join_reply_decode(b.data, b.len, &dr));
    ASSERT_INT_EQ(dr.status, CM_EPERM);
    ASSERT_STR_EQ(dr.msg, no.msg);
    ASSERT_NULL(dr.ca);
    cm_join_reply_done(&dr);
    cm_buf_done(&b);
}

TEST(join_refuses_bad_bodies)
{
    static const char *const bad_req[] = {
        "{}",
        "{\"v\":1}",
        "{\"v\":2,\"secret\":\"s\",\"name\":\"n\",\"raft_id\":\"1\",\"address\":\"a:1\","
        "\"csr\":\"c\"}",
        "{\"v\":1,\"secret\":\"s\",\"name\":\"n\",\"raft_id\":\"0\",\"address\":\"a:1\","
        "\"csr\":\"c\"}",
        "{\"v\":1,\"secret\":\"s\",\"name\":\"n\",\"raft_id\":\"XY\",\"address\":\"a:1\","
        "\"csr\":\"c\"}",
        "{\"v\":1,\"secret\":\"s\",\"name\":\"\",\"raft_id\":\"1\",\"address\":\"a:1\","
        "\"csr\":\"c\"}",
        "{\"v\":1,\"secret\":\"s\",\"name\":\"n\",\"raft_id\":\"1\",\"address\":\"a:1\"}",
        "{\"v\":1,\"secret\":\"s\",\"name\":\"n\",\"raft_id\":\"11111111111111111\","
        "\"address\":\"a:1\",\"csr\":\"c\"}",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad_req); i++) {
        struct cm_join_req q;
        if (cm_join_req_decode(bad_req[i], strlen(bad_req[i]), &q) == 0) {
            test__fail(__FILE__, __LINE__, "accepted '%s'", bad_req[i]);
        }
    }
    static const char *const bad_reply[] = {
        "{\"v\":1}",
        "{\"v\":1,\"status\":3}",
        "{\"v\":1,\"status\":0}",
        "{\"v\":1,\"status\":0,\"cluster_id\":\"1\",\"ca\":\"a\",\"ca_key\":\"b\","
        "\"cert\":\"c\",\"secret\":\"s\"}",
        "{\"v\":1,\"status\":0,\"cluster_id\":\"1\",\"ca\":\"a\",\"ca_key\":\"b\","
        "\"cert\":\"c\",\"secret\":\"s\",\"members\":[{\"id\":\"0\",\"address\":\"x\"}]}",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad_reply); i++) {
        struct cm_join_reply r;
        if (cm_join_reply_decode(bad_reply[i], strlen(bad_reply[i]), &r) == 0) {
            test__fail(__FILE__, __LINE__, "accepted '%s'", bad_reply[i]);
        }
    }
    struct cm_join_reply r;
    ASSERT_ERR(cm_join_reply_decode("{}", RAFT_JOIN_MAX + 1, &r), CM_ETOOBIG);
}
