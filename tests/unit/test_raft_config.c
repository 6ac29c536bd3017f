/* Unit tests for raft/config.c: membership configurations and their encoding. */
#include <stdlib.h>

#include "base/base.h"
#include "raft/raft.h"
#include "test.h"

TEST(config_add_remove_get)
{
    struct raft_config c = {0, NULL};
    ASSERT_OK(raft_config_add(&c, 1, "10.0.0.1:7000", RAFT_VOTER));
    ASSERT_OK(raft_config_add(&c, 2, "10.0.0.2:7000", RAFT_LEARNER));
    ASSERT_OK(raft_config_add(&c, 3, "10.0.0.3:7000", RAFT_VOTER));
    ASSERT_UINT_EQ(c.n, 3);
    ASSERT_UINT_EQ(raft_config_voter_count(&c), 2);
    ASSERT_ERR(raft_config_add(&c, 2, "10.0.0.9:7000", RAFT_VOTER), CM_EEXIST);
    ASSERT_ERR(raft_config_add(&c, 9, "10.0.0.1:7000", RAFT_VOTER), CM_EEXIST);
    ASSERT_ERR(raft_config_add(&c, 0, "x", RAFT_VOTER), CM_EINVAL);
    ASSERT_ERR(raft_config_add(&c, 9, "x", (enum raft_member_role)7), CM_EINVAL);
    char longaddr[RAFT_ADDRESS_MAX + 1];
    memset(longaddr, 'a', sizeof longaddr - 1);
    longaddr[RAFT_ADDRESS_MAX] = '\0';
    ASSERT_ERR(raft_config_add(&c, 9, longaddr, RAFT_VOTER), CM_EINVAL);
    longaddr[RAFT_ADDRESS_MAX - 1] = '\0';
    ASSERT_OK(raft_config_add(&c, 9, longaddr, RAFT_VOTER));
    ASSERT_STR_EQ(raft_config_get(&c, 2)->address, "10.0.0.2:7000");
    ASSERT_NULL(raft_config_get(&c, 4));
    ASSERT_OK(raft_config_remove(&c, 2));
    ASSERT_ERR(raft_config_remove(&c, 2), CM_ENOTFOUND);
    ASSERT_NULL(raft_config_get(&c, 2));
    ASSERT_UINT_EQ(c.n, 3);
    raft_config_close(&c);
    ASSERT_UINT_EQ(c.n, 0);
    raft_config_close(&c);
}

TEST(config_encode_roundtrip)
{
    struct raft_config c = {0, NULL};
    ASSERT_OK(raft_config_add(&c, 1, "a:1", RAFT_VOTER));
    ASSERT_OK(raft_config_add(&c, 0x0102030405060708ull, "", RAFT_LEARNER));
    struct raft_buffer buf;
    ASSERT_OK(raft_config_encode(&c, &buf));
    ASSERT_UINT_EQ(buf.len, 1 + 4 + 11 + 3 + 11);
    const uint8_t *p = buf.base;
    ASSERT_UINT_EQ(p[0], 1);
    ASSERT_UINT_EQ(p[4], 2);
    struct raft_config d;
    ASSERT_OK(raft_config_decode(buf.base, buf.len, &d));
    ASSERT_UINT_EQ(d.n, 2);
    ASSERT_UINT_EQ(d.servers[1].id, 0x0102030405060708ull);
    ASSERT_UINT_EQ(d.servers[1].role, RAFT_LEARNER);
    ASSERT_STR_EQ(d.servers[0].address, "a:1");
    /* Every truncation is rejected. */
    for (size_t i = 0; i < buf.len; i++) {
        struct raft_config e = {0, NULL};
        ASSERT_TRUE(raft_config_decode(buf.base, i, &e) < 0);
        ASSERT_NULL(e.servers);
    }
    raft_config_close(&d);
    cm_free(&buf.base);
    raft_config_close(&c);

    struct raft_config empty = {0, NULL};
    ASSERT_OK(raft_config_encode(&empty, &buf));
    ASSERT_OK(raft_config_decode(buf.base, buf.len, &d));
    ASSERT_UINT_EQ(d.n, 0);
    cm_free(&buf.base);
}

struct decode_case {
    const char *name;
    uint8_t bytes[64];
    size_t len;
    int want;
};

TEST(config_decode_malformed)
{
    static const struct decode_case cases[] = {
        {"empty", {0}, 0, CM_ETRUNC},
        {"bad version", {2, 0, 0, 0, 0}, 5, CM_EMALFORMED},
        {"huge count", {1, 0xff, 0xff, 0xff, 0xff}, 5, CM_ETRUNC},
        {"count > bytes",
         {1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0},
         16,
         CM_ETRUNC},
        {"id 0", {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, 16, CM_EMALFORMED},
        {"bad role", {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 0}, 16, CM_EMALFORMED},
        {"addr too long",
         {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 64},
         16,
         CM_ETOOBIG},
        {"addr truncated",
         {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 'a'},
         17,
         CM_ETRUNC},
        {"nul in addr",
         {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 'a', 0},
         18,
         CM_EMALFORMED},
        {"trailing",
         {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 9},
         17,
         CM_EMALFORMED},
        {"duplicate",
         {1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1,
          0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0},
         27,
         CM_EMALFORMED},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct raft_config c = {0, NULL};
        int rv = raft_config_decode(cases[i].bytes, cases[i].len, &c);
        if (rv != cases[i].want) {
            test__fail(__FILE__, __LINE__, "%s: got %d want %d", cases[i].name, rv,
                       cases[i].want);
        }
        ASSERT_NULL(c.servers);
    }
}

static int copy_encode_fn(void *arg)
{
    const struct raft_config *c = arg;
    struct raft_config d = {0, NULL};
    struct raft_buffer buf;
    int rv = raft_config_copy(c, &d);
    if (rv != 0) {
        return rv;
    }
    rv = raft_config_encode(&d, &buf);
    if (rv != 0) {
        raft_config_close(&d);
        return rv;
    }
    struct raft_config e;
    rv = raft_config_decode(buf.base, buf.len, &e);
    cm_free(&buf.base);
    raft_config_close(&d);
    if (rv != 0) {
        return rv;
    }
    raft_config_close(&e);
    return 0;
}

TEST(config_oom)
{
    struct raft_config c = {0, NULL};
    ASSERT_OK(raft_config_add(&c, 1, "a:1", RAFT_VOTER));
    ASSERT_OK(raft_config_add(&c, 2, "b:1", RAFT_VOTER));
    ASSERT_INT_EQ(test_alloc_walk(copy_encode_fn, &c), 3);
    raft_config_close(&c);
}

TEST(config_bootstrap_entry)
{
    struct raft_config c = {0, NULL};
    ASSERT_OK(raft_config_add(&c, 1, "a:1", RAFT_VOTER));
    struct raft_entry e;
    ASSERT_OK(raft_bootstrap_entry(&c, &e));
    ASSERT_UINT_EQ(e.term, 1);
    ASSERT_UINT_EQ(e.type, RAFT_CHANGE);
    struct raft_config d;
    ASSERT_OK(raft_config_decode(e.buf.base, e.buf.len, &d));
    ASSERT_UINT_EQ(d.n, 1);
    raft_config_close(&d);
    cm_free(&e.buf.base);
    raft_config_close(&c);
}
