/* lib/sched: constraints (Marathon's documented examples and every operator),
 * DRF (the paper's example, weights, quotas), reservations and
 * acceptedResourceRoles, ports, policies, node states, explanations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sched/sched.h"
#include "test.h"

#define GiB 1024

static struct sched *mk(enum sched_policy p, uint64_t seed)
{
    struct sched_options o = {.policy = p, .seed = seed};
    struct sched *s = sched_new(&o);
    if (s == NULL) {
        abort();
    }
    return s;
}

/* A node with @cpus (whole CPUs), @mem MiB, ports 31000-31009 and attributes
 * from "k=v,k=v" (may be NULL). */
static void node_st(struct sched *s, const char *id, uint64_t cpus, uint64_t mem,
                    const char *attrs, enum sched_node_state st)
{
    struct sched_attr a[8];
    char buf[256], *save = NULL;
    size_t n = 0;
    snprintf(buf, sizeof(buf), "%s", attrs ? attrs : "");
    for (char *kv = strtok_r(buf, ",", &save); kv && n < 8;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        *eq = '\0';
        a[n].key = kv;
        a[n++].value = eq + 1;
    }
    struct sched_port_range pr = {31000, 31009};
    struct sched_node nd = {
        .id = id,
        .state = st,
        .total = SCHED_RES(cpus * 1000, mem, 10000, 0),
        .attrs = a,
        .n_attrs = n,
        .port_ranges = &pr,
        .n_port_ranges = 1,
    };
    if (sched_node_upsert(s, &nd) != 0) {
        abort();
    }
}

static void node(struct sched *s, const char *id, uint64_t cpus, uint64_t mem,
                 const char *attrs)
{
    node_st(s, id, cpus, mem, attrs, SCHED_NODE_UP);
}

static struct sched_request req(const char *app, uint32_t count, uint64_t mcpus,
                                uint64_t mem)
{
    return (struct sched_request){
        .app = app, .count = count, .res = SCHED_RES(mcpus, mem, 0, 0)};
}

/* Placed count and the explanation text of the first unplaced entry. */
static size_t place(struct sched *s, const struct sched_request *r, size_t n,
                    struct sched_result *res, char *why, size_t cap)
{
    ASSERT_OK(sched_place(s, r, n, res));
    if (why != NULL) {
        why[0] = '\0';
        if (res->n_unplaced > 0) {
            sched_explain_text(&res->unplaced[0].explain, &r[res->unplaced[0].req], why,
                               cap);
        }
    }
    return res->n_assignments;
}

static size_t count_on(struct sched *s, const char *app, const char *node)
{
    return sched_task_count(s, app, node);
}

/* ------------------------------------------------------------------ constraints */

TEST(unique_hostname_marathon_example)
{
    /* Marathon docs: ["hostname", "UNIQUE"], 3 agents, 4 instances. */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 1);
    node(s, "a", 8, 8 * GiB, NULL);
    node(s, "b", 8, 8 * GiB, NULL);
    node(s, "c", 8, 8 * GiB, NULL);
    struct sched_constraint c[] = {{"hostname", "UNIQUE", NULL}};
    struct sched_request r = req("/app", 4, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 3);
    ASSERT_UINT_EQ(count_on(s, "/app", "a"), 1);
    ASSERT_UINT_EQ(count_on(s, "/app", "b"), 1);
    ASSERT_UINT_EQ(count_on(s, "/app", "c"), 1);
    ASSERT_UINT_EQ(res.n_unplaced, 1);
    ASSERT_UINT_EQ(res.unplaced[0].first, 3);
    ASSERT_UINT_EQ(res.unplaced[0].count, 1);
    ASSERT_UINT_EQ(res.unplaced[0].explain.constraint[0], 3);
    ASSERT_STR_EQ(why, "3 of 3 nodes fail hostname:UNIQUE");
    sched_result_done(&res);
    sched_free(s);
}

TEST(unique_attribute_counts_existing_tasks)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 2);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "c", 8, 8 * GiB, "rack_id=rack-2");
    struct sched_task t = {
        .id = "t0", .app = "/app", .node = "a", .res = SCHED_RES(100, 64, 0, 0)};
    ASSERT_OK(sched_task_add(s, &t));
    struct sched_constraint c[] = {{"rack_id", "unique", NULL}};
    struct sched_request r = req("/app", 2, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 1);
    ASSERT_STR_EQ(res.assignments[0].node_id, "c");
    ASSERT_STR_EQ(why, "3 of 3 nodes fail rack_id:unique");
    sched_result_done(&res);
    sched_free(s);
}

TEST(cluster_with_value_marathon_example)
{
    /* ["rack_id", "CLUSTER", "rack-1"] */
    struct sched *s = mk(SCHED_POLICY_SPREAD, 3);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-2");
    node(s, "c", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "d", 8, 8 * GiB, NULL);
    struct sched_constraint c[] = {{"rack_id", "CLUSTER", "rack-1"}};
    struct sched_request r = req("/app", 6, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 6);
    ASSERT_UINT_EQ(count_on(s, "/app", "a") + count_on(s, "/app", "c"), 6);
    ASSERT_UINT_EQ(count_on(s, "/app", "a"), 3); /* spread within the rack */
    sched_result_done(&res);
    sched_free(s);
}

