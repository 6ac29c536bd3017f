/* raft/transport.c on a real libev loop with real sockets on 127.0.0.1 (port 0).
 * Every wait is bounded by an ev_timer; a test that times out fails. */
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"
#include "net/net.h"
#include "raft/raft.h"
#include "test.h"

#define WAIT_SECS 10.0
#define CLUSTER   0xc1c1c1c1ull

/* ---- a node: one transport and what it received */

struct node {
    struct raft_transport *t;
    raft_id id;
    uint16_t port;
    char address[RAFT_ADDRESS_MAX];
    /* received */
    unsigned n_msgs;
    struct raft_message last;
    uint64_t next_seq; /* pipelining: the seq expected next */
    bool out_of_order;
    size_t entry_bytes; /* total entry payload received */
    unsigned n_rpcs;
    char last_rpc[64];
    raft_id last_rpc_from;
    bool close_in_recv; /* close the transport from the callback */
};

static void on_recv(void *data, const struct raft_message *m)
{
    struct node *n = data;
    n->n_msgs++;
    n->last = *m;
    if (m->type == RAFT_MSG_APPEND) {
        if (m->append.seq != n->next_seq) {
            n->out_of_order = true;
        }
        n->next_seq = m->append.seq + 1;
        for (unsigned i = 0; i < m->append.n_entries; i++) {
            n->entry_bytes += m->append.entries[i].buf.len;
        }
        n->last.append.entries = NULL; /* borrowed: do not keep */
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        n->entry_bytes += m->snapshot.chunk.len;
        n->last.snapshot.chunk.base = NULL;
        memset(&n->last.snapshot.config, 0, sizeof(n->last.snapshot.config));
    }
    if (n->close_in_recv) {
        raft_transport_close(n->t);
        n->t = NULL;
    }
}

static void on_rpc(void *data, raft_id from, const void *body, size_t len)
{
    struct node *n = data;
    n->n_rpcs++;
    n->last_rpc_from = from;
    size_t k = CM_MIN(len, sizeof(n->last_rpc) - 1);
    memcpy(n->last_rpc, body, k);
    n->last_rpc[k] = '\0';
}

static void node_start_opts(struct ev_loop *loop, struct node *n, raft_id id,
                            uint16_t port, struct raft_transport_options *o)
{
    char bind[32];
    snprintf(bind, sizeof(bind), "127.0.0.1:%u", port);
    memset(n, 0, sizeof(*n));
    n->id = id;
    o->id = id;
    o->cluster_id = CLUSTER;
    o->bind_address = bind;
    o->recv = on_recv;
    o->rpc = on_rpc;
    o->data = n;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = raft_transport_start(loop, o, &n->t, &eb);
    if (rv != 0) {
        printf("# start: %s\n", eb.msg);
    }
    ASSERT_OK(rv);
    n->port = raft_transport_port(n->t);
    ASSERT_TRUE(n->port != 0);
    snprintf(n->address, sizeof(n->address), "127.0.0.1:%u", n->port);
}

static void node_start(struct ev_loop *loop, struct node *n, raft_id id, uint16_t port)
{
    struct raft_transport_options o;
    memset(&o, 0, sizeof(o));
    o.reconnect_min_ms = 10;
    o.reconnect_max_ms = 100;
    node_start_opts(loop, n, id, port, &o);
}

static struct raft_transport_stats stats(const struct node *n)
{
    struct raft_transport_stats s;
    raft_transport_get_stats(n->t, &s);
    return s;
}

/* ---- bounded waits */

/* The condition is checked in a prepare watcher: after all callbacks of an
 * iteration ran and before the loop would block. */
struct waiter {
    ev_prepare check;
    ev_timer timer;
    bool (*cond)(void *arg);
    void *arg;
    bool timed_out;
};

static void waiter_check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct waiter *wt = cm_container_of(w, struct waiter, check);
    if (wt->cond(wt->arg)) {
        ev_break(loop, EVBREAK_ONE);
    }
}

