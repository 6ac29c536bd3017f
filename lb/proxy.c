/* Mode proxy: an L4 TCP proxy on libev.
 *
 * One lb_proxy per loop (per thread; with reuseport several share the VIP ports).
 * A client connection goes INI -> QUE -> CON -> EST -> DIS -> CLO (enum below),
 * after haproxy's stream-connector states. Short exchanges copy through one
 * scratch buffer; a direction that fills it moves on to splice(2) through a pipe
 * (the payload never enters userspace); when a pipe cannot be had, or splice
 * refuses the socket, that direction keeps copying.
 *
 * Events: listeners, timers and the table hand-over are libev watchers. The
 * connections' sockets are not: they sit in an edge-triggered epoll set of the
 * proxy's own (p->epfd), which the loop watches as one fd. Each socket is added
 * once, for reading, writing and the peer's FIN (EPOLLRDHUP), and leaves the set
 * when it is closed; libev's level-triggered epoll instead costs an epoll_ctl at
 * every change of interest, including those after an EOF. Knowing of the peer's
 * FIN when its last data is read also lets that data and our FIN leave in one
 * segment, and spares the read that would return 0. Events of both sockets of a
 * connection are gathered before it runs, so a connection whose two ends both
 * finished is closed without a shutdown(2) first.
 *
 * Work per wake-up is bounded: at most max_accept accepts per listener (libev's
 * level-triggered readiness calls back for the rest), EPOLL_BATCH events, and
 * PUMP_ROUNDS chunks per direction; a direction stopped by that bound with work
 * left, which edge-triggered readiness would not report again, is queued on
 * p->again and resumed from a zero timer, after the other connections had a turn.
 *
 * Epoll events carry a slot number and a generation, not a pointer: a socket
 * that a forked child still holds stays in the set after our close, and its late
 * events must not reach a freed (or reused) connection.
 *
 * Close discipline (libuv's): a connection is freed only when no event of its
 * sockets can reach it (stale ones fail the generation check) and its timer is
 * stopped; every function that may free a connection says so and its callers
 * return right after.
 */
#include <arpa/inet.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"
#include "lb/lb_int.h"
#include "net/net.h"

#define PUMP_ROUNDS 16  /* chunks per direction per wake-up */
#define EPOLL_BATCH 256 /* connection events per wake-up */
#define EP_EVENTS   (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define EP_READ     (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)
/* Asked of F_SETPIPE_SZ; the default 64 KiB stays when it is refused. */
#define PIPE_SIZE    (256 * 1024)
#define SCRATCH      (16 * 1024) /* copy-path read size (HAProxy's bufsize) */
#define RETRIES_MAX  8
#define ACCEPT_PAUSE 0.1 /* s: back-off after EMFILE or the connection limit */
#define DRAIN_TICK   0.1 /* s: how often drain deadlines are checked */
#define LISTEN_RETRY                                                   \
    1.0 /* s: how often a VIP that could not be listened on is retried \
         */

/* The lifecycle of a client connection (STYLE.md rule 15). */
enum lb_conn_state {
    LB_ST_INI = 0, /* [transient] accepted; VIP looked up, nothing else done yet */
    LB_ST_QUE,     /* [transient] choosing a backend (first try or a retry) */
    LB_ST_CON,     /* connecting to the chosen backend; connect timeout armed */
    LB_ST_EST,     /* established: bytes flow both ways; idle timeout armed */
    LB_ST_DIS,     /* one direction has ended (FIN passed on with SHUT_WR); the other
                    * still flows until it ends too, or the idle/drain timeout */
    LB_ST_CLO,     /* [transient] closed: fds closed, counters released, being freed */
};

/* One direction of the data path: from src to dst. */
struct lb_dir {
    int src, dst;    /* borrowed from the connection */
    int pipe[2];     /* splice path, made on the first full read; -1 before */
    size_t pipe_cap; /* what the pipe holds */
    size_t ppending; /* bytes in the pipe, not yet written to dst */
    char *buf;       /* copy path: what a short write left over; else NULL */
    size_t off;      /* first unwritten byte in buf */
    size_t pending;  /* bytes in buf not yet written (they go before the pipe's) */
    bool splice_ok;  /* may switch to splice */
    bool drained;    /* the last read emptied src: wait for an event before the next */
    bool rdhup;      /* src's FIN has arrived (EPOLLRDHUP): a short read ends it */
    bool eof;        /* src ended */
    bool shut;       /* src ended and everything was written: this direction is over */
    bool fin;        /* SHUT_WR sent to dst (or about to go with close) */
    bool want_read;  /* wait for src readable */
    bool want_write; /* wait for dst writable */
    bool more;       /* stopped by PUMP_ROUNDS with work left */
};

struct lb_listener {
    ev_io io;
    struct lb_proxy *p;
    struct lb_endpoint vip;
    int fd;  /* -1: not listening; retry_timer tries again */
    int err; /* errno of the last failed attempt; 0 when listening */
    bool seen;
    struct lb_listener *next;
};

