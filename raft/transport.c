/* raft/transport.c: the raft transport on libev (contract in raft.h).
 *
 * Objects and their watchers:
 *   struct raft_transport  the listener (accept_io, accept_timer to back off on
 *                          EMFILE) and the write batcher (flush_prepare and
 *                          flush_idle, see mark_dirty());
 *   struct peer            one per known server: the outgoing connection it
 *                          dials itself (io), its backoff timer and its queue;
 *   struct conn            one per accepted connection: io and a HELLO deadline.
 *
 * Close discipline (libuv's uv_close, STYLE.md rule 14): closing stops every
 * watcher at once, so libev has nothing pending for us; memory is freed at once
 * unless one of our callbacks that calls user code is on the stack (t->depth),
 * in which case that callback frees on its way out. After each user callback the
 * reader checks t->closing before touching anything again.
 *
 * Bounded work per wake-up (haproxy's maxaccept): ACCEPTS_PER_WAKEUP accepts,
 * READS_PER_WAKEUP reads per connection, WRITES_PER_FLUSH writev calls per peer;
 * whatever is left waits for the next iteration. */
#include <ev.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "net/net.h"
#include "raft/raft.h"

#define ACCEPTS_PER_WAKEUP 16
#define READS_PER_WAKEUP   16
#define WRITES_PER_FLUSH   16
#define READ_BUF_SIZE      (64u * 1024) /* initial per-connection read buffer */
#define BLOCK_SIZE         (64u * 1024) /* queue blocks are filled up to this */
#define ACCEPT_PAUSE       0.1          /* seconds without accepting after EMFILE */
#define REFUSED_LOG_EVERY  1.0          /* seconds between refusal warnings */
#define HELLO_LEN          (RAFT_FRAME_HEADER + RAFT_HELLO_BODY)

/* ------------------------------------------------------------------ lists */

struct link {
    struct link *prev;
    struct link *next;
};

static void list_init(struct link *l)
{
    l->prev = l;
    l->next = l;
}

static bool list_empty(const struct link *l)
{
    return l->next == l;
}

static void list_push(struct link *head, struct link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

/* Unlink @l (a no-op when it is not in a list). */
static void list_remove(struct link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    list_init(l);
}

/* ------------------------------------------------------------------ types */

/* A run of encoded frames; the queue is a chain of these, written with writev. */
struct block {
    struct block *next;
    size_t off; /* bytes of buf already written */
    struct cm_buf buf;
};

enum peer_state {
    PEER_IDLE = 0,   /* no connection; the backoff timer will dial */
    PEER_CONNECTING, /* [transient] non-blocking connect in progress */
    PEER_CONNECTED,  /* stream up: HELLO first, then the queue */
};

struct peer {
    struct raft_transport *t;
    struct link link;  /* in t->peers */
    struct link dirty; /* in t->dirty while waiting for the batched flush */
    raft_id id;
    char address[RAFT_ADDRESS_MAX];
    enum peer_state state;
    int fd;              /* PEER_CONNECTING: the socket */
    struct cm_stream *s; /* PEER_CONNECTED */
    ev_io io;            /* CONNECTING: EV_WRITE; CONNECTED: EV_READ (+EV_WRITE) */
    ev_timer timer;      /* PEER_IDLE: redial */
    unsigned backoff_ms; /* next backoff before jitter */
    ev_tstamp connected_at;
    size_t hello_off; /* bytes of t->hello written; HELLO_LEN when done */
    struct block *head;
    struct block *tail;
    size_t queued; /* bytes in blocks not yet written */
};

enum conn_state {
    CONN_HELLO = 0, /* accepted; the first frame must be a HELLO */
    CONN_OPEN,      /* HELLO accepted: raft and RPC frames */
};

struct conn {
    struct raft_transport *t;
    struct link link; /* in t->conns */
    enum conn_state state;
    struct cm_stream *s;
    ev_io io;
    ev_timer timer; /* HELLO deadline */
    raft_id peer_id;
    uint8_t *rbuf;
    size_t rlen;
    size_t rcap;
};

struct raft_transport {
    struct ev_loop *loop;
    struct raft_transport_options o; /* bind_address cleared (borrowed) */
    int lfd;
    uint16_t port;
    ev_io accept_io;
    ev_timer accept_timer;
    ev_prepare flush_prepare;
    ev_idle flush_idle;
    struct link peers;
    struct link conns;
    struct link dirty;
    unsigned n_conns;
    struct cm_rng rng;
    struct raft_transport_stats stats;
    uint8_t hello[HELLO_LEN]; /* our HELLO frame, sent first on every dial */
    unsigned depth;           /* our callbacks on the stack that may call user code */
    bool closing;
    uint64_t refused_unlogged;
    ev_tstamp refused_logged_at;
};

static void transport_free(struct raft_transport *t);

/* ------------------------------------------------------------------ helpers */

static void io_set_events(struct ev_loop *loop, ev_io *w, int events)
{
    if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == events) {
        return;
    }
    ev_io_stop(loop, w);
    ev_io_modify(w, events);
    ev_io_start(loop, w);
}

