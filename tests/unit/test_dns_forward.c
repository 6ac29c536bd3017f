/* Forwarding (dns/forward.c through dns/server.c) to a fake upstream of our own
 * on loopback, and the pure parsers of upstream addresses and resolv.conf. */
#include <arpa/inet.h>
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

/* ======================================================================= parsers */

TEST(upstream_parse_forms)
{
    static const struct {
        const char *in;
        int rv;
        const char *addr;
        uint16_t port;
    } cases[] = {
        {"192.0.2.1", 0, "192.0.2.1", 53},
        {"192.0.2.1:5353", 0, "192.0.2.1", 5353},
        {"2001:db8::1", 0, "2001:db8::1", 53},
        {"[2001:db8::1]", 0, "2001:db8::1", 53},
        {"[2001:db8::1]:5300", 0, "2001:db8::1", 5300},
        {"::1", 0, "::1", 53},
        {"192.0.2.1:0", CM_EINVAL, NULL, 0},
        {"192.0.2.1:65536", CM_EINVAL, NULL, 0},
        {"192.0.2.1:", CM_EINVAL, NULL, 0},
        {"[192.0.2.1]:53", CM_EINVAL, NULL, 0},
        {"[2001:db8::1]x", CM_EINVAL, NULL, 0},
        {"fe80::1%eth0", CM_EINVAL, NULL, 0},
        {"dns.example", CM_EINVAL, NULL, 0},
        {"", CM_EINVAL, NULL, 0},
        {"1.2.3", CM_EINVAL, NULL, 0},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct dns_upstream u;
        ASSERT_ERR(dns_upstream_parse(cases[i].in, &u), cases[i].rv);
        if (cases[i].rv == 0) {
            struct dns_addr want;
            ASSERT_OK(dns_addr_parse(cases[i].addr, &want));
            ASSERT_UINT_EQ(u.addr.family, want.family);
            ASSERT_MEM_EQ(u.addr.bytes, want.bytes, want.family == DNS_AF_INET4 ? 4 : 16);
            ASSERT_UINT_EQ(u.port, cases[i].port);
        }
    }
    ASSERT_ERR(dns_upstream_parse(NULL, NULL), CM_EINVAL);
}

static void parse_text(const char *text, size_t cap, char *out, size_t outcap)
{
    struct dns_upstream u[DNS_UPSTREAM_MAX];
    size_t n = 99;
    dns_resolv_conf_parse(text, strlen(text), u, cap, &n);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char a[64];
        inet_ntop(u[i].addr.family == DNS_AF_INET4 ? AF_INET : AF_INET6, u[i].addr.bytes,
                  a, sizeof(a));
        snprintf(out + strlen(out), outcap - strlen(out), "%s%s", i ? " " : "", a);
    }
}

