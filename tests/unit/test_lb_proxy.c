/* lb/: the TCP proxy on loopback (no root): the proxy runs its own loop on a
 * thread, as in the daemon; backends are threads with blocking sockets; the test
 * is the client. Ports are picked by the kernel. */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "lb/lb.h"
#include "net/net.h"
#include "test.h"

/* ------------------------------------------------------------------ backends */

/* A backend answers each connection with "<id>|" and everything it received, once
 * the client has half-closed: that checks the FIN crosses the proxy and the reply
 * still comes back after it. */
struct backend {
    char id[8];
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_int conns;
    atomic_int live; /* connection threads still running (they use *b) */
    atomic_bool stop;
};

static void *backend_conn(void *arg)
{
    struct backend *b = ((void **)arg)[0];
    int fd = (int)(intptr_t)((void **)arg)[1];
    free(arg);
    char buf[65536];
    struct cm_buf got = {0};
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            break;
        }
        cm_buf_append(&got, buf, (size_t)n);
    }
    char hdr[16];
    int hl = snprintf(hdr, sizeof(hdr), "%s|", b->id);
    (void)send(fd, hdr, (size_t)hl, MSG_NOSIGNAL);
    size_t off = 0;
    while (off < got.len) {
        ssize_t n = send(fd, got.data + off, got.len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        off += (size_t)n;
    }
    cm_buf_done(&got);
    close(fd);
    atomic_fetch_sub(&b->live, 1); /* the last use of b */
    return NULL;
}

static void *backend_main(void *arg)
{
    struct backend *b = arg;
    while (!atomic_load(&b->stop)) {
        struct pollfd pfd = {.fd = b->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        int fd = accept(b->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        atomic_fetch_add(&b->conns, 1);
        atomic_fetch_add(&b->live, 1);
        void **a = malloc(2 * sizeof(void *));
        a[0] = b;
        a[1] = (void *)(intptr_t)fd;
        pthread_t t;
        pthread_create(&t, NULL, backend_conn, a);
        pthread_detach(t);
    }
    return NULL;
}

static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ASSERT_INT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_INT_EQ(listen(fd, 128), 0);
    ASSERT_OK(cm_tcp_local_port(fd, port));
    return fd;
}

static void backend_start(struct backend *b, const char *id)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->id, sizeof(b->id), "%s", id);
    b->lfd = listen_any(&b->port);
    pthread_create(&b->th, NULL, backend_main, b);
}

static void backend_stop(struct backend *b)
{
    atomic_store(&b->stop, true);
    pthread_join(b->th, NULL);
    close(b->lfd);
    /* b is on the test's stack: the next test reuses it (TSan). */
    while (atomic_load(&b->live) > 0) {
        usleep(1000);
    }
}

/* A port nothing listens on (connect: refused). */
static uint16_t dead_port(void)
{
    uint16_t port;
    int fd = listen_any(&port);
    close(fd);
    return port;
}

/* ------------------------------------------------------------------ proxy thread */

struct lbt {
    struct ev_loop *loop;
    struct lb_proxy *p;
    ev_async stop;
    pthread_t th;
    struct lb_endpoint vip;
};

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *lbt_main(void *arg)
{
    struct lbt *l = arg;
    ev_run(l->loop, 0);
    return NULL;
}

static struct lb_backend_spec bspec(uint16_t port, uint32_t w)
{
    struct lb_backend_spec s = {.weight = w};
    s.ep.addr.s_addr = htonl(0x7f000001);
    s.ep.port = port;
    return s;
}

static struct lb_table *table1(struct lb_endpoint vip, const struct lb_backend_spec *b,
                               size_t n, bool pp2, const struct lb_table *prev)
{
    struct lb_vip_spec v = {.vip = vip,
                            .mode = LB_MODE_PROXY,
                            .proxy_protocol = pp2,
                            .backends = b,
                            .nbackends = n};
    struct lb_table *t;
    ASSERT_OK(lb_table_new(&v, 1, prev, &t, NULL));
    return t;
}