static struct peer *peer_find(const struct raft_transport *t, raft_id id)
{
    for (struct link *l = t->peers.next; l != &t->peers; l = l->next) {
        struct peer *p = cm_container_of(l, struct peer, link);
        if (p->id == id) {
            return p;
        }
    }
    return NULL;
}

/* Refusals are counted always and logged at most once per REFUSED_LOG_EVERY, so
 * a misconfigured or hostile client cannot flood the log. */
static void note_refused(struct raft_transport *t, int err)
{
    t->stats.refused++;
    t->refused_unlogged++;
    ev_tstamp now = ev_now(t->loop);
    if (now - t->refused_logged_at >= REFUSED_LOG_EVERY) {
        cm_warn("raft", "refused %llu inbound connection(s), last: %s",
                (unsigned long long)t->refused_unlogged, cm_strerror(err));
        t->refused_unlogged = 0;
        t->refused_logged_at = now;
    }
}

/* ------------------------------------------------------------------ queue */

static void block_free(struct block *b)
{
    cm_buf_done(&b->buf);
    cm_free(&b);
}

static void queue_drop(struct peer *p)
{
    struct block *b = p->head;
    while (b != NULL) {
        struct block *next = b->next;
        block_free(b);
        b = next;
    }
    p->head = NULL;
    p->tail = NULL;
    p->queued = 0;
}

/* The block new frames go into. */
static struct block *queue_tail(struct peer *p)
{
    if (p->tail != NULL && p->tail->buf.len < BLOCK_SIZE) {
        return p->tail;
    }
    struct block *b = cm_calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    if (cm_buf_reserve(&b->buf, BLOCK_SIZE) != 0) {
        cm_free(&b);
        return NULL;
    }
    if (p->tail != NULL) {
        p->tail->next = b;
    } else {
        p->head = b;
    }
    p->tail = b;
    return b;
}

/* Account for @n bytes written from the front of HELLO + queue. */
static void queue_advance(struct peer *p, size_t n)
{
    size_t k = CM_MIN(n, HELLO_LEN - p->hello_off);
    p->hello_off += k;
    n -= k;
    while (p->head != NULL) {
        struct block *b = p->head;
        k = CM_MIN(n, b->buf.len - b->off);
        b->off += k;
        p->queued -= k;
        n -= k;
        if (b->off < b->buf.len) {
            break;
        }
        if (b->next == NULL) {
            /* Keep the last block for the next frames unless a big frame made
             * it grow. */
            if (b->buf.cap > 2 * BLOCK_SIZE) {
                cm_buf_done(&b->buf);
            }
            cm_buf_clear(&b->buf);
            b->off = 0;
            break;
        }
        p->head = b->next;
        block_free(b);
    }
    CM_ASSERT(n == 0);
}

static bool peer_has_output(const struct peer *p)
{
    return p->hello_off < HELLO_LEN || p->queued > 0;
}

/* ------------------------------------------------------------------ peers */

static void peer_connect(struct peer *p);

static void peer_close_socket(struct peer *p)
{
    struct ev_loop *loop = p->t->loop;
    ev_io_stop(loop, &p->io);
    list_remove(&p->dirty);
    if (p->s != NULL) {
        cm_stream_close(p->s);
        p->s = NULL;
    }
    if (p->fd >= 0) {
        (void)close(p->fd);
        p->fd = -1;
    }
    p->hello_off = 0;
}

