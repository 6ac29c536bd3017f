/* The DNS server: UDP and TCP on libev, answering from the zone last published
 * (DESIGN.md §3, §8) and forwarding other names through dns/forward.c.
 *
 * Threads. Each worker owns a loop, a UDP and a TCP socket (SO_REUSEPORT when
 * there are several, so the kernel spreads clients over them), a forwarder, and
 * its own reference to a zone. dns_server_publish() swaps the server's zone under
 * a mutex and bumps a generation counter; a worker compares the counter with
 * its own (one atomic load) before each batch and takes a reference to the new
 * zone when it moved, dropping its old one, so a zone is freed by the last
 * worker to leave it. An ev_async wakes idle workers so they let go promptly.
 *
 * UDP. recvmmsg() reads up to UDP_BATCH datagrams, each is answered by
 * dns_answer() into a per-worker buffer, and sendmmsg() sends the lot: two
 * system calls per batch, no allocation per query. Work per wake-up is bounded
 * (UDP_ROUNDS batches), as haproxy's maxpollevents does, so TCP clients and
 * forward responses on the same loop get their turn. Within that bound the
 * socket is read until it is empty: under load, datagrams that arrived while a
 * batch was answered are taken without going back through epoll.
 *
 * TCP (RFC 7766). Messages carry a 2-byte length. A connection may pipeline
 * queries; answers from the zone go out in order, forwarded ones when upstream
 * answers (§6.2.1.1 allows that). Limits: connections (all workers), the
 * longest query, pending output per connection (reading stops above it), and an
 * idle timeout. */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns/server_int.h"
#include "net/net.h"

enum {
    UDP_BATCH = 64,       /* datagrams per recvmmsg/sendmmsg */
    UDP_ROUNDS = 4,       /* batches per wake-up */
    UDP_QMAX = 4096,      /* a longer datagram is not a query we answer */
    TCP_ACCEPT_MAX = 16,  /* accepts per wake-up */
    TCP_MSGS_MAX = 64,    /* messages handled per connection per wake-up */
    TCP_READS_MAX = 4,    /* reads per connection per wake-up */
    TCP_IN_INITIAL = 512, /* input buffer to start with */
    SOCK_BUF = 4 << 20,   /* SO_RCVBUF/SO_SNDBUF asked for UDP (best effort) */
};

/* Control data for IP_PKTINFO / IPV6_PKTINFO. */
union ctlbuf {
    /* Room for CMSG_SPACE(in6_pktinfo) + CMSG_SPACE(in_pktinfo) (72 bytes on
     * Linux), written as a constant: glibc's CMSG_SPACE is not one for clang. */
    char buf[128];
    size_t align; /* cmsghdr alignment (struct cmsghdr ends in a flexible array) */
};

/* Per-worker counters: one writer (the worker), read by dns_server_stats. */
struct counters {
    _Atomic uint64_t udp_queries, tcp_queries, answered, dropped, truncated, forwarded,
        forward_ok, forward_failed, forward_limited, tcp_accepted, tcp_refused,
        tcp_closed_idle, tcp_closed_bad, zone_swaps;
};

#define CNT_ADD(w, field, n)                                                       \
    atomic_store_explicit(                                                         \
        &(w)->c.field,                                                             \
        atomic_load_explicit(&(w)->c.field, memory_order_relaxed) + (uint64_t)(n), \
        memory_order_relaxed)

struct worker;
struct tcp_conn;

/* A forwarded query waiting for upstream. */
struct fwd_req {
    struct worker *w;
    bool tcp;
    /* TCP: the connection (NULL once it closed), and its list of requests. */
    struct tcp_conn *conn;
    struct fwd_req *prev, *next;
    /* UDP: where the answer goes. */
    struct sockaddr_storage peer;
    socklen_t peerlen;
    union ctlbuf ctl;
    size_t ctllen;
    uint16_t limit; /* UDP payload the client accepts */
    size_t qlen;
    uint8_t q[]; /* the client's query, for its ID and question */
};

enum conn_state {
    CONN_OPEN = 0, /* reading queries, writing answers */
    CONN_DRAINING, /* the peer sent its FIN: write what is owed, then close */
    CONN_DEAD,     /* [transient] a write failed: close at the next safe point */
};

struct tcp_conn {
    struct worker *w;
    struct tcp_conn *prev, *next;
    enum conn_state state;
    int fd;
    ev_io io;
    ev_timer idle;
    uint8_t *in;
    size_t inlen, incap;
    struct cm_buf out;
    size_t outoff;
    struct fwd_req *fwds;
    bool busy; /* inside conn_process: do not close under its feet */
};

struct worker {
    struct dns_server *srv;
    struct ev_loop *loop;
    bool own_loop;
    pthread_t thread;
    bool thread_started;
    ev_async wake;
    int udp_fd, tcp_fd;
    ev_io udp_io, tcp_io;
    ev_timer accept_retry;
    bool pktinfo;
    struct dns_zone *zone;
    uint64_t zone_gen;
    uint32_t rotate;
    struct dns__fwd *fwd_udp, *fwd_tcp;
    unsigned nfwd;
    struct tcp_conn *conns;
    struct counters c;
    /* UDP batch */
    struct mmsghdr rmsg[UDP_BATCH], smsg[UDP_BATCH];
    struct iovec riov[UDP_BATCH], siov[UDP_BATCH];
    struct sockaddr_storage peer[UDP_BATCH];
    union ctlbuf rctl[UDP_BATCH], sctl[UDP_BATCH];
    uint8_t qbuf[UDP_BATCH][UDP_QMAX];
    uint8_t rbuf[UDP_BATCH][DNS_EDNS_MAX];
    /* TCP answers and forward replies: a length prefix and a whole message. */
    uint8_t scratch[2 + DNS_TCP_MAX];
};

