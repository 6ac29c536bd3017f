/* dns/server.c over real sockets on loopback: UDP and TCP answers, EDNS sizes and
 * truncation, pipelining, limits, garbage, zone publication across threads. */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "dns/dns.h"
#include "test.h"

/* ======================================================================= helpers */

static struct dns_addr ip(const char *s)
{
    struct dns_addr a;
    ASSERT_OK(dns_addr_parse(s, &a));
    return a;
}

/* A zone with /web (@ntasks running tasks 10.1.x.y, port 31000 "http") and a
 * node n1 at @node_ip. */
static struct dns_zone *mkzone(size_t ntasks, const char *node_ip)
{
    struct dns_zone_config cfg = {0};
    struct dns_zone_builder *b;
    ASSERT_OK(dns_zone_builder_new(&cfg, &b));
    struct dns_addr n1 = ip(node_ip);
    ASSERT_OK(dns_zone_add_ns(b, "n1.node.cluster", &n1));
    ASSERT_OK(dns_zone_add_node(b, "n1", &n1));
    struct dns_task *tasks = calloc(ntasks, sizeof(*tasks));
    char(*ids)[32] = calloc(ntasks, sizeof(*ids));
    struct dns_port port = {.port = 31000, .name = "http"};
    for (size_t i = 0; i < ntasks; i++) {
        char a[32];
        snprintf(ids[i], sizeof(ids[i]), "web.%zu", i);
        snprintf(a, sizeof(a), "10.1.%zu.%zu", i / 250, i % 250 + 1);
        tasks[i] = (struct dns_task){.id = ids[i],
                                     .node = "n1",
                                     .host = ip(a),
                                     .state = DNS_TASK_RUNNING,
                                     .ports = &port,
                                     .nports = 1};
    }
    struct dns_app app = {.path = "/web", .tasks = tasks, .ntasks = ntasks};
    ASSERT_OK(dns_zone_add_app(b, &app));
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    free(tasks);
    free(ids);
    return z;
}

static size_t mkquery(uint8_t *buf, size_t cap, uint16_t id, const char *name,
                      uint16_t qtype, int edns)
{
    struct dns_writer w;
    struct dns_header h = {.id = id, .flags = DNS_FLAG_RD};
    dns_writer_init(&w, buf, cap, &h);
    struct dns_question q = {.qtype = qtype, .qclass = DNS_CLASS_IN};
    ASSERT_OK(dns_name_from_str(name, &q.name));
    ASSERT_OK(dns_writer_question(&w, &q));
    if (edns >= 0) {
        struct dns_edns e = {.udp_size = (uint16_t)edns};
        ASSERT_OK(dns_writer_opt(&w, &e));
    }
    return dns_writer_finish(&w);
}

static int udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(fd >= 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static struct sockaddr_in server_sa(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

/* One UDP exchange; returns the response length, or -1 after the timeout. */
static ssize_t udp_ask(uint16_t port, const uint8_t *q, size_t qlen, uint8_t *r,
                       size_t cap)
{
    int fd = udp_socket();
    struct sockaddr_in sa = server_sa(port);
    ASSERT_INT_EQ(sendto(fd, q, qlen, 0, (struct sockaddr *)&sa, sizeof(sa)),
                  (ssize_t)qlen);
    ssize_t n = recv(fd, r, cap, 0);
    close(fd);
    return n;
}

static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(fd >= 0);
    struct sockaddr_in sa = server_sa(port);
    ASSERT_INT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    ASSERT_INT_EQ(write(fd, p, n), (ssize_t)n);
}

static bool read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, p + got, n - got);
        if (k <= 0) {
            return false;
        }
        got += (size_t)k;
    }
    return true;
}

/* Read one TCP message; returns its length or -1 at EOF/timeout. */
static ssize_t tcp_read_msg(int fd, uint8_t *r, size_t cap)
{
    uint8_t l[2];
    if (!read_full(fd, l, 2)) {
        return -1;
    }
    size_t n = (size_t)(l[0] << 8 | l[1]);
    ASSERT_TRUE(n <= cap);
    return read_full(fd, r, n) ? (ssize_t)n : -1;
}