static void waiter_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct waiter *wt = cm_container_of(w, struct waiter, timer);
    wt->timed_out = true;
    ev_break(loop, EVBREAK_ONE);
}

/* Run @loop until @cond holds; false when WAIT_SECS passed first. */
static bool wait_until(struct ev_loop *loop, bool (*cond)(void *), void *arg)
{
    if (cond(arg)) {
        return true;
    }
    struct waiter w = {.cond = cond, .arg = arg};
    ev_prepare_init(&w.check, waiter_check_cb);
    ev_timer_init(&w.timer, waiter_timer_cb, WAIT_SECS, 0.);
    ev_prepare_start(loop, &w.check);
    ev_timer_start(loop, &w.timer);
    ev_run(loop, 0);
    ev_prepare_stop(loop, &w.check);
    ev_timer_stop(loop, &w.timer);
    return !w.timed_out && cond(arg);
}

#define WAIT(loop, cond, arg) ASSERT_TRUE(wait_until((loop), (cond), (arg)))

/* Run the loop for @secs (to show that something does NOT happen). */
static void run_for(struct ev_loop *loop, double secs)
{
    struct waiter w;
    ev_timer_init(&w.timer, waiter_timer_cb, secs, 0.);
    ev_timer_start(loop, &w.timer);
    ev_run(loop, 0);
    ev_timer_stop(loop, &w.timer);
}

struct count_arg {
    const unsigned *counter;
    unsigned want;
};

static bool count_reached(void *arg)
{
    struct count_arg *a = arg;
    return *a->counter >= a->want;
}

#define WAIT_COUNT(loop, counter_expr, n)              \
    do {                                               \
        struct count_arg ca_ = {&(counter_expr), (n)}; \
        WAIT(loop, count_reached, &ca_);               \
    } while (0)

static struct raft_message vote(raft_id from, raft_id to, raft_term term)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_VOTE;
    m.from = from;
    m.to = to;
    m.vote.term = term;
    m.vote.last_index = 10;
    m.vote.last_term = 2;
    m.vote.pre_vote = 1;
    return m;
}

static struct ev_loop *new_loop(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ASSERT_NOT_NULL(loop);
    return loop;
}

/* Teardown must leave nothing running on the loop. */
static void end_loop(struct ev_loop *loop)
{
    ASSERT_INT_EQ(ev_pending_count(loop), 0);
    ev_run(loop, EVRUN_NOWAIT);
    ev_loop_destroy(loop);
}

/* ---- tests */

TEST(exchange_both_ways)
{
    struct ev_loop *loop = new_loop();
    struct node a, b;
    node_start(loop, &a, 1, 0);
    node_start(loop, &b, 2, 0);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, b.address));
    ASSERT_OK(raft_transport_set_peer(b.t, 1, a.address));

    struct raft_message m = vote(1, 2, 7);
    ASSERT_OK(raft_transport_send(a.t, &m));
    WAIT_COUNT(loop, b.n_msgs, 1);
    ASSERT_UINT_EQ(b.last.type, RAFT_MSG_VOTE);
    ASSERT_UINT_EQ(b.last.from, 1);
    ASSERT_UINT_EQ(b.last.to, 2);
    ASSERT_UINT_EQ(b.last.vote.term, 7);
    ASSERT_UINT_EQ(b.last.vote.pre_vote, 1);

    struct raft_message r;
    memset(&r, 0, sizeof(r));
    r.type = RAFT_MSG_VOTE_RESULT;
    r.from = 0; /* the transport fills in our id */
    r.to = 1;
    r.vote_result.term = 7;
    r.vote_result.granted = 1;
    ASSERT_OK(raft_transport_send(b.t, &r));
    WAIT_COUNT(loop, a.n_msgs, 1);
    ASSERT_UINT_EQ(a.last.type, RAFT_MSG_VOTE_RESULT);
    ASSERT_UINT_EQ(a.last.from, 2);
    ASSERT_UINT_EQ(a.last.vote_result.granted, 1);

    ASSERT_OK(raft_transport_send_rpc(a.t, 2, "ping", 4));
    ASSERT_OK(raft_transport_send_rpc(b.t, 1, "pong", 4));
    WAIT_COUNT(loop, b.n_rpcs, 1);
    WAIT_COUNT(loop, a.n_rpcs, 1);
    ASSERT_STR_EQ(b.last_rpc, "ping");
    ASSERT_UINT_EQ(b.last_rpc_from, 1);
    ASSERT_STR_EQ(a.last_rpc, "pong");
    ASSERT_UINT_EQ(a.last_rpc_from, 2);

    ASSERT_UINT_EQ(stats(&a).connected, 1);
    ASSERT_UINT_EQ(stats(&b).accepted, 1);
    ASSERT_UINT_EQ(stats(&a).refused, 0);
    raft_transport_close(a.t);
    raft_transport_close(b.t);
    end_loop(loop);
}