struct dns_server {
    struct dns_server_config cfg; /* addr, loop, upstreams not kept */
    uint16_t port;
    struct sockaddr_storage ss;
    socklen_t sslen;
    bool wildcard;
    struct dns_upstream ups[DNS_UPSTREAM_MAX];
    size_t nups;
    pthread_mutex_t zone_lock;
    struct dns_zone *zone;
    _Atomic uint64_t zone_gen;
    atomic_uint tcp_conns;
    atomic_bool stopping;
    struct worker **workers;
    unsigned nworkers;
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* ================================================================== zone */

static void worker_take_zone(struct worker *w)
{
    struct dns_server *s = w->srv;
    pthread_mutex_lock(&s->zone_lock);
    struct dns_zone *z = s->zone != NULL ? dns_zone_ref(s->zone) : NULL;
    uint64_t gen = atomic_load_explicit(&s->zone_gen, memory_order_relaxed);
    pthread_mutex_unlock(&s->zone_lock);
    dns_zone_unref(w->zone);
    w->zone = z;
    w->zone_gen = gen;
    CNT_ADD(w, zone_swaps, 1);
}

static inline void worker_zone(struct worker *w)
{
    if (atomic_load_explicit(&w->srv->zone_gen, memory_order_acquire) != w->zone_gen) {
        worker_take_zone(w);
    }
}

void dns_server_publish(struct dns_server *s, struct dns_zone *z)
{
    pthread_mutex_lock(&s->zone_lock);
    struct dns_zone *old = s->zone;
    s->zone = z;
    atomic_fetch_add_explicit(&s->zone_gen, 1, memory_order_release);
    pthread_mutex_unlock(&s->zone_lock);
    dns_zone_unref(old);
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct worker *w = s->workers[i];
        if (w->own_loop) {
            ev_async_send(w->loop, &w->wake);
        } else {
            worker_take_zone(w); /* the caller's thread is the worker's */
        }
    }
}

/* ================================================================== replies */

/* A response built from the client's query alone: its ID and question, QR, RD
 * as asked, RA, @rcode and @flags, and an OPT when the query had one. Used for
 * SERVFAIL (upstream failed) and for a relayed answer that had to be cut (TC).
 * Returns the length, or 0 when the query cannot be parsed (nothing is sent). */
static size_t reply_from_query(const struct worker *w, const uint8_t *q, size_t qlen,
                               uint8_t *buf, size_t cap, uint16_t rcode, uint16_t flags)
{
    struct dns_query pq;
    if (dns_query_parse(q, qlen, &pq) != 0 || !pq.has_question) {
        return 0;
    }
    struct dns_header h = {
        .id = pq.header.id,
        .flags = (uint16_t)(DNS_FLAG_QR | (pq.header.flags & DNS_FLAG_RD) | DNS_FLAG_RA |
                            flags | (rcode & 0xfu)),
    };
    struct dns_writer wr;
    dns_writer_init(&wr, buf, cap, &h);
    if (dns_writer_question(&wr, &pq.question) != 0) {
        return 0;
    }
    if (pq.has_edns) {
        struct dns_edns e = {.udp_size = w->srv->cfg.udp_max};
        (void)dns_writer_opt(&wr, &e);
    }
    return dns_writer_finish(&wr);
}

/* The UDP payload size a client accepts (RFC 6891 §6.2.3, 512 without EDNS). */
static uint16_t udp_limit(const struct worker *w, const uint8_t *q, size_t qlen)
{
    struct dns_query pq;
    if (dns_query_parse(q, qlen, &pq) != 0 || !pq.has_edns) {
        return DNS_UDP_MIN;
    }
    uint16_t lim = pq.edns.udp_size < DNS_UDP_MIN ? DNS_UDP_MIN : pq.edns.udp_size;
    return lim < w->srv->cfg.udp_max ? lim : w->srv->cfg.udp_max;
}

/* ================================================================== TCP connections */

static bool conn_update(struct tcp_conn *c);

static void conn_close(struct tcp_conn *c)
{
    struct worker *w = c->w;
    ev_io_stop(w->loop, &c->io);
    ev_timer_stop(w->loop, &c->idle);
    close(c->fd);
    for (struct fwd_req *r = c->fwds; r != NULL; r = r->next) {
        r->conn = NULL; /* answered into the void when upstream replies */
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    cm_free(&c->in);
    cm_buf_done(&c->out);
    cm_free_raw(c);
    atomic_fetch_sub_explicit(&w->srv->tcp_conns, 1, memory_order_relaxed);
}

/* Write pending output. False when the connection is dead. */
static bool conn_flush(struct tcp_conn *c)
{
    while (c->outoff < c->out.len) {
        ssize_t k = write(c->fd, c->out.data + c->outoff, c->out.len - c->outoff);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            c->state = CONN_DEAD;
            return false;
        }
        c->outoff += (size_t)k;
        ev_timer_again(c->w->loop, &c->idle);
    }
    if (c->outoff == c->out.len) {
        cm_buf_clear(&c->out);
        c->outoff = 0;
    } else if (c->outoff > 65536 && c->outoff * 2 > c->out.len) {
        cm_buf_consume(&c->out, c->outoff);
        c->outoff = 0;
    }
    return true;
}