TEST(resolv_conf_parse_table)
{
    static const struct {
        const char *text;
        size_t cap;
        const char *want;
    } cases[] = {
        {"", 8, ""},
        {"nameserver 192.0.2.1\n", 8, "192.0.2.1"},
        {"nameserver 192.0.2.1", 8, "192.0.2.1"}, /* no final newline */
        {"# generated\nsearch example.com\nnameserver 192.0.2.1\noptions ndots:2\n"
         "nameserver 2001:db8::53\n",
         8, "192.0.2.1 2001:db8::53"},
        {"  nameserver\t192.0.2.1  # trailing comment\r\n", 8, "192.0.2.1"},
        {"nameserver 192.0.2.1#no space\n", 8, "192.0.2.1"},
        {";nameserver 192.0.2.9\n#nameserver 192.0.2.8\n nameserver 192.0.2.7\n", 8,
         "192.0.2.7"},
        {"nameserver fe80::1%eth0\nnameserver dns.example\nnameserver\nnameserver "
         "1.2.3.4\n",
         8, "1.2.3.4"},
        {"nameservers 1.1.1.1\nnameserver1.1.1.1\nNAMESERVER 1.1.1.1\n", 8, ""},
        {"nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n", 2,
         "10.0.0.1 10.0.0.2"},
        {"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", 8, "127.0.0.53"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        char got[256];
        parse_text(cases[i].text, cases[i].cap, got, sizeof(got));
        if (strcmp(got, cases[i].want) != 0) {
            printf("# case %zu\n", i);
        }
        ASSERT_STR_EQ(got, cases[i].want);
    }
    /* Not NUL-terminated: only @len bytes count. */
    struct dns_upstream u[2];
    size_t n;
    dns_resolv_conf_parse("nameserver 10.0.0.1\nnameserver 10.0.0.2\n", 20, u, 2, &n);
    ASSERT_UINT_EQ(n, 1);
}

TEST(resolv_conf_load)
{
    char path[] = "/tmp/cm-resolv-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    const char *text = "nameserver 192.0.2.1\nnameserver 192.0.2.2\n";
    ASSERT_INT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct dns_upstream u[DNS_UPSTREAM_MAX];
    size_t n;
    ASSERT_OK(dns_resolv_conf_load(path, u, DNS_UPSTREAM_MAX, &n));
    ASSERT_UINT_EQ(n, 2);
    unlink(path);
    ASSERT_ERR(dns_resolv_conf_load(path, u, DNS_UPSTREAM_MAX, &n), CM_ENOENT);
}

/* ======================================================================= fake upstream
 */

/* An authoritative server of our own on 127.0.0.1 (UDP and TCP, one thread):
 *   example.com A      -> 192.0.2.1
 *   big.example A      -> 60 addresses (over 512 bytes)
 *   refused.example    -> REFUSED
 *   silent.example     -> no answer at all
 *   anything else      -> NXDOMAIN */
struct upstream {
    int udp, tcp;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    atomic_uint queries;
    atomic_uint tcp_queries;
    bool mute; /* answer nothing */
};

static size_t up_answer(struct upstream *u, const uint8_t *q, size_t qlen, uint8_t *r,
                        size_t cap)
{
    struct dns_query pq;
    if (dns_query_parse(q, qlen, &pq) != 0 || !pq.has_question || u->mute) {
        return 0;
    }
    char name[300];
    ASSERT_INT_OP(dns_name_to_str(&pq.question.name, name, sizeof(name)), >, 0);
    if (strcmp(name, "silent.example.") == 0) {
        return 0;
    }
    uint16_t rcode = DNS_RCODE_NOERROR;
    int count = 0;
    if (strcmp(name, "example.com.") == 0) {
        count = 1;
    } else if (strcmp(name, "big.example.") == 0) {
        count = 60;
    } else if (strcmp(name, "refused.example.") == 0) {
        rcode = DNS_RCODE_REFUSED;
    } else {
        rcode = DNS_RCODE_NXDOMAIN;
    }
    struct dns_header h = {.id = pq.header.id,
                           .flags = (uint16_t)(DNS_FLAG_QR | DNS_FLAG_RA |
                                               (pq.header.flags & DNS_FLAG_RD) | rcode)};
    struct dns_writer w;
    dns_writer_init(&w, r, cap, &h);
    ASSERT_OK(dns_writer_question(&w, &pq.question));
    for (int i = 0; i < count; i++) {
        struct dns_rr rr = {.owner = pq.question.name,
                            .type = DNS_TYPE_A,
                            .rclass = DNS_CLASS_IN,
                            .ttl = 60};
        uint8_t a[4] = {192, 0, 2, (uint8_t)(i + 1)};
        memcpy(rr.data.a, a, 4);
        ASSERT_OK(dns_writer_rr(&w, DNS_SECTION_ANSWER, &rr));
    }
    return dns_writer_finish(&w);
}

static void *up_main(void *arg)
{
    struct upstream *u = arg;
    uint8_t q[4096], r[8192];
    while (!atomic_load(&u->stop)) {
        struct pollfd p[2] = {{.fd = u->udp, .events = POLLIN},
                              {.fd = u->tcp, .events = POLLIN}};
        if (poll(p, 2, 20) <= 0) {
            continue;
        }
        if (p[0].revents & POLLIN) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            ssize_t n = recvfrom(u->udp, q, sizeof(q), 0, (struct sockaddr *)&ss, &sl);
            if (n > 0) {
                atomic_fetch_add(&u->queries, 1);
                size_t m = up_answer(u, q, (size_t)n, r, sizeof(r));
                if (m > 0) {
                    sendto(u->udp, r, m, 0, (struct sockaddr *)&ss, sl);
                }
            }
        }
        if (p[1].revents & POLLIN) {
            int c = accept(u->tcp, NULL, NULL);
            if (c < 0) {
                continue;
            }
            struct timeval tv = {.tv_usec = 300000};
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            /* Queries on this connection until EOF or a pause. */
            uint8_t l[2];
            while (recv(c, l, 2, MSG_WAITALL) == 2) {
                size_t len = (size_t)(l[0] << 8 | l[1]);
                if (len > sizeof(q) || recv(c, q, len, MSG_WAITALL) != (ssize_t)len) {
                    break;
                }
                atomic_fetch_add(&u->queries, 1);
                atomic_fetch_add(&u->tcp_queries, 1);
                size_t m = up_answer(u, q, len, r + 2, sizeof(r) - 2);
                if (m > 0) {
                    r[0] = (uint8_t)(m >> 8);
                    r[1] = (uint8_t)m;
                    (void)!write(c, r, m + 2);
                }
            }
            close(c);
        }
    }
    return NULL;
}

