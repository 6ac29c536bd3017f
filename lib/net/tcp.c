/* Non-blocking TCP sockets: listen, accept, connect. Numeric addresses only. */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"

int cm_sockaddr_parse(const char *hostport, bool allow_port0,
                      struct sockaddr_storage *ret, socklen_t *ret_len)
{
    char host[64];
    const char *hbeg = hostport;
    const char *colon;
    size_t hlen;
    bool v6 = false;

    if (hostport == NULL) {
        return CM_EINVAL;
    }
    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (close == NULL || close[1] != ':') {
            return CM_EINVAL;
        }
        hbeg = hostport + 1;
        hlen = (size_t)(close - hbeg);
        colon = close + 1;
        v6 = true;
    } else {
        colon = strchr(hostport, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL) {
            return CM_EINVAL;
        }
        hlen = (size_t)(colon - hostport);
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        return CM_EINVAL;
    }
    memcpy(host, hbeg, hlen);
    host[hlen] = '\0';

    int64_t port;
    if (cm_parse_i64(colon + 1, allow_port0 ? 0 : 1, 65535, &port) != 0) {
        return CM_EINVAL;
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            return CM_EINVAL;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            return CM_EINVAL;
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        len = sizeof(*sin);
    }
    *ret = ss;
    *ret_len = len;
    return 0;
}

int cm_tcp_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
        return cm_errno();
    }
    return 0;
}

int cm_tcp_local_port(int fd, uint16_t *ret_port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return cm_errno();
    }
    if (ss.ss_family == AF_INET) {
        *ret_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        *ret_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        return CM_EINVAL;
    }
    return 0;
}

int cm_tcp_listen(const char *hostport, int backlog, int *ret_fd, struct cm_errbuf *eb)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rv = cm_sockaddr_parse(hostport, true, &ss, &len);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "listen address `%s` is not a numeric host:port",
                           hostport != NULL ? hostport : "(null)");
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return cm_err_sys(eb, cm_errno(), "socket for `%s`", hostport);
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "SO_REUSEADDR on `%s`", hostport);
        goto err_after_socket;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "bind `%s`", hostport);
        goto err_after_socket;
    }
    if (listen(fd, backlog > 0 ? backlog : 128) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "listen on `%s`", hostport);
        goto err_after_socket;
    }
    *ret_fd = fd;
    return 0;

err_after_socket:
    (void)close(fd);
    return rv;
}

int cm_tcp_accept(int lfd, int *ret_fd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        switch (errno) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return CM_EAGAIN;
        /* Linux reports errors pending on the new socket through accept(2);
         * they concern that connection only. */
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
        case EPERM:
            return CM_ECONNRESET;
        default:
            return cm_errno();
        }
    }
    /* Failing to set TCP_NODELAY only costs latency; keep the connection. */
    (void)cm_tcp_nodelay(fd);
    *ret_fd = fd;
    return 0;
}

int cm_tcp_connect(const char *hostport, int *ret_fd)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rv = cm_sockaddr_parse(hostport, false, &ss, &len);
    if (rv != 0) {
        return rv;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return cm_errno();
    }
    (void)cm_tcp_nodelay(fd);
    int r;
    do {
        r = connect(fd, (struct sockaddr *)&ss, len);
    } while (r != 0 && errno == EINTR);
    if (r != 0 && errno != EINPROGRESS) {
        rv = cm_errno();
        (void)close(fd);
        return rv;
    }
    *ret_fd = fd;
    return 0;
}

int cm_tcp_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        return cm_errno();
    }
    return err != 0 ? -err : 0;
}