/* Append a message (@msg holds 2 free bytes before @len bytes of payload). */
static void conn_queue(struct tcp_conn *c, uint8_t *msg, size_t len)
{
    put16(msg, (uint16_t)len);
    if (cm_buf_append(&c->out, msg, len + 2) != 0) {
        c->state = CONN_DEAD;
    }
}

static size_t conn_pending(const struct tcp_conn *c)
{
    return c->out.len - c->outoff;
}

static void fwd_start(struct worker *w, const uint8_t *q, size_t qlen, struct tcp_conn *c,
                      size_t udp_index);
static size_t udp_reply_ctl(const struct msghdr *rm, struct msghdr *sm);

/* Handle the complete messages in the input buffer. */
static void conn_process(struct tcp_conn *c)
{
    struct worker *w = c->w;
    struct dns_server *s = w->srv;
    size_t pos = 0;
    unsigned msgs = 0;
    c->busy = true;
    worker_zone(w);
    while (c->state != CONN_DEAD && c->inlen - pos >= 2 && msgs < TCP_MSGS_MAX &&
           conn_pending(c) < s->cfg.tcp_out_max) {
        size_t flen = get16(c->in + pos);
        if (flen > s->cfg.tcp_query_max) {
            CNT_ADD(w, tcp_closed_bad, 1);
            c->state = CONN_DEAD;
            break;
        }
        if (c->inlen - pos < 2 + flen) {
            break;
        }
        const uint8_t *q = c->in + pos + 2;
        pos += 2 + flen;
        msgs++;
        CNT_ADD(w, tcp_queries, 1);
        struct dns_answer_opts o = {
            .tcp = true,
            .forward = w->fwd_tcp != NULL,
            .udp_max = s->cfg.udp_max,
            .rotate = w->rotate++,
        };
        struct dns_answer_info info;
        int n = dns_answer(w->zone, q, flen, w->scratch + 2, DNS_TCP_MAX, &o, &info);
        if (n > 0) {
            conn_queue(c, w->scratch, (size_t)n);
            CNT_ADD(w, answered, 1);
        } else if (info.forward) {
            fwd_start(w, q, flen, c, 0);
        } else {
            CNT_ADD(w, dropped, 1);
        }
    }
    if (pos > 0) {
        memmove(c->in, c->in + pos, c->inlen - pos);
        c->inlen -= pos;
    }
    c->busy = false;
}

/* Make room for the message being read; false when it is over the limit. */
static bool conn_in_room(struct tcp_conn *c)
{
    size_t need = c->inlen + TCP_IN_INITIAL;
    if (c->inlen >= 2) {
        size_t flen = get16(c->in);
        if (flen > c->w->srv->cfg.tcp_query_max) {
            return false;
        }
        need = CM_MAX(need, 2 + flen);
    }
    /* Pipelined input beyond one message waits in the kernel's buffer. */
    size_t max = 2 + c->w->srv->cfg.tcp_query_max + TCP_IN_INITIAL;
    need = CM_MIN(need, max);
    if (need > c->incap) {
        uint8_t *p = cm_realloc(c->in, need);
        if (p == NULL) {
            return false;
        }
        c->in = p;
        c->incap = need;
    }
    return true;
}

static void conn_read(struct tcp_conn *c)
{
    for (int i = 0; i < TCP_READS_MAX && c->state == CONN_OPEN; i++) {
        if (!conn_in_room(c)) {
            CNT_ADD(c->w, tcp_closed_bad, 1);
            c->state = CONN_DEAD;
            return;
        }
        if (c->inlen == c->incap) {
            return; /* full: process first */
        }
        ssize_t k = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c->state = CONN_DEAD;
            }
            return;
        }
        if (k == 0) {
            c->state = CONN_DRAINING;
            return;
        }
        c->inlen += (size_t)k;
        ev_timer_again(c->w->loop, &c->idle);
        if (c->inlen < c->incap) {
            return; /* the socket is drained */
        }
    }
}