static void up_start(struct upstream *u, bool mute)
{
    memset(u, 0, sizeof(*u));
    u->mute = mute;
    atomic_init(&u->stop, false);
    atomic_init(&u->queries, 0);
    atomic_init(&u->tcp_queries, 0);
    /* A UDP and a TCP socket on the same free port (retried when the port the
     * kernel gave for UDP is taken for TCP). */
    for (int attempt = 0;; attempt++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        u->udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ASSERT_INT_EQ(bind(u->udp, (struct sockaddr *)&sa, sizeof(sa)), 0);
        socklen_t sl = sizeof(sa);
        getsockname(u->udp, (struct sockaddr *)&sa, &sl);
        u->port = ntohs(sa.sin_port);
        u->tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(u->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(u->tcp, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            break;
        }
        ASSERT_INT_OP(attempt, <, 50);
        close(u->udp);
        close(u->tcp);
    }
    ASSERT_INT_EQ(listen(u->tcp, 16), 0);
    ASSERT_INT_EQ(pthread_create(&u->thread, NULL, up_main, u), 0);
}

static void up_stop(struct upstream *u)
{
    atomic_store(&u->stop, true);
    pthread_join(u->thread, NULL);
    close(u->udp);
    close(u->tcp);
}

/* ======================================================================= clients */

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

static struct sockaddr_in lo(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static ssize_t udp_ask(uint16_t port, const uint8_t *q, size_t qlen, uint8_t *r,
                       size_t cap, double *ret_secs)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = lo(port);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sendto(fd, q, qlen, 0, (struct sockaddr *)&sa, sizeof(sa));
    ssize_t n = recv(fd, r, cap, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (ret_secs != NULL) {
        *ret_secs =
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    }
    close(fd);
    return n;
}

static ssize_t tcp_ask(uint16_t port, const uint8_t *q, size_t qlen, uint8_t *r,
                       size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = lo(port);
    ASSERT_INT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    uint8_t buf[2 + 512];
    buf[0] = (uint8_t)(qlen >> 8);
    buf[1] = (uint8_t)qlen;
    memcpy(buf + 2, q, qlen);
    ASSERT_INT_EQ(write(fd, buf, qlen + 2), (ssize_t)qlen + 2);
    uint8_t l[2];
    ssize_t n = -1;
    if (recv(fd, l, 2, MSG_WAITALL) == 2) {
        size_t len = (size_t)(l[0] << 8 | l[1]);
        ASSERT_TRUE(len <= cap);
        n = recv(fd, r, len, MSG_WAITALL);
    }
    close(fd);
    return n;
}

static struct dns_header hdr(const uint8_t *r, ssize_t n)
{
    ASSERT_INT_OP(n, >=, DNS_HEADER_LEN);
    struct dns_reader rd;
    ASSERT_OK(dns_reader_init(&rd, r, (size_t)n));
    return rd.header;
}

static struct dns_server *start_fwd(uint16_t up_port, unsigned timeout_ms, unsigned max)
{
    struct dns_upstream u;
    char a[32];
    snprintf(a, sizeof(a), "127.0.0.1:%u", up_port);
    ASSERT_OK(dns_upstream_parse(a, &u));
    struct dns_server_config cfg = {
        .addr = "127.0.0.1:0",
        .threads = 1,
        .forward = true,
        .upstreams = &u,
        .nupstreams = 1,
        .forward_timeout_ms = timeout_ms,
        .forward_tries = 1,
        .forward_max = max,
    };
    struct dns_server *s;
    struct cm_errbuf eb = {0};
    int rv = dns_server_new(&cfg, &s, &eb);
    if (rv != 0) {
        printf("# %s\n", eb.msg);
    }
    ASSERT_OK(rv);
    return s;
}

/* ======================================================================= forwarding */

TEST(forward_relays_with_client_id)
{
    struct upstream up;
    up_start(&up, false);
    struct dns_server *s = start_fwd(up.port, 1000, 0);
    uint16_t port = dns_server_port(s);
    uint8_t q[512], r[8192];
    /* UDP, with and without EDNS. */
    size_t ql = mkquery(q, sizeof(q), 0xbeef, "example.com", DNS_TYPE_A, -1);
    ssize_t n = udp_ask(port, q, ql, r, sizeof(r), NULL);
    struct dns_header h = hdr(r, n);
    ASSERT_UINT_EQ(h.id, 0xbeef);
    ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_NOERROR);
    ASSERT_UINT_EQ(h.ancount, 1);
    ASSERT_OK(dns_message_check(r, (size_t)n));
    ql = mkquery(q, sizeof(q), 0x0102, "nothing.example", DNS_TYPE_A, 1232);
    n = udp_ask(port, q, ql, r, sizeof(r), NULL);
    h = hdr(r, n);
    ASSERT_UINT_EQ(h.id, 0x0102);
    ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_NXDOMAIN);
    /* TCP goes upstream over TCP. */
    ql = mkquery(q, sizeof(q), 0x7777, "example.com", DNS_TYPE_A, -1);
    n = tcp_ask(port, q, ql, r, sizeof(r));
    h = hdr(r, n);
    ASSERT_UINT_EQ(h.id, 0x7777);
    ASSERT_UINT_EQ(h.ancount, 1);
    ASSERT_INT_OP(atomic_load(&up.tcp_queries), >=, 1);
    /* Names in the zone are not forwarded. */
    struct dns_zone_builder *b;
    struct dns_zone_config zc = {0};
    ASSERT_OK(dns_zone_builder_new(&zc, &b));
    struct dns_zone *z;
    ASSERT_OK(dns_zone_build(b, &z));
    dns_server_publish(s, z);
    unsigned before = atomic_load(&up.queries);
    ql = mkquery(q, sizeof(q), 1, "nope.cluster", DNS_TYPE_A, -1);
    n = udp_ask(port, q, ql, r, sizeof(r), NULL);
    ASSERT_UINT_EQ(DNS_RCODE_OF(hdr(r, n).flags), DNS_RCODE_NXDOMAIN);
    ASSERT_UINT_EQ(atomic_load(&up.queries), before);
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.forwarded, 3);
    ASSERT_UINT_EQ(st.forward_ok, 3);
    dns_server_free(s);
    up_stop(&up);
}