struct lb_conn {
    enum lb_conn_state st;
    struct lb_proxy *p;
    struct lb_conn *prev, *next;
    struct lb_conn *ready_next; /* on p->ready while queued */
    struct lb_conn *again_next; /* on p->again while again */
    bool queued, again;
    int cfd, bfd;
    uint32_t slot;       /* p->slots[slot] == this: the epoll handle */
    uint32_t cgen, bgen; /* generations of the cfd and of the current bfd */
    uint32_t cev, bev;   /* epoll events of cfd / bfd not handled yet */
    ev_timer timer;
    ev_tstamp last;         /* last byte moved */
    struct lb_table *table; /* reference: keeps vip and be valid */
    const struct lb_vip *vip;
    const struct lb_backend *be; /* counted in its active connections */
    uint32_t tried[RETRIES_MAX + 1];
    size_t ntried;
    struct sockaddr_in client;
    uint8_t hdr[LB_PP2_ENCODE_MAX]; /* PROXY v2 header still to send */
    size_t hdr_len, hdr_off;
    struct lb_dir up;   /* client -> backend */
    struct lb_dir down; /* backend -> client */
};

struct lb_proxy {
    struct ev_loop *loop;
    struct lb_proxy_opts o;
    struct cm_rng rng;
    struct lb_table *table;
    struct lb_slot *slot;
    uint64_t slot_gen;
    ev_async async;
    ev_timer pause_timer;
    ev_timer drain_timer;
    ev_timer retry_timer; /* runs while a listener has no socket */
    ev_timer again_timer; /* zero timer: resumes the connections on again */
    int epfd;             /* edge-triggered set of the connections' sockets */
    ev_io epio;           /* epfd readable */
    struct lb_conn **slots;
    uint32_t *free_slots;
    uint32_t nslots, nfree;
    uint32_t gen;          /* last generation given out */
    struct lb_conn *ready; /* connections with events, while epio_cb runs */
    struct lb_conn *again; /* connections stopped by PUMP_ROUNDS */
    bool paused;
    struct lb_listener *listeners;
    struct lb_conn *conns;
    size_t nconns;
    char scratch[SCRATCH]; /* read buffer shared by every connection of this loop */
};

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void connect_next(struct lb_conn *c);

/* ------------------------------------------------------------------ epoll handles */

/* An epoll event's data: generation (31 bits) and side (1 bit) above, slot below. */
static uint64_t ep_data(const struct lb_conn *c, bool backend)
{
    uint32_t gen = backend ? c->bgen : c->cgen;
    return (uint64_t)((gen << 1) | (backend ? 1u : 0u)) << 32 | c->slot;
}

static uint32_t gen_next(struct lb_proxy *p)
{
    p->gen = (p->gen + 1) & 0x7fffffff;
    return p->gen;
}

/* Give @c a slot. Errors: CM_ENOMEM. */
static int slot_get(struct lb_proxy *p, struct lb_conn *c)
{
    if (p->nfree == 0) {
        uint32_t cap = p->nslots == 0 ? 64 : p->nslots * 2;
        struct lb_conn **slots = cm_reallocarray(p->slots, cap, sizeof(*slots));
        if (slots == NULL) {
            return CM_ENOMEM;
        }
        p->slots = slots;
        uint32_t *fr = cm_reallocarray(p->free_slots, cap, sizeof(*fr));
        if (fr == NULL) {
            return CM_ENOMEM;
        }
        p->free_slots = fr;
        for (uint32_t i = cap; i > p->nslots; i--) {
            p->slots[i - 1] = NULL;
            p->free_slots[p->nfree++] = i - 1;
        }
        p->nslots = cap;
    }
    c->slot = p->free_slots[--p->nfree];
    p->slots[c->slot] = c;
    c->cgen = gen_next(p);
    return 0;
}

static void slot_put(struct lb_proxy *p, struct lb_conn *c)
{
    p->slots[c->slot] = NULL;
    p->free_slots[p->nfree++] = c->slot;
}