/* The connection failed or broke: drop what was queued (a partly written frame
 * cannot be resumed on a new connection; raft retries) and redial after a
 * jittered exponential backoff. A connection that stayed up for a while resets
 * the backoff, so a server that accepts and closes at once is not hammered. */
static void peer_fail(struct peer *p)
{
    struct raft_transport *t = p->t;
    peer_close_socket(p);
    queue_drop(p);
    t->stats.disconnected++;
    ev_tstamp now = ev_now(t->loop);
    if (p->connected_at > 0 && now - p->connected_at >= t->o.reconnect_max_ms / 1e3) {
        p->backoff_ms = t->o.reconnect_min_ms;
    }
    p->connected_at = 0;
    unsigned half = p->backoff_ms / 2;
    uint64_t delay = half + cm_rng_below(&t->rng, (uint64_t)(p->backoff_ms - half) + 1);
    p->backoff_ms = p->backoff_ms > t->o.reconnect_max_ms / 2 ? t->o.reconnect_max_ms
                                                              : p->backoff_ms * 2;
    p->state = PEER_IDLE;
    ev_timer_stop(t->loop, &p->timer);
    ev_timer_set(&p->timer, (ev_tstamp)delay / 1e3, 0.);
    ev_timer_start(t->loop, &p->timer);
}

/* Write HELLO and queued frames with writev until done, EAGAIN or the budget;
 * then wait for EV_WRITE if anything is left. Errors: from the stream. */
static int peer_flush(struct peer *p)
{
    struct ev_loop *loop = p->t->loop;
    struct iovec iov[CM_STREAM_IOV_MAX];
    CM_ASSERT(p->state == PEER_CONNECTED);
    for (int round = 0; round < WRITES_PER_FLUSH; round++) {
        int n = 0;
        if (p->hello_off < HELLO_LEN) {
            iov[n].iov_base = p->t->hello + p->hello_off;
            iov[n].iov_len = HELLO_LEN - p->hello_off;
            n++;
        }
        for (struct block *b = p->head; b != NULL && n < CM_STREAM_IOV_MAX; b = b->next) {
            if (b->buf.len > b->off) {
                iov[n].iov_base = b->buf.data + b->off;
                iov[n].iov_len = b->buf.len - b->off;
                n++;
            }
        }
        if (n == 0) {
            io_set_events(loop, &p->io, EV_READ);
            return 0;
        }
        ssize_t w = cm_stream_writev(p->s, iov, n);
        if (w == CM_EAGAIN) {
            int ev = EV_READ;
            if (p->s->want & CM_STREAM_WANT_WRITE) {
                ev |= EV_WRITE;
            }
            io_set_events(loop, &p->io, ev);
            return 0;
        }
        if (w < 0) {
            return (int)w;
        }
        queue_advance(p, (size_t)w);
    }
    io_set_events(loop, &p->io, peer_has_output(p) ? EV_READ | EV_WRITE : EV_READ);
    return 0;
}

static void flush_dirty(struct raft_transport *t)
{
    while (!list_empty(&t->dirty)) {
        struct peer *p = cm_container_of(t->dirty.next, struct peer, dirty);
        list_remove(&p->dirty);
        if (p->state == PEER_CONNECTED && peer_flush(p) != 0) {
            peer_fail(p);
        }
    }
    ev_prepare_stop(t->loop, &t->flush_prepare);
    ev_idle_stop(t->loop, &t->flush_idle);
}

static void flush_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    flush_dirty(cm_container_of(w, struct raft_transport, flush_prepare));
}

static void flush_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    flush_dirty(cm_container_of(w, struct raft_transport, flush_idle));
}

/* Batch writes: frames queued during this loop iteration are written together
 * by the prepare watcher, just before the loop blocks. If the prepare phase of
 * this iteration is already over (a send from another prepare watcher, such as
 * the host's group commit), the idle watcher keeps the loop from blocking until
 * the flush has run. */
static void mark_dirty(struct peer *p)
{
    struct raft_transport *t = p->t;
    if (p->state != PEER_CONNECTED || !list_empty(&p->dirty) ||
        (p->io.events & EV_WRITE)) {
        return; /* will be written on connect, already due, or on EV_WRITE */
    }
    list_push(&t->dirty, &p->dirty);
    ev_prepare_start(t->loop, &t->flush_prepare);
    ev_idle_start(t->loop, &t->flush_idle);
}

