/* lb/: VIP table snapshots, power-of-two choices, publication (nat: test_lb_nat.c). */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/base.h"
#include "lb/lb.h"
#include "test.h"

static struct lb_endpoint ep(const char *s)
{
    struct lb_endpoint e;
    ASSERT_OK(lb_endpoint_parse(s, &e));
    return e;
}

static struct lb_backend_spec be(const char *s, uint32_t w)
{
    return (struct lb_backend_spec){.ep = ep(s), .weight = w};
}

TEST(table_sorted_find)
{
    struct lb_backend_spec b1[] = {be("10.0.0.1:8080", 1), be("10.0.0.2:8080", 1)};
    struct lb_vip_spec v[] = {
        {.vip = ep("198.18.0.9:80"), .name = "web", .backends = b1, .nbackends = 2},
        {.vip = ep("198.18.0.1:443"), .backends = b1, .nbackends = 1},
        {.vip = ep("198.18.0.1:80"), .proto = LB_PROTO_UDP},
        {.vip = ep("198.18.0.1:80"), .proto = LB_PROTO_TCP, .mode = LB_MODE_PROXY},
    };
    struct lb_table *t;
    ASSERT_OK(lb_table_new(v, 4, NULL, &t, NULL));
    ASSERT_UINT_EQ(lb_table_count(t), 4);
    char s[LB_ENDPOINT_STRLEN];
    ASSERT_STR_EQ(lb_endpoint_str(lb_table_at(t, 0)->vip, s), "198.18.0.1:80");
    ASSERT_INT_EQ(lb_table_at(t, 0)->proto, LB_PROTO_TCP);
    ASSERT_INT_EQ(lb_table_at(t, 1)->proto, LB_PROTO_UDP);
    ASSERT_STR_EQ(lb_endpoint_str(lb_table_at(t, 2)->vip, s), "198.18.0.1:443");
    ASSERT_STR_EQ(lb_endpoint_str(lb_table_at(t, 3)->vip, s), "198.18.0.9:80");
    ASSERT_NULL(lb_table_at(t, 4));
    const struct lb_vip *w = lb_table_find(t, ep("198.18.0.9:80"), LB_PROTO_TCP);
    ASSERT_NOT_NULL(w);
    ASSERT_STR_EQ(w->name, "web");
    ASSERT_UINT_EQ(w->nbackends, 2);
    ASSERT_UINT_EQ(w->neligible, 2);
    ASSERT_NULL(lb_table_find(t, ep("198.18.0.9:80"), LB_PROTO_UDP));
    ASSERT_NULL(lb_table_find(t, ep("198.18.0.2:80"), LB_PROTO_TCP));
    ASSERT_STR_EQ(lb_table_find(t, ep("198.18.0.1:443"), LB_PROTO_TCP)->name, "");
    lb_table_unref(t);
}