/* Add @fd of @c to the proxy's set for good: it leaves it when closed. */
static int ep_add(struct lb_conn *c, int fd, bool backend)
{
    struct epoll_event ev = {.events = EP_EVENTS, .data.u64 = ep_data(c, backend)};
    return epoll_ctl(c->p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : cm_errno();
}

/* ------------------------------------------------------------------ helpers */

static void ctr_add(atomic_uint_least64_t *ctr, uint64_t n)
{
    atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

static void nolinger(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

static void dir_done(struct lb_dir *d)
{
    if (d->pipe[0] >= 0) {
        close(d->pipe[0]);
        close(d->pipe[1]);
        d->pipe[0] = d->pipe[1] = -1;
    }
    cm_free(&d->buf);
}

/* ------------------------------------------------------------------ close */

static void accept_resume(struct lb_proxy *p);

/* Frees @c: callers return right after. @reset: abortive close (RST) toward both
 * peers, for errors, so they do not take a truncated stream for a complete one. */
static void conn_close(struct lb_conn *c, bool reset)
{
    struct lb_proxy *p = c->p;
    c->st = LB_ST_CLO;
    ev_timer_stop(p->loop, &c->timer);
    if (c->again) {
        struct lb_conn **pc = &p->again;
        while (*pc != c) {
            pc = &(*pc)->again_next;
        }
        *pc = c->again_next;
    }
    slot_put(p, c);
    if (reset) {
        nolinger(c->cfd);
        if (c->bfd >= 0) {
            nolinger(c->bfd);
        }
    }
    close(c->cfd);
    if (c->bfd >= 0) {
        close(c->bfd);
    }
    dir_done(&c->up);
    dir_done(&c->down);
    if (c->be != NULL) {
        lb_backend_conn_end(c->be);
    }
    atomic_fetch_sub_explicit(&c->vip->state->active, 1, memory_order_relaxed);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        p->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    p->nconns--;
    lb_table_unref(c->table);
    cm_free(&c);
    if (p->paused && p->nconns < p->o.max_conns) {
        accept_resume(p);
    }
}

/* ------------------------------------------------------------------ data path */

static void dir_init(struct lb_dir *d, int src, int dst, bool splice_ok)
{
    memset(d, 0, sizeof(*d));
    d->src = src;
    d->dst = dst;
    d->pipe[0] = d->pipe[1] = -1;
    d->splice_ok = splice_ok;
}

/* After a read that filled the scratch buffer this direction carries bulk data:
 * from now on it goes through a pipe with splice(2) and never enters userspace.
 * Short exchanges (requests, small answers) never pay for the pipe. */
static void dir_want_splice(struct lb_dir *d)
{
    if (!d->splice_ok || d->pipe[0] >= 0) {
        return;
    }
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        d->pipe[0] = d->pipe[1] = -1;
        d->splice_ok = false; /* out of fds or pipe quota: keep copying */
        return;
    }
    int sz = fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
    if (sz <= 0) {
        sz = fcntl(d->pipe[1], F_GETPIPE_SZ);
    }
    d->pipe_cap = sz > 0 ? (size_t)sz : 65536;
}

/* Write what waits in buf, then in the pipe. 0 when all is out, CM_EAGAIN when dst
 * is full, or a negative errno. */
static int dir_flush(struct lb_dir *d, uint64_t *moved)
{
    while (d->pending > 0 || d->ppending > 0) {
        ssize_t n;
        bool from_buf = d->pending > 0;
        if (from_buf) {
            n = send(d->dst, d->buf + d->off, d->pending, MSG_NOSIGNAL);
        } else {
            n = splice(d->pipe[0], NULL, d->dst, NULL, d->ppending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN || errno == EWOULDBLOCK ? CM_EAGAIN : cm_errno();
        }
        if (from_buf) {
            d->pending -= (size_t)n;
            d->off += (size_t)n;
        } else {
            d->ppending -= (size_t)n;
        }
        *moved += (uint64_t)n;
    }
    return 0;
}

/* Move what is waiting from src to dst, at most PUMP_ROUNDS chunks. @scratch
 * (SCRATCH bytes, the proxy's) holds what was read until it is written: only a
 * short write makes the direction keep a buffer of its own. Adds the bytes written
 * to *moved. Returns 0 (progress or waiting: see want_*, more) or a negative errno
 * (the connection is broken). The end of src sets shut; the caller passes the FIN
 * on (conn_flow). */
static int pump(struct lb_dir *d, char *scratch, uint64_t *moved)
{
    d->want_read = d->want_write = d->more = false;
    if (d->shut) {
        return 0;
    }
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        int rv = dir_flush(d, moved);
        if (rv == CM_EAGAIN) {
            d->want_write = true; /* backpressure: no reading meanwhile */
            return 0;
        }
        if (rv != 0) {
            return rv;
        }
        if (d->eof) {
            d->shut = true;
            return 0;
        }
        if (d->drained) {
            /* A short read emptied the socket: epoll says when there is more, which
             * saves a read that would only fail with EAGAIN. */
            d->want_read = true;
            return 0;
        }
        ssize_t n;
        if (d->pipe[0] >= 0) {
            n = splice(d->src, NULL, d->pipe[1], NULL, d->pipe_cap,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0 && errno == EINVAL) {
                /* This socket does not splice: copy from now on (the pipe is empty). */
                close(d->pipe[0]);
                close(d->pipe[1]);
                d->pipe[0] = d->pipe[1] = -1;
                d->splice_ok = false;
                continue;
            }
        } else {
            n = recv(d->src, scratch, SCRATCH, 0);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                d->want_read = true;
                return 0;
            }
            return cm_errno();
        }
        if (n == 0) {
            d->eof = true;
            continue;
        }
        if (d->pipe[0] >= 0) {
            /* A short splice may only mean the pipe ran out of slots, so the
             * socket is read until EAGAIN (edge-triggered: no event would come). */
            d->ppending = (size_t)n;
            continue;
        }
        d->drained = n < SCRATCH;
        /* The socket is empty and its FIN is in: the end is known without the
         * read that would return 0, and MSG_MORE holds these bytes back for the
         * FIN that conn_flow sends right after (one segment instead of two). */
        d->eof = d->drained && d->rdhup;
        ssize_t w =
            send(d->dst, scratch, (size_t)n, MSG_NOSIGNAL | (d->eof ? MSG_MORE : 0));
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return cm_errno();
            }
            w = 0;
        }
        *moved += (uint64_t)w;
        if (w < n) {
            if (d->buf == NULL && (d->buf = cm_malloc(SCRATCH)) == NULL) {
                return CM_ENOMEM;
            }
            memcpy(d->buf, scratch + w, (size_t)(n - w));
            d->off = 0;
            d->pending = (size_t)(n - w);
        }
        if (n == SCRATCH) {
            dir_want_splice(d);
        }
    }
    /* Out of rounds with more to do: edge-triggered readiness will not say so
     * again, the caller queues the connection (p->again). */
    d->more = true;
    return 0;
}