TEST(forward_truncates_for_udp_then_tcp_has_all)
{
    struct upstream up;
    up_start(&up, false);
    struct dns_server *s = start_fwd(up.port, 1000, 0);
    uint16_t port = dns_server_port(s);
    uint8_t q[512], r[8192];
    /* Our fake upstream ignores the client's size (1000 bytes over UDP): the
     * forwarder asks again over TCP, and the relay cuts to the client's 512. */
    size_t ql = mkquery(q, sizeof(q), 0x4242, "big.example", DNS_TYPE_A, -1);
    ssize_t n = udp_ask(port, q, ql, r, sizeof(r), NULL);
    struct dns_header h = hdr(r, n);
    ASSERT_INT_OP(n, <=, 512);
    ASSERT_UINT_EQ(h.id, 0x4242);
    ASSERT_TRUE(h.flags & DNS_FLAG_TC);
    ASSERT_UINT_EQ(h.ancount, 0);
    ASSERT_UINT_EQ(h.qdcount, 1);
    /* With EDNS 4096 it fits within our udp_max (1232): 12 + 16 + 60 * 16 + 11. */
    ql = mkquery(q, sizeof(q), 0x4343, "big.example", DNS_TYPE_A, 4096);
    n = udp_ask(port, q, ql, r, sizeof(r), NULL);
    h = hdr(r, n);
    ASSERT_FALSE(h.flags & DNS_FLAG_TC);
    ASSERT_UINT_EQ(h.ancount, 60);
    ql = mkquery(q, sizeof(q), 0x4444, "big.example", DNS_TYPE_A, -1);
    n = tcp_ask(port, q, ql, r, sizeof(r));
    h = hdr(r, n);
    ASSERT_UINT_EQ(h.id, 0x4444);
    ASSERT_UINT_EQ(h.ancount, 60);
    dns_server_free(s);
    up_stop(&up);
}