static struct raft_message append(raft_id from, raft_id to, uint64_t seq,
                                  struct raft_entry *e, unsigned n)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APPEND;
    m.from = from;
    m.to = to;
    m.append.term = 3;
    m.append.prev_index = seq;
    m.append.seq = seq;
    m.append.n_entries = n;
    m.append.entries = e;
    return m;
}

TEST(thousands_pipelined_in_order)
{
    struct ev_loop *loop = new_loop();
    struct node a, b;
    node_start(loop, &a, 1, 0);
    node_start(loop, &b, 2, 0);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, b.address));
    char payload[100];
    memset(payload, 'p', sizeof(payload));
    struct raft_entry e = {.term = 3, .type = RAFT_COMMAND, .buf = {payload, 100}};

    /* Queued before the connection is up, then more while it is. */
    const unsigned N = 5000;
    for (unsigned i = 0; i < N; i++) {
        struct raft_message m = append(1, 2, i, &e, 1);
        ASSERT_OK(raft_transport_send(a.t, &m));
    }
    WAIT_COUNT(loop, b.n_msgs, N);
    for (unsigned i = N; i < 4 * N; i++) {
        struct raft_message m = append(1, 2, i, &e, i % 3 == 0 ? 0 : 1);
        ASSERT_OK(raft_transport_send(a.t, &m));
    }
    WAIT_COUNT(loop, b.n_msgs, 4 * N);
    ASSERT_FALSE(b.out_of_order);
    ASSERT_UINT_EQ(b.next_seq, 4 * N);
    ASSERT_UINT_EQ(raft_transport_queued(a.t, 2), 0);
    ASSERT_UINT_EQ(stats(&b).frames_received, 4 * N);
    raft_transport_close(a.t);
    raft_transport_close(b.t);
    end_loop(loop);
}

TEST(big_frames_are_reassembled)
{
    struct ev_loop *loop = new_loop();
    struct node a, b;
    node_start(loop, &a, 1, 0);
    node_start(loop, &b, 2, 0);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, b.address));
    size_t len = 3u * 1024 * 1024 + 17;
    uint8_t *chunk = cm_malloc(len);
    ASSERT_NOT_NULL(chunk);
    memset(chunk, 0xab, len);
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_SNAPSHOT;
    m.from = 1;
    m.to = 2;
    ASSERT_OK(raft_config_add(&m.snapshot.config, 1, "127.0.0.1:1", RAFT_VOTER));
    m.snapshot.size = 10 * len;
    m.snapshot.chunk.base = chunk;
    m.snapshot.chunk.len = len;
    for (int i = 0; i < 4; i++) {
        m.snapshot.offset = (uint64_t)i * len;
        ASSERT_OK(raft_transport_send(a.t, &m));
        struct raft_message v = vote(1, 2, 1); /* small ones in between */
        ASSERT_OK(raft_transport_send(a.t, &v));
    }
    WAIT_COUNT(loop, b.n_msgs, 8);
    ASSERT_UINT_EQ(b.entry_bytes, 4 * len);
    raft_config_close(&m.snapshot.config);
    cm_free(&chunk);
    raft_transport_close(a.t);
    raft_transport_close(b.t);
    end_loop(loop);
}