static void again_queue(struct lb_conn *c)
{
    struct lb_proxy *p = c->p;
    if (c->again) {
        return;
    }
    c->again = true;
    c->again_next = p->again;
    p->again = c;
    if (!ev_is_active(&p->again_timer)) {
        ev_timer_set(&p->again_timer, 0., 0.);
        ev_timer_start(p->loop, &p->again_timer);
    }
}

/* Runs the directions named; may free @c (returns true then). */
static bool conn_flow(struct lb_conn *c, bool up, bool down)
{
    uint64_t in = 0, out = 0;
    int rv = 0;

    if (c->hdr_off < c->hdr_len) {
        ssize_t n =
            send(c->bfd, c->hdr + c->hdr_off, c->hdr_len - c->hdr_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(c, true);
            return true;
        }
        c->hdr_off += n > 0 ? (size_t)n : 0;
        if (c->hdr_off < c->hdr_len) {
            return false; /* EPOLLOUT on bfd brings us back */
        }
        up = down = true;
    }
    if (up) {
        rv = pump(&c->up, c->p->scratch, &in);
    }
    if (rv == 0 && down) {
        rv = pump(&c->down, c->p->scratch, &out);
    }
    if (in + out > 0) {
        c->last = ev_now(c->p->loop);
        ctr_add(&c->vip->state->bytes_in, in);
        ctr_add(&c->vip->state->bytes_out, out);
    }
    if (rv != 0) {
        conn_close(c, true);
        return true;
    }
    if (c->up.shut && c->down.shut) {
        /* Both ends are done: close sends each FIN not sent yet, a shutdown
         * first would be a wasted syscall. */
        conn_close(c, false);
        return true;
    }
    /* Half-close: pass the FIN on, keep the other direction going. */
    if (c->up.shut && !c->up.fin) {
        (void)shutdown(c->bfd, SHUT_WR);
        c->up.fin = true;
    }
    if (c->down.shut && !c->down.fin) {
        (void)shutdown(c->cfd, SHUT_WR);
        c->down.fin = true;
    }
    if (c->up.shut || c->down.shut) {
        c->st = LB_ST_DIS;
    }
    if (c->up.more || c->down.more) {
        again_queue(c);
    }
    return false;
}

/* ------------------------------------------------------------------ connect */

static void timer_arm(struct lb_conn *c, double after)
{
    ev_timer_stop(c->p->loop, &c->timer);
    ev_timer_set(&c->timer, after, 0.);
    ev_timer_start(c->p->loop, &c->timer);
}

static void established(struct lb_conn *c)
{
    struct lb_proxy *p = c->p;
    c->st = LB_ST_EST;
    c->last = ev_now(p->loop);
    timer_arm(c, p->o.idle_timeout_ms / 1000.0);
    if (c->vip->proxy_protocol) {
        struct sockaddr_in dst = {.sin_family = AF_INET,
                                  .sin_addr = c->vip->vip.addr,
                                  .sin_port = htons(c->vip->vip.port)};
        if (lb_pp2_encode((struct sockaddr *)&c->client, (struct sockaddr *)&dst, c->hdr,
                          sizeof(c->hdr), &c->hdr_len) != 0) {
            c->hdr_len = 0;
        }
        c->hdr_off = 0;
    }
    dir_init(&c->up, c->cfd, c->bfd, !p->o.no_splice);
    dir_init(&c->down, c->bfd, c->cfd, !p->o.no_splice);
    /* Read only a socket that has said it is readable: the backend has only
     * just accepted, and a client accepted at once may not have sent yet, so a
     * read now would often fail with EAGAIN (a syscall per connection). Both are
     * in the set, so whatever they send (or have sent) brings an event. */
    c->up.drained = (c->cev & EP_READ) == 0;
    c->down.drained = (c->bev & EP_READ) == 0;
    c->down.rdhup = (c->bev & EPOLLRDHUP) != 0;
    c->up.rdhup = (c->cev & EPOLLRDHUP) != 0;
    c->cev = c->bev = 0;
    (void)conn_flow(c, true, true);
}

/* The current backend failed (refused, unreachable, timed out): try another or give
 * up. May free @c. */
static void backend_failed(struct lb_conn *c)
{
    close(c->bfd); /* leaves the set; late events fail the generation check */
    c->bfd = -1;
    lb_backend_conn_end(c->be);
    c->be = NULL;
    connect_next(c);
}

