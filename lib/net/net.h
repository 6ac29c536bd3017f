/* lib/net: byte streams and non-blocking TCP helpers.
 *
 * - struct cm_stream: a connected byte stream behind an ops table. Plain TCP is
 *   implemented here; TLS (OpenSSL) plugs in later as another ops table, so code
 *   written against cm_stream (the raft transport, the API server) does not
 *   change. Every operation is non-blocking: CM_EAGAIN means "try again when the
 *   fd is ready", and stream->want says for what (a TLS write may need the fd to
 *   become readable, e.g. during a renegotiation or the handshake).
 * - cm_tcp_*: listen, accept, connect (numeric addresses only; names will be
 *   resolved with c-ares by the caller) with O_NONBLOCK, O_CLOEXEC and
 *   TCP_NODELAY.
 *
 * Errors are negative cm_err codes (lib/base). Thread safety: none needed; each
 * stream is used by one thread.
 */
#ifndef CM_NET_H
#define CM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct cm_errbuf;
struct cm_stream;

/* ------------------------------------------------------------------ streams */

#define CM_STREAM_WANT_READ  1u /* wait for the fd to become readable */
#define CM_STREAM_WANT_WRITE 2u /* wait for the fd to become writable */

/* What an implementation provides. All are required except pending (NULL: never
 * any buffered input). */
struct cm_stream_ops {
    const char *name; /* "tcp", "tls" */
    /* Read up to @len bytes: > 0 bytes read, 0 at end of stream, < 0 a cm_err
     * (CM_EAGAIN: set s->want and wait). */
    ssize_t (*read)(struct cm_stream *s, void *buf, size_t len);
    /* Write from @iov (iovcnt <= CM_STREAM_IOV_MAX): bytes written (> 0, maybe
     * fewer than asked) or < 0 a cm_err (CM_EAGAIN: set s->want and wait). */
    ssize_t (*writev)(struct cm_stream *s, const struct iovec *iov, int iovcnt);
    /* Send end-of-stream (TCP FIN, TLS close_notify); reads still work. */
    int (*shutdown)(struct cm_stream *s);
    /* Close the fd and free @s. */
    void (*close)(struct cm_stream *s);
    /* True when input is buffered inside the stream (TLS records already read
     * from the fd), so a reader must not wait for the fd before reading again. */
    bool (*pending)(const struct cm_stream *s);
};

/* Implementations embed this first and allocate with cm_malloc. */
struct cm_stream {
    /* read-only */
    const struct cm_stream_ops *ops;
    int fd;        /* the socket, owned by the stream */
    unsigned want; /* CM_STREAM_WANT_* after an operation returned CM_EAGAIN */
};

#define CM_STREAM_IOV_MAX 64

static inline ssize_t cm_stream_read(struct cm_stream *s, void *buf, size_t len)
{
    return s->ops->read(s, buf, len);
}
static inline ssize_t cm_stream_writev(struct cm_stream *s, const struct iovec *iov,
                                       int iovcnt)
{
    return s->ops->writev(s, iov, iovcnt);
}
ssize_t cm_stream_write(struct cm_stream *s, const void *buf, size_t len);
static inline int cm_stream_shutdown(struct cm_stream *s)
{
    return s->ops->shutdown(s);
}
static inline int cm_stream_fd(const struct cm_stream *s)
{
    return s->fd;
}
static inline bool cm_stream_pending(const struct cm_stream *s)
{
    return s->ops->pending != NULL && s->ops->pending(s);
}
/* Close the fd and free the stream. Accepts NULL. */
void cm_stream_close(struct cm_stream *s);

/* A plain TCP stream over the connected, non-blocking socket @fd. @fd transfers
 * on success only. Errors: CM_ENOMEM. */
int cm_stream_tcp_new(int fd, struct cm_stream **ret);

/* Turns a connected socket into a stream: plain TCP (cm_stream_tcp_wrap) or TLS.
 * @server: the socket was accepted (true) or connected (false). @fd transfers on
 * success only. */
typedef int (*cm_stream_wrap_fn)(void *data, int fd, bool server, struct cm_stream **ret);
/* The cm_stream_wrap_fn for plain TCP (@data unused). */
int cm_stream_tcp_wrap(void *data, int fd, bool server, struct cm_stream **ret);

/* ------------------------------------------------------------------ addresses */

/* Parse a numeric "host:port" ("127.0.0.1:7000", "[::1]:7000"; port 0 allowed
 * when @allow_port0) into @ret. Errors: CM_EINVAL (syntax, a name instead of an
 * address, port out of range). */
int cm_sockaddr_parse(const char *hostport, bool allow_port0,
                      struct sockaddr_storage *ret, socklen_t *ret_len);

/* ------------------------------------------------------------------ TCP */

/* Listen on @hostport (port 0: any free port) with SO_REUSEADDR, non-blocking and
 * close-on-exec. *ret_fd is the listening socket. Errors: CM_EINVAL (address),
 * CM_EADDRINUSE, CM_EACCES, others from the OS; @eb (may be NULL) names the
 * address. */
int cm_tcp_listen(const char *hostport, int backlog, int *ret_fd, struct cm_errbuf *eb);

/* Accept one connection from @lfd: non-blocking, close-on-exec, TCP_NODELAY.
 * Errors: CM_EAGAIN (none waiting); CM_ECONNRESET (that one connection failed
 * before it was accepted, or EINTR: try the next one); CM_EMFILE, CM_ENOMEM and
 * others from the OS. */
int cm_tcp_accept(int lfd, int *ret_fd);

/* Start a non-blocking connect to the numeric @hostport. On success *ret_fd is a
 * socket whose connection is in progress (or already established): wait until it
 * is writable, then call cm_tcp_connect_result(). TCP_NODELAY is set. Errors:
 * CM_EINVAL (address), CM_ECONNREFUSED and others from the OS. */
int cm_tcp_connect(const char *hostport, int *ret_fd);

/* The outcome of a non-blocking connect once the socket is writable: 0 or the
 * negative errno (CM_ECONNREFUSED, CM_ETIMEDOUT, ...). */
int cm_tcp_connect_result(int fd);

/* Set TCP_NODELAY. Errors from the OS. */
int cm_tcp_nodelay(int fd);

/* The local port of a bound socket. Errors from the OS. */
int cm_tcp_local_port(int fd, uint16_t *ret_port);

#endif /* CM_NET_H */