TEST(cluster_without_value_follows_first)
{
    struct sched *s = mk(SCHED_POLICY_SPREAD, 4);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-2");
    node(s, "c", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "d", 8, 8 * GiB, "rack_id=rack-2");
    struct sched_constraint c[] = {{"rack_id", "CLUSTER", NULL}};
    struct sched_request r = req("/app", 5, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 5);
    size_t r1 = count_on(s, "/app", "a") + count_on(s, "/app", "c");
    size_t r2 = count_on(s, "/app", "b") + count_on(s, "/app", "d");
    ASSERT_TRUE((r1 == 5 && r2 == 0) || (r1 == 0 && r2 == 5));
    sched_result_done(&res);

    /* On hostname: every task on the first one's host. */
    struct sched_constraint h[] = {{"hostname", "CLUSTER", NULL}};
    r = req("/h", 4, 100, 64);
    r.constraints = h;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 4);
    const char *first = res.assignments[0].node_id;
    ASSERT_UINT_EQ(count_on(s, "/h", first), 4);
    sched_result_done(&res);

    /* With a hostname value. */
    struct sched_constraint hv[] = {{"hostname", "CLUSTER", "d"}};
    r = req("/hv", 2, 100, 64);
    r.constraints = hv;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 2);
    ASSERT_UINT_EQ(count_on(s, "/hv", "d"), 2);
    sched_result_done(&res);
    sched_free(s);
}

TEST(group_by_rack_marathon_example)
{
    /* ["rack_id", "GROUP_BY", "3"] over 3 racks: 6 instances => 2 per rack,
     * whatever the policy would prefer. */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 5);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-2");
    node(s, "c", 8, 8 * GiB, "rack_id=rack-3");
    node(s, "d", 8, 8 * GiB, "rack_id=rack-1");
    struct sched_constraint c[] = {{"rack_id", "GROUP_BY", "3"}};
    struct sched_request r = req("/app", 6, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 6);
    ASSERT_UINT_EQ(count_on(s, "/app", "a") + count_on(s, "/app", "d"), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "b"), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "c"), 2);
    sched_result_done(&res);

    /* Without a count, only the values seen are balanced (Marathon: "specify
     * the number of values"): binpack may stack on one rack, but once two racks
     * have tasks, neither gets ahead of the other by more than one. */
    struct sched_constraint nc[] = {{"rack_id", "GROUP_BY", NULL}};
    r = req("/nc", 4, 100, 64);
    r.constraints = nc;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 4);
    sched_result_done(&res);
    struct sched_task t = {
        .id = "seen", .app = "/nc2", .node = "b", .res = SCHED_RES(100, 64, 0, 0)};
    ASSERT_OK(sched_task_add(s, &t));
    t.id = "seen2";
    t.node = "c";
    ASSERT_OK(sched_task_add(s, &t));
    r.app = "/nc2";
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 4);
    size_t r1 = count_on(s, "/nc2", "a") + count_on(s, "/nc2", "d");
    size_t r2 = count_on(s, "/nc2", "b"), r3 = count_on(s, "/nc2", "c");
    ASSERT_UINT_EQ(r1 + r2 + r3, 6);
    if (r1 == 0) {
        ASSERT_UINT_EQ(r2, 3);
        ASSERT_UINT_EQ(r3, 3);
    } else {
        ASSERT_UINT_EQ(r1, 2);
        ASSERT_UINT_EQ(r2, 2);
        ASSERT_UINT_EQ(r3, 2);
    }
    sched_result_done(&res);
    sched_free(s);
}

TEST(group_by_count_waits_for_enough_values)
{
    /* ["rack_id", "GROUP_BY", "3"] with only 2 racks: after one task on each,
     * no rack may take a third (fewer than 3 groups). */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 6);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-2");
    struct sched_constraint c[] = {{"rack_id", "GROUP_BY", "3"}};
    struct sched_request r = req("/app", 3, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "a"), 1);
    ASSERT_UINT_EQ(count_on(s, "/app", "b"), 1);
    ASSERT_STR_EQ(why, "2 of 2 nodes fail rack_id:GROUP_BY:3");
    sched_result_done(&res);

    /* A third rack appears: it takes the next one, then all are even. */
    node(s, "c", 8, 8 * GiB, "rack_id=rack-3");
    r.count = 4;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 4);
    ASSERT_UINT_EQ(count_on(s, "/app", "a"), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "b"), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "c"), 2);
    sched_result_done(&res);
    sched_free(s);
}