/* Choose a backend not tried yet and start connecting. May free @c. */
static void connect_next(struct lb_conn *c)
{
    struct lb_proxy *p = c->p;
    for (;;) {
        c->st = LB_ST_QUE;
        int idx = c->ntried <= p->o.retries
                      ? lb_choose(c->vip, &p->rng, c->tried, c->ntried)
                      : CM_ENOTFOUND;
        if (idx < 0) {
            atomic_fetch_add_explicit(&c->vip->state->failed, 1, memory_order_relaxed);
            conn_close(c, true);
            return;
        }
        c->tried[c->ntried++] = (uint32_t)idx;
        c->be = &c->vip->backends[idx];
        lb_backend_conn_begin(c->be);

        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_addr = c->be->ep.addr,
                                 .sin_port = htons(c->be->ep.port)};
        c->bfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->bfd >= 0) {
            (void)cm_tcp_nodelay(c->bfd);
            c->bgen = gen_next(p);
            c->bev = 0;
            /* Added after connect: an unconnected socket would report EPOLLHUP. */
            int rv = connect(c->bfd, (struct sockaddr *)&sa, sizeof(sa));
            bool inprogress = rv != 0 && errno == EINPROGRESS;
            if ((rv == 0 || inprogress) && ep_add(c, c->bfd, true) != 0) {
                close(c->bfd); /* no room in the epoll set: fail like a refusal */
                c->bfd = -1;
                lb_backend_conn_end(c->be);
                c->be = NULL;
                continue;
            }
            if (rv == 0) {
                established(c);
                return;
            }
            if (inprogress) {
                /* A local backend has usually completed the handshake inside
                 * connect(), and then the epoll_ctl above has queued its event
                 * already: the next turn of the loop picks it up with the others,
                 * which costs no syscall of its own (a poll() here would). */
                c->st = LB_ST_CON;
                timer_arm(c, p->o.connect_timeout_ms / 1000.0);
                return;
            }
            close(c->bfd);
            c->bfd = -1;
        }
        lb_backend_conn_end(c->be);
        c->be = NULL;
    }
}

/* Act on the events gathered for @c (both sockets). May free @c. */
static void conn_handle(struct lb_conn *c)
{
    uint32_t ce = c->cev, be = c->bev;
    if (c->st == LB_ST_CON) {
        /* A connecting socket reports EPOLLOUT once established, and a failed
         * one EPOLLERR and EPOLLHUP (tcp_poll): no SO_ERROR read is needed. */
        if ((be & (EPOLLERR | EPOLLHUP)) != 0) {
            c->bev = 0;
            backend_failed(c);
        } else if ((be & EPOLLOUT) != 0) {
            established(c);
        } /* else client events wait in cev for established() */
        return;
    }
    c->cev = c->bev = 0;
    bool up = false, down = false;
    if ((ce & EP_READ) != 0) {
        up = true;
        c->up.drained = false; /* new data (or the end) since the last read */
        c->up.rdhup |= (ce & EPOLLRDHUP) != 0;
    }
    if ((be & EP_READ) != 0) {
        down = true;
        c->down.drained = false;
        c->down.rdhup |= (be & EPOLLRDHUP) != 0;
    }
    if ((ce & EPOLLOUT) != 0 && c->down.want_write) {
        down = true;
    }
    if ((be & EPOLLOUT) != 0 && (c->up.want_write || c->hdr_off < c->hdr_len)) {
        up = true;
    }
    /* An error or reset shows in a write too: whichever direction still works. */
    if ((ce & (EPOLLERR | EPOLLHUP)) != 0) {
        down = true;
    }
    if ((be & (EPOLLERR | EPOLLHUP)) != 0) {
        up = true;
    }
    if (up || down) {
        (void)conn_flow(c, up, down);
    }
}

/* The set has events: gather them per connection, then run each connection
 * once with the events of both its sockets. */
static void epio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_proxy *p = cm_container_of(w, struct lb_proxy, epio);
    struct epoll_event evs[EPOLL_BATCH];
    int n = epoll_wait(p->epfd, evs, EPOLL_BATCH, 0);
    for (int i = 0; i < n; i++) {
        uint32_t slot = (uint32_t)evs[i].data.u64;
        uint32_t tag = (uint32_t)(evs[i].data.u64 >> 32);
        bool backend = (tag & 1) != 0;
        struct lb_conn *c = slot < p->nslots ? p->slots[slot] : NULL;
        if (c == NULL || (backend ? c->bgen : c->cgen) != tag >> 1 ||
            (backend && c->bfd < 0)) {
            continue; /* a socket closed since (held by a forked child) */
        }
        if (backend) {
            c->bev |= evs[i].events;
        } else {
            c->cev |= evs[i].events;
        }
        if (!c->queued) {
            c->queued = true;
            c->ready_next = p->ready;
            p->ready = c;
        }
    }
    /* Only the connection being handled can be freed meanwhile: it has left the
     * list already. */
    while (p->ready != NULL) {
        struct lb_conn *c = p->ready;
        p->ready = c->ready_next;
        c->queued = false;
        conn_handle(c);
    }
}