static void peer_connected(struct peer *p)
{
    struct raft_transport *t = p->t;
    int rv = cm_tcp_connect_result(p->fd);
    if (rv == 0) {
        rv = t->o.wrap(t->o.wrap_data, p->fd, false, &p->s);
    }
    if (rv != 0) {
        peer_fail(p);
        return;
    }
    p->fd = -1; /* owned by the stream now */
    p->state = PEER_CONNECTED;
    p->connected_at = ev_now(t->loop);
    p->hello_off = 0;
    t->stats.connected++;
    ev_io_stop(t->loop, &p->io);
    ev_io_set(&p->io, cm_stream_fd(p->s), EV_READ);
    ev_io_start(t->loop, &p->io);
    if (peer_flush(p) != 0) {
        peer_fail(p);
    }
}

static void peer_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct peer *p = cm_container_of(w, struct peer, io);
    if (p->state == PEER_CONNECTING) {
        peer_connected(p);
        return;
    }
    if (revents & EV_READ) {
        /* Peers never write on the connection we dialled: readable means EOF,
         * an error, or a protocol violation; all end the connection. (With TLS
         * a read can also just advance the handshake: CM_EAGAIN.) */
        uint8_t junk[64];
        ssize_t n = cm_stream_read(p->s, junk, sizeof(junk));
        if (n != CM_EAGAIN) {
            peer_fail(p);
            return;
        }
    }
    if ((revents & EV_WRITE) ||
        ((p->s->want & CM_STREAM_WANT_READ) && peer_has_output(p))) {
        if (peer_flush(p) != 0) {
            peer_fail(p);
        }
    }
}

static void peer_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    peer_connect(cm_container_of(w, struct peer, timer));
}

static void peer_connect(struct peer *p)
{
    struct raft_transport *t = p->t;
    int fd;
    ev_timer_stop(t->loop, &p->timer);
    if (cm_tcp_connect(p->address, &fd) != 0) {
        peer_fail(p);
        return;
    }
    p->fd = fd;
    p->state = PEER_CONNECTING;
    ev_io_stop(t->loop, &p->io);
    ev_io_set(&p->io, fd, EV_WRITE);
    ev_io_start(t->loop, &p->io);
}

static void peer_free(struct peer *p)
{
    peer_close_socket(p);
    ev_timer_stop(p->t->loop, &p->timer);
    queue_drop(p);
    list_remove(&p->link);
    cm_free(&p);
}

int raft_transport_set_peer(struct raft_transport *t, raft_id id, const char *address)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (t->closing) {
        return CM_ECLOSED;
    }
    if (id == 0 || id == t->o.id || address == NULL ||
        strlen(address) >= RAFT_ADDRESS_MAX ||
        cm_sockaddr_parse(address, false, &ss, &sslen) != 0) {
        return CM_EINVAL;
    }
    struct peer *p = peer_find(t, id);
    if (p != NULL) {
        if (strcmp(p->address, address) == 0) {
            return 0;
        }
        peer_close_socket(p);
        queue_drop(p);
    } else {
        p = cm_calloc(1, sizeof(*p));
        if (p == NULL) {
            return CM_ENOMEM;
        }
        p->t = t;
        p->id = id;
        p->fd = -1;
        list_init(&p->dirty);
        ev_io_init(&p->io, peer_io_cb, -1, EV_WRITE);
        ev_timer_init(&p->timer, peer_timer_cb, 0., 0.);
        list_push(&t->peers, &p->link);
    }
    strcpy(p->address, address);
    p->backoff_ms = t->o.reconnect_min_ms;
    p->connected_at = 0;
    p->state = PEER_IDLE;
    peer_connect(p);
    return 0;
}

int raft_transport_remove_peer(struct raft_transport *t, raft_id id)
{
    struct peer *p = peer_find(t, id);
    if (p == NULL) {
        return CM_ENOTFOUND;
    }
    peer_free(p);
    return 0;
}

/* ------------------------------------------------------------------ sending */

/* Append one frame for @p (the message @m, or @body on @channel) within the
 * queue limit. */