static void tcp_send_msg(int fd, const uint8_t *q, size_t qlen)
{
    uint8_t buf[2 + 4096];
    buf[0] = (uint8_t)(qlen >> 8);
    buf[1] = (uint8_t)qlen;
    memcpy(buf + 2, q, qlen);
    write_all(fd, buf, qlen + 2);
}

/* True when the peer closed the connection (EOF or reset) within 2 s. */
static bool tcp_closed(int fd)
{
    uint8_t b[256];
    for (;;) {
        ssize_t k = read(fd, b, sizeof(b));
        if (k == 0 || (k < 0 && errno == ECONNRESET)) {
            return true;
        }
        if (k < 0) {
            return false; /* timeout */
        }
    }
}

static struct dns_header hdr(const uint8_t *r, size_t n)
{
    struct dns_reader rd;
    ASSERT_OK(dns_reader_init(&rd, r, n));
    return rd.header;
}

/* The A addresses of the answer section, as "a,b,..." into @out. */
static void answer_addrs(const uint8_t *r, size_t n, char *out, size_t cap)
{
    struct dns_reader rd;
    struct dns_rr rr;
    enum dns_section sec;
    ASSERT_OK(dns_reader_init(&rd, r, n));
    out[0] = '\0';
    while (dns_reader_rr(&rd, &rr, &sec) == 0) {
        if (sec == DNS_SECTION_ANSWER && rr.type == DNS_TYPE_A) {
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, rr.data.a, a, sizeof(a));
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", a);
        }
    }
}

static struct dns_server *start(struct dns_server_config *cfg)
{
    if (cfg->addr == NULL) {
        cfg->addr = "127.0.0.1:0";
    }
    struct dns_server *s;
    struct cm_errbuf eb = {0};
    int rv = dns_server_new(cfg, &s, &eb);
    if (rv != 0) {
        printf("# %s\n", eb.msg);
    }
    ASSERT_OK(rv);
    ASSERT_TRUE(dns_server_port(s) != 0);
    return s;
}

/* ======================================================================= tests */

TEST(server_udp_answers)
{
    struct dns_server_config cfg = {.threads = 1};
    struct dns_server *s = start(&cfg);
    uint16_t port = dns_server_port(s);
    uint8_t q[512], r[4096];
    /* Before a zone is published every name is outside: REFUSED (no forward). */
    size_t ql = mkquery(q, sizeof(q), 0x1234, "web.cluster", DNS_TYPE_A, -1);
    ssize_t n = udp_ask(port, q, ql, r, sizeof(r));
    ASSERT_INT_OP(n, >, 0);
    ASSERT_UINT_EQ(DNS_RCODE_OF(hdr(r, (size_t)n).flags), DNS_RCODE_REFUSED);

    dns_server_publish(s, mkzone(3, "10.0.0.1"));
    n = udp_ask(port, q, ql, r, sizeof(r));
    ASSERT_INT_OP(n, >, 0);
    struct dns_header h = hdr(r, (size_t)n);
    ASSERT_UINT_EQ(h.id, 0x1234);
    ASSERT_TRUE(h.flags & DNS_FLAG_QR);
    ASSERT_TRUE(h.flags & DNS_FLAG_AA);
    ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_NOERROR);
    ASSERT_UINT_EQ(h.ancount, 3);

    /* NXDOMAIN and NODATA, with the SOA in authority. */
    ql = mkquery(q, sizeof(q), 2, "nope.cluster", DNS_TYPE_A, 1232);
    n = udp_ask(port, q, ql, r, sizeof(r));
    h = hdr(r, (size_t)n);
    ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_NXDOMAIN);
    ASSERT_UINT_EQ(h.nscount, 1);
    ql = mkquery(q, sizeof(q), 3, "web.cluster", DNS_TYPE_AAAA, 1232);
    n = udp_ask(port, q, ql, r, sizeof(r));
    h = hdr(r, (size_t)n);
    ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_NOERROR);
    ASSERT_UINT_EQ(h.ancount, 0);
    ASSERT_UINT_EQ(h.nscount, 1);

    /* SRV with the targets' addresses in additional. */
    ql = mkquery(q, sizeof(q), 4, "_http._tcp.web.cluster", DNS_TYPE_SRV, 1232);
    n = udp_ask(port, q, ql, r, sizeof(r));
    h = hdr(r, (size_t)n);
    ASSERT_UINT_EQ(h.ancount, 3);
    ASSERT_UINT_EQ(h.arcount, 4); /* 3 A + OPT */

    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.udp_queries, 5);
    ASSERT_UINT_EQ(st.answered, 5);
    dns_server_free(s);
}