TEST(group_by_rebalances_existing)
{
    /* Existing tasks 3 on rack-1, 1 on rack-2: new ones go to rack-2 until even
     * (a value with tasks must be among the smallest groups). */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 7);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-2");
    const char *ids[] = {"t1", "t2", "t3", "t4"};
    const char *on[] = {"a", "a", "a", "b"};
    for (int i = 0; i < 4; i++) {
        struct sched_task t = {
            .id = ids[i], .app = "/app", .node = on[i], .res = SCHED_RES(100, 64, 0, 0)};
        ASSERT_OK(sched_task_add(s, &t));
    }
    struct sched_constraint c[] = {{"rack_id", "GROUP_BY", NULL}};
    struct sched_request r = req("/app", 4, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 4);
    ASSERT_STR_EQ(res.assignments[0].node_id, "b");
    ASSERT_STR_EQ(res.assignments[1].node_id, "b");
    ASSERT_UINT_EQ(count_on(s, "/app", "a"), 4);
    ASSERT_UINT_EQ(count_on(s, "/app", "b"), 4);
    sched_result_done(&res);
    /* Removing tasks makes the index follow. */
    ASSERT_OK(sched_task_remove(s, "t1"));
    ASSERT_OK(sched_task_remove(s, "t2"));
    r.count = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    ASSERT_STR_EQ(res.assignments[0].node_id, "a");
    sched_result_done(&res);
    sched_free(s);
}

TEST(like_unlike_marathon_example)
{
    /* ["rack_id", "LIKE", "rack-[1-3]"] */
    struct sched *s = mk(SCHED_POLICY_SPREAD, 8);
    for (int i = 1; i <= 5; i++) {
        char id[8], attr[32];
        snprintf(id, sizeof(id), "n%d", i);
        snprintf(attr, sizeof(attr), "rack_id=rack-%d", i);
        node(s, id, 8, 8 * GiB, attr);
    }
    node(s, "bare", 8, 8 * GiB, NULL);
    struct sched_constraint c[] = {{"rack_id", "LIKE", "rack-[1-3]"}};
    struct sched_request r = req("/app", 9, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 9);
    ASSERT_UINT_EQ(count_on(s, "/app", "n1"), 3);
    ASSERT_UINT_EQ(count_on(s, "/app", "n2"), 3);
    ASSERT_UINT_EQ(count_on(s, "/app", "n3"), 3);
    sched_result_done(&res);

    /* Whole-value match: "rack" does not match "rack-1". */
    struct sched_constraint part[] = {{"rack_id", "LIKE", "rack"}};
    r = req("/part", 1, 100, 64);
    r.constraints = part;
    r.n_constraints = 1;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 0);
    ASSERT_STR_EQ(why, "6 of 6 nodes fail rack_id:LIKE:rack");
    sched_result_done(&res);

    /* UNLIKE: a node without the attribute matches. */
    struct sched_constraint un[] = {{"rack_id", "UNLIKE", "rack-[1-5]"}};
    r = req("/un", 2, 100, 64);
    r.constraints = un;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 2);
    ASSERT_UINT_EQ(count_on(s, "/un", "bare"), 2);
    sched_result_done(&res);

    /* LIKE on hostname. */
    struct sched_constraint hl[] = {{"hostname", "LIKE", "n[45]"}};
    r = req("/hl", 4, 100, 64);
    r.constraints = hl;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 4);
    ASSERT_UINT_EQ(count_on(s, "/hl", "n4") + count_on(s, "/hl", "n5"), 4);
    sched_result_done(&res);
    sched_free(s);
}

TEST(max_per_rack_marathon_example)
{
    /* ["rack_id", "MAX_PER", "2"] over 3 racks: 7 instances => 6 placed. */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 9);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-2");
    node(s, "c", 8, 8 * GiB, "rack_id=rack-3");
    node(s, "d", 8, 8 * GiB, "rack_id=rack-3");
    struct sched_constraint c[] = {{"rack_id", "MAX_PER", "2"}};
    struct sched_request r = req("/app", 7, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 6);
    ASSERT_UINT_EQ(count_on(s, "/app", "a"), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "b"), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "c") + count_on(s, "/app", "d"), 2);
    ASSERT_STR_EQ(why, "4 of 4 nodes fail rack_id:MAX_PER:2");
    sched_result_done(&res);

    /* MAX_PER on hostname. */
    struct sched_constraint h[] = {{"hostname", "MAX_PER", "1"}};
    r = req("/h", 5, 100, 64);
    r.constraints = h;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 4);
    sched_result_done(&res);
    sched_free(s);
}

TEST(is_operator_and_scalars)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 10);
    node(s, "a", 8, 8 * GiB, "rack_id=rack-1,ratio=0.80");
    node(s, "b", 8, 8 * GiB, "rack_id=rack-2,ratio=1.5");
    struct sched_constraint c[] = {{"rack_id", "IS", "rack-2"}};
    struct sched_request r = req("/app", 2, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 2);
    ASSERT_UINT_EQ(count_on(s, "/app", "b"), 2);
    sched_result_done(&res);

    /* Scalars compare in "0.###" form: 0.80 == 0.8 == 0.800. */
    struct sched_constraint sc[] = {{"ratio", "IS", "0.8"}};
    r = req("/sc", 1, 100, 64);
    r.constraints = sc;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    ASSERT_STR_EQ(res.assignments[0].node_id, "a");
    sched_result_done(&res);
    struct sched_constraint sc2[] = {{"ratio", "IS", "1.500"}};
    r.app = "/sc2";
    r.constraints = sc2;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    ASSERT_STR_EQ(res.assignments[0].node_id, "b");
    sched_result_done(&res);

    /* IS on hostname, and on an attribute no node has. */
    struct sched_constraint h[] = {{"@hostname", "IS", "a"}};
    r = req("/h", 1, 100, 64);
    r.constraints = h;
    r.n_constraints = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    ASSERT_STR_EQ(res.assignments[0].node_id, "a");
    sched_result_done(&res);
    struct sched_constraint none[] = {{"zone", "IS", "a"}};
    r = req("/none", 1, 100, 64);
    r.constraints = none;
    r.n_constraints = 1;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 0);
    ASSERT_STR_EQ(why, "2 of 2 nodes fail zone:IS:a");
    sched_result_done(&res);
    sched_free(s);
}