static int peer_enqueue(struct peer *p, const struct raft_message *m, uint8_t channel,
                        const void *body, size_t len)
{
    struct raft_transport *t = p->t;
    if (p->queued >= t->o.max_queue_bytes) {
        t->stats.queue_full++;
        return CM_EAGAIN;
    }
    struct block *b = queue_tail(p);
    if (b == NULL) {
        return CM_ENOMEM;
    }
    size_t before = b->buf.len;
    int rv = m != NULL ? raft_msg_encode(m, &b->buf)
                       : raft_frame_encode(channel, body, len, &b->buf);
    if (rv != 0) {
        return rv;
    }
    size_t added = b->buf.len - before;
    if (p->queued + added > t->o.max_queue_bytes) {
        b->buf.len = before;
        b->buf.data[before] = '\0';
        t->stats.queue_full++;
        return CM_EAGAIN;
    }
    p->queued += added;
    t->stats.frames_sent++;
    mark_dirty(p);
    return 0;
}

int raft_transport_send(struct raft_transport *t, const struct raft_message *m)
{
    if (t->closing) {
        return CM_ECLOSED;
    }
    struct peer *p = peer_find(t, m->to);
    if (p == NULL) {
        return CM_ENOTFOUND;
    }
    if (m->from == t->o.id) {
        return peer_enqueue(p, m, RAFT_CHANNEL_RAFT, NULL, 0);
    }
    struct raft_message copy = *m;
    copy.from = t->o.id;
    return peer_enqueue(p, &copy, RAFT_CHANNEL_RAFT, NULL, 0);
}

int raft_transport_send_rpc(struct raft_transport *t, raft_id to, const void *body,
                            size_t len)
{
    if (t->closing) {
        return CM_ECLOSED;
    }
    struct peer *p = peer_find(t, to);
    if (p == NULL) {
        return CM_ENOTFOUND;
    }
    return peer_enqueue(p, NULL, RAFT_CHANNEL_RPC, body, len);
}

size_t raft_transport_queued(const struct raft_transport *t, raft_id id)
{
    const struct peer *p = peer_find(t, id);
    return p != NULL ? p->queued : 0;
}

/* ------------------------------------------------------------------ inbound */

/* conn_read() results besides 0 and refusals (negative cm_err). */
#define CONN_EOF  1 /* the peer closed or the socket failed: close quietly */
#define CONN_GONE 2 /* handed over to the join callback: already freed */

static void conn_close(struct conn *c, int err)
{
    struct raft_transport *t = c->t;
    raft_id lost = c->state == CONN_OPEN ? c->peer_id : 0;
    if (err < 0) {
        note_refused(t, err);
    }
    ev_io_stop(t->loop, &c->io);
    ev_timer_stop(t->loop, &c->timer);
    cm_stream_close(c->s);
    cm_free(&c->rbuf);
    list_remove(&c->link);
    t->n_conns--;
    cm_free(&c);
    if (lost != 0 && t->o.peer_lost != NULL) {
        t->o.peer_lost(t->o.data, lost);
    }
}

/* One whole frame. Errors refuse the connection; CM_ECLOSED: a user callback
 * closed the transport, touch nothing. */
static int conn_dispatch(struct conn *c, uint8_t channel, const uint8_t *body, size_t len)
{
    struct raft_transport *t = c->t;
    if (c->state == CONN_HELLO) {
        raft_id id;
        uint64_t cluster;
        if (channel != RAFT_CHANNEL_HELLO) {
            return CM_EPROTO;
        }
        int rv = raft_hello_decode(body, len, &id, &cluster);
        if (rv != 0) {
            return rv;
        }
        if (cluster != t->o.cluster_id) {
            return CM_EPERM;
        }
        if (t->o.authorize != NULL && t->o.authorize(t->o.data, c->s, id) != 0) {
            return CM_EACCES;
        }
        c->peer_id = id;
        c->state = CONN_OPEN;
        ev_timer_stop(t->loop, &c->timer);
        /* The peer just connected to us, so it is up: if our own connection to
         * it waits out a backoff (it was down a moment ago), dial now. Otherwise
         * an answer to it (a vote, say) could wait for up to reconnect_max_ms. */
        struct peer *p = peer_find(t, id);
        if (p != NULL && p->state == PEER_IDLE) {
            p->backoff_ms = t->o.reconnect_min_ms;
            peer_connect(p);
        }
        return 0;
    }
    t->stats.frames_received++;
    switch (channel) {
    case RAFT_CHANNEL_RAFT: {
        struct raft_message m;
        int rv = raft_msg_decode(body, len, &m);
        if (rv != 0) {
            return rv;
        }
        /* The HELLO authenticated the sender (with TLS, its certificate will);
         * a message must not claim to come from someone else. */
        if (m.from != c->peer_id || m.to != t->o.id) {
            t->stats.dropped++;
        } else {
            t->o.recv(t->o.data, &m);
        }
        raft_msg_close(&m);
        return t->closing ? CM_ECLOSED : 0;
    }
    case RAFT_CHANNEL_RPC:
        if (t->o.rpc == NULL) {
            t->stats.dropped++;
            return 0;
        }
        t->o.rpc(t->o.data, c->peer_id, body, len);
        return t->closing ? CM_ECLOSED : 0;
    default:
        return CM_EPROTO; /* a second HELLO */
    }
}