TEST(server_udp_truncation_and_edns)
{
    struct dns_server_config cfg = {.threads = 1, .udp_max = 4096};
    struct dns_server *s = start(&cfg);
    uint16_t port = dns_server_port(s);
    dns_server_publish(s, mkzone(100, "10.0.0.1"));
    uint8_t q[512], r[8192];
    /* 100 A records: 12 + 17 + 100 * 16 bytes, over 512. */
    size_t ql = mkquery(q, sizeof(q), 1, "web.cluster", DNS_TYPE_A, -1);
    ssize_t n = udp_ask(port, q, ql, r, sizeof(r));
    ASSERT_INT_OP(n, <=, 512);
    struct dns_header h = hdr(r, (size_t)n);
    ASSERT_TRUE(h.flags & DNS_FLAG_TC);
    ASSERT_UINT_EQ(h.ancount, 0);
    /* +bufsize=1000: still too small. */
    ql = mkquery(q, sizeof(q), 2, "web.cluster", DNS_TYPE_A, 1000);
    n = udp_ask(port, q, ql, r, sizeof(r));
    ASSERT_INT_OP(n, <=, 1000);
    ASSERT_TRUE(hdr(r, (size_t)n).flags & DNS_FLAG_TC);
    /* +bufsize=4096: all of it. */
    ql = mkquery(q, sizeof(q), 3, "web.cluster", DNS_TYPE_A, 4096);
    n = udp_ask(port, q, ql, r, sizeof(r));
    h = hdr(r, (size_t)n);
    ASSERT_FALSE(h.flags & DNS_FLAG_TC);
    ASSERT_UINT_EQ(h.ancount, 100);
    /* The retry over TCP gets everything, without EDNS too. */
    int fd = tcp_connect(port);
    ql = mkquery(q, sizeof(q), 4, "web.cluster", DNS_TYPE_A, -1);
    tcp_send_msg(fd, q, ql);
    n = tcp_read_msg(fd, r, sizeof(r));
    ASSERT_INT_OP(n, >, 1600);
    h = hdr(r, (size_t)n);
    ASSERT_FALSE(h.flags & DNS_FLAG_TC);
    ASSERT_UINT_EQ(h.ancount, 100);
    close(fd);
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.truncated, 2);
    dns_server_free(s);
}