/* Keeps sending votes from @a to @to every 5 ms until stopped. */
struct pinger {
    ev_timer timer;
    struct node *a;
    raft_id to;
};

static void pinger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pinger *p = cm_container_of(w, struct pinger, timer);
    struct raft_message m = vote(p->a->id, p->to, 9);
    (void)raft_transport_send(p->a->t, &m);
}

TEST(reconnects_after_peer_restart)
{
    struct ev_loop *loop = new_loop();
    struct node a, b;
    node_start(loop, &a, 1, 0);
    node_start(loop, &b, 2, 0);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, b.address));
    struct pinger p = {.a = &a, .to = 2};
    ev_timer_init(&p.timer, pinger_cb, 0.005, 0.005);
    ev_timer_start(loop, &p.timer);
    WAIT_COUNT(loop, b.n_msgs, 3);

    /* B goes away: A notices, backs off, keeps trying. */
    uint16_t port = b.port;
    raft_transport_close(b.t);
    run_for(loop, 0.2);
    ASSERT_INT_OP(stats(&a).disconnected, >=, 1);

    /* B comes back on the same port: delivery resumes. */
    node_start(loop, &b, 2, port);
    ASSERT_UINT_EQ(b.port, port);
    WAIT_COUNT(loop, b.n_msgs, 3);
    ASSERT_INT_OP(stats(&a).connected, >=, 2);
    ASSERT_UINT_EQ(b.last.from, 1);
    ev_timer_stop(loop, &p.timer);
    raft_transport_close(a.t);
    raft_transport_close(b.t);
    end_loop(loop);
}

/* ---- hostile inbound connections */

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_INT_EQ(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    ASSERT_INT_EQ(send(fd, p, n, MSG_NOSIGNAL), (long long)n);
}

/* True once the transport has closed @fd's connection. */
static bool raw_closed(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 0) <= 0) {
        return false;
    }
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

struct raw_arg {
    int fd;
};

static bool raw_closed_cond(void *arg)
{
    return raw_closed(((struct raw_arg *)arg)->fd);
}

static void hello_frame(raft_id id, uint64_t cluster, struct cm_buf *out)
{
    ASSERT_OK(raft_hello_encode(id, cluster, out));
}

/* Send @bytes on a fresh raw connection to @n and expect it refused while a
 * healthy peer keeps delivering. */
static void expect_refused(struct ev_loop *loop, struct node *n, struct node *good,
                           const void *bytes, size_t len)
{
    uint64_t refused = stats(n).refused;
    int fd = raw_connect(n->port);
    raw_send(fd, bytes, len);
    struct raw_arg ra = {fd};
    WAIT(loop, raw_closed_cond, &ra);
    close(fd);
    ASSERT_UINT_EQ(stats(n).refused, refused + 1);
    /* The transport still serves the good peer. */
    unsigned before = n->n_msgs;
    struct raft_message m = vote(good->id, n->id, 4);
    ASSERT_OK(raft_transport_send(good->t, &m));
    WAIT_COUNT(loop, n->n_msgs, before + 1);
}