/* The first frame was a JOIN: give the stream to the join callback and free
 * the connection without closing it. Returns CM_ECLOSED so the reader touches
 * nothing of @c again. */
static int conn_hand_over(struct conn *c, const uint8_t *body, size_t len)
{
    struct raft_transport *t = c->t;
    struct cm_stream *s = c->s;
    uint8_t *rbuf = c->rbuf;
    ev_io_stop(t->loop, &c->io);
    ev_timer_stop(t->loop, &c->timer);
    list_remove(&c->link);
    t->n_conns--;
    cm_free(&c);
    t->stats.joins++;
    t->o.join(t->o.data, s, body, len);
    cm_free(&rbuf);
    return CONN_GONE;
}

/* Dispatch every complete frame in the read buffer and keep the partial rest at
 * its front, growing the buffer when the next frame is bigger. The header is
 * checked as soon as it is in, so an oversized frame is refused before any of
 * its body is buffered. */
static int conn_frames(struct conn *c)
{
    struct raft_transport *t = c->t;
    size_t off = 0;
    int rv = 0;
    while (c->rlen - off >= RAFT_FRAME_HEADER) {
        uint8_t channel;
        uint32_t blen;
        rv = raft_frame_header(c->rbuf + off, c->rlen - off, &channel, &blen);
        if (rv != 0) {
            return rv;
        }
        if (c->state == CONN_HELLO && channel == RAFT_CHANNEL_JOIN && t->o.join != NULL &&
            blen <= RAFT_JOIN_MAX) {
            /* A joining node: it has no identity yet, so the application
             * (which checks its secret) takes the connection over. */
            size_t total = RAFT_FRAME_HEADER + (size_t)blen;
            if (c->rlen - off < total) {
                if (total > c->rcap) {
                    return CM_ETOOBIG; /* RAFT_JOIN_MAX fits the read buffer */
                }
                break;
            }
            return conn_hand_over(c, c->rbuf + off + RAFT_FRAME_HEADER, blen);
        }
        if (c->state == CONN_HELLO &&
            (channel != RAFT_CHANNEL_HELLO || blen != RAFT_HELLO_BODY)) {
            /* Before the HELLO nothing is worth buffering: a stranger cannot
             * make us allocate for a big frame. */
            return CM_EPROTO;
        }
        size_t total = RAFT_FRAME_HEADER + (size_t)blen;
        if (c->rlen - off < total) {
            if (total > c->rcap) {
                memmove(c->rbuf, c->rbuf + off, c->rlen - off);
                c->rlen -= off;
                off = 0;
                uint8_t *nb = cm_realloc(c->rbuf, total);
                if (nb == NULL) {
                    return CM_ENOMEM;
                }
                c->rbuf = nb;
                c->rcap = total;
            }
            break;
        }
        rv = conn_dispatch(c, channel, c->rbuf + off + RAFT_FRAME_HEADER, blen);
        if (rv != 0) {
            return rv;
        }
        off += total;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    if (c->rlen == 0 && c->rcap > READ_BUF_SIZE) {
        /* A big frame is done: do not keep megabytes per idle connection. */
        cm_free(&c->rbuf);
        c->rcap = 0;
    }
    return 0;
}

static int conn_read(struct conn *c)
{
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        if (c->rbuf == NULL) {
            c->rbuf = cm_malloc(READ_BUF_SIZE);
            if (c->rbuf == NULL) {
                return CM_ENOMEM;
            }
            c->rcap = READ_BUF_SIZE;
        }
        size_t space = c->rcap - c->rlen;
        CM_ASSERT(space > 0);
        ssize_t n = cm_stream_read(c->s, c->rbuf + c->rlen, space);
        if (n == CM_EAGAIN) {
            if (c->s->want & CM_STREAM_WANT_WRITE) {
                io_set_events(c->t->loop, &c->io, EV_READ | EV_WRITE);
            } else {
                io_set_events(c->t->loop, &c->io, EV_READ);
            }
            return 0;
        }
        if (n <= 0) {
            return CONN_EOF;
        }
        c->rlen += (size_t)n;
        int rv = conn_frames(c);
        if (rv != 0) {
            return rv;
        }
        if ((size_t)n < space && !cm_stream_pending(c->s)) {
            return 0; /* drained; save the read that would say EAGAIN */
        }
    }
    /* Budget used up. The fd stays readable (level-triggered) unless the bytes
     * are buffered inside the stream (TLS): then come back by ourselves. */
    if (cm_stream_pending(c->s)) {
        ev_feed_event(c->t->loop, &c->io, EV_READ);
    }
    return 0;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = cm_container_of(w, struct conn, io);
    struct raft_transport *t = c->t;
    t->depth++;
    int rv = conn_read(c);
    t->depth--;
    if (t->closing) {
        if (t->depth == 0) {
            transport_free(t);
        }
        return;
    }
    if (rv == CONN_GONE) {
        return;
    }
    if (rv != 0) {
        conn_close(c, rv == CONN_EOF ? 0 : rv);
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(cm_container_of(w, struct conn, timer), CM_ETIMEDOUT);
}

static void accept_one(struct raft_transport *t, int fd)
{
    struct cm_stream *s;
    if (t->n_conns >= t->o.max_inbound) {
        (void)close(fd);
        note_refused(t, CM_EMFILE);
        return;
    }
    if (t->o.wrap(t->o.wrap_data, fd, true, &s) != 0) {
        (void)close(fd);
        return;
    }
    struct conn *c = cm_calloc(1, sizeof(*c));
    if (c == NULL) {
        cm_stream_close(s);
        return;
    }
    c->t = t;
    c->s = s;
    c->state = CONN_HELLO;
    ev_io_init(&c->io, conn_io_cb, cm_stream_fd(s), EV_READ);
    ev_timer_init(&c->timer, conn_timer_cb, t->o.hello_timeout_ms / 1e3, 0.);
    ev_io_start(t->loop, &c->io);
    ev_timer_start(t->loop, &c->timer);
    list_push(&t->conns, &c->link);
    t->n_conns++;
    t->stats.accepted++;
}

static void accept_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct raft_transport *t = cm_container_of(w, struct raft_transport, accept_timer);
    ev_io_start(loop, &t->accept_io);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct raft_transport *t = cm_container_of(w, struct raft_transport, accept_io);
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int fd;
        int rv = cm_tcp_accept(t->lfd, &fd);
        if (rv == CM_EAGAIN) {
            return;
        }
        if (rv == CM_ECONNRESET) {
            continue;
        }
        if (rv != 0) {
            /* Out of fds or memory: the listener stays readable, so pause it
             * rather than spin. */
            cm_warn("raft", "accept: %s", cm_strerror(rv));
            ev_io_stop(loop, &t->accept_io);
            ev_timer_set(&t->accept_timer, ACCEPT_PAUSE, 0.);
            ev_timer_start(loop, &t->accept_timer);
            return;
        }
        accept_one(t, fd);
    }
}