TEST(missing_attribute_only_unlike_matches)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 11);
    node(s, "a", 8, 8 * GiB, NULL);
    static const struct {
        const char *op, *value;
        bool placed;
    } cases[] = {
        {"UNIQUE", NULL, false},   {"CLUSTER", NULL, false}, {"CLUSTER", "x", false},
        {"GROUP_BY", NULL, false}, {"LIKE", ".*", false},    {"UNLIKE", "x", true},
        {"MAX_PER", "5", false},   {"IS", "x", false},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        char app[16];
        snprintf(app, sizeof(app), "/a%zu", i);
        struct sched_constraint c[] = {{"rack_id", cases[i].op, cases[i].value}};
        struct sched_request r = req(app, 1, 100, 64);
        r.constraints = c;
        r.n_constraints = 1;
        struct sched_result res;
        ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), cases[i].placed ? 1 : 0);
        sched_result_done(&res);
    }
    sched_free(s);
}

TEST(constraints_combined_explain)
{
    /* "3 of 5 nodes lack memory; 2 fail hostname:UNIQUE" */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 12);
    node(s, "a", 8, 8 * GiB, NULL);
    node(s, "b", 8, 8 * GiB, NULL);
    node(s, "c", 8, 1 * GiB, NULL);
    node(s, "d", 8, 1 * GiB, NULL);
    node(s, "e", 8, 1 * GiB, NULL);
    struct sched_constraint c[] = {{"hostname", "UNIQUE", NULL}};
    struct sched_request r = req("/app", 3, 100, 2 * GiB);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 2);
    ASSERT_STR_EQ(why, "3 of 5 nodes lack memory; 2 fail hostname:UNIQUE");
    sched_result_done(&res);
    sched_free(s);
}

TEST(constraints_validate)
{
    static const struct {
        struct sched_constraint c;
        const char *msg; /* NULL = valid */
    } cases[] = {
        {{"hostname", "UNIQUE", NULL}, NULL},
        {{"hostname", "unique", NULL}, NULL},
        {{"hostname", "UNIQUE", "x"}, "Value specified but not used"},
        {{"rack", "CLUSTER", NULL}, NULL},
        {{"rack", "CLUSTER", "r1"}, NULL},
        {{"rack", "GROUP_BY", NULL}, NULL},
        {{"rack", "GROUP_BY", "3"}, NULL},
        {{"rack", "GROUP_BY", "three"}, "Value was not a valid integer"},
        {{"rack", "MAX_PER", NULL}, "Missing value"},
        {{"rack", "MAX_PER", "2"}, NULL},
        {{"rack", "MAX_PER", "-1"}, "Value was not a valid integer"},
        {{"rack", "LIKE", NULL}, "A regular expression value must be provided"},
        {{"rack", "LIKE", "rack-[1-3]"}, NULL},
        {{"rack", "UNLIKE", "rack-[1-3"},
         "'rack-[1-3' is not a valid regular expression"},
        {{"rack", "LIKE", "((a{0,100}){0,100}){0,100}"},
         "regular expression is too long or too complex"},
        {{"rack", "IS", NULL}, "Missing value"},
        {{"rack", "IS", "a b"}, "IS value must match '^[a-zA-Z0-9_/.-]*$'"},
        {{"rack", "IS", "rack-1"}, NULL},
        {{"rack", "NEAR", NULL},
         "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, "
         "MAX_PER, "
         "UNLIKE or IS"},
        {{"", "UNIQUE", NULL}, "Constraint field must not be empty"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        /* Put the case second so the index is checked too. */
        struct sched_constraint two[2] = {{"hostname", "UNIQUE", NULL}, cases[i].c};
        struct cm_errbuf eb = {0};
        size_t idx = 99;
        int rv = sched_constraints_validate(two, 2, &idx, &eb);
        if (cases[i].msg == NULL) {
            ASSERT_OK(rv);
        } else {
            ASSERT_ERR(rv, CM_EVALIDATION);
            ASSERT_UINT_EQ(idx, 1);
            ASSERT_STR_EQ(eb.msg, cases[i].msg);
        }
    }
    struct sched_constraint many[SCHED_MAX_CONSTRAINTS + 1];
    for (size_t i = 0; i < CM_ARRAY_SIZE(many); i++) {
        many[i] = (struct sched_constraint){"hostname", "UNIQUE", NULL};
    }
    size_t idx = 0;
    ASSERT_ERR(sched_constraints_validate(many, CM_ARRAY_SIZE(many), &idx, NULL),
               CM_EVALIDATION);
    ASSERT_UINT_EQ(idx, SCHED_MAX_CONSTRAINTS);
}

TEST(place_refuses_invalid_requests)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 13);
    node(s, "a", 8, 8 * GiB, NULL);
    struct sched_result res;
    struct sched_constraint bad[] = {{"rack", "MAX_PER", "x"}};
    struct sched_request r = req("/app", 1, 100, 64);
    r.constraints = bad;
    r.n_constraints = 1;
    ASSERT_ERR(sched_place(s, &r, 1, &res), CM_EINVAL);
    ASSERT_UINT_EQ(res.n_assignments, 0);
    r = req("", 1, 100, 64);
    ASSERT_ERR(sched_place(s, &r, 1, &res), CM_EINVAL);
    uint16_t dup[] = {80, 80};
    r = req("/app", 1, 100, 64);
    r.ports = dup;
    r.n_ports = 2;
    r.require_ports = true;
    ASSERT_ERR(sched_place(s, &r, 1, &res), CM_EINVAL);
    const char *ids[] = {"x", "x"};
    r = req("/app", 2, 100, 64);
    r.task_ids = ids;
    ASSERT_ERR(sched_place(s, &r, 1, &res), CM_EINVAL);
    ASSERT_UINT_EQ(sched_task_count(s, NULL, NULL), 0);
    sched_free(s);
}

