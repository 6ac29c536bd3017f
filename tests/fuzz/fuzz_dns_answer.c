/* Fuzz the answer engine over a fixed test zone: any bytes in must give either
 * nothing (not a query) or a response that parses, fits the limit, carries the
 * query's ID and allocates nothing. */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "dns/dns.h"
#include "fuzz.h"

static struct dns_zone *zone;

static struct dns_addr ip(const char *s)
{
    struct dns_addr a;
    if (dns_addr_parse(s, &a) != 0) {
        abort();
    }
    return a;
}

static void build(void)
{
    static const struct dns_port ports[] = {
        {.port = 31000, .name = "http"},
        {.port = 31001, .name = "dns", .protocols = DNS_PROTO_TCP | DNS_PROTO_UDP},
    };
    static struct dns_task tasks[120];
    static char ids[120][32];
    struct dns_zone_config cfg = {.domain = "cluster", .serial = 7, .mesos_compat = true};
    struct dns_zone_builder *b;
    if (dns_zone_builder_new(&cfg, &b) != 0) {
        abort();
    }
    struct dns_addr a1 = ip("10.0.0.1"), a2 = ip("fd00::2");
    int rv = dns_zone_add_ns(b, "node-a.node.cluster", &a1);
    rv |= dns_zone_add_ns(b, "node-b.node.cluster", &a2);
    rv |= dns_zone_add_leader(b, &a1);
    rv |= dns_zone_add_node(b, "node-a", &a1);
    rv |= dns_zone_add_node(b, "node-b", &a2);
    for (int i = 0; i < 120; i++) {
        snprintf(ids[i], sizeof(ids[i]), "api.task-%03d", i);
        tasks[i] = (struct dns_task){
            .id = ids[i],
            .node = i % 2 ? "node-a" : "node-b",
            .host = i % 3 ? a1 : a2,
            .state = DNS_TASK_RUNNING,
            .ports = ports,
            .nports = 2,
        };
        tasks[i].host.bytes[3] = (uint8_t)i;
    }
    struct dns_app app = {.path = "/shop/backend/api", .tasks = tasks, .ntasks = 120};
    rv |= dns_zone_add_app(b, &app);
    app.path = "/web";
    app.ntasks = 2;
    rv |= dns_zone_add_app(b, &app);
    rv |= dns_zone_add_vip(b, "/web", &a1);
    if (rv != 0 || dns_zone_build(b, &zone) != 0) {
        abort();
    }
}

static uint8_t resp[65535];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (zone == NULL) {
        build();
    }
    uint8_t *q = malloc(size ? size : 1);
    if (q == NULL) {
        return 0;
    }
    memcpy(q, data, size);
    static const struct dns_answer_opts variants[] = {
        {.tcp = false},
        {.tcp = false, .udp_max = 4096, .rotate = 3},
        {.tcp = true, .rotate = 1},
        {.forward = true},
    };
    for (size_t v = 0; v < CM_ARRAY_SIZE(variants); v++) {
        struct dns_answer_info info;
        unsigned long allocs = cm_alloc_count();
        int n = dns_answer(zone, q, size, resp, sizeof(resp), &variants[v], &info);
        if (cm_alloc_count() != allocs || n < 0) {
            abort();
        }
        bool is_query = size >= DNS_HEADER_LEN && (q[2] & 0x80) == 0;
        if (n == 0) {
            if (is_query && !info.forward) {
                abort(); /* every query gets an answer */
            }
            continue;
        }
        if (!is_query || (size_t)n > info.limit ||
            dns_message_check(resp, (size_t)n) != 0 || resp[0] != q[0] ||
            resp[1] != q[1] || (resp[2] & 0x80) == 0) {
            abort();
        }
        /* A response with TC set is still whole: checked above. */
    }
    free(q);
    return 0;
}