TEST(server_tcp_pipelined)
{
    struct dns_server_config cfg = {.threads = 1};
    struct dns_server *s = start(&cfg);
    dns_server_publish(s, mkzone(2, "10.0.0.1"));
    int fd = tcp_connect(dns_server_port(s));
    /* Three queries in one write, one split over two writes. */
    uint8_t buf[2048], q[512], r[4096];
    size_t len = 0;
    const char *names[] = {"web.cluster", "nope.cluster", "n1.node.cluster"};
    for (int i = 0; i < 3; i++) {
        size_t ql = mkquery(q, sizeof(q), (uint16_t)(100 + i), names[i], DNS_TYPE_A, -1);
        buf[len] = (uint8_t)(ql >> 8);
        buf[len + 1] = (uint8_t)ql;
        memcpy(buf + len + 2, q, ql);
        len += ql + 2;
    }
    write_all(fd, buf, len);
    size_t ql = mkquery(q, sizeof(q), 103, "web.cluster", DNS_TYPE_SRV, -1);
    uint8_t pre[2] = {(uint8_t)(ql >> 8), (uint8_t)ql};
    write_all(fd, pre, 1);
    usleep(20000);
    write_all(fd, pre + 1, 1);
    write_all(fd, q, 5);
    usleep(20000);
    write_all(fd, q + 5, ql - 5);
    const uint16_t rcodes[] = {DNS_RCODE_NOERROR, DNS_RCODE_NXDOMAIN, DNS_RCODE_NOERROR,
                               DNS_RCODE_NOERROR};
    for (int i = 0; i < 4; i++) {
        ssize_t n = tcp_read_msg(fd, r, sizeof(r));
        ASSERT_INT_OP(n, >, 0);
        struct dns_header h = hdr(r, (size_t)n);
        ASSERT_UINT_EQ(h.id, 100 + i);
        ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), rcodes[i]);
    }
    char addrs[256];
    close(fd);
    /* Many queries pipelined: more than one wake-up's worth. */
    fd = tcp_connect(dns_server_port(s));
    len = 0;
    uint8_t big[300 * 40];
    for (int i = 0; i < 300; i++) {
        ql = mkquery(q, sizeof(q), (uint16_t)i, "n1.node.cluster", DNS_TYPE_A, -1);
        big[len] = (uint8_t)(ql >> 8);
        big[len + 1] = (uint8_t)ql;
        memcpy(big + len + 2, q, ql);
        len += ql + 2;
    }
    write_all(fd, big, len);
    for (int i = 0; i < 300; i++) {
        ssize_t n = tcp_read_msg(fd, r, sizeof(r));
        ASSERT_INT_OP(n, >, 0);
        ASSERT_UINT_EQ(hdr(r, (size_t)n).id, i);
        answer_addrs(r, (size_t)n, addrs, sizeof(addrs));
        ASSERT_STR_EQ(addrs, "10.0.0.1");
    }
    /* Half-close after 300 more queries: every answer owed still arrives (more
     * than one wake-up's worth), then the server closes. */
    write_all(fd, big, len);
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 300; i++) {
        ssize_t n = tcp_read_msg(fd, r, sizeof(r));
        ASSERT_INT_OP(n, >, 0);
        ASSERT_UINT_EQ(hdr(r, (size_t)n).id, i);
    }
    ASSERT_TRUE(tcp_closed(fd));
    close(fd);
    dns_server_free(s);
}

TEST(server_tcp_limits)
{
    struct dns_server_config cfg = {
        .threads = 1, .tcp_max_conns = 2, .tcp_idle_ms = 300, .tcp_query_max = 512};
    struct dns_server *s = start(&cfg);
    uint16_t port = dns_server_port(s);
    dns_server_publish(s, mkzone(1, "10.0.0.1"));
    uint8_t q[512], r[4096];
    size_t ql = mkquery(q, sizeof(q), 9, "web.cluster", DNS_TYPE_A, -1);
    int a = tcp_connect(port), b = tcp_connect(port);
    tcp_send_msg(a, q, ql);
    tcp_send_msg(b, q, ql);
    ASSERT_INT_OP(tcp_read_msg(a, r, sizeof(r)), >, 0);
    ASSERT_INT_OP(tcp_read_msg(b, r, sizeof(r)), >, 0);
    /* A third connection is closed at once. */
    int c = tcp_connect(port);
    ASSERT_TRUE(tcp_closed(c));
    close(c);
    /* Idle connections are closed after tcp_idle_ms; then there is room. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ASSERT_TRUE(tcp_closed(a));
    ASSERT_TRUE(tcp_closed(b));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ASSERT_TRUE(el < 1.5);
    close(a);
    close(b);
    c = tcp_connect(port);
    tcp_send_msg(c, q, ql);
    ASSERT_INT_OP(tcp_read_msg(c, r, sizeof(r)), >, 0);
    /* A message longer than tcp_query_max closes the connection. */
    uint8_t big[2] = {0x10, 0x00};
    write_all(c, big, 2);
    ASSERT_TRUE(tcp_closed(c));
    close(c);
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.tcp_refused, 1);
    ASSERT_UINT_EQ(st.tcp_closed_idle, 2);
    ASSERT_UINT_EQ(st.tcp_closed_bad, 1);
    dns_server_free(s);
}