/* ------------------------------------------------------------------ DRF */

TEST(drf_paper_example)
{
    /* DRF §4 (Fig. 3): 9 CPUs, 18 GB; A runs <1 CPU, 4 GB>, B <3 CPUs, 1 GB>.
     * Progressive filling gives A 3 tasks and B 2, both at dominant share 2/3. */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 14);
    node(s, "n", 9, 18 * GiB, NULL);
    struct sched_request r[2] = {req("/a", 10, 1000, 4 * GiB),
                                 req("/b", 10, 3000, 1 * GiB)};
    r[0].role = "A";
    r[1].role = "B";
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, r, 2, &res, NULL, 0), 5);
    ASSERT_UINT_EQ(sched_task_count(s, "/a", NULL), 3);
    ASSERT_UINT_EQ(sched_task_count(s, "/b", NULL), 2);
    /* Progressive filling: A (tie at 0, A seen first), B (0 < 2/9), A (2/9 <
     * 1/3), B (1/3 < 4/9), A (4/9 < 2/3); then both are at 2/3 and neither fits. */
    static const size_t order[] = {0, 1, 0, 1, 0};
    for (size_t i = 0; i < 5; i++) {
        ASSERT_UINT_EQ(res.assignments[i].req, order[i]);
    }
    double a = sched_role_share(s, "A", NULL), b = sched_role_share(s, "B", NULL);
    ASSERT_TRUE(a > 0.666 && a < 0.667);
    ASSERT_TRUE(b > 0.666 && b < 0.667);
    sched_result_done(&res);
    sched_free(s);
}

TEST(drf_weights)
{
    /* Weight 2 vs 1 with identical tasks: twice the tasks under contention. */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 15);
    node(s, "n", 30, 30 * GiB, NULL);
    struct sched_role heavy = {.name = "heavy", .weight = 2};
    ASSERT_OK(sched_role_set(s, &heavy));
    struct sched_request r[2] = {req("/l", 100, 1000, GiB), req("/h", 100, 1000, GiB)};
    r[0].role = "light";
    r[1].role = "heavy";
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, r, 2, &res, NULL, 0), 30);
    ASSERT_UINT_EQ(sched_task_count(s, "/h", NULL), 20);
    ASSERT_UINT_EQ(sched_task_count(s, "/l", NULL), 10);
    sched_result_done(&res);
    struct sched_role bad = {.name = "x", .weight = 0};
    ASSERT_ERR(sched_role_set(s, &bad), CM_EINVAL);
    sched_free(s);
}

TEST(drf_counts_existing_usage)
{
    /* Role A already holds half the cluster: B goes first until it catches up. */
    struct sched *s = mk(SCHED_POLICY_BINPACK, 16);
    node(s, "n", 10, 10 * GiB, NULL);
    struct sched_task t = {.id = "old",
                           .app = "/a",
                           .role = "A",
                           .node = "n",
                           .res = SCHED_RES(4000, 1024, 0, 0)};
    ASSERT_OK(sched_task_add(s, &t));
    struct sched_request r[2] = {req("/a", 10, 1000, 512), req("/b", 10, 1000, 512)};
    r[0].role = "A";
    r[1].role = "B";
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, r, 2, &res, NULL, 0), 6);
    for (size_t i = 0; i < 4; i++) {
        ASSERT_UINT_EQ(res.assignments[i].req, 1);
    }
    ASSERT_UINT_EQ(sched_task_count(s, "/a", NULL), 2); /* 1 old + 1 new */
    ASSERT_UINT_EQ(sched_task_count(s, "/b", NULL), 5);
    sched_result_done(&res);
    sched_free(s);
}