/* Resume the connections stopped by PUMP_ROUNDS (queued before this turn). */
static void again_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_proxy *p = cm_container_of(w, struct lb_proxy, again_timer);
    /* Those queued during this turn wait for the next one (the timer restarts).
     * Only the connection being run can be freed meanwhile, and it has left the
     * list (again cleared) before it runs. */
    struct lb_conn *list = p->again;
    p->again = NULL;
    while (list != NULL) {
        struct lb_conn *c = list;
        list = c->again_next;
        c->again = false;
        bool up = c->up.more, down = c->down.more;
        if (c->hdr_off >= c->hdr_len && (up || down)) {
            (void)conn_flow(c, up, down);
        }
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct lb_conn *c = cm_container_of(w, struct lb_conn, timer);
    if (c->st == LB_ST_CON) {
        backend_failed(c); /* connect timeout */
        return;
    }
    double idle = c->p->o.idle_timeout_ms / 1000.0;
    double left = c->last + idle - ev_now(loop);
    if (left <= 0) {
        conn_close(c, true);
        return;
    }
    timer_arm(c, left);
}

/* ------------------------------------------------------------------ accept */

static void conn_start(struct lb_proxy *p, struct lb_listener *l, int fd,
                       const struct sockaddr_in *peer)
{
    const struct lb_vip *vip =
        p->table != NULL ? lb_table_find(p->table, l->vip, LB_PROTO_TCP) : NULL;
    struct lb_conn *c = vip != NULL ? cm_calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        close(fd);
        return;
    }
    c->st = LB_ST_INI;
    c->p = p;
    c->cfd = fd;
    c->bfd = -1;
    c->client = *peer;
    c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
    if (slot_get(p, c) != 0) {
        cm_free(&c);
        close(fd);
        return;
    }
    if (ep_add(c, fd, false) != 0) {
        slot_put(p, c);
        cm_free(&c);
        close(fd);
        return;
    }
    c->table = lb_table_ref(p->table);
    c->vip = vip;
    ev_timer_init(&c->timer, conn_timer_cb, 0., 0.);
    c->next = p->conns;
    if (p->conns != NULL) {
        p->conns->prev = c;
    }
    p->conns = c;
    p->nconns++;
    atomic_fetch_add_explicit(&vip->state->total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&vip->state->active, 1, memory_order_relaxed);
    connect_next(c);
}

static void accept_pause(struct lb_proxy *p)
{
    for (struct lb_listener *l = p->listeners; l != NULL; l = l->next) {
        ev_io_stop(p->loop, &l->io);
    }
    p->paused = true;
    ev_timer_stop(p->loop, &p->pause_timer);
    ev_timer_set(&p->pause_timer, ACCEPT_PAUSE, 0.);
    ev_timer_start(p->loop, &p->pause_timer);
}

static void accept_resume(struct lb_proxy *p)
{
    p->paused = false;
    ev_timer_stop(p->loop, &p->pause_timer);
    for (struct lb_listener *l = p->listeners; l != NULL; l = l->next) {
        if (l->fd >= 0) {
            ev_io_start(p->loop, &l->io);
        }
    }
}

static void pause_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_proxy *p = cm_container_of(w, struct lb_proxy, pause_timer);
    if (p->nconns < p->o.max_conns) {
        accept_resume(p);
    } else {
        accept_pause(p);
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_listener *l = cm_container_of(w, struct lb_listener, io);
    struct lb_proxy *p = l->p;
    for (uint32_t i = 0; i < p->o.max_accept; i++) {
        if (p->nconns >= p->o.max_conns) {
            accept_pause(p);
            return;
        }
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);
        int fd =
            accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                accept_pause(p); /* out of fds: retry later, do not spin */
            }
            return;
        }
        /* TCP_NODELAY comes from the listener: Linux copies it to accepted
         * sockets, which saves a setsockopt per connection. */
        conn_start(p, l, fd, &peer);
    }
}

/* ------------------------------------------------------------------ listeners */

/* Publish the outcome of a listen attempt on @ep (0 or an errno) in the VIP's
 * metrics (listen_error, shared by every thread and table generation) and log
 * changes only: the first thread to meet an errno logs it, retries and the other
 * threads stay quiet, and the recovery is logged once. */
static void listen_report(const struct lb_table *t, struct lb_endpoint ep, int err)
{
    const struct lb_vip *v = t != NULL ? lb_table_find(t, ep, LB_PROTO_TCP) : NULL;
    if (v == NULL) {
        return;
    }
    int prev =
        atomic_exchange_explicit(&v->state->listen_error, err, memory_order_relaxed);
    if (prev == err) {
        return;
    }
    char es[LB_ENDPOINT_STRLEN];
    if (err != 0) {
        cm_warn("lb", "VIP %s: cannot listen: %s (retried every %.0f s)",
                lb_endpoint_str(ep, es), cm_strerror(-err), LISTEN_RETRY);
    } else {
        cm_info("lb", "VIP %s: listening", lb_endpoint_str(ep, es));
    }
}

/* Open, bind and listen on l->vip, then watch for connections. On failure l->fd
 * stays -1 and l->err says why; both outcomes are reported (listen_report). */