static void lbt_start(struct lbt *l, const struct lb_proxy_opts *o, struct lb_table *t)
{
    memset(l, 0, sizeof(*l));
    l->loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT_NOT_NULL(l->loop);
    struct cm_errbuf eb = {0};
    ASSERT_OK(lb_proxy_new(l->loop, o, &l->p, &eb));
    l->vip = lb_table_at(t, 0)->vip;
    ASSERT_OK(lb_proxy_set_table(l->p, t, &eb));
    ASSERT_UINT_EQ(lb_proxy_port(l->p, l->vip), l->vip.port);
    ev_async_init(&l->stop, stop_cb);
    ev_async_start(l->loop, &l->stop);
    pthread_create(&l->th, NULL, lbt_main, l);
}

static void lbt_stop(struct lbt *l)
{
    ev_async_send(l->loop, &l->stop);
    pthread_join(l->th, NULL);
    ev_async_stop(l->loop, &l->stop);
    lb_proxy_free(l->p);
    ev_loop_destroy(l->loop);
}

/* A VIP on 127.0.0.1 and a free port. */
static struct lb_endpoint vip_ep(void)
{
    struct lb_endpoint e;
    e.addr.s_addr = htonl(0x7f000001);
    e.port = dead_port();
    return e;
}

/* ------------------------------------------------------------------ client */

static int client_connect(struct lb_endpoint vip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_addr = vip.addr, .sin_port = htons(vip.port)};
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ASSERT_INT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Read to EOF (or error) into @out; returns 0 on EOF, -errno otherwise. */
static int read_all(int fd, struct cm_buf *out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            return -errno;
        }
        cm_buf_append(out, buf, (size_t)n);
    }
}

/* One request: send @msg, half-close, read the reply; returns the backend id. */
static char request(struct lb_endpoint vip, const char *msg, size_t len)
{
    int fd = client_connect(vip);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, msg + off, len - off, MSG_NOSIGNAL);
        ASSERT_INT_OP(n, >, 0);
        off += (size_t)n;
    }
    ASSERT_INT_EQ(shutdown(fd, SHUT_WR), 0);
    struct cm_buf got = {0};
    ASSERT_OK(read_all(fd, &got));
    close(fd);
    ASSERT_UINT_EQ(got.len, len + 3);
    ASSERT_TRUE(got.data[2] == '|');
    ASSERT_MEM_EQ(got.data + 3, msg, len);
    char id = got.data[1];
    cm_buf_done(&got);
    return id;
}

static void wait_idle(struct lb_table *t, struct lbt *l)
{
    struct lb_vip_metrics m;
    for (int i = 0; i < 200; i++) {
        lb_vip_metrics_get(lb_table_at(t, 0), &m);
        if (m.active == 0) {
            return;
        }
        usleep(10000);
    }
    (void)l;
    ASSERT_UINT_EQ(m.active, 0);
}

/* ------------------------------------------------------------------ tests */

static void forward_and_spread(bool no_splice)
{
    struct backend b1, b2;
    backend_start(&b1, "b1");
    backend_start(&b2, "b2");
    struct lb_backend_spec bs[] = {bspec(b1.port, 1), bspec(b2.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 2, false, NULL);
    struct lb_proxy_opts o = {.seed = 1, .no_splice = no_splice};
    struct lbt l;
    lbt_start(&l, &o, t);

    int seen1 = 0, seen2 = 0;
    char msg[64];
    for (int i = 0; i < 40; i++) {
        int n = snprintf(msg, sizeof(msg), "hello %d", i);
        char id = request(l.vip, msg, (size_t)n);
        seen1 += id == '1';
        seen2 += id == '2';
    }
    ASSERT_INT_EQ(seen1 + seen2, 40);
    ASSERT_INT_OP(seen1, >=, 10); /* sequential: both idle, so about half each */
    ASSERT_INT_OP(seen2, >=, 10);

    /* A large body both ways (several pipe/buffer rounds, backpressure). */
    size_t big = 3 * 1024 * 1024 + 17;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) {
        data[i] = (char)(i * 31 + 7);
    }
    (void)request(l.vip, data, big);
    free(data);

    wait_idle(t, &l);
    struct lb_vip_metrics m;
    lb_vip_metrics_get(lb_table_at(t, 0), &m);
    ASSERT_UINT_EQ(m.total, 41);
    ASSERT_UINT_EQ(m.failed, 0);
    ASSERT_UINT_EQ(m.active, 0);
    ASSERT_INT_OP(m.bytes_in, >=, big + 40 * 7);
    ASSERT_UINT_EQ(m.bytes_out, m.bytes_in + 41 * 3);
    ASSERT_UINT_EQ(lb_backend_active(&lb_table_at(t, 0)->backends[0]), 0);
    lbt_stop(&l);
    lb_table_unref(t);
    backend_stop(&b1);
    backend_stop(&b2);
}