/* Decide what to wait for next, or close. Returns false when @c was closed. */
static bool conn_update(struct tcp_conn *c)
{
    struct worker *w = c->w;
    if (c->state != CONN_DEAD && !conn_flush(c)) {
        c->state = CONN_DEAD;
    }
    bool pending = conn_pending(c) > 0;
    /* Whole messages wait in the input buffer: the per-wake-up bound, or the
     * output limit, stopped conn_process. */
    bool work = c->inlen >= 2 && c->inlen >= 2 + (size_t)get16(c->in);
    if (c->state == CONN_DEAD ||
        (c->state == CONN_DRAINING && !pending && !work && c->fwds == NULL)) {
        conn_close(c);
        return false;
    }
    int events = pending ? EV_WRITE : 0;
    if (c->state == CONN_OPEN && conn_pending(c) < w->srv->cfg.tcp_out_max) {
        events |= EV_READ;
    }
    if ((c->io.events & (EV_READ | EV_WRITE)) != events) {
        ev_io_stop(w->loop, &c->io);
        ev_io_set(&c->io, c->fd, events);
        if (events != 0) {
            ev_io_start(w->loop, &c->io);
        }
    }
    /* The peer may send nothing more: come back to the waiting messages on the
     * next loop iteration. Fed after the watcher was (re)started, which would
     * drop a pending event. */
    if (work && conn_pending(c) < w->srv->cfg.tcp_out_max) {
        ev_feed_event(w->loop, &c->io, EV_CUSTOM);
    }
    return true;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct tcp_conn *c = cm_container_of(io, struct tcp_conn, io);
    if (revents & EV_READ) {
        conn_read(c);
    }
    if (revents & (EV_READ | EV_CUSTOM | EV_WRITE)) {
        if (c->state != CONN_DEAD) {
            conn_process(c);
        }
    }
    (void)conn_update(c);
}

static void conn_idle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tcp_conn *c = cm_container_of(t, struct tcp_conn, idle);
    CNT_ADD(c->w, tcp_closed_idle, 1);
    conn_close(c);
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = cm_container_of(t, struct worker, accept_retry);
    ev_io_start(loop, &w->tcp_io);
}

static void tcp_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct worker *w = cm_container_of(io, struct worker, tcp_io);
    struct dns_server *s = w->srv;
    for (int i = 0; i < TCP_ACCEPT_MAX; i++) {
        int fd = accept4(w->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Out of descriptors: pause accepting rather than spin. */
                ev_io_stop(loop, &w->tcp_io);
                ev_timer_set(&w->accept_retry, 0.1, 0.0);
                ev_timer_start(loop, &w->accept_retry);
            }
            return; /* EAGAIN, or an aborted connection */
        }
        unsigned n = atomic_fetch_add_explicit(&s->tcp_conns, 1, memory_order_relaxed);
        if (n >= s->cfg.tcp_max_conns) {
            atomic_fetch_sub_explicit(&s->tcp_conns, 1, memory_order_relaxed);
            CNT_ADD(w, tcp_refused, 1); /* counted before the peer can see it */
            close(fd);
            continue;
        }
        struct tcp_conn *c = cm_calloc(1, sizeof(*c));
        if (c == NULL) {
            atomic_fetch_sub_explicit(&s->tcp_conns, 1, memory_order_relaxed);
            CNT_ADD(w, tcp_refused, 1); /* counted before the peer can see it */
            close(fd);
            continue;
        }
        c->w = w;
        c->fd = fd;
        c->state = CONN_OPEN;
        ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
        ev_init(&c->idle, conn_idle_cb);
        c->idle.repeat = (ev_tstamp)s->cfg.tcp_idle_ms / 1000.0;
        ev_timer_again(loop, &c->idle);
        ev_io_start(loop, &c->io);
        c->next = w->conns;
        if (w->conns != NULL) {
            w->conns->prev = c;
        }
        w->conns = c;
        CNT_ADD(w, tcp_accepted, 1);
    }
}

/* ================================================================== forwarding */

static void fwd_free(struct fwd_req *r)
{
    if (r->tcp && r->conn != NULL) {
        if (r->prev != NULL) {
            r->prev->next = r->next;
        } else {
            r->conn->fwds = r->next;
        }
        if (r->next != NULL) {
            r->next->prev = r->prev;
        }
    }
    r->w->nfwd--;
    cm_free_raw(r);
}

static void udp_send_one(struct worker *w, const struct fwd_req *r, const uint8_t *buf,
                         size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr m = {
        .msg_name = (void *)&r->peer,
        .msg_namelen = r->peerlen,
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = r->ctllen > 0 ? (void *)r->ctl.buf : NULL,
        .msg_controllen = r->ctllen,
    };
    if (sendmsg(w->udp_fd, &m, MSG_DONTWAIT) < 0) {
        CNT_ADD(w, dropped, 1);
    }
}

static void fwd_done(void *data, int status, const uint8_t *resp, size_t len)
{
    struct fwd_req *r = data;
    struct worker *w = r->w;
    if (status == CM_ECANCELED || (r->tcp && r->conn == NULL)) {
        fwd_free(r);
        return;
    }
    uint8_t *out = w->scratch + 2;
    size_t n = 0;
    size_t cap = r->tcp ? DNS_TCP_MAX : r->limit;
    if (status == 0 && len <= DNS_TCP_MAX) {
        if (len <= cap) {
            memcpy(out, resp, len);
            put16(out, get16(r->q)); /* the client's ID, not c-ares' */
            n = len;
        } else {
            /* Over the client's UDP size: the question alone, with TC, so that
             * the client asks again over TCP (RFC 1035 §4.2.1). */
            uint16_t fl = get16(resp + 2) & (DNS_FLAG_AA | DNS_FLAG_RA | 0xfu);
            n = reply_from_query(w, r->q, r->qlen, out, cap, fl & 0xfu,
                                 (uint16_t)((fl & ~0xfu) | DNS_FLAG_TC));
        }
        if (!r->tcp && n > 0 && (get16(out + 2) & DNS_FLAG_TC)) {
            CNT_ADD(w, truncated, 1); /* cut by us or by upstream */
        }
        CNT_ADD(w, forward_ok, 1);
    } else {
        n = reply_from_query(w, r->q, r->qlen, out, cap, DNS_RCODE_SERVFAIL, 0);
        CNT_ADD(w, forward_failed, 1);
    }
    if (n > 0) {
        if (r->tcp) {
            struct tcp_conn *c = r->conn;
            conn_queue(c, w->scratch, n);
            fwd_free(r);
            if (!c->busy) {
                (void)conn_update(c);
            }
            return;
        }
        udp_send_one(w, r, out, n);
    }
    fwd_free(r);
}