TEST(table_errors)
{
    struct lb_backend_spec dup[] = {be("10.0.0.1:1", 1), be("10.0.0.1:1", 1)};
    struct lb_backend_spec heavy[] = {be("10.0.0.1:1", 1001)};
    struct lb_table *t = NULL;
    struct cm_errbuf eb = {0};
    struct lb_vip_spec v1[] = {{.vip = ep("1.1.1.1:1"), .backends = dup, .nbackends = 2}};
    ASSERT_ERR(lb_table_new(v1, 1, NULL, &t, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "VIP 1.1.1.1:1: backend 10.0.0.1:1 listed twice");
    struct lb_vip_spec v2[] = {
        {.vip = ep("1.1.1.1:1"), .backends = heavy, .nbackends = 1}};
    ASSERT_ERR(lb_table_new(v2, 1, NULL, &t, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "VIP 1.1.1.1:1: backend 10.0.0.1:1: weight above 1000");
    struct lb_vip_spec v3[] = {{.vip = ep("1.1.1.1:1")}, {.vip = ep("1.1.1.1:1")}};
    ASSERT_ERR(lb_table_new(v3, 2, NULL, &t, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "VIP 1.1.1.1:1/tcp listed twice");
    struct lb_vip_spec v4[] = {
        {.vip = ep("1.1.1.1:1"), .mode = LB_MODE_NAT, .proxy_protocol = true}};
    ASSERT_ERR(lb_table_new(v4, 1, NULL, &t, &eb), CM_EINVAL);
    ASSERT_STR_EQ(eb.msg, "VIP 1.1.1.1:1: PROXY protocol needs mode proxy and TCP");
    struct lb_vip_spec v5[] = {
        {.vip = ep("1.1.1.1:1"), .nbackends = LB_MAX_BACKENDS + 1}};
    ASSERT_ERR(lb_table_new(v5, 1, NULL, &t, &eb), CM_ETOOBIG);
    ASSERT_NULL(t);
    /* An empty table is fine. */
    ASSERT_OK(lb_table_new(NULL, 0, NULL, &t, &eb));
    ASSERT_UINT_EQ(lb_table_count(t), 0);
    lb_table_unref(t);
}

TEST(eligibility)
{
    struct lb_backend_spec b[] = {be("10.0.0.1:1", 1), be("10.0.0.2:1", 0),
                                  be("10.0.0.3:1", 3), be("10.0.0.4:1", 1)};
    b[3].draining = true;
    struct lb_vip_spec v = {.vip = ep("1.1.1.1:1"), .backends = b, .nbackends = 4};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(&v, 1, NULL, &t, NULL));
    const struct lb_vip *vip = lb_table_at(t, 0);
    ASSERT_UINT_EQ(vip->neligible, 2);
    ASSERT_UINT_EQ(vip->eligible[0], 0);
    ASSERT_UINT_EQ(vip->eligible[1], 2);
    ASSERT_UINT_EQ(vip->total_weight, 4);
    ASSERT_TRUE(vip->backends[3].draining);
    ASSERT_FALSE(vip->backends[3].eligible);
    struct cm_rng rng;
    cm_rng_seed(&rng, 1);
    for (int i = 0; i < 1000; i++) {
        int k = lb_choose(vip, &rng, NULL, 0);
        ASSERT_TRUE(k == 0 || k == 2);
    }
    lb_table_unref(t);
}

/* With equal loads the choice is uniform; the load is what the caller counts. */
TEST(p2c_uniform_without_load)
{
    struct lb_backend_spec b[4] = {be("10.0.0.1:1", 1), be("10.0.0.2:1", 1),
                                   be("10.0.0.3:1", 1), be("10.0.0.4:1", 1)};
    struct lb_vip_spec v = {.vip = ep("1.1.1.1:1"), .backends = b, .nbackends = 4};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(&v, 1, NULL, &t, NULL));
    const struct lb_vip *vip = lb_table_at(t, 0);
    struct cm_rng rng;
    cm_rng_seed(&rng, 42);
    int hits[4] = {0};
    for (int i = 0; i < 40000; i++) {
        hits[lb_choose(vip, &rng, NULL, 0)]++;
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_INT_OP(hits[i], >, 9000);
        ASSERT_INT_OP(hits[i], <, 11000);
    }
    lb_table_unref(t);
}

/* Long-lived connections that are never closed: p2c keeps the counts within a small
 * spread of each other (max - min stays O(log log n)), where random choice drifts
 * by O(sqrt(n)). */
TEST(p2c_balances_open_connections)
{
    enum { N = 10, CONNS = 20000 };
    struct lb_backend_spec b[N];
    char name[N][24];
    for (int i = 0; i < N; i++) {
        snprintf(name[i], sizeof(name[i]), "10.0.0.%d:80", i + 1);
        b[i] = be(name[i], 1);
    }
    struct lb_vip_spec v = {.vip = ep("1.1.1.1:1"), .backends = b, .nbackends = N};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(&v, 1, NULL, &t, NULL));
    const struct lb_vip *vip = lb_table_at(t, 0);
    struct cm_rng rng;
    cm_rng_seed(&rng, 7);
    for (int i = 0; i < CONNS; i++) {
        lb_backend_conn_begin(&vip->backends[lb_choose(vip, &rng, NULL, 0)]);
    }
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < N; i++) {
        uint32_t a = lb_backend_active(&vip->backends[i]);
        lo = CM_MIN(lo, a);
        hi = CM_MAX(hi, a);
    }
    ASSERT_INT_OP(hi - lo, <=, 4);
    /* A loaded backend gets less: put 1000 on backend 0 and draw 1000 more. */
    for (int i = 0; i < 1000; i++) {
        lb_backend_conn_begin(&vip->backends[0]);
    }
    uint32_t before0 = lb_backend_active(&vip->backends[0]);
    for (int i = 0; i < 1000; i++) {
        lb_backend_conn_begin(&vip->backends[lb_choose(vip, &rng, NULL, 0)]);
    }
    ASSERT_UINT_EQ(lb_backend_active(&vip->backends[0]), before0);
    uint64_t conns;
    ASSERT_OK(lb_table_backend_conns(t, ep("10.0.0.1:80"), &conns));
    ASSERT_UINT_EQ(conns, before0);
    ASSERT_ERR(lb_table_backend_conns(t, ep("10.0.0.99:80"), &conns), CM_ENOTFOUND);
    lb_table_unref(t);
}