TEST(forward_splice)
{
    forward_and_spread(false);
}

TEST(forward_copy)
{
    forward_and_spread(true);
}

TEST(retry_on_refused)
{
    struct backend b;
    backend_start(&b, "b1");
    struct lb_backend_spec bs[] = {bspec(dead_port(), 1), bspec(b.port, 1),
                                   bspec(dead_port(), 1)};
    struct lb_table *t = table1(vip_ep(), bs, 3, false, NULL);
    struct lb_proxy_opts o = {.seed = 2, .retries = 2};
    struct lbt l;
    lbt_start(&l, &o, t);
    for (int i = 0; i < 20; i++) {
        ASSERT_INT_EQ(request(l.vip, "x", 1), '1');
    }
    wait_idle(t, &l);
    struct lb_vip_metrics m;
    lb_vip_metrics_get(lb_table_at(t, 0), &m);
    ASSERT_UINT_EQ(m.failed, 0);
    ASSERT_UINT_EQ(m.total, 20);
    lbt_stop(&l);
    lb_table_unref(t);
    backend_stop(&b);
}

TEST(all_backends_down)
{
    struct lb_backend_spec bs[] = {bspec(dead_port(), 1), bspec(dead_port(), 1)};
    struct lb_table *t = table1(vip_ep(), bs, 2, false, NULL);
    struct lb_proxy_opts o = {.seed = 3};
    struct lbt l;
    lbt_start(&l, &o, t);
    int fd = client_connect(l.vip);
    struct cm_buf got = {0};
    int rv = read_all(fd, &got);
    ASSERT_TRUE(rv == 0 || rv == -ECONNRESET);
    ASSERT_UINT_EQ(got.len, 0);
    close(fd);
    wait_idle(t, &l);
    struct lb_vip_metrics m;
    lb_vip_metrics_get(lb_table_at(t, 0), &m);
    ASSERT_UINT_EQ(m.failed, 1);
    lbt_stop(&l);
    lb_table_unref(t);
}

/* A backend whose accept queue is full drops SYNs: the connect times out and the
 * next backend is tried. */