/* ------------------------------------------------------------------ lifecycle */

int raft_transport_start(struct ev_loop *loop, const struct raft_transport_options *o,
                         struct raft_transport **ret, struct cm_errbuf *eb)
{
    if (o->id == 0 || o->recv == NULL || o->bind_address == NULL) {
        return cm_err_setf(eb, CM_EINVAL,
                           "transport: id, recv and bind_address are "
                           "required");
    }
    struct raft_transport *t = cm_calloc(1, sizeof(*t));
    if (t == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "transport: out of memory");
    }
    t->loop = loop;
    t->o = *o;
    t->o.bind_address = NULL;
    if (t->o.reconnect_min_ms == 0) {
        t->o.reconnect_min_ms = 50;
    }
    if (t->o.reconnect_max_ms == 0) {
        t->o.reconnect_max_ms = CM_MAX(2000u, t->o.reconnect_min_ms);
    }
    if (t->o.max_queue_bytes == 0) {
        t->o.max_queue_bytes = 64u * 1024 * 1024;
    }
    if (t->o.hello_timeout_ms == 0) {
        t->o.hello_timeout_ms = 5000;
    }
    if (t->o.max_inbound == 0) {
        t->o.max_inbound = 256;
    }
    if (t->o.wrap == NULL) {
        t->o.wrap = cm_stream_tcp_wrap;
    }
    int rv;
    if (t->o.reconnect_min_ms > t->o.reconnect_max_ms) {
        rv = cm_err_setf(eb, CM_EINVAL, "transport: reconnect_min_ms %u > max %u",
                         t->o.reconnect_min_ms, t->o.reconnect_max_ms);
        goto err_after_alloc;
    }
    rv = cm_tcp_listen(o->bind_address, SOMAXCONN, &t->lfd, eb);
    if (rv != 0) {
        cm_err_wrapf(eb, "raft transport");
        goto err_after_alloc;
    }
    rv = cm_tcp_local_port(t->lfd, &t->port);
    if (rv != 0) {
        cm_err_sys(eb, rv, "raft transport: local port of `%s`", o->bind_address);
        goto err_after_listen;
    }
    uint64_t seed;
    if (cm_random_bytes(&seed, sizeof(seed)) != 0) {
        seed = o->id ^ (uint64_t)(ev_time() * 1e6);
    }
    cm_rng_seed(&t->rng, seed);
    struct cm_buf hello = {0};
    rv = raft_hello_encode(t->o.id, t->o.cluster_id, &hello);
    if (rv != 0) {
        cm_err_setf(eb, rv, "raft transport: out of memory");
        goto err_after_listen;
    }
    CM_BUG_ON(hello.len != HELLO_LEN);
    memcpy(t->hello, hello.data, HELLO_LEN);
    cm_buf_done(&hello);
    list_init(&t->peers);
    list_init(&t->conns);
    list_init(&t->dirty);
    ev_io_init(&t->accept_io, accept_cb, t->lfd, EV_READ);
    ev_timer_init(&t->accept_timer, accept_timer_cb, ACCEPT_PAUSE, 0.);
    ev_prepare_init(&t->flush_prepare, flush_prepare_cb);
    ev_idle_init(&t->flush_idle, flush_idle_cb);
    ev_io_start(loop, &t->accept_io);
    *ret = t;
    return 0;