/* Where the reply to the datagram w->rmsg[@i] goes: its source, and the
 * control data that makes it leave from the address it came to. */
static void udp_reply_to(const struct worker *w, size_t i, struct fwd_req *r)
{
    const struct msghdr *m = &w->rmsg[i].msg_hdr;
    r->peerlen = m->msg_namelen;
    memcpy(&r->peer, &w->peer[i], r->peerlen);
    r->ctllen = 0;
    if (w->pktinfo) {
        struct msghdr tmp = {.msg_control = r->ctl.buf, .msg_controllen = sizeof(r->ctl)};
        r->ctllen = udp_reply_ctl(m, &tmp);
    }
}

/* Forward @q for the TCP connection @c, or (c NULL) for the datagram
 * w->rmsg[udp_index]. */
static void fwd_start(struct worker *w, const uint8_t *q, size_t qlen, struct tcp_conn *c,
                      size_t udp_index)
{
    struct dns_server *s = w->srv;
    struct fwd_req *r = NULL;
    if (w->nfwd < s->cfg.forward_max) {
        r = cm_malloc(sizeof(*r) + qlen);
    }
    if (r == NULL) {
        /* Too many outstanding (or no memory): SERVFAIL now rather than queue. */
        CNT_ADD(w, forward_limited, 1);
        size_t cap = c != NULL ? DNS_TCP_MAX : udp_limit(w, q, qlen);
        size_t n =
            reply_from_query(w, q, qlen, w->scratch + 2, cap, DNS_RCODE_SERVFAIL, 0);
        if (n == 0) {
            return;
        }
        if (c != NULL) {
            conn_queue(c, w->scratch, n);
            return;
        }
        struct fwd_req tmp;
        udp_reply_to(w, udp_index, &tmp);
        udp_send_one(w, &tmp, w->scratch + 2, n);
        return;
    }
    memset(r, 0, sizeof(*r));
    r->w = w;
    r->qlen = qlen;
    memcpy(r->q, q, qlen);
    w->nfwd++;
    CNT_ADD(w, forwarded, 1);
    if (c != NULL) {
        r->tcp = true;
        r->conn = c;
        r->next = c->fwds;
        if (c->fwds != NULL) {
            c->fwds->prev = r;
        }
        c->fwds = r;
        dns__fwd_send(w->fwd_tcp, q, qlen, fwd_done, r);
        return;
    }
    udp_reply_to(w, udp_index, r);
    r->limit = udp_limit(w, q, qlen);
    dns__fwd_send(w->fwd_udp, q, qlen, fwd_done, r);
}

/* ================================================================== UDP */

/* Control data for a reply: leave from the address the query came to (a socket
 * bound to a wildcard address). Returns the length written to sm's control. */
static size_t udp_reply_ctl(const struct msghdr *rm, struct msghdr *sm)
{
    struct cmsghdr *out = CMSG_FIRSTHDR(sm);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(rm); cm != NULL && out != NULL;
         cm = CMSG_NXTHDR((struct msghdr *)rm, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo in, pi;
            memcpy(&in, CMSG_DATA(cm), sizeof(in));
            memset(&pi, 0, sizeof(pi));
            pi.ipi_spec_dst = in.ipi_addr;
            out->cmsg_level = IPPROTO_IP;
            out->cmsg_type = IP_PKTINFO;
            out->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(out), &pi, sizeof(pi));
            return CMSG_SPACE(sizeof(pi));
        }
        if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            out->cmsg_level = IPPROTO_IPV6;
            out->cmsg_type = IPV6_PKTINFO;
            out->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(out), &pi, sizeof(pi));
            return CMSG_SPACE(sizeof(pi));
        }
    }
    return 0;
}

static void udp_send_batch(struct worker *w, unsigned n)
{
    unsigned sent = 0;
    while (sent < n) {
        int k = sendmmsg(w->udp_fd, w->smsg + sent, n - sent, MSG_DONTWAIT);
        if (k > 0) {
            sent += (unsigned)k;
            continue;
        }
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
            /* This datagram cannot be sent (e.g. a peer with port 0): skip it. */
            CNT_ADD(w, dropped, 1);
            sent++;
            continue;
        }
        /* The socket buffer is full: UDP answers are dropped, as the network
         * would (the client retries). */
        CNT_ADD(w, dropped, n - sent);
        break;
    }
}