TEST(role_quota)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 17);
    node(s, "n", 16, 16 * GiB, NULL);
    struct sched_resources q =
        SCHED_RES(2500, SCHED_UNLIMITED, SCHED_UNLIMITED, SCHED_UNLIMITED);
    struct sched_role role = {.name = "batch", .weight = 1, .quota = &q};
    ASSERT_OK(sched_role_set(s, &role));
    struct sched_request r[2] = {req("/b", 5, 1000, 64), req("/o", 3, 1000, 64)};
    r[0].role = "batch";
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, r, 2, &res, why, sizeof(why)), 5);
    ASSERT_UINT_EQ(sched_task_count(s, "/b", NULL), 2);
    ASSERT_UINT_EQ(sched_task_count(s, "/o", NULL), 3);
    ASSERT_UINT_EQ(res.n_unplaced, 1);
    ASSERT_TRUE(res.unplaced[0].explain.quota);
    ASSERT_UINT_EQ(res.unplaced[0].count, 3);
    ASSERT_STR_EQ(why, "role quota reached for role 'batch'");
    sched_result_done(&res);
    sched_free(s);
}

/* ------------------------------------------------------------------ reservations */

TEST(reservations_and_accepted_roles)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 18);
    /* 4 CPUs, 3 reserved for "web". */
    struct sched_reservation rs = {.role = "web", .res = SCHED_RES(3000, 3 * GiB, 0, 0)};
    struct sched_node n = {.id = "n",
                           .total = SCHED_RES(4000, 4 * GiB, 0, 0),
                           .reservations = &rs,
                           .n_reservations = 1};
    ASSERT_OK(sched_node_upsert(s, &n));
    struct sched_result res;
    char why[256];

    /* Role "*" gets only the 1 unreserved CPU. */
    struct sched_request r = req("/star", 4, 1000, 512);
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 1);
    ASSERT_STR_EQ(why, "1 of 1 node lacks cpus");
    sched_result_done(&res);
    ASSERT_OK(sched_task_remove(s, "/star#0"));

    /* "web" accepting only its reservation: 3 tasks. */
    const char *only_web[] = {"web"};
    r = req("/web", 4, 1000, 512);
    r.role = "web";
    r.accepted_roles = only_web;
    r.n_accepted_roles = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 3);
    sched_result_done(&res);

    /* "web" by default ({"*", web}): the last unreserved CPU too. */
    r.accepted_roles = NULL;
    r.n_accepted_roles = 0;
    r.app = "/web2";
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    sched_result_done(&res);

    /* A role without a reservation here that only accepts its own: no resources. */
    const char *only_db[] = {"db"};
    r = req("/db", 1, 100, 64);
    r.role = "db";
    r.accepted_roles = only_db;
    r.n_accepted_roles = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 0);
    ASSERT_STR_EQ(why, "1 of 1 node has no resources for role 'db'");
    sched_result_done(&res);

    /* "web" accepting only "*" cannot use its reservation. */
    ASSERT_OK(sched_task_remove(s, "/web2#0"));
    const char *star[] = {"*"};
    r = req("/web3", 2, 1000, 512);
    r.role = "web";
    r.accepted_roles = star;
    r.n_accepted_roles = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    sched_result_done(&res);

    /* Reservations larger than the node are refused. */
    struct sched_reservation big = {.role = "web", .res = SCHED_RES(5000, 0, 0, 0)};
    n.reservations = &big;
    ASSERT_ERR(sched_node_upsert(s, &n), CM_EINVAL);
    sched_free(s);
}

/* ------------------------------------------------------------------ ports */

TEST(ports_dynamic_fixed_conflicts)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 19);
    struct sched_port_range pr[] = {{31000, 31004}, {32000, 32001}};
    uint16_t ext[] = {31001};
    struct sched_node n = {.id = "n",
                           .total = SCHED_RES(64000, 64 * GiB, 0, 0),
                           .port_ranges = pr,
                           .n_port_ranges = 2,
                           .used_ports = ext,
                           .n_used_ports = 1};
    ASSERT_OK(sched_node_upsert(s, &n));
    struct sched_result res;
    char why[256];

    /* Fixed 32000 + two dynamic. */
    uint16_t ports[] = {0, 32000, 8080};
    struct sched_request r = req("/app", 1, 100, 64);
    r.ports = ports;
    r.n_ports = 3;
    r.require_ports = true;
    /* 8080 is not in the ranges, so with require_ports it cannot be had. */
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 0);
    ASSERT_STR_EQ(why, "1 of 1 node lacks ports");
    sched_result_done(&res);
    sched_free(s);

    s = mk(SCHED_POLICY_BINPACK, 19);
    ASSERT_OK(sched_node_upsert(s, &n));
    uint16_t p2[] = {0, 32000, 0};
    r.ports = p2;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    const uint16_t *got = res.assignments[0].ports;
    ASSERT_UINT_EQ(got[1], 32000);
    ASSERT_TRUE(got[0] != got[2]);
    for (int i = 0; i < 3; i += 2) {
        ASSERT_TRUE((got[i] >= 31000 && got[i] <= 31004 && got[i] != 31001) ||
                    got[i] == 32001);
        ASSERT_TRUE(sched_port_used(s, "n", got[i]));
    }
    sched_result_done(&res);

    /* The same fixed port again: conflict. */
    r.app = "/other";
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 0);
    ASSERT_STR_EQ(why, "1 of 1 node lacks ports");
    sched_result_done(&res);

    /* Without require_ports the non-zero port is "any": 4 free ports remain
     * (7 - external 31001 - 3 taken), so 4 one-port tasks fit, not 5. */
    uint16_t p3[] = {32000};
    r = req("/any", 5, 100, 64);
    r.ports = p3;
    r.n_ports = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 3);
    for (size_t i = 0; i < res.n_assignments; i++) {
        ASSERT_TRUE(res.assignments[i].ports[0] != 32000);
    }
    ASSERT_STR_EQ(why, "1 of 1 node lacks ports");
    sched_result_done(&res);

    /* Removing a task frees its ports. */
    ASSERT_OK(sched_task_remove(s, "/app#0"));
    ASSERT_FALSE(sched_port_used(s, "n", 32000));
    ASSERT_TRUE(sched_port_used(s, "n", 31001)); /* external stays */
    uint16_t p4[] = {32000};
    r = req("/fixed", 1, 100, 64);
    r.ports = p4;
    r.n_ports = 1;
    r.require_ports = true;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    ASSERT_UINT_EQ(res.assignments[0].ports[0], 32000);
    sched_result_done(&res);
    sched_free(s);
}