static int listener_listen(struct lb_proxy *p, struct lb_listener *l,
                           const struct lb_table *t, struct cm_errbuf *eb)
{
    char es[LB_ENDPOINT_STRLEN];
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_addr = l->vip.addr, .sin_port = htons(l->vip.port)};
    int one = 1, rv;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rv = cm_err_sys(eb, cm_errno(), "socket for VIP %s", lb_endpoint_str(l->vip, es));
        goto err;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (p->o.reuseport) {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    /* The address may reach lo after the listener is up. */
    (void)setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
    (void)cm_tcp_nodelay(fd); /* inherited by every accepted connection */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "listen on VIP %s", lb_endpoint_str(l->vip, es));
        close(fd);
        goto err;
    }
    l->fd = fd;
    l->err = 0;
    ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
    if (!p->paused) {
        ev_io_start(p->loop, &l->io);
    }
    listen_report(t, l->vip, 0);
    return 0;

err:
    l->err = -rv;
    listen_report(t, l->vip, l->err);
    return rv;
}

/* A listener for @ep, listening if it can; one that cannot is kept (fd -1) and
 * retried every LISTEN_RETRY, so that a port another process holds is taken as
 * soon as it is free. Returns the listen error, or CM_ENOMEM. */
static int listener_open(struct lb_proxy *p, struct lb_endpoint ep,
                         const struct lb_table *t, struct cm_errbuf *eb)
{
    struct lb_listener *l = cm_calloc(1, sizeof(*l));
    if (l == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "listener");
    }
    l->p = p;
    l->vip = ep;
    l->fd = -1;
    l->seen = true;
    l->next = p->listeners;
    p->listeners = l;
    int rv = listener_listen(p, l, t, eb);
    if (rv != 0 && !ev_is_active(&p->retry_timer)) {
        ev_timer_set(&p->retry_timer, LISTEN_RETRY, LISTEN_RETRY);
        ev_timer_start(p->loop, &p->retry_timer);
    }
    return rv;
}

static void listener_close(struct lb_proxy *p, struct lb_listener *l)
{
    if (l->fd >= 0) {
        ev_io_stop(p->loop, &l->io);
        close(l->fd);
    }
    cm_free(&l);
}

static void retry_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct lb_proxy *p = cm_container_of(w, struct lb_proxy, retry_timer);
    bool failing = false;
    for (struct lb_listener *l = p->listeners; l != NULL; l = l->next) {
        if (l->fd < 0 && listener_listen(p, l, p->table, NULL) != 0) {
            failing = true;
        }
    }
    if (!failing) {
        ev_timer_stop(loop, &p->retry_timer);
    }
}

/* ------------------------------------------------------------------ drain */

static void drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct lb_proxy *p = cm_container_of(w, struct lb_proxy, drain_timer);
    uint64_t now = (uint64_t)(ev_now(loop) * 1e9);
    struct lb_conn *next;
    for (struct lb_conn *c = p->conns; c != NULL; c = next) {
        next = c->next;
        if (c->be == NULL) {
            continue;
        }
        uint64_t dl = atomic_load(&c->be->state->drain_deadline_ns);
        if (dl != 0 && now >= dl) {
            conn_close(c, true);
        }
    }
}

static void drain_update(struct lb_proxy *p, struct lb_table *t)
{
    uint64_t deadline =
        (uint64_t)(ev_now(p->loop) * 1e9) + (uint64_t)p->o.drain_timeout_ms * 1000000u;
    bool any = false;
    for (size_t i = 0; t != NULL && i < t->nvips; i++) {
        const struct lb_vip *v = &t->vips[i];
        for (size_t j = 0; j < v->nbackends; j++) {
            if (v->backends[j].draining) {
                uint_least64_t zero = 0;
                /* The first proxy thread to see it sets the deadline. */
                atomic_compare_exchange_strong(&v->backends[j].state->drain_deadline_ns,
                                               &zero, deadline);
                any = true;
            }
        }
    }
    if (any && !ev_is_active(&p->drain_timer)) {
        ev_timer_set(&p->drain_timer, DRAIN_TICK, DRAIN_TICK);
        ev_timer_start(p->loop, &p->drain_timer);
    } else if (!any) {
        ev_timer_stop(p->loop, &p->drain_timer);
    }
}

/* ------------------------------------------------------------------ proxy */

static bool serves(const struct lb_proxy *p, const struct lb_vip *v)
{
    return v->proto == LB_PROTO_TCP && (v->mode == LB_MODE_PROXY || v->proxy_protocol ||
                                        (v->mode == LB_MODE_AUTO && p->o.serve_auto));
}