TEST(server_garbage_udp_and_tcp)
{
    struct dns_server_config cfg = {.threads = 2};
    struct dns_server *s = start(&cfg);
    uint16_t port = dns_server_port(s);
    dns_server_publish(s, mkzone(3, "10.0.0.1"));
    struct cm_rng rng;
    cm_rng_seed(&rng, 20260101);
    printf("# seed 20260101\n");
    uint8_t q[512], r[8192], junk[5000];
    size_t ql = mkquery(q, sizeof(q), 77, "web.cluster", DNS_TYPE_A, 1232);
    int fd = udp_socket();
    struct sockaddr_in sa = server_sa(port);
    for (int i = 0; i < 3000; i++) {
        size_t n = (size_t)cm_rng_below(&rng, i % 100 == 0 ? sizeof(junk) : 600);
        for (size_t k = 0; k < n; k++) {
            junk[k] = (uint8_t)cm_rng_next(&rng);
        }
        if (n >= 12 && i % 3 == 0) {
            /* Mostly valid header and question, then noise. */
            memcpy(junk, q, CM_MIN(ql, n));
            junk[(size_t)cm_rng_below(&rng, n)] ^= (uint8_t)(1u << cm_rng_below(&rng, 8));
        }
        sendto(fd, junk, n, 0, (struct sockaddr *)&sa, sizeof(sa));
        if (i % 64 == 0) {
            /* Drain what came back so our socket buffer does not fill. */
            while (recv(fd, r, sizeof(r), MSG_DONTWAIT) > 0) {
            }
        }
    }
    close(fd);
    /* TCP: random bytes, random framing, random closes. */
    for (int i = 0; i < 200; i++) {
        int c = tcp_connect(port);
        size_t n = (size_t)cm_rng_below(&rng, sizeof(junk));
        for (size_t k = 0; k < n; k++) {
            junk[k] = (uint8_t)cm_rng_next(&rng);
        }
        if (i % 2 == 0 && n > 2) {
            junk[0] = 0;
            junk[1] = (uint8_t)cm_rng_below(&rng, 64); /* small frames */
        }
        (void)!write(c, junk, n);
        if (i % 4 == 0) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l)); /* RST */
        }
        close(c);
    }
    /* Still serving, on every thread. */
    for (int i = 0; i < 20; i++) {
        ssize_t n = udp_ask(port, q, ql, r, sizeof(r));
        ASSERT_INT_OP(n, >, 0);
        ASSERT_UINT_EQ(hdr(r, (size_t)n).ancount, 3);
    }
    int c = tcp_connect(port);
    tcp_send_msg(c, q, ql);
    ASSERT_INT_OP(tcp_read_msg(c, r, sizeof(r)), >, 0);
    close(c);
    dns_server_free(s);
}

TEST(server_publish_across_threads)
{
    struct dns_server_config cfg = {.threads = 2};
    struct dns_server *s = start(&cfg);
    uint16_t port = dns_server_port(s);
    uint8_t q[512], r[4096];
    char addrs[256];
    size_t ql = mkquery(q, sizeof(q), 5, "n1.node.cluster", DNS_TYPE_A, -1);
    for (int gen = 0; gen < 50; gen++) {
        char want[32];
        snprintf(want, sizeof(want), "10.9.0.%d", gen + 1);
        dns_server_publish(s, mkzone(1, want));
        /* Different source ports land on both threads' sockets. */
        for (int k = 0; k < 4; k++) {
            ssize_t n = udp_ask(port, q, ql, r, sizeof(r));
            ASSERT_INT_OP(n, >, 0);
            answer_addrs(r, (size_t)n, addrs, sizeof(addrs));
            ASSERT_STR_EQ(addrs, want);
        }
    }
    dns_server_publish(s, NULL);
    ssize_t n = udp_ask(port, q, ql, r, sizeof(r));
    ASSERT_UINT_EQ(DNS_RCODE_OF(hdr(r, (size_t)n).flags), DNS_RCODE_REFUSED);
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_INT_OP(st.zone_swaps, >=, 51);
    dns_server_free(s);
}