TEST(connect_timeout_then_retry)
{
    struct backend b;
    backend_start(&b, "b1");
    uint16_t hole_port;
    int hole = listen_any(&hole_port);
    close(hole);
    hole = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(0x7f000001),
                             .sin_port = htons(hole_port)};
    ASSERT_INT_EQ(bind(hole, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_INT_EQ(listen(hole, 0), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) { /* fill the queue; later SYNs get no answer */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        (void)connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    usleep(50000);
    struct lb_backend_spec bs[] = {bspec(hole_port, 1), bspec(b.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 2, false, NULL);
    struct lb_proxy_opts o = {.seed = 4, .connect_timeout_ms = 150};
    struct lbt l;
    lbt_start(&l, &o, t);
    for (int i = 0; i < 6; i++) {
        ASSERT_INT_EQ(request(l.vip, "y", 1), '1');
    }
    lbt_stop(&l);
    lb_table_unref(t);
    for (int i = 0; i < 4; i++) {
        close(fill[i]);
    }
    close(hole);
    backend_stop(&b);
}

TEST(proxy_protocol_v2)
{
    struct backend b;
    backend_start(&b, "b1");
    struct lb_backend_spec bs[] = {bspec(b.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 1, true, NULL);
    struct lb_proxy_opts o = {.seed = 5};
    struct lbt l;
    lbt_start(&l, &o, t);
    int fd = client_connect(l.vip);
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    getsockname(fd, (struct sockaddr *)&me, &len);
    ASSERT_INT_EQ(send(fd, "payload", 7, 0), 7);
    shutdown(fd, SHUT_WR);
    struct cm_buf got = {0};
    ASSERT_OK(read_all(fd, &got));
    close(fd);
    ASSERT_TRUE(got.len > 3);
    struct lb_pp2 p;
    ASSERT_OK(lb_pp2_parse(got.data + 3, got.len - 3, &p));
    ASSERT_INT_EQ(p.cmd, LB_PP2_PROXY);
    ASSERT_INT_EQ(p.family, AF_INET);
    const struct sockaddr_in *src = (const void *)&p.src, *dst = (const void *)&p.dst;
    ASSERT_UINT_EQ(src->sin_addr.s_addr, me.sin_addr.s_addr); /* the client's address */
    ASSERT_UINT_EQ(src->sin_port, me.sin_port);
    ASSERT_UINT_EQ(dst->sin_addr.s_addr, l.vip.addr.s_addr);
    ASSERT_UINT_EQ(ntohs(dst->sin_port), l.vip.port);
    ASSERT_UINT_EQ(got.len, 3 + p.len + 7);
    ASSERT_MEM_EQ(got.data + 3 + p.len, "payload", 7);
    cm_buf_done(&got);
    lbt_stop(&l);
    lb_table_unref(t);
    backend_stop(&b);
}

static uint64_t conns_of(struct lb_table *t, uint16_t port)
{
    uint64_t n = 0;
    struct lb_endpoint e = bspec(port, 1).ep;
    ASSERT_OK(lb_table_backend_conns(t, e, &n));
    return n;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

TEST(drain)
{
    struct backend b1, b2;
    backend_start(&b1, "b1");
    backend_start(&b2, "b2");
    struct lb_backend_spec bs[] = {bspec(b1.port, 1), bspec(b2.port, 0)};
    struct lb_table *t1 = table1(vip_ep(), bs, 2, false, NULL);
    struct lb_proxy_opts o = {.seed = 6, .drain_timeout_ms = 400};
    struct lbt l;
    lbt_start(&l, &o, t1);

    /* A long connection to b1 (b2 has weight 0: not eligible yet). */
    int longc = client_connect(l.vip);
    ASSERT_INT_EQ(send(longc, "long", 4, 0), 4);
    for (int i = 0; i < 100 && conns_of(t1, b1.port) == 0; i++) {
        usleep(5000);
    }
    ASSERT_UINT_EQ(conns_of(t1, b1.port), 1);

    /* b1 draining, b2 healthy: new connections go to b2 only. */
    bs[0].draining = true;
    bs[1].weight = 1;
    struct lb_table *t2 = table1(l.vip, bs, 2, false, t1);
    lb_proxy_publish(l.p, lb_table_ref(t2));
    uint64_t t0 = mono_ms();
    usleep(50000);
    for (int i = 0; i < 10; i++) {
        ASSERT_INT_EQ(request(l.vip, "n", 1), '2');
    }
    ASSERT_UINT_EQ(conns_of(t2, b1.port), 1); /* still open, still counted */

    /* Ended by the drain timeout, not before. */
    struct cm_buf got = {0};
    int rv = read_all(longc, &got);
    uint64_t waited = mono_ms() - t0;
    ASSERT_TRUE(rv == 0 || rv == -ECONNRESET);
    ASSERT_INT_OP(waited, >=, 350);
    ASSERT_INT_OP(waited, <, 3000);
    cm_buf_done(&got);
    close(longc);
    for (int i = 0; i < 100 && conns_of(t2, b1.port) != 0; i++) {
        usleep(5000);
    }
    ASSERT_UINT_EQ(conns_of(t2, b1.port), 0);
    lbt_stop(&l);
    lb_table_unref(t1);
    lb_table_unref(t2);
    backend_stop(&b1);
    backend_stop(&b2);
}

TEST(idle_timeout)
{
    struct backend b;
    backend_start(&b, "b1");
    struct lb_backend_spec bs[] = {bspec(b.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 1, false, NULL);
    struct lb_proxy_opts o = {.seed = 7, .idle_timeout_ms = 200};
    struct lbt l;
    lbt_start(&l, &o, t);
    int fd = client_connect(l.vip);
    uint64_t t0 = mono_ms();
    struct cm_buf got = {0};
    int rv = read_all(fd, &got);
    ASSERT_TRUE(rv == 0 || rv == -ECONNRESET);
    ASSERT_INT_OP(mono_ms() - t0, >=, 150);
    close(fd);
    cm_buf_done(&got);
    lbt_stop(&l);
    lb_table_unref(t);
    backend_stop(&b);
}

/* Removing the VIP closes its listener; connections in flight are unaffected. */
TEST(table_swap_listeners)
{
    struct backend b;
    backend_start(&b, "b1");
    struct lb_backend_spec bs[] = {bspec(b.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 1, false, NULL);
    struct lb_proxy_opts o = {.seed = 8};
    struct lbt l;
    lbt_start(&l, &o, t);
    ASSERT_INT_EQ(request(l.vip, "a", 1), '1');
    struct lb_table *empty;
    ASSERT_OK(lb_table_new(NULL, 0, t, &empty, NULL));
    lb_proxy_publish(l.p, empty);
    int refused = 0;
    for (int i = 0; i < 100 && !refused; i++) {
        usleep(5000);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {
            .sin_family = AF_INET, .sin_addr = l.vip.addr, .sin_port = htons(l.vip.port)};
        refused = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0;
        close(fd);
    }
    ASSERT_TRUE(refused);
    lbt_stop(&l);
    lb_table_unref(t);
    backend_stop(&b);
}

/* A backend that speaks first and half-closes first: it sends a greeting and
 * its FIN before the client sends anything, then reads the client's bytes to
 * their end. One connection; what it read is in got. */
struct greeter {
    int lfd;
    uint16_t port;
    pthread_t th;
    struct cm_buf got;
};

static void *greeter_main(void *arg)
{
    struct greeter *g = arg;
    int fd = accept(g->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    (void)send(fd, "hello", 5, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    (void)read_all(fd, &g->got);
    close(fd);
    return NULL;
}

/* The proxy must not wait for the client to speak (server-first protocols), and
 * the backend's FIN reaches the client while the client's bytes still flow the
 * other way and reach the backend, FIN included (half-close from the server). */
TEST(server_speaks_and_half_closes_first)
{
    struct greeter g = {0};
    g.lfd = listen_any(&g.port);
    pthread_create(&g.th, NULL, greeter_main, &g);
    struct lb_backend_spec bs[] = {bspec(g.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 1, false, NULL);
    struct lbt l;
    lbt_start(&l, &(struct lb_proxy_opts){.seed = 14}, t);

    int fd = client_connect(l.vip);
    struct cm_buf got = {0};
    ASSERT_OK(read_all(fd, &got)); /* the greeting, then EOF: the backend's FIN */
    ASSERT_UINT_EQ(got.len, 5);
    ASSERT_MEM_EQ(got.data, "hello", 5);
    cm_buf_done(&got);
    for (int i = 0; i < 3; i++) { /* the client still talks after that FIN */
        ASSERT_INT_EQ(send(fd, "after", 5, MSG_NOSIGNAL), 5);
        usleep(20000);
    }
    ASSERT_INT_EQ(shutdown(fd, SHUT_WR), 0);
    pthread_join(g.th, NULL); /* returns once the client's FIN came through */
    ASSERT_UINT_EQ(g.got.len, 15);
    ASSERT_MEM_EQ(g.got.data, "afterafterafter", 15);
    close(fd);
    wait_idle(t, &l);
    struct lb_vip_metrics m;
    lb_vip_metrics_get(lb_table_at(t, 0), &m);
    ASSERT_UINT_EQ(m.failed, 0);
    ASSERT_UINT_EQ(m.bytes_in, 15);
    ASSERT_UINT_EQ(m.bytes_out, 5);
    lbt_stop(&l);
    lb_table_unref(t);
    cm_buf_done(&g.got);
    close(g.lfd);
}

/* ------------------------------------------------------------------ threads */

/* Connect until the pool's threads have installed a table with @vip. */
static void wait_listening(struct lb_endpoint vip)
{
    for (int i = 0; i < 400; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {
            .sin_family = AF_INET, .sin_addr = vip.addr, .sin_port = htons(vip.port)};
        int rv = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (rv == 0) {
            return;
        }
        usleep(5000);
    }
    ASSERT_TRUE(false); /* the pool never listened */
}

/* @n clients at once: connect all, send, half-close, then read every reply. */
static void burst(struct lb_endpoint vip, int n, int *seen1, int *seen2)
{
    int *fds = calloc((size_t)n, sizeof(int));
    char msg[32];
    for (int i = 0; i < n; i++) {
        fds[i] = client_connect(vip);
        int len = snprintf(msg, sizeof(msg), "burst %d", i);
        ASSERT_INT_EQ(send(fds[i], msg, (size_t)len, MSG_NOSIGNAL), len);
        ASSERT_INT_EQ(shutdown(fds[i], SHUT_WR), 0);
    }
    for (int i = 0; i < n; i++) {
        struct cm_buf got = {0};
        ASSERT_OK(read_all(fds[i], &got));
        close(fds[i]);
        int len = snprintf(msg, sizeof(msg), "burst %d", i);
        ASSERT_UINT_EQ(got.len, (size_t)len + 3);
        ASSERT_MEM_EQ(got.data + 3, msg, (size_t)len);
        *seen1 += got.data[1] == '1';
        *seen2 += got.data[1] == '2';
        cm_buf_done(&got);
    }
    free(fds);
}

/* Two proxy threads on one VIP (SO_REUSEPORT): bursts of concurrent connections,
 * a table update between bursts while the last connections of the previous one
 * may still flow, metrics summed over both threads and both tables. */
TEST(pool_threads_table_update)
{
    struct backend b1, b2;
    backend_start(&b1, "b1");
    backend_start(&b2, "b2");
    struct lb_backend_spec bs[] = {bspec(b1.port, 1), bspec(b2.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 2, false, NULL);
    struct lb_endpoint vip = lb_table_at(t, 0)->vip;
    struct lb_proxy_opts o = {.seed = 11};
    struct lb_proxy_pool *pp;
    struct cm_errbuf eb = {0};
    ASSERT_OK(lb_proxy_pool_new(&o, 2, &pp, &eb));
    ASSERT_UINT_EQ(lb_proxy_pool_threads(pp), 2);
    lb_proxy_pool_publish(pp, lb_table_ref(t));
    wait_listening(vip); /* one connection with no byte: counted, not failed */

    int seen1 = 0, seen2 = 0;
    burst(vip, 100, &seen1, &seen2);
    ASSERT_INT_EQ(seen1 + seen2, 100);
    ASSERT_INT_OP(seen1, >=, 20);
    ASSERT_INT_OP(seen2, >=, 20);

    /* b1 drains: new connections only go to b2; metrics carry over. */
    struct lb_backend_spec bs2[] = {bspec(b1.port, 1), bspec(b2.port, 1)};
    bs2[0].draining = true;
    struct lb_table *t2 = table1(vip, bs2, 2, false, t);
    lb_proxy_pool_publish(pp, lb_table_ref(t2));
    for (int round = 0; round < 3; round++) {
        seen1 = seen2 = 0;
        burst(vip, 50, &seen1, &seen2);
        ASSERT_INT_EQ(seen1 + seen2, 50);
        if (seen1 == 0) {
            break; /* both threads installed t2 */
        }
        usleep(20000);
    }
    ASSERT_INT_EQ(seen1, 0);

    wait_idle(t2, NULL);
    struct lb_vip_metrics m;
    lb_vip_metrics_get(lb_table_at(t2, 0), &m);
    ASSERT_INT_OP(m.total, >=, 1 + 100 + 50);
    ASSERT_UINT_EQ(m.failed, 0);
    ASSERT_UINT_EQ(m.active, 0);
    ASSERT_UINT_EQ(lb_backend_active(&lb_table_at(t2, 0)->backends[0]), 0);
    ASSERT_UINT_EQ(lb_backend_active(&lb_table_at(t2, 0)->backends[1]), 0);
    lb_proxy_pool_free(pp);
    lb_table_unref(t2);
    lb_table_unref(t);
    backend_stop(&b1);
    backend_stop(&b2);
}

/* Freeing the pool with connections open closes them (the clients see the end)
 * and frees everything (ASan: no leak). */
TEST(pool_shutdown_with_open_conns)
{
    struct backend b;
    backend_start(&b, "b1");
    struct lb_backend_spec bs[] = {bspec(b.port, 1)};
    struct lb_table *t = table1(vip_ep(), bs, 1, false, NULL);
    struct lb_endpoint vip = lb_table_at(t, 0)->vip;
    struct lb_proxy_pool *pp;
    ASSERT_OK(lb_proxy_pool_new(&(struct lb_proxy_opts){.seed = 12}, 2, &pp, NULL));
    lb_proxy_pool_publish(pp, lb_table_ref(t));
    wait_listening(vip);
    wait_idle(t, NULL);

    enum { N = 20 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = client_connect(vip);
        ASSERT_INT_EQ(send(fds[i], "x", 1, MSG_NOSIGNAL), 1); /* no FIN: stays open */
    }
    struct lb_vip_metrics m;
    for (int i = 0; i < 200; i++) {
        lb_vip_metrics_get(lb_table_at(t, 0), &m);
        if (m.active == N && lb_backend_active(&lb_table_at(t, 0)->backends[0]) == N) {
            break;
        }
        usleep(10000);
    }
    ASSERT_UINT_EQ(m.active, N);
    lb_proxy_pool_free(pp);
    lb_vip_metrics_get(lb_table_at(t, 0), &m);
    ASSERT_UINT_EQ(m.active, 0);
    ASSERT_UINT_EQ(lb_backend_active(&lb_table_at(t, 0)->backends[0]), 0);
    for (int i = 0; i < N; i++) {
        char c;
        ASSERT_INT_OP(recv(fds[i], &c, 1, 0), <=, 0); /* EOF: the proxy is gone */
        close(fds[i]);
    }
    lb_table_unref(t);
    backend_stop(&b);
}

TEST(pool_default_threads)
{
    unsigned n = lb_proxy_threads_default();
    ASSERT_INT_OP(n, >=, 1);
    ASSERT_INT_OP(n, <=, LB_PROXY_THREADS_DEFAULT_MAX);
    struct lb_proxy_pool *pp;
    struct cm_errbuf eb = {0};
    ASSERT_ERR(lb_proxy_pool_new(NULL, LB_PROXY_THREADS_MAX + 1, &pp, &eb), CM_EINVAL);
    ASSERT_OK(lb_proxy_pool_new(NULL, 0, &pp, &eb));
    ASSERT_UINT_EQ(lb_proxy_pool_threads(pp), n);
    lb_proxy_pool_publish(pp, NULL);
    lb_proxy_pool_free(pp);
}

/* Count the lines of @path that contain @needle. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    ASSERT_NOT_NULL(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

static int listen_error_of(const struct lb_table *t, size_t i)
{
    struct lb_vip_metrics m;
    lb_vip_metrics_get(lb_table_at(t, i), &m);
    return m.listen_error;
}

/* Another socket holds one VIP's port: both proxy threads fail to listen on it,
 * listen_error says EADDRINUSE, the log says so once (not per thread or retry),
 * and the other VIP of the table is served meanwhile. Once the port is free a
 * retry takes it: listen_error is 0 again and connections get through. */
TEST(listen_error_reported_and_retried)
{
    struct backend b;
    backend_start(&b, "b1");
    uint16_t held_port;
    int holder = listen_any(&held_port);
    struct lb_endpoint held = {.addr.s_addr = htonl(0x7f000001), .port = held_port};
    struct lb_endpoint free_ep = vip_ep();
    struct lb_backend_spec bs[] = {bspec(b.port, 1)};
    struct lb_vip_spec vs[] = {
        {.vip = held, .mode = LB_MODE_PROXY, .backends = bs, .nbackends = 1},
        {.vip = free_ep, .mode = LB_MODE_PROXY, .backends = bs, .nbackends = 1},
    };
    struct lb_table *t;
    ASSERT_OK(lb_table_new(vs, 2, NULL, &t, NULL));
    size_t ih = lb_endpoint_eq(lb_table_at(t, 0)->vip, held) ? 0 : 1;

    /* The proxy's log lines go to a file for the test's duration. */
    char logpath[] = "/tmp/test_lb_proxy_log_XXXXXX";
    int logfd = mkstemp(logpath);
    ASSERT_INT_OP(logfd, >=, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ASSERT_INT_EQ(dup2(logfd, STDERR_FILENO), STDERR_FILENO);

    struct lb_proxy_pool *pp;
    ASSERT_OK(lb_proxy_pool_new(&(struct lb_proxy_opts){.seed = 13}, 2, &pp, NULL));
    lb_proxy_pool_publish(pp, lb_table_ref(t));
    wait_listening(free_ep); /* not held up by the other VIP */
    ASSERT_INT_EQ(request(free_ep, "f", 1), '1');
    for (int i = 0; i < 200 && listen_error_of(t, ih) == 0; i++) {
        usleep(10000);
    }
    ASSERT_INT_EQ(listen_error_of(t, ih), EADDRINUSE);
    ASSERT_INT_EQ(listen_error_of(t, 1 - ih), 0);
    usleep(2300000); /* two retries on each thread */
    ASSERT_INT_EQ(listen_error_of(t, ih), EADDRINUSE);

    close(holder);
    for (int i = 0; i < 300 && listen_error_of(t, ih) != 0; i++) {
        usleep(10000);
    }
    ASSERT_INT_EQ(listen_error_of(t, ih), 0);
    wait_listening(held);
    ASSERT_INT_EQ(request(held, "h", 1), '1');
    usleep(1200000); /* the other thread's retry has taken it too */
    ASSERT_INT_EQ(listen_error_of(t, ih), 0);

    lb_proxy_pool_free(pp);
    fflush(stderr);
    ASSERT_INT_EQ(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(logfd);
    char es[LB_ENDPOINT_STRLEN], needle[64];
    snprintf(needle, sizeof(needle), "VIP %s: cannot listen", lb_endpoint_str(held, es));
    ASSERT_INT_EQ(count_lines(logpath, needle), 1);
    snprintf(needle, sizeof(needle), "VIP %s: listening", lb_endpoint_str(held, es));
    ASSERT_INT_EQ(count_lines(logpath, needle), 1);
    snprintf(needle, sizeof(needle), "VIP %s:", lb_endpoint_str(free_ep, es));
    ASSERT_INT_EQ(count_lines(logpath, needle), 0);
    unlink(logpath);
    lb_table_unref(t);
    backend_stop(&b);
}