TEST(ports_fixed_goes_to_free_node)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 20);
    node(s, "a", 8, 8 * GiB, NULL);
    node(s, "b", 8, 8 * GiB, NULL);
    struct sched_task t = {.id = "t",
                           .app = "/x",
                           .node = "a",
                           .res = SCHED_RES(100, 64, 0, 0),
                           .ports = (const uint16_t[]){31005},
                           .n_ports = 1};
    ASSERT_OK(sched_task_add(s, &t));
    uint16_t p[] = {31005};
    struct sched_request r = req("/app", 2, 100, 64);
    r.ports = p;
    r.n_ports = 1;
    r.require_ports = true;
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 1);
    ASSERT_STR_EQ(res.assignments[0].node_id, "b");
    ASSERT_STR_EQ(why, "2 of 2 nodes lack ports");
    sched_result_done(&res);
    sched_free(s);
}

TEST(ports_deterministic)
{
    uint16_t first[20];
    for (int run = 0; run < 2; run++) {
        struct sched *s = mk(SCHED_POLICY_SPREAD, 42);
        node(s, "a", 8, 8 * GiB, NULL);
        node(s, "b", 8, 8 * GiB, NULL);
        uint16_t p[] = {0, 0};
        struct sched_request r = req("/app", 10, 100, 64);
        r.ports = p;
        r.n_ports = 2;
        struct sched_result res;
        ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 10);
        for (size_t i = 0; i < 10; i++) {
            for (int j = 0; j < 2; j++) {
                if (run == 0) {
                    first[i * 2 + j] = res.assignments[i].ports[j];
                } else {
                    ASSERT_UINT_EQ(res.assignments[i].ports[j], first[i * 2 + j]);
                }
            }
        }
        sched_result_done(&res);
        sched_free(s);
    }
}

/* ------------------------------------------------------------------ policies */

TEST(policy_binpack_and_spread)
{
    for (int p = 0; p < 2; p++) {
        struct sched *s = mk(p == 0 ? SCHED_POLICY_BINPACK : SCHED_POLICY_SPREAD, 21);
        node(s, "a", 8, 8 * GiB, NULL);
        node(s, "b", 8, 8 * GiB, NULL);
        node(s, "c", 8, 8 * GiB, NULL);
        struct sched_task t = {
            .id = "t", .app = "/x", .node = "b", .res = SCHED_RES(4000, 4 * GiB, 0, 0)};
        ASSERT_OK(sched_task_add(s, &t));
        struct sched_request r = req("/app", 1, 1000, GiB);
        struct sched_result res;
        ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
        if (p == 0) {
            ASSERT_STR_EQ(res.assignments[0].node_id, "b"); /* fullest that fits */
        } else {
            ASSERT_STR_EQ(res.assignments[0].node_id, res.assignments[0].node_id);
            ASSERT_TRUE(strcmp(res.assignments[0].node_id, "b") != 0);
        }
        sched_result_done(&res);
        /* Binpack fills b (4 more CPUs) before opening another; spread evens out. */
        r = req("/more", 5, 1000, GiB);
        ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 5);
        struct sched_resources ua, ub, uc;
        ASSERT_OK(sched_node_usage(s, "a", &ua, NULL));
        ASSERT_OK(sched_node_usage(s, "b", &ub, NULL));
        ASSERT_OK(sched_node_usage(s, "c", &uc, NULL));
        if (p == 0) {
            ASSERT_UINT_EQ(ub.v[SCHED_RES_CPUS], 8000);
        } else {
            ASSERT_UINT_EQ(ua.v[SCHED_RES_CPUS], 3000);
            ASSERT_UINT_EQ(ub.v[SCHED_RES_CPUS], 4000);
            ASSERT_UINT_EQ(uc.v[SCHED_RES_CPUS], 3000);
        }
        sched_result_done(&res);
        sched_free(s);
    }
}

/* ------------------------------------------------------------------ node states */