TEST(p2c_weights)
{
    struct lb_backend_spec b[2] = {be("10.0.0.1:1", 3), be("10.0.0.2:1", 1)};
    struct lb_vip_spec v = {.vip = ep("1.1.1.1:1"), .backends = b, .nbackends = 2};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(&v, 1, NULL, &t, NULL));
    const struct lb_vip *vip = lb_table_at(t, 0);
    struct cm_rng rng;
    cm_rng_seed(&rng, 3);
    for (int i = 0; i < 4000; i++) {
        lb_backend_conn_begin(&vip->backends[lb_choose(vip, &rng, NULL, 0)]);
    }
    /* Open connections end up in proportion to the weights: 3000 / 1000. */
    ASSERT_INT_OP(lb_backend_active(&vip->backends[0]), >=, 2990);
    ASSERT_INT_OP(lb_backend_active(&vip->backends[0]), <=, 3010);
    lb_table_unref(t);
}

TEST(choose_exclude)
{
    struct lb_backend_spec b[3] = {be("10.0.0.1:1", 1), be("10.0.0.2:1", 1),
                                   be("10.0.0.3:1", 1)};
    struct lb_vip_spec v = {.vip = ep("1.1.1.1:1"), .backends = b, .nbackends = 3};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(&v, 1, NULL, &t, NULL));
    const struct lb_vip *vip = lb_table_at(t, 0);
    struct cm_rng rng;
    cm_rng_seed(&rng, 9);
    uint32_t ex[] = {0, 2};
    for (int i = 0; i < 100; i++) {
        ASSERT_INT_EQ(lb_choose(vip, &rng, ex, 2), 1);
        int k = lb_choose(vip, &rng, ex, 1);
        ASSERT_TRUE(k == 1 || k == 2);
    }
    uint32_t all[] = {0, 1, 2};
    ASSERT_ERR(lb_choose(vip, &rng, all, 3), CM_ENOTFOUND);
    lb_table_unref(t);

    struct lb_vip_spec none = {.vip = ep("1.1.1.1:1")};
    ASSERT_OK(lb_table_new(&none, 1, NULL, &t, NULL));
    ASSERT_ERR(lb_choose(lb_table_at(t, 0), &rng, NULL, 0), CM_ENOTFOUND);
    lb_table_unref(t);
}