static void udp_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = cm_container_of(io, struct worker, udp_io);
    struct dns_server *s = w->srv;
    const bool forward = w->fwd_udp != NULL;
    for (int round = 0; round < UDP_ROUNDS; round++) {
        for (unsigned i = 0; i < UDP_BATCH; i++) {
            w->rmsg[i].msg_hdr.msg_namelen = sizeof(w->peer[i]);
            w->rmsg[i].msg_hdr.msg_controllen = w->pktinfo ? sizeof(w->rctl[i]) : 0;
            w->rmsg[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(w->udp_fd, w->rmsg, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            break;
        }
        worker_zone(w);
        CNT_ADD(w, udp_queries, n);
        unsigned ns = 0;
        uint64_t trunc = 0, drop = 0;
        for (int i = 0; i < n; i++) {
            const struct msghdr *rm = &w->rmsg[i].msg_hdr;
            size_t len = w->rmsg[i].msg_len;
            if (rm->msg_flags & MSG_TRUNC) {
                drop++; /* longer than any query we take: not a query */
                continue;
            }
            struct dns_answer_opts o = {
                .forward = forward,
                .udp_max = s->cfg.udp_max,
                .rotate = w->rotate++,
            };
            struct dns_answer_info info;
            int r = dns_answer(w->zone, w->qbuf[i], len, w->rbuf[ns], DNS_EDNS_MAX, &o,
                               &info);
            if (r > 0) {
                struct msghdr *sm = &w->smsg[ns].msg_hdr;
                w->siov[ns].iov_len = (size_t)r;
                sm->msg_name = &w->peer[i];
                sm->msg_namelen = rm->msg_namelen;
                sm->msg_controllen = 0;
                if (w->pktinfo) {
                    sm->msg_control = w->sctl[ns].buf;
                    sm->msg_controllen = sizeof(w->sctl[ns]);
                    sm->msg_controllen = udp_reply_ctl(rm, sm);
                    if (sm->msg_controllen == 0) {
                        sm->msg_control = NULL;
                    }
                }
                trunc += info.truncated;
                ns++;
            } else if (info.forward) {
                fwd_start(w, w->qbuf[i], len, NULL, (size_t)i);
            } else {
                drop++;
            }
        }
        CNT_ADD(w, answered, ns);
        if (trunc != 0) {
            CNT_ADD(w, truncated, trunc);
        }
        if (drop != 0) {
            CNT_ADD(w, dropped, drop);
        }
        if (ns > 0) {
            udp_send_batch(w, ns);
        }
    }
}

/* ================================================================== workers */

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct worker *w = cm_container_of(a, struct worker, wake);
    if (atomic_load_explicit(&w->srv->stopping, memory_order_acquire)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    worker_zone(w);
}

static void worker_init_batch(struct worker *w)
{
    for (unsigned i = 0; i < UDP_BATCH; i++) {
        w->riov[i].iov_base = w->qbuf[i];
        w->riov[i].iov_len = UDP_QMAX;
        struct msghdr *m = &w->rmsg[i].msg_hdr;
        m->msg_name = &w->peer[i];
        m->msg_iov = &w->riov[i];
        m->msg_iovlen = 1;
        m->msg_control = w->pktinfo ? w->rctl[i].buf : NULL;
        w->siov[i].iov_base = w->rbuf[i];
        struct msghdr *sm = &w->smsg[i].msg_hdr;
        sm->msg_iov = &w->siov[i];
        sm->msg_iovlen = 1;
    }
}

/* Stop everything of @w on its loop and free it. On the worker's thread. */
static void worker_close(struct worker *w)
{
    if (w->loop != NULL) {
        ev_io_stop(w->loop, &w->udp_io);
        ev_io_stop(w->loop, &w->tcp_io);
        ev_timer_stop(w->loop, &w->accept_retry);
        if (w->own_loop) {
            ev_async_stop(w->loop, &w->wake);
        }
        while (w->conns != NULL) {
            conn_close(w->conns);
        }
        /* Pending forwards are cancelled: their callbacks free them. */
        dns__fwd_free(w->fwd_udp);
        dns__fwd_free(w->fwd_tcp);
        w->fwd_udp = w->fwd_tcp = NULL;
    }
    if (w->udp_fd >= 0) {
        close(w->udp_fd);
        w->udp_fd = -1;
    }
    if (w->tcp_fd >= 0) {
        close(w->tcp_fd);
        w->tcp_fd = -1;
    }
    dns_zone_unref(w->zone);
    w->zone = NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    ev_run(w->loop, 0);
    worker_close(w);
    return NULL;
}

/* ================================================================== sockets */

static bool is_wildcard(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    } else {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    }
}

static int bound_port(int fd, uint16_t *ret)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return cm_errno();
    }
    *ret = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                         : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static int open_socket(struct dns_server *s, int type, bool pktinfo, int *ret_fd)
{
    int fd = socket(s->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return cm_errno();
    }
    int one = 1;
    int rv = 0;
    if (type == SOCK_STREAM) {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    } else {
        int size = SOCK_BUF;
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    if (s->nworkers > 1 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        rv = cm_errno();
        goto err;
    }
    if (pktinfo) {
        if (s->ss.ss_family == AF_INET6) {
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
        }
        /* A dual-stack IPv6 socket reports IPv4 destinations with IP_PKTINFO. */
        (void)setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *)&s->ss, s->sslen) != 0) {
        rv = cm_errno();
        goto err;
    }
    if (type == SOCK_STREAM && listen(fd, 1024) != 0) {
        rv = cm_errno();
        goto err;
    }
    *ret_fd = fd;
    return 0;