TEST(hostile_inbound_connections_are_refused)
{
    struct ev_loop *loop = new_loop();
    struct node a, b;
    node_start(loop, &a, 1, 0);
    node_start(loop, &b, 2, 0);
    ASSERT_OK(raft_transport_set_peer(b.t, 1, a.address));

    /* Garbage (an HTTP request: wrong version byte). */
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    expect_refused(loop, &a, &b, http, strlen(http));

    /* Wrong cluster id. */
    struct cm_buf buf = {0};
    hello_frame(3, CLUSTER + 1, &buf);
    expect_refused(loop, &a, &b, buf.data, buf.len);

    /* Bad HELLO: id 0 (built by hand: the encoder refuses it). */
    uint8_t bad[RAFT_FRAME_HEADER + RAFT_HELLO_BODY] = {
        0, 0, 0, 18, RAFT_WIRE_VERSION, RAFT_CHANNEL_HELLO};
    expect_refused(loop, &a, &b, bad, sizeof(bad));
    /* Bad HELLO: truncated body. */
    uint8_t shorth[RAFT_FRAME_HEADER + 8] = {
        0, 0, 0, 10, RAFT_WIRE_VERSION, RAFT_CHANNEL_HELLO, 0, 0, 0, 0, 0, 0, 0, 5};
    expect_refused(loop, &a, &b, shorth, sizeof(shorth));

    /* A raft frame before the HELLO. */
    cm_buf_clear(&buf);
    struct raft_message v = vote(3, 1, 1);
    ASSERT_OK(raft_msg_encode(&v, &buf));
    expect_refused(loop, &a, &b, buf.data, buf.len);

    /* Oversized length prefix after a good HELLO: refused on the header alone. */
    cm_buf_clear(&buf);
    hello_frame(3, CLUSTER, &buf);
    uint8_t huge[RAFT_FRAME_HEADER] = {
        0x01, 0x00, 0x00, 0x03, RAFT_WIRE_VERSION, RAFT_CHANNEL_RAFT};
    ASSERT_OK(cm_buf_append(&buf, huge, sizeof(huge)));
    expect_refused(loop, &a, &b, buf.data, buf.len);

    /* Malformed raft body after a good HELLO. */
    cm_buf_clear(&buf);
    hello_frame(3, CLUSTER, &buf);
    uint8_t junk[RAFT_FRAME_HEADER + 3] = {
        0, 0, 0, 5, RAFT_WIRE_VERSION, RAFT_CHANNEL_RAFT, 9, 9, 9};
    ASSERT_OK(cm_buf_append(&buf, junk, sizeof(junk)));
    expect_refused(loop, &a, &b, buf.data, buf.len);

    /* A second HELLO. */
    cm_buf_clear(&buf);
    hello_frame(3, CLUSTER, &buf);
    hello_frame(3, CLUSTER, &buf);
    expect_refused(loop, &a, &b, buf.data, buf.len);

    /* A message claiming another sender is dropped; the connection stays. */
    cm_buf_clear(&buf);
    hello_frame(3, CLUSTER, &buf);
    v = vote(4, 1, 1); /* HELLO said 3 */
    ASSERT_OK(raft_msg_encode(&v, &buf));
    v = vote(3, 5, 1); /* not for us */
    ASSERT_OK(raft_msg_encode(&v, &buf));
    v = vote(3, 1, 42); /* fine */
    ASSERT_OK(raft_msg_encode(&v, &buf));
    unsigned before = a.n_msgs;
    int fd = raw_connect(a.port);
    raw_send(fd, buf.data, buf.len);
    WAIT_COUNT(loop, a.n_msgs, before + 1);
    ASSERT_UINT_EQ(a.last.from, 3);
    ASSERT_UINT_EQ(a.last.vote.term, 42);
    ASSERT_UINT_EQ(stats(&a).dropped, 2);
    ASSERT_FALSE(raw_closed(fd));
    close(fd);

    cm_buf_done(&buf);
    raft_transport_close(a.t);
    raft_transport_close(b.t);
    end_loop(loop);
}

TEST(silent_inbound_connection_times_out)
{
    struct ev_loop *loop = new_loop();
    struct node a;
    struct raft_transport_options o;
    memset(&o, 0, sizeof(o));
    o.hello_timeout_ms = 50;
    node_start_opts(loop, &a, 1, 0, &o);
    int fd = raw_connect(a.port);
    /* Half a HELLO, then nothing. */
    raw_send(fd, "\0\0\0\x12\x01", 5);
    struct raw_arg ra = {fd};
    WAIT(loop, raw_closed_cond, &ra);
    ASSERT_UINT_EQ(stats(&a).refused, 1);
    close(fd);
    raft_transport_close(a.t);
    end_loop(loop);
}