TEST(forward_failures_give_servfail)
{
    struct upstream up;
    up_start(&up, false);
    struct dns_server *s = start_fwd(up.port, 200, 0);
    uint16_t port = dns_server_port(s);
    uint8_t q[512], r[8192];
    double secs;
    /* Upstream silent: SERVFAIL after the timeout, not a hang. */
    size_t ql = mkquery(q, sizeof(q), 11, "silent.example", DNS_TYPE_A, 1232);
    ssize_t n = udp_ask(port, q, ql, r, sizeof(r), &secs);
    struct dns_header h = hdr(r, n);
    ASSERT_UINT_EQ(h.id, 11);
    ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_SERVFAIL);
    ASSERT_UINT_EQ(h.qdcount, 1);
    ASSERT_UINT_EQ(h.arcount, 1); /* our OPT, since the query had one */
    ASSERT_TRUE(secs >= 0.15 && secs < 3.0);
    /* Upstream refuses: SERVFAIL. */
    ql = mkquery(q, sizeof(q), 12, "refused.example", DNS_TYPE_A, -1);
    n = udp_ask(port, q, ql, r, sizeof(r), NULL);
    ASSERT_UINT_EQ(DNS_RCODE_OF(hdr(r, n).flags), DNS_RCODE_SERVFAIL);
    /* Over TCP too. */
    ql = mkquery(q, sizeof(q), 13, "silent.example", DNS_TYPE_A, -1);
    n = tcp_ask(port, q, ql, r, sizeof(r));
    h = hdr(r, n);
    ASSERT_UINT_EQ(h.id, 13);
    ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_SERVFAIL);
    dns_server_free(s);
    up_stop(&up);

    /* Nobody listening at all (ICMP port unreachable): SERVFAIL quickly. */
    s = start_fwd(up.port, 300, 0);
    ql = mkquery(q, sizeof(q), 14, "example.com", DNS_TYPE_A, -1);
    n = udp_ask(dns_server_port(s), q, ql, r, sizeof(r), &secs);
    ASSERT_UINT_EQ(DNS_RCODE_OF(hdr(r, n).flags), DNS_RCODE_SERVFAIL);
    ASSERT_TRUE(secs < 3.0);
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.forward_failed, 1);
    dns_server_free(s);
}