err_after_listen:
    (void)close(t->lfd);
err_after_alloc:
    cm_free(&t);
    return rv;
}

uint16_t raft_transport_port(const struct raft_transport *t)
{
    return t->port;
}

void raft_transport_get_stats(const struct raft_transport *t,
                              struct raft_transport_stats *ret)
{
    *ret = t->stats;
}

static void transport_free(struct raft_transport *t)
{
    while (!list_empty(&t->peers)) {
        peer_free(cm_container_of(t->peers.next, struct peer, link));
    }
    while (!list_empty(&t->conns)) {
        conn_close(cm_container_of(t->conns.next, struct conn, link), 0);
    }
    if (t->lfd >= 0) {
        (void)close(t->lfd);
    }
    cm_free(&t);
}

void raft_transport_close(struct raft_transport *t)
{
    if (t == NULL || t->closing) {
        return;
    }
    t->closing = true;
    /* Stop every watcher now: no callback of ours runs after this returns. */
    struct ev_loop *loop = t->loop;
    ev_io_stop(loop, &t->accept_io);
    ev_timer_stop(loop, &t->accept_timer);
    ev_prepare_stop(loop, &t->flush_prepare);
    ev_idle_stop(loop, &t->flush_idle);
    for (struct link *l = t->peers.next; l != &t->peers; l = l->next) {
        struct peer *p = cm_container_of(l, struct peer, link);
        ev_io_stop(loop, &p->io);
        ev_timer_stop(loop, &p->timer);
    }
    for (struct link *l = t->conns.next; l != &t->conns; l = l->next) {
        struct conn *c = cm_container_of(l, struct conn, link);
        ev_io_stop(loop, &c->io);
        ev_timer_stop(loop, &c->timer);
    }
    if (t->depth == 0) {
        transport_free(t);
    }
}