TEST(inbound_limit)
{
    struct ev_loop *loop = new_loop();
    struct node a;
    struct raft_transport_options o;
    memset(&o, 0, sizeof(o));
    o.max_inbound = 2;
    node_start_opts(loop, &a, 1, 0, &o);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = raw_connect(a.port);
    }
    struct raw_arg ra = {fds[2]};
    WAIT(loop, raw_closed_cond, &ra);
    ASSERT_UINT_EQ(stats(&a).accepted, 2);
    ASSERT_UINT_EQ(stats(&a).refused, 1);
    ASSERT_FALSE(raw_closed(fds[0]));
    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
    raft_transport_close(a.t);
    end_loop(loop);
}

/* ---- API errors */

TEST(send_to_unknown_peer)
{
    struct ev_loop *loop = new_loop();
    struct node a;
    node_start(loop, &a, 1, 0);
    struct raft_message m = vote(1, 2, 1);
    ASSERT_ERR(raft_transport_send(a.t, &m), CM_ENOTFOUND);
    ASSERT_ERR(raft_transport_send_rpc(a.t, 2, "x", 1), CM_ENOTFOUND);
    ASSERT_ERR(raft_transport_remove_peer(a.t, 2), CM_ENOTFOUND);
    ASSERT_ERR(raft_transport_set_peer(a.t, 0, "127.0.0.1:1"), CM_EINVAL);
    ASSERT_ERR(raft_transport_set_peer(a.t, 1, "127.0.0.1:1"), CM_EINVAL);
    ASSERT_ERR(raft_transport_set_peer(a.t, 2, "localhost:1"), CM_EINVAL);
    ASSERT_ERR(raft_transport_set_peer(a.t, 2, "127.0.0.1"), CM_EINVAL);
    ASSERT_ERR(raft_transport_set_peer(a.t, 2, "127.0.0.1:0"), CM_EINVAL);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, "127.0.0.1:1"));
    ASSERT_OK(raft_transport_send(a.t, &m));
    ASSERT_OK(raft_transport_remove_peer(a.t, 2));
    ASSERT_ERR(raft_transport_send(a.t, &m), CM_ENOTFOUND);
    m.type = 99;
    ASSERT_OK(raft_transport_set_peer(a.t, 2, "127.0.0.1:1"));
    ASSERT_ERR(raft_transport_send(a.t, &m), CM_EINVAL);
    raft_transport_close(a.t);
    end_loop(loop);
}

TEST(start_errors)
{
    struct ev_loop *loop = new_loop();
    struct node a;
    node_start(loop, &a, 1, 0);
    struct raft_transport_options o;
    memset(&o, 0, sizeof(o));
    o.id = 2;
    o.recv = on_recv;
    o.bind_address = a.address; /* taken */
    struct raft_transport *t = NULL;
    struct cm_errbuf eb;
    ASSERT_ERR(raft_transport_start(loop, &o, &t, &eb), CM_EADDRINUSE);
    ASSERT_TRUE(strstr(eb.msg, a.address) != NULL);
    o.bind_address = "nonsense";
    ASSERT_ERR(raft_transport_start(loop, &o, &t, &eb), CM_EINVAL);
    o.bind_address = "127.0.0.1:0";
    o.id = 0;
    ASSERT_ERR(raft_transport_start(loop, &o, &t, &eb), CM_EINVAL);
    ASSERT_NULL(t);
    raft_transport_close(a.t);
    end_loop(loop);
}