TEST(node_states_and_removal)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 22);
    node_st(s, "up", 1, GiB, NULL, SCHED_NODE_UP);
    node_st(s, "drain", 8, 8 * GiB, NULL, SCHED_NODE_DRAINING);
    node_st(s, "unr", 8, 8 * GiB, NULL, SCHED_NODE_UNREACHABLE);
    node_st(s, "down", 8, 8 * GiB, NULL, SCHED_NODE_DOWN);
    struct sched_request r = req("/app", 2, 1000, 64);
    struct sched_result res;
    char why[256];
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 1);
    ASSERT_STR_EQ(res.assignments[0].node_id, "up");
    ASSERT_STR_EQ(why, "3 of 4 nodes are not up; 1 lacks cpus");
    sched_result_done(&res);

    /* Back up: it takes the next one. Removing "up" drops its task. */
    node(s, "drain", 8, 8 * GiB, NULL);
    ASSERT_OK(sched_node_remove(s, "up"));
    ASSERT_UINT_EQ(sched_task_count(s, NULL, NULL), 0);
    ASSERT_ERR(sched_node_remove(s, "up"), CM_ENOTFOUND);
    r.app = "/b";
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 2);
    ASSERT_UINT_EQ(count_on(s, "/b", "drain"), 2);
    sched_result_done(&res);

    /* Shrinking a node keeps its tasks (now overcommitted: nothing more fits). */
    node(s, "drain", 1, 8 * GiB, NULL);
    struct sched_resources u;
    ASSERT_OK(sched_node_usage(s, "drain", &u, NULL));
    ASSERT_UINT_EQ(u.v[SCHED_RES_CPUS], 2000);
    r.app = "/c";
    r.count = 1;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 0);
    sched_result_done(&res);

    /* No nodes at all. */
    ASSERT_OK(sched_node_remove(s, "drain"));
    ASSERT_OK(sched_node_remove(s, "unr"));
    ASSERT_OK(sched_node_remove(s, "down"));
    ASSERT_UINT_EQ(place(s, &r, 1, &res, why, sizeof(why)), 0);
    ASSERT_STR_EQ(why, "no nodes");
    sched_result_done(&res);
    sched_free(s);
}

TEST(node_attribute_change_rebuilds_counts)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 23);
    node(s, "a", 8, 8 * GiB, "rack_id=r1");
    node(s, "b", 8, 8 * GiB, "rack_id=r2");
    struct sched_constraint c[] = {{"rack_id", "UNIQUE", NULL}};
    struct sched_request r = req("/app", 1, 100, 64);
    r.constraints = c;
    r.n_constraints = 1;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    const char *first = res.assignments[0].node_id;
    bool on_a = strcmp(first, "a") == 0;
    sched_result_done(&res);
    /* Move the other node into the same rack: no room for a second one. */
    node(s, on_a ? "b" : "a", 8, 8 * GiB, on_a ? "rack_id=r1" : "rack_id=r2");
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 0);
    sched_result_done(&res);
    node(s, on_a ? "b" : "a", 8, 8 * GiB, "rack_id=r3");
    ASSERT_UINT_EQ(place(s, &r, 1, &res, NULL, 0), 1);
    sched_result_done(&res);
    sched_free(s);
}

TEST(task_ids_given_and_generated)
{
    struct sched *s = mk(SCHED_POLICY_BINPACK, 24);
    node(s, "a", 8, 8 * GiB, NULL);
    const char *ids[] = {"app.1", "app.2"};
    struct sched_request r[2] = {req("/app", 2, 100, 64), req("/gen", 2, 100, 64)};
    r[0].task_ids = ids;
    struct sched_result res;
    ASSERT_UINT_EQ(place(s, r, 2, &res, NULL, 0), 4);
    ASSERT_STR_EQ(res.assignments[0].task_id, "app.1");
    ASSERT_STR_EQ(res.assignments[1].task_id, "app.2");
    ASSERT_STR_EQ(res.assignments[2].task_id, "/gen#0");
    ASSERT_STR_EQ(res.assignments[3].task_id, "/gen#1");
    sched_result_done(&res);
    /* Known ids are refused; removed ones freed. */
    r[0].count = 1;
    ASSERT_ERR(sched_place(s, r, 1, &res), CM_EINVAL);
    ASSERT_OK(sched_task_remove(s, "app.1"));
    ASSERT_ERR(sched_task_remove(s, "app.1"), CM_ENOTFOUND);
    ASSERT_UINT_EQ(place(s, r, 1, &res, NULL, 0), 1);
    sched_result_done(&res);
    struct sched_task t = {.id = "app.2", .app = "/app", .node = "a"};
    ASSERT_ERR(sched_task_add(s, &t), CM_EEXIST);
    t.id = "new";
    t.node = "zz";
    ASSERT_ERR(sched_task_add(s, &t), CM_ENOTFOUND);
    sched_free(s);
}

TEST(explain_text_truncates)
{
    struct sched_explain e = {
        .nodes = 5, .res = {[SCHED_RES_MEM] = 3}, .constraint = {2}};
    struct sched_constraint c[] = {{"hostname", "UNIQUE", NULL}};
    struct sched_request r = {.app = "/a", .constraints = c, .n_constraints = 1};
    char buf[64];
    size_t n = sched_explain_text(&e, &r, buf, sizeof(buf));
    ASSERT_STR_EQ(buf, "3 of 5 nodes lack memory; 2 fail hostname:UNIQUE");
    ASSERT_UINT_EQ(n, strlen(buf));
    char small[8];
    ASSERT_UINT_EQ(sched_explain_text(&e, &r, small, sizeof(small)), n);
    ASSERT_STR_EQ(small, "3 of 5 ");
}