/* Publishing while clients hammer the server (a TSAN and ASan target). */
struct hammer {
    uint16_t port;
    atomic_bool stop;
    unsigned answered;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    uint8_t q[512], r[4096];
    size_t ql = mkquery(q, sizeof(q), 5, "web.cluster", DNS_TYPE_A, -1);
    int fd = udp_socket();
    struct sockaddr_in sa = server_sa(h->port);
    while (!atomic_load(&h->stop)) {
        sendto(fd, q, ql, 0, (struct sockaddr *)&sa, sizeof(sa));
        if (recv(fd, r, sizeof(r), 0) > 0) {
            h->answered++;
        }
    }
    close(fd);
    return NULL;
}

TEST(server_publish_under_load)
{
    struct dns_server_config cfg = {.threads = 2};
    struct dns_server *s = start(&cfg);
    struct hammer h = {.port = dns_server_port(s)};
    atomic_init(&h.stop, false);
    pthread_t t;
    ASSERT_INT_EQ(pthread_create(&t, NULL, hammer_main, &h), 0);
    for (int i = 0; i < 200; i++) {
        dns_server_publish(s, mkzone((size_t)(i % 5 + 1), "10.0.0.1"));
        usleep(1000);
    }
    atomic_store(&h.stop, true);
    pthread_join(t, NULL);
    ASSERT_INT_OP(h.answered, >, 10);
    dns_server_free(s);
}

/* threads == 0: the server runs on the caller's loop. */
struct client {
    uint16_t port;
    atomic_int done;
    ssize_t n;
    uint8_t r[4096];
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    uint8_t q[512];
    size_t ql = mkquery(q, sizeof(q), 42, "web.cluster", DNS_TYPE_A, -1);
    c->n = udp_ask(c->port, q, ql, c->r, sizeof(c->r));
    atomic_store(&c->done, 1);
    return NULL;
}

static void poll_done_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct client *c = t->data;
    if (atomic_load(&c->done)) {
        ev_break(loop, EVBREAK_ALL);
    }
}

TEST(server_on_callers_loop)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct dns_server_config cfg = {.threads = 0, .loop = loop};
    struct dns_server *s = start(&cfg);
    dns_server_publish(s, mkzone(2, "10.0.0.1"));
    struct client c = {.port = dns_server_port(s)};
    atomic_init(&c.done, 0);
    ev_timer poll;
    ev_timer_init(&poll, poll_done_cb, 0.01, 0.01);
    poll.data = &c;
    ev_timer_start(loop, &poll);
    pthread_t t;
    ASSERT_INT_EQ(pthread_create(&t, NULL, client_main, &c), 0);
    ev_run(loop, 0);
    pthread_join(t, NULL);
    ev_timer_stop(loop, &poll);
    ASSERT_INT_OP(c.n, >, 0);
    ASSERT_UINT_EQ(hdr(c.r, (size_t)c.n).ancount, 2);
    dns_server_free(s);
    /* Nothing of the server is left on the loop. */
    ASSERT_INT_EQ(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
}

TEST(server_bad_config)
{
    struct dns_server *s;
    struct cm_errbuf eb = {0};
    struct dns_server_config cfg = {.addr = "localhost:53", .threads = 1};
    ASSERT_ERR(dns_server_new(&cfg, &s, &eb), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "localhost:53") != NULL);
    /* The same port twice (no SO_REUSEPORT with one thread). */
    struct dns_server_config ok = {.addr = "127.0.0.1:0", .threads = 1};
    struct dns_server *a = start(&ok);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", dns_server_port(a));
    struct dns_server_config dup = {.addr = addr, .threads = 1};
    ASSERT_ERR(dns_server_new(&dup, &s, &eb), CM_EADDRINUSE);
    dns_server_free(a);
    dns_server_free(NULL);
}

/* A wildcard address: the reply leaves from the address the query came to
 * (IP_PKTINFO), which a connected client socket insists on. */