err:
    close(fd);
    return rv;
}

/* Bind worker @w's sockets. The first worker settles the port (port 0 asks for
 * any: the UDP port, then TCP on the same number, retried if that one is taken
 * for TCP). */
static int worker_bind(struct dns_server *s, struct worker *w, bool any_port)
{
    int rv;
    for (int attempt = 0;; attempt++) {
        if ((rv = open_socket(s, SOCK_DGRAM, s->wildcard, &w->udp_fd)) != 0) {
            return rv;
        }
        if (any_port) {
            uint16_t port;
            if ((rv = bound_port(w->udp_fd, &port)) != 0) {
                return rv;
            }
            set_port(&s->ss, port);
        }
        rv = open_socket(s, SOCK_STREAM, false, &w->tcp_fd);
        if (rv == 0) {
            return 0;
        }
        if (!any_port || rv != CM_EADDRINUSE || attempt == 8) {
            return rv;
        }
        close(w->udp_fd);
        w->udp_fd = -1;
        set_port(&s->ss, 0);
    }
}

static bool is_loopback(const struct dns_addr *a)
{
    static const uint8_t v6lo[16] = {[15] = 1};
    return a->family == DNS_AF_INET4 ? a->bytes[0] == 127
                                     : memcmp(a->bytes, v6lo, 16) == 0;
}

/* Our own address as an upstream would loop queries back to us. */
static bool is_self(const struct dns_server *s, const struct dns_upstream *u)
{
    if (u->port != s->port) {
        return false;
    }
    if (s->wildcard) {
        return is_loopback(&u->addr);
    }
    if (s->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&s->ss;
        return u->addr.family == DNS_AF_INET4 &&
               memcmp(u->addr.bytes, &in->sin_addr, 4) == 0;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&s->ss;
    return u->addr.family == DNS_AF_INET6 &&
           memcmp(u->addr.bytes, &in6->sin6_addr, 16) == 0;
}

static int setup_upstreams(struct dns_server *s, const struct dns_server_config *cfg,
                           struct cm_errbuf *eb)
{
    struct dns_upstream tmp[DNS_UPSTREAM_MAX];
    size_t n = 0;
    if (cfg->upstreams != NULL && cfg->nupstreams > 0) {
        n = CM_MIN(cfg->nupstreams, DNS_UPSTREAM_MAX);
        memcpy(tmp, cfg->upstreams, n * sizeof(*tmp));
    } else {
        const char *path =
            cfg->resolv_conf != NULL ? cfg->resolv_conf : "/etc/resolv.conf";
        int rv = dns_resolv_conf_load(path, tmp, DNS_UPSTREAM_MAX, &n);
        if (rv != 0 && rv != CM_ENOENT) {
            return cm_err_sys(eb, rv, "dns: read `%s`", path);
        }
    }
    s->nups = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_self(s, &tmp[i])) {
            s->ups[s->nups++] = tmp[i];
        }
    }
    return 0;
}

static int worker_start(struct dns_server *s, struct worker *w, struct cm_errbuf *eb)
{
    int rv;
    if (s->cfg.threads > 0) {
        w->loop = ev_loop_new(EVFLAG_AUTO);
        if (w->loop == NULL) {
            return cm_err_setf(eb, CM_ENOMEM, "dns: ev_loop_new failed");
        }
        w->own_loop = true;
        ev_async_init(&w->wake, wake_cb);
        ev_async_start(w->loop, &w->wake);
    } else {
        w->loop = s->cfg.loop != NULL ? s->cfg.loop : EV_DEFAULT;
    }
    if (s->nups > 0) {
        if ((rv = dns__fwd_new(w->loop, s->ups, s->nups, false, s->cfg.forward_timeout_ms,
                               s->cfg.forward_tries, &w->fwd_udp)) != 0 ||
            (rv = dns__fwd_new(w->loop, s->ups, s->nups, true, s->cfg.forward_timeout_ms,
                               s->cfg.forward_tries, &w->fwd_tcp)) != 0) {
            return cm_err_sys(eb, rv, "dns: c-ares channel");
        }
    }
    worker_init_batch(w);
    ev_io_init(&w->udp_io, udp_cb, w->udp_fd, EV_READ);
    ev_io_init(&w->tcp_io, tcp_accept_cb, w->tcp_fd, EV_READ);
    ev_timer_init(&w->accept_retry, accept_retry_cb, 0.1, 0.0);
    ev_io_start(w->loop, &w->udp_io);
    ev_io_start(w->loop, &w->tcp_io);
    worker_take_zone(w);
    return 0;
}

/* ================================================================== server */

