/* Streams: the generic part and the plain TCP implementation. */
#include "net/net.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"

ssize_t cm_stream_write(struct cm_stream *s, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return cm_stream_writev(s, &iov, 1);
}

void cm_stream_close(struct cm_stream *s)
{
    if (s != NULL) {
        s->ops->close(s);
    }
}

/* ------------------------------------------------------------------ plain TCP */

static ssize_t tcp_read(struct cm_stream *s, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(s->fd, buf, len);
        if (n >= 0) {
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->want = CM_STREAM_WANT_READ;
            return CM_EAGAIN;
        }
        return cm_errno();
    }
}

static ssize_t tcp_writev(struct cm_stream *s, const struct iovec *iov, int iovcnt)
{
    /* sendmsg rather than writev: MSG_NOSIGNAL turns a write to a closed peer
     * into EPIPE instead of killing the process with SIGPIPE. */
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    for (;;) {
        ssize_t n = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
        if (n >= 0) {
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->want = CM_STREAM_WANT_WRITE;
            return CM_EAGAIN;
        }
        return cm_errno();
    }
}

static int tcp_shutdown(struct cm_stream *s)
{
    return shutdown(s->fd, SHUT_WR) == 0 ? 0 : cm_errno();
}

static void tcp_close(struct cm_stream *s)
{
    if (s->fd >= 0) {
        /* close(2) releases the fd even when it fails (EINTR included). */
        (void)close(s->fd);
        s->fd = -1;
    }
    cm_free(&s);
}

static const struct cm_stream_ops tcp_ops = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .pending = NULL,
};

int cm_stream_tcp_new(int fd, struct cm_stream **ret)
{
    struct cm_stream *s = cm_malloc(sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    s->ops = &tcp_ops;
    s->fd = fd;
    s->want = 0;
    *ret = s;
    return 0;
}

int cm_stream_tcp_wrap(void *data, int fd, bool server, struct cm_stream **ret)
{
    (void)data;
    (void)server;
    return cm_stream_tcp_new(fd, ret);
}