static ssize_t udp_ask_connected(int family, const char *addr, uint16_t port,
                                 const uint8_t *q, size_t qlen, uint8_t *r, size_t cap)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(fd >= 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        ASSERT_INT_EQ(inet_pton(AF_INET, addr, &in->sin_addr), 1);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        ASSERT_INT_EQ(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        len = sizeof(*in6);
    }
    ASSERT_INT_EQ(connect(fd, (struct sockaddr *)&ss, len), 0);
    ASSERT_INT_EQ(send(fd, q, qlen, 0), (ssize_t)qlen);
    ssize_t n = recv(fd, r, cap, 0);
    close(fd);
    return n;
}

TEST(server_wildcard_replies_from_the_queried_address)
{
    uint8_t q[512], r[4096];
    size_t ql = mkquery(q, sizeof(q), 31, "web.cluster", DNS_TYPE_A, -1);
    struct dns_server_config cfg = {.addr = "0.0.0.0:0", .threads = 2};
    struct dns_server *s = start(&cfg);
    dns_server_publish(s, mkzone(2, "10.0.0.1"));
    const char *addrs[] = {"127.0.0.1", "127.0.0.2", "127.1.2.3"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(addrs); i++) {
        ssize_t n =
            udp_ask_connected(AF_INET, addrs[i], dns_server_port(s), q, ql, r, sizeof(r));
        ASSERT_INT_OP(n, >, 0);
        ASSERT_UINT_EQ(hdr(r, (size_t)n).ancount, 2);
    }
    dns_server_free(s);
    /* Dual-stack IPv6 wildcard: IPv4 and IPv6 clients. */
    int probe = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6,
                               .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have6 = probe >= 0 && bind(probe, (struct sockaddr *)&lo6, sizeof(lo6)) == 0;
    if (probe >= 0) {
        close(probe);
    }
    if (!have6) {
        test_skip("no IPv6 loopback");
    }
    struct dns_server_config cfg6 = {.addr = "[::]:0", .threads = 1};
    s = start(&cfg6);
    dns_server_publish(s, mkzone(2, "10.0.0.1"));
    ssize_t n =
        udp_ask_connected(AF_INET6, "::1", dns_server_port(s), q, ql, r, sizeof(r));
    ASSERT_INT_OP(n, >, 0);
    n = udp_ask_connected(AF_INET, "127.0.0.2", dns_server_port(s), q, ql, r, sizeof(r));
    ASSERT_INT_OP(n, >, 0);
    dns_server_free(s);
}

/* A client that sends many queries for a large answer before reading any: the
 * server stops reading above tcp_out_max, and every answer still arrives, in
 * order, once the client reads. */
TEST(server_tcp_backpressure)
{
    struct dns_server_config cfg = {.threads = 1, .tcp_out_max = 16 * 1024};
    struct dns_server *s = start(&cfg);
    dns_server_publish(s, mkzone(100, "10.0.0.1"));
    int fd = tcp_connect(dns_server_port(s));
    enum { N = 2000 };
    uint8_t *buf = malloc((size_t)N * 64);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        uint8_t q[512];
        size_t ql = mkquery(q, sizeof(q), (uint16_t)i, "web.cluster", DNS_TYPE_A, -1);
        buf[len] = (uint8_t)(ql >> 8);
        buf[len + 1] = (uint8_t)ql;
        memcpy(buf + len + 2, q, ql);
        len += ql + 2;
    }
    write_all(fd, buf, len);
    free(buf);
    usleep(200000);
    uint8_t r[8192];
    for (int i = 0; i < N; i++) {
        ssize_t n = tcp_read_msg(fd, r, sizeof(r));
        if (n <= 0) {
            printf("# message %d\n", i);
        }
        ASSERT_INT_OP(n, >, 1600);
        struct dns_header h = hdr(r, (size_t)n);
        ASSERT_UINT_EQ(h.id, i);
        ASSERT_UINT_EQ(h.ancount, 100);
    }
    close(fd);
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.tcp_queries, N);
    dns_server_free(s);
}
