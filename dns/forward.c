/* Forwarding through c-ares on a libev loop (DESIGN.md §8: names outside the
 * zone go to the machine's resolvers).
 *
 * c-ares tells us which sockets to watch through its socket-state callback; each
 * gets an ev_io, and one ev_timer follows ares_timeout() so that a silent
 * upstream turns into ARES_ETIMEOUT, never a hang. ares_send() takes the
 * client's query bytes as they are (its EDNS included) with an ID of ours, and
 * hands back the matching response (c-ares checks ID and question). */
#include <ares.h>
#include <ev.h>
#include <pthread.h>
#include <string.h>

#include "dns/server_int.h"

struct sock_watch {
    ev_io io;
    struct dns__fwd *f;
    struct sock_watch *next;
};

struct dns__fwd {
    struct ev_loop *loop;
    ares_channel ch;
    bool have_ch;
    ev_timer timer;
    struct sock_watch *socks;
    struct cm_rng rng;
    uint8_t scratch[DNS_TCP_MAX];
};

struct send_ctx {
    dns__fwd_cb cb;
    void *data;
};

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status;

static void ares_global_init(void)
{
    ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void update_timer(struct dns__fwd *f)
{
    struct timeval tv;
    ev_timer_stop(f->loop, &f->timer);
    if (ares_timeout(f->ch, NULL, &tv) != NULL) {
        ev_tstamp after = (ev_tstamp)tv.tv_sec + (ev_tstamp)tv.tv_usec / 1e6;
        ev_timer_set(&f->timer, after > 0 ? after : 0.0, 0.0);
        ev_timer_start(f->loop, &f->timer);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct sock_watch *s = cm_container_of(io, struct sock_watch, io);
    struct dns__fwd *f = s->f;
    int fd = io->fd;
    /* May close the socket, and so free @s, through sock_state_cb. */
    ares_process_fd(f->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    update_timer(f);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct dns__fwd *f = cm_container_of(t, struct dns__fwd, timer);
    ares_process_fd(f->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    update_timer(f);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns__fwd *f = data;
    struct sock_watch **pp = &f->socks;
    while (*pp != NULL && (*pp)->io.fd != fd) {
        pp = &(*pp)->next;
    }
    struct sock_watch *s = *pp;
    if (!readable && !writable) {
        if (s != NULL) {
            ev_io_stop(f->loop, &s->io);
            *pp = s->next;
            cm_free_raw(s);
        }
        return;
    }
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    if (s == NULL) {
        s = cm_calloc(1, sizeof(*s));
        if (s == NULL) {
            /* Without a watcher the socket is only served by the timer: the
             * query times out rather than hangs. */
            return;
        }
        s->f = f;
        s->next = f->socks;
        f->socks = s;
        ev_io_init(&s->io, io_cb, fd, events);
    } else {
        ev_io_stop(f->loop, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(f->loop, &s->io);
}

int dns__fwd_new(struct ev_loop *loop, const struct dns_upstream *ups, size_t n, bool tcp,
                 unsigned timeout_ms, unsigned tries, struct dns__fwd **ret)
{
    pthread_once(&ares_once, ares_global_init);
    if (ares_init_status != ARES_SUCCESS) {
        return CM_EIO;
    }
    if (n == 0 || n > DNS_UPSTREAM_MAX) {
        return CM_EINVAL;
    }
    struct dns__fwd *f = cm_calloc(1, sizeof(*f));
    if (f == NULL) {
        return CM_ENOMEM;
    }
    f->loop = loop;
    ev_timer_init(&f->timer, timer_cb, 0.0, 0.0);
    uint64_t seed;
    if (cm_random_bytes(&seed, sizeof(seed)) != 0) {
        seed = (uint64_t)(uintptr_t)f ^ (uint64_t)ev_time();
    }
    cm_rng_seed(&f->rng, seed);

    struct ares_options o;
    memset(&o, 0, sizeof(o));
    /* Not IGNTC: c-ares then reads at most 512 bytes of a UDP answer (and cuts
     * longer ones without setting TC). Without it, a truncated or longer UDP
     * answer is asked again over TCP, so we always get the whole answer and
     * cut it to the client's size ourselves. Not EDNS either: on a FORMERR
     * c-ares would strip 11 bytes off the (client's) query, assuming they are
     * its own OPT, and turn EDNS off for the channel. Not STAYOPEN: sockets
     * close when no query is pending, so an idle TCP connection that upstream
     * dropped is never reused. */
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | (tcp ? ARES_FLAG_USEVC : 0);
    o.timeout = (int)timeout_ms;
    o.tries = (int)tries;
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = f;
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
               ARES_OPT_SOCK_STATE_CB | ARES_OPT_NOROTATE;
    int rv = CM_EIO;
    int st = ares_init_options(&f->ch, &o, mask);
    if (st != ARES_SUCCESS) {
        rv = st == ARES_ENOMEM ? CM_ENOMEM : CM_EIO;
        goto err_after_alloc;
    }
    f->have_ch = true;

    struct ares_addr_port_node nodes[DNS_UPSTREAM_MAX];
    memset(nodes, 0, sizeof(nodes));
    for (size_t i = 0; i < n; i++) {
        struct ares_addr_port_node *a = &nodes[i];
        a->next = i + 1 < n ? &nodes[i + 1] : NULL;
        if (ups[i].addr.family == DNS_AF_INET4) {
            a->family = AF_INET;
            memcpy(&a->addr.addr4, ups[i].addr.bytes, 4);
        } else {
            a->family = AF_INET6;
            memcpy(&a->addr.addr6, ups[i].addr.bytes, 16);
        }
        a->udp_port = ups[i].port;
        a->tcp_port = ups[i].port;
    }
    st = ares_set_servers_ports(f->ch, nodes);
    if (st != ARES_SUCCESS) {
        rv = st == ARES_ENOMEM ? CM_ENOMEM : CM_EIO;
        goto err_after_channel;
    }
    *ret = f;
    return 0;

err_after_channel:
    ares_destroy(f->ch);
err_after_alloc:
    cm_free_raw(f);
    return rv;
}

static void send_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct send_ctx ctx = *(struct send_ctx *)arg;
    cm_free_raw(arg);
    int rv;
    switch (status) {
    case ARES_SUCCESS:
        rv = abuf != NULL && alen >= DNS_HEADER_LEN ? 0 : CM_EIO;
        break;
    case ARES_ETIMEOUT:
        rv = CM_ETIMEDOUT;
        break;
    case ARES_ENOMEM:
        rv = CM_ENOMEM;
        break;
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED:
        rv = CM_ECANCELED;
        break;
    default:
        rv = CM_EIO;
        break;
    }
    ctx.cb(ctx.data, rv, rv == 0 ? abuf : NULL, rv == 0 ? (size_t)alen : 0);
}

void dns__fwd_send(struct dns__fwd *f, const uint8_t *q, size_t len, dns__fwd_cb cb,
                   void *data)
{
    struct send_ctx *ctx = cm_malloc(sizeof(*ctx));
    if (ctx == NULL) {
        cb(data, CM_ENOMEM, NULL, 0);
        return;
    }
    ctx->cb = cb;
    ctx->data = data;
    /* c-ares 1.18 sends the ID it is given: a random one of ours, not the
     * client's, so that upstream traffic is not predictable from the client
     * side (RFC 5452 §9.2); the client's goes back into the response. */
    if (len > DNS_TCP_MAX) {
        len = DNS_TCP_MAX;
    }
    memcpy(f->scratch, q, len);
    uint16_t id = (uint16_t)cm_rng_next(&f->rng);
    f->scratch[0] = (uint8_t)(id >> 8);
    f->scratch[1] = (uint8_t)id;
    /* ares_send copies the query; a failure calls send_done before returning. */
    ares_send(f->ch, f->scratch, (int)len, send_done, ctx);
    update_timer(f);
}

void dns__fwd_free(struct dns__fwd *f)
{
    if (f == NULL) {
        return;
    }
    if (f->have_ch) {
        /* Runs every pending callback with ARES_EDESTRUCTION and closes the
         * sockets, which removes their watchers through sock_state_cb. */
        ares_destroy(f->ch);
    }
    while (f->socks != NULL) {
        struct sock_watch *s = f->socks;
        f->socks = s->next;
        ev_io_stop(f->loop, &s->io);
        cm_free_raw(s);
    }
    ev_timer_stop(f->loop, &f->timer);
    cm_free_raw(f);
}