TEST(queue_limit)
{
    struct ev_loop *loop = new_loop();
    struct node a;
    struct raft_transport_options o;
    memset(&o, 0, sizeof(o));
    o.max_queue_bytes = 1000;
    o.reconnect_min_ms = 1000;
    o.reconnect_max_ms = 1000;
    node_start_opts(loop, &a, 1, 0, &o);
    /* A port nobody listens on: the queue only grows. */
    int lfd;
    ASSERT_OK(cm_tcp_listen("127.0.0.1:0", 1, &lfd, NULL));
    uint16_t port;
    ASSERT_OK(cm_tcp_local_port(lfd, &port));
    close(lfd);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, addr));
    struct raft_message m = vote(1, 2, 1);
    unsigned sent = 0;
    int rv;
    while ((rv = raft_transport_send(a.t, &m)) == 0) {
        sent++;
        ASSERT_INT_OP(sent, <, 1000);
    }
    ASSERT_ERR(rv, CM_EAGAIN);
    size_t frame = RAFT_FRAME_HEADER + 17 + 26;
    ASSERT_UINT_EQ(sent, 1000 / frame);
    ASSERT_UINT_EQ(raft_transport_queued(a.t, 2), sent * frame);
    ASSERT_ERR(raft_transport_send_rpc(a.t, 2, "0123456789012345678901234567890123", 34),
               CM_EAGAIN);
    ASSERT_INT_OP(stats(&a).queue_full, >=, 2);
    raft_transport_close(a.t);
    end_loop(loop);
}

TEST(close_with_pending_writes_frees_everything)
{
    struct ev_loop *loop = new_loop();
    struct node a;
    node_start(loop, &a, 1, 0);
    /* A peer that accepts (backlog) but never reads: writes pile up. */
    int lfd;
    ASSERT_OK(cm_tcp_listen("127.0.0.1:0", 16, &lfd, NULL));
    uint16_t port;
    ASSERT_OK(cm_tcp_local_port(lfd, &port));
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, addr));
    size_t len = 1024 * 1024;
    uint8_t *big = cm_calloc(1, len);
    struct raft_entry e = {.term = 1, .type = RAFT_COMMAND, .buf = {big, len}};
    for (int i = 0; i < 32; i++) {
        struct raft_message m = append(1, 2, (uint64_t)i, &e, 1);
        ASSERT_OK(raft_transport_send(a.t, &m));
    }
    run_for(loop, 0.3);
    ASSERT_UINT_EQ(stats(&a).connected, 1);
    ASSERT_INT_OP(raft_transport_queued(a.t, 2), >, 0);
    raft_transport_close(a.t);
    cm_free(&big);
    close(lfd);
    end_loop(loop);
}

TEST(close_from_inside_recv_callback)
{
    struct ev_loop *loop = new_loop();
    struct node a, b;
    node_start(loop, &a, 1, 0);
    node_start(loop, &b, 2, 0);
    ASSERT_OK(raft_transport_set_peer(a.t, 2, b.address));
    b.close_in_recv = true;
    /* Several frames arrive in one read; the reader must stop after the first. */
    for (int i = 0; i < 10; i++) {
        struct raft_message m = vote(1, 2, 1);
        ASSERT_OK(raft_transport_send(a.t, &m));
    }
    WAIT_COUNT(loop, b.n_msgs, 1);
    ASSERT_NULL(b.t);
    run_for(loop, 0.05);
    ASSERT_UINT_EQ(b.n_msgs, 1);
    raft_transport_close(a.t);
    end_loop(loop);
}

/* ---- joining connections and HELLO authorization (the node's TLS hooks) */

struct join_node {
    struct node n;
    struct cm_stream *joined; /* handed over */
    char body[64];
    unsigned n_joins;
    raft_id refuse; /* authorize refuses this id */
};

static void on_join(void *data, struct cm_stream *s, const void *body, size_t len)
{
    struct join_node *j = (struct join_node *)data;
    j->n_joins++;
    size_t k = CM_MIN(len, sizeof(j->body) - 1);
    memcpy(j->body, body, k);
    j->body[k] = '\0';
    /* Answer on the stream we now own, like the node's join server. */
    ASSERT_INT_EQ(cm_stream_write(s, "ok", 2), 2);
    cm_stream_close(j->joined);
    j->joined = s;
}