TEST(forward_outstanding_limit)
{
    struct upstream up;
    up_start(&up, true); /* answers nothing */
    struct dns_server *s = start_fwd(up.port, 500, 2);
    uint16_t port = dns_server_port(s);
    uint8_t q[512], r[512];
    int fds[4];
    struct sockaddr_in sa = lo(port);
    for (int i = 0; i < 4; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        size_t ql =
            mkquery(q, sizeof(q), (uint16_t)(20 + i), "example.com", DNS_TYPE_A, -1);
        sendto(fds[i], q, ql, 0, (struct sockaddr *)&sa, sizeof(sa));
        usleep(10000);
    }
    /* Two wait upstream; two more are over the limit and fail at once. */
    for (int i = 0; i < 4; i++) {
        ssize_t n = recv(fds[i], r, sizeof(r), 0);
        struct dns_header h = hdr(r, n);
        ASSERT_UINT_EQ(h.id, 20 + i);
        ASSERT_UINT_EQ(DNS_RCODE_OF(h.flags), DNS_RCODE_SERVFAIL);
        close(fds[i]);
    }
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.forward_limited, 2);
    ASSERT_UINT_EQ(st.forward_failed, 2);
    dns_server_free(s);
    up_stop(&up);
}

TEST(forward_cancelled_at_stop)
{
    struct upstream up;
    up_start(&up, true);
    struct dns_server *s = start_fwd(up.port, 5000, 0);
    uint16_t port = dns_server_port(s);
    uint8_t q[512];
    size_t ql = mkquery(q, sizeof(q), 1, "example.com", DNS_TYPE_A, -1);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = lo(port);
    for (int i = 0; i < 10; i++) {
        sendto(fd, q, ql, 0, (struct sockaddr *)&sa, sizeof(sa));
    }
    /* A TCP client whose forward is pending, then gone. */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_INT_EQ(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    uint8_t buf[2 + 512] = {(uint8_t)(ql >> 8), (uint8_t)ql};
    memcpy(buf + 2, q, ql);
    ASSERT_INT_EQ(write(c, buf, ql + 2), (ssize_t)ql + 2);
    usleep(100000);
    close(c);
    usleep(50000);
    struct dns_server_stats st;
    dns_server_stats(s, &st);
    ASSERT_UINT_EQ(st.forwarded, 11);
    /* Stopping with forwards pending frees them (ASan checks) without hanging. */
    dns_server_free(s);
    close(fd);
    up_stop(&up);
}

TEST(forward_upstreams_from_resolv_conf)
{
    /* Our own address is never an upstream (it would loop). */
    int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = lo(0);
    ASSERT_INT_EQ(bind(probe, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(probe, (struct sockaddr *)&sa, &sl);
    uint16_t port = ntohs(sa.sin_port);
    close(probe);
    char addr[32], path[] = "/tmp/cm-resolv-XXXXXX";
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    int fd = mkstemp(path);
    const char *text = "nameserver 127.0.0.1\nnameserver ::1\nnameserver 192.0.2.53\n";
    ASSERT_INT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct dns_upstream self;
    ASSERT_OK(dns_upstream_parse(addr, &self));
    struct dns_server_config cfg = {
        .addr = addr, .threads = 1, .forward = true, .upstreams = &self, .nupstreams = 1};
    struct dns_server *s;
    struct cm_errbuf eb = {0};
    ASSERT_OK(dns_server_new(&cfg, &s, &eb));
    size_t n;
    dns_server_upstreams(s, &n);
    ASSERT_UINT_EQ(n, 0);
    /* No upstream left: names outside the zone are REFUSED. */
    uint8_t q[512], r[512];
    size_t ql = mkquery(q, sizeof(q), 3, "example.com", DNS_TYPE_A, -1);
    ssize_t k = udp_ask(port, q, ql, r, sizeof(r), NULL);
    ASSERT_UINT_EQ(DNS_RCODE_OF(hdr(r, k).flags), DNS_RCODE_REFUSED);
    dns_server_free(s);

    /* From a resolv.conf file (port 53 there, so nothing is "us"). No query is
     * sent: 192.0.2.53 is only parsed. */
    struct dns_server_config cfg2 = {
        .addr = "127.0.0.1:0", .threads = 1, .forward = true, .resolv_conf = path};
    ASSERT_OK(dns_server_new(&cfg2, &s, &eb));
    const struct dns_upstream *u = dns_server_upstreams(s, &n);
    ASSERT_UINT_EQ(n, 3);
    ASSERT_UINT_EQ(u[2].port, 53);
    ASSERT_UINT_EQ(u[2].addr.bytes[3], 53);
    dns_server_free(s);
    unlink(path);
}