int dns_server_new(const struct dns_server_config *cfg, struct dns_server **ret_s,
                   struct cm_errbuf *eb)
{
    if (cfg == NULL || cfg->addr == NULL || ret_s == NULL || cfg->threads > 256) {
        return cm_err_setf(eb, CM_EINVAL, "dns: bad server configuration");
    }
    struct dns_server *s = cm_calloc(1, sizeof(*s));
    if (s == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "dns: out of memory");
    }
    s->cfg = *cfg;
    s->cfg.addr = NULL;
    s->cfg.upstreams = NULL;
    s->cfg.resolv_conf = NULL;
    if (s->cfg.udp_max == 0) {
        s->cfg.udp_max = DNS_EDNS_SIZE;
    }
    s->cfg.udp_max = CM_MAX(s->cfg.udp_max, DNS_UDP_MIN);
    s->cfg.udp_max = CM_MIN(s->cfg.udp_max, DNS_EDNS_MAX);
    if (s->cfg.tcp_max_conns == 0) {
        s->cfg.tcp_max_conns = 512;
    }
    if (s->cfg.tcp_idle_ms == 0) {
        s->cfg.tcp_idle_ms = 10000;
    }
    if (s->cfg.tcp_out_max == 0) {
        s->cfg.tcp_out_max = 128 * 1024;
    }
    if (s->cfg.tcp_query_max == 0) {
        s->cfg.tcp_query_max = 16 * 1024;
    }
    s->cfg.tcp_query_max = CM_MIN(s->cfg.tcp_query_max, DNS_TCP_MAX);
    if (s->cfg.forward_max == 0) {
        s->cfg.forward_max = 1024;
    }
    if (s->cfg.forward_timeout_ms == 0) {
        s->cfg.forward_timeout_ms = 1500;
    }
    if (s->cfg.forward_tries == 0) {
        s->cfg.forward_tries = 2;
    }
    pthread_mutex_init(&s->zone_lock, NULL);
    atomic_init(&s->zone_gen, 1);
    atomic_init(&s->tcp_conns, 0);
    atomic_init(&s->stopping, false);

    int rv;
    if (cm_sockaddr_parse(cfg->addr, true, &s->ss, &s->sslen) != 0) {
        rv =
            cm_err_setf(eb, CM_EINVAL,
                        "dns: listen address `%s` is not a numeric host:port", cfg->addr);
        goto err;
    }
    s->wildcard = is_wildcard(&s->ss);
    s->nworkers = cfg->threads > 0 ? cfg->threads : 1;
    s->workers = cm_calloc(s->nworkers, sizeof(*s->workers));
    if (s->workers == NULL) {
        rv = cm_err_setf(eb, CM_ENOMEM, "dns: out of memory");
        goto err;
    }
    uint16_t want_port =
        ntohs(s->ss.ss_family == AF_INET ? ((struct sockaddr_in *)&s->ss)->sin_port
                                         : ((struct sockaddr_in6 *)&s->ss)->sin6_port);
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct worker *w = cm_calloc(1, sizeof(*w));
        if (w == NULL) {
            rv = cm_err_setf(eb, CM_ENOMEM, "dns: out of memory");
            goto err;
        }
        w->srv = s;
        w->udp_fd = w->tcp_fd = -1;
        w->pktinfo = s->wildcard;
        s->workers[i] = w;
        if ((rv = worker_bind(s, w, i == 0 && want_port == 0)) != 0) {
            rv = cm_err_sys(eb, rv, "dns: bind `%s`", cfg->addr);
            goto err;
        }
    }
    (void)bound_port(s->workers[0]->udp_fd, &s->port);
    if (cfg->forward && (rv = setup_upstreams(s, cfg, eb)) != 0) {
        goto err;
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        if ((rv = worker_start(s, s->workers[i], eb)) != 0) {
            goto err;
        }
    }
    for (unsigned i = 0; i < s->cfg.threads; i++) {
        struct worker *w = s->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            rv = cm_err_setf(eb, CM_EAGAIN, "dns: cannot start a thread");
            goto err;
        }
        w->thread_started = true;
    }
    *ret_s = s;
    return 0;
err:
    dns_server_free(s);
    return rv;
}

uint16_t dns_server_port(const struct dns_server *s)
{
    return s->port;
}

const struct dns_upstream *dns_server_upstreams(const struct dns_server *s, size_t *ret_n)
{
    *ret_n = s->nups;
    return s->ups;
}

void dns_server_stats(const struct dns_server *s, struct dns_server_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    for (unsigned i = 0; i < s->nworkers; i++) {
        const struct counters *c = &s->workers[i]->c;
#define SUM(f) ret->f += atomic_load_explicit(&c->f, memory_order_relaxed)
        SUM(udp_queries);
        SUM(tcp_queries);
        SUM(answered);
        SUM(dropped);
        SUM(truncated);
        SUM(forwarded);
        SUM(forward_ok);
        SUM(forward_failed);
        SUM(forward_limited);
        SUM(tcp_accepted);
        SUM(tcp_refused);
        SUM(tcp_closed_idle);
        SUM(tcp_closed_bad);
        SUM(zone_swaps);
#undef SUM
    }
}

void dns_server_free(struct dns_server *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store_explicit(&s->stopping, true, memory_order_release);
    for (unsigned i = 0; s->workers != NULL && i < s->nworkers; i++) {
        struct worker *w = s->workers[i];
        if (w == NULL) {
            continue;
        }
        if (w->thread_started) {
            ev_async_send(w->loop, &w->wake);
            pthread_join(w->thread, NULL); /* the thread closes its worker */
        } else {
            worker_close(w);
        }
        if (w->own_loop) {
            ev_loop_destroy(w->loop);
        }
        cm_free_raw(w);
    }
    cm_free(&s->workers);
    dns_zone_unref(s->zone);
    pthread_mutex_destroy(&s->zone_lock);
    cm_free_raw(s);
}