static int on_authorize(void *data, const struct cm_stream *s, raft_id id)
{
    struct join_node *j = (struct join_node *)data;
    ASSERT_NOT_NULL(s);
    return id == j->refuse ? CM_EACCES : 0;
}

struct join_arg {
    struct join_node *j;
    unsigned want;
};

static bool joins_reached(void *arg)
{
    struct join_arg *a = arg;
    return a->j->n_joins >= a->want;
}

TEST(join_frames_are_handed_over_and_hello_authorized)
{
    struct ev_loop *loop = new_loop();
    struct join_node j;
    memset(&j, 0, sizeof(j));
    struct raft_transport_options o;
    memset(&o, 0, sizeof(o));
    o.join = on_join;
    o.authorize = on_authorize;
    node_start_opts(loop, &j.n, 1, 0, &o);
    /* node_start_opts zeroed j.n only; data points at it, which is j's start. */
    j.refuse = 7;
    struct node b;
    node_start(loop, &b, 2, 0);
    ASSERT_OK(raft_transport_set_peer(b.t, 1, j.n.address));

    /* A JOIN frame first: the stream goes to the callback, which answers. */
    struct cm_buf buf = {0};
    ASSERT_OK(raft_frame_encode(RAFT_CHANNEL_JOIN, "{\"v\":1}", 7, &buf));
    int fd = raw_connect(j.n.port);
    raw_send(fd, buf.data, buf.len);
    struct join_arg ja = {&j, 1};
    WAIT(loop, joins_reached, &ja);
    ASSERT_STR_EQ(j.body, "{\"v\":1}");
    char answer[8] = "";
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ASSERT_INT_EQ(poll(&pfd, 1, 5000), 1);
    ASSERT_INT_EQ(recv(fd, answer, sizeof(answer), 0), 2);
    ASSERT_MEM_EQ(answer, "ok", 2);
    ASSERT_UINT_EQ(stats(&j.n).joins, 1);
    ASSERT_UINT_EQ(stats(&j.n).refused, 0);
    close(fd);

    /* A JOIN body over the limit is refused like any stranger. */
    uint32_t big = RAFT_JOIN_MAX + 1 + 2;
    uint8_t hdr[RAFT_FRAME_HEADER] = {(uint8_t)(big >> 24), (uint8_t)(big >> 16),
                                      (uint8_t)(big >> 8),  (uint8_t)big,
                                      RAFT_WIRE_VERSION,    RAFT_CHANNEL_JOIN};
    expect_refused(loop, &j.n, &b, hdr, sizeof(hdr));

    /* A JOIN frame after a HELLO is a protocol error. */
    cm_buf_clear(&buf);
    hello_frame(3, CLUSTER, &buf);
    ASSERT_OK(raft_frame_encode(RAFT_CHANNEL_JOIN, "{}", 2, &buf));
    expect_refused(loop, &j.n, &b, buf.data, buf.len);

    /* authorize refuses id 7's HELLO; id 2 (b) keeps delivering (checked by
     * expect_refused). */
    cm_buf_clear(&buf);
    hello_frame(7, CLUSTER, &buf);
    expect_refused(loop, &j.n, &b, buf.data, buf.len);

    /* Without a join callback, a JOIN frame is refused. */
    struct node c;
    node_start(loop, &c, 3, 0);
    cm_buf_clear(&buf);
    ASSERT_OK(raft_frame_encode(RAFT_CHANNEL_JOIN, "{}", 2, &buf));
    uint64_t refused = stats(&c).refused;
    fd = raw_connect(c.port);
    raw_send(fd, buf.data, buf.len);
    struct raw_arg ra = {fd};
    WAIT(loop, raw_closed_cond, &ra);
    close(fd);
    ASSERT_UINT_EQ(stats(&c).refused, refused + 1);

    cm_buf_done(&buf);
    cm_stream_close(j.joined);
    raft_transport_close(j.n.t);
    raft_transport_close(b.t);
    raft_transport_close(c.t);
    end_loop(loop);
}