/* A new generation inherits load counters and metrics of what it keeps. */
TEST(snapshot_refcount_and_inheritance)
{
    struct lb_backend_spec b[2] = {be("10.0.0.1:1", 1), be("10.0.0.2:1", 1)};
    struct lb_vip_spec v = {.vip = ep("1.1.1.1:1"), .backends = b, .nbackends = 2};
    struct lb_table *t1, *t2, *t3;
    ASSERT_OK(lb_table_new(&v, 1, NULL, &t1, NULL));
    const struct lb_vip *v1 = lb_table_at(t1, 0);
    lb_backend_conn_begin(&v1->backends[0]);
    lb_backend_conn_begin(&v1->backends[0]);
    lb_backend_conn_begin(&v1->backends[1]);

    /* Generation 2: backend 1 draining, backend 3 new. */
    struct lb_backend_spec b2[3] = {be("10.0.0.2:1", 1), be("10.0.0.1:1", 1),
                                    be("10.0.0.3:1", 1)};
    b2[1].draining = true;
    v.backends = b2;
    v.nbackends = 3;
    ASSERT_OK(lb_table_new(&v, 1, t1, &t2, NULL));
    const struct lb_vip *v2 = lb_table_at(t2, 0);
    ASSERT_UINT_EQ(lb_backend_active(&v2->backends[0]), 1);
    ASSERT_UINT_EQ(lb_backend_active(&v2->backends[1]), 2);
    ASSERT_UINT_EQ(lb_backend_active(&v2->backends[2]), 0);
    uint64_t n;
    ASSERT_OK(lb_table_backend_conns(t2, ep("10.0.0.1:1"), &n));
    ASSERT_UINT_EQ(n, 2);

    /* A reader holding t1 (a proxy thread) keeps it valid after the writer drops it;
     * connections ending under t1 are seen through t2. */
    struct lb_table *held = lb_table_ref(t1);
    lb_table_unref(t1);
    lb_backend_conn_end(&lb_table_at(held, 0)->backends[0]);
    lb_backend_conn_end(&lb_table_at(held, 0)->backends[0]);
    ASSERT_OK(lb_table_backend_conns(t2, ep("10.0.0.1:1"), &n));
    ASSERT_UINT_EQ(n, 0); /* drained: the executor may kill it */
    lb_table_unref(held);

    /* Generation 3 without the VIP, then with it again: fresh counters. */
    ASSERT_OK(lb_table_new(NULL, 0, t2, &t3, NULL));
    lb_table_unref(t2);
    ASSERT_OK(lb_table_new(&v, 1, t3, &t2, NULL));
    ASSERT_UINT_EQ(lb_backend_active(&lb_table_at(t2, 0)->backends[0]), 0);
    struct lb_vip_metrics m;
    lb_vip_metrics_get(lb_table_at(t2, 0), &m);
    ASSERT_UINT_EQ(m.total, 0);
    lb_table_unref(t3);
    lb_table_unref(t2);
}

static int table_walk_fn(void *arg)
{
    (void)arg;
    struct lb_backend_spec b[2] = {be("10.0.0.1:1", 1), be("10.0.0.2:1", 1)};
    struct lb_vip_spec v[2] = {
        {.vip = ep("1.1.1.1:1"), .name = "a", .backends = b, .nbackends = 2},
        {.vip = ep("1.1.1.2:1"), .name = "b", .backends = b, .nbackends = 1},
    };
    struct lb_table *t1, *t2;
    int rv = lb_table_new(v, 2, NULL, &t1, NULL);
    if (rv != 0) {
        return rv;
    }
    rv = lb_table_new(v, 2, t1, &t2, NULL);
    lb_table_unref(t1);
    if (rv == 0) {
        lb_table_unref(t2);
    }
    return rv;
}

TEST(table_oom)
{
    ASSERT_INT_OP(test_alloc_walk(table_walk_fn, NULL), >=, 10);
}

struct slot_ctx {
    struct lb_slot *slot;
    int reads;
};

static void *reader(void *arg)
{
    struct slot_ctx *c = arg;
    for (int i = 0; i < 20000; i++) {
        struct lb_table *t = lb_slot_get(c->slot);
        if (t != NULL) {
            if (lb_table_count(t) == 1 && lb_table_at(t, 0)->vip.port == 1) {
                c->reads++;
            }
            lb_table_unref(t);
        }
    }
    return NULL;
}

/* Writers publish while readers take and drop references (run under ASan/TSan). */
TEST(slot_publish_concurrent)
{
    struct slot_ctx c = {0};
    ASSERT_OK(lb_slot_new(&c.slot));
    ASSERT_NULL(lb_slot_get(c.slot));
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        ASSERT_INT_EQ(pthread_create(&th[i], NULL, reader, &c), 0);
    }
    struct lb_vip_spec v = {.vip = ep("1.1.1.1:1")};
    struct lb_table *prev = NULL;
    for (int i = 0; i < 2000; i++) {
        struct lb_table *t;
        ASSERT_OK(lb_table_new(&v, 1, prev, &t, NULL));
        lb_table_unref(prev);
        prev = lb_table_ref(t);
        lb_slot_publish(c.slot, t);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    ASSERT_INT_OP(lb_slot_generation(c.slot), ==, 2000);
    lb_table_unref(prev);
    lb_slot_free(c.slot);
}