int lb_proxy_set_table(struct lb_proxy *p, struct lb_table *t, struct cm_errbuf *eb)
{
    int first = 0;
    for (struct lb_listener *l = p->listeners; l != NULL; l = l->next) {
        l->seen = false;
    }
    for (size_t i = 0; t != NULL && i < t->nvips; i++) {
        const struct lb_vip *v = &t->vips[i];
        if (!serves(p, v)) {
            continue;
        }
        struct lb_listener *l = p->listeners;
        while (l != NULL && !lb_endpoint_eq(l->vip, v->vip)) {
            l = l->next;
        }
        if (l != NULL) {
            l->seen = true;
            continue;
        }
        int rv = listener_open(p, v->vip, t, first == 0 ? eb : NULL);
        if (rv != 0 && first == 0) {
            first = rv;
        }
    }
    for (struct lb_listener **pl = &p->listeners; *pl != NULL;) {
        struct lb_listener *l = *pl;
        if (!l->seen) {
            *pl = l->next;
            const struct lb_vip *v =
                t != NULL && l->fd < 0 ? lb_table_find(t, l->vip, LB_PROTO_TCP) : NULL;
            if (v != NULL) {
                /* Still a VIP, no longer ours to serve (mode nat now). */
                atomic_store(&v->state->listen_error, 0);
            }
            listener_close(p, l);
        } else {
            pl = &l->next;
        }
    }
    drain_update(p, t);
    struct lb_table *old = p->table;
    p->table = t != NULL ? lb_table_ref(t) : NULL;
    lb_table_unref(old);
    return first;
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_proxy *p = cm_container_of(w, struct lb_proxy, async);
    uint64_t gen = lb_slot_generation(p->slot);
    if (gen == p->slot_gen) {
        return;
    }
    p->slot_gen = gen;
    struct lb_table *t = lb_slot_get(p->slot);
    (void)lb_proxy_set_table(p, t, NULL);
    lb_table_unref(t);
}

void lb_proxy_publish(struct lb_proxy *p, struct lb_table *t)
{
    lb_slot_publish(p->slot, t);
    ev_async_send(p->loop, &p->async);
}

int lb_proxy_new(struct ev_loop *loop, const struct lb_proxy_opts *opts,
                 struct lb_proxy **ret, struct cm_errbuf *eb)
{
    struct lb_proxy *p = cm_calloc(1, sizeof(*p));
    if (p == NULL || lb_slot_new(&p->slot) != 0) {
        cm_free(&p);
        return cm_err_setf(eb, CM_ENOMEM, "proxy");
    }
    p->loop = loop;
    if (opts != NULL) {
        p->o = *opts;
    }
    if (p->o.connect_timeout_ms == 0) {
        p->o.connect_timeout_ms = 2000;
    }
    if (p->o.idle_timeout_ms == 0) {
        p->o.idle_timeout_ms = 600000;
    }
    if (p->o.drain_timeout_ms == 0) {
        p->o.drain_timeout_ms = 5000;
    }
    if (p->o.retries == 0) {
        p->o.retries = 2;
    }
    p->o.retries = CM_MIN(p->o.retries, (uint32_t)RETRIES_MAX);
    if (p->o.max_accept == 0) {
        p->o.max_accept = 64;
    }
    if (p->o.max_conns == 0) {
        p->o.max_conns = 65536;
    }
    cm_rng_seed(&p->rng, p->o.seed);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        int rv = cm_err_sys(eb, cm_errno(), "proxy: epoll_create1");
        lb_slot_free(p->slot);
        cm_free(&p);
        return rv;
    }
    ev_io_init(&p->epio, epio_cb, p->epfd, EV_READ);
    ev_io_start(loop, &p->epio);
    ev_unref(loop); /* like the async watcher: connections alone keep no loop */
    ev_async_init(&p->async, async_cb);
    ev_async_start(loop, &p->async);
    ev_unref(loop); /* the async watcher alone does not keep the loop running */
    ev_timer_init(&p->pause_timer, pause_timer_cb, 0., 0.);
    ev_timer_init(&p->drain_timer, drain_timer_cb, 0., 0.);
    ev_timer_init(&p->retry_timer, retry_timer_cb, 0., 0.);
    ev_timer_init(&p->again_timer, again_timer_cb, 0., 0.);
    *ret = p;
    return 0;
}

size_t lb_proxy_conns(const struct lb_proxy *p)
{
    return p->nconns;
}

uint16_t lb_proxy_port(const struct lb_proxy *p, struct lb_endpoint vip)
{
    for (const struct lb_listener *l = p->listeners; l != NULL; l = l->next) {
        if (lb_endpoint_eq(l->vip, vip) && l->fd >= 0) {
            uint16_t port = 0;
            return cm_tcp_local_port(l->fd, &port) == 0 ? port : 0;
        }
    }
    return 0;
}

void lb_proxy_free(struct lb_proxy *p)
{
    if (p == NULL) {
        return;
    }
    p->paused = false; /* closing connections must not restart the listeners */
    while (p->conns != NULL) {
        conn_close(p->conns, false);
    }
    while (p->listeners != NULL) {
        struct lb_listener *l = p->listeners;
        p->listeners = l->next;
        listener_close(p, l);
    }
    ev_timer_stop(p->loop, &p->pause_timer);
    ev_timer_stop(p->loop, &p->drain_timer);
    ev_timer_stop(p->loop, &p->retry_timer);
    ev_timer_stop(p->loop, &p->again_timer);
    ev_ref(p->loop);
    ev_async_stop(p->loop, &p->async);
    ev_ref(p->loop);
    ev_io_stop(p->loop, &p->epio);
    close(p->epfd);
    cm_free(&p->slots);
    cm_free(&p->free_slots);
    lb_table_unref(p->table);
    lb_slot_free(p->slot);
    cm_free(&p);
}
