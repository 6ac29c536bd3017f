/* The swappable syscall table (STYLE.md rule 3) and the file helpers the cgroup
 * manager builds on: every fd O_CLOEXEC, every path relative to a directory fd,
 * every call retried on EINTR (rule 21). */
#define ISO__INTERNAL
#include "isolation/isolation.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

static int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    return openat(dirfd, path, flags, mode);
}

static int sys_mkdirat(int dirfd, const char *path, mode_t mode)
{
    return mkdirat(dirfd, path, mode);
}

static const struct iso_sys sys_default = {
    .openat = sys_openat,
    .read = read,
    .write = write,
    .close = close,
    .mkdirat = sys_mkdirat,
    .unlinkat = unlinkat,
    .kill = kill,
    .nanosleep = nanosleep,
};

const struct iso_sys *iso_sys_default(void)
{
    return &sys_default;
}

void iso__closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
        *fd = -1;
    }
}

void iso__freep(void *pp)
{
    void **p = pp;
    cm_free(p);
}

int iso__openat(const struct iso_sys *s, int dirfd, const char *path, int flags)
{
    int fd;
    do {
        fd = s->openat(dirfd, path, flags | O_CLOEXEC, 0);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? cm_errno() : fd;
}

int iso__close(const struct iso_sys *s, int fd)
{
    /* Linux closes the fd even when close() reports EINTR: never retry. */
    if (s->close(fd) < 0 && errno != EINTR) {
        return cm_errno();
    }
    return 0;
}

int iso__mkdirat(const struct iso_sys *s, int dirfd, const char *path)
{
    int rv;
    do {
        rv = s->mkdirat(dirfd, path, 0755);
    } while (rv < 0 && errno == EINTR);
    return rv < 0 ? cm_errno() : 0;
}

int iso__rmdirat(const struct iso_sys *s, int dirfd, const char *path)
{
    int rv;
    do {
        rv = s->unlinkat(dirfd, path, AT_REMOVEDIR);
    } while (rv < 0 && errno == EINTR);
    return rv < 0 ? cm_errno() : 0;
}

int iso__sleep_ms(const struct iso_sys *s, unsigned ms)
{
    struct timespec req = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    struct timespec rem;
    while (s->nanosleep(&req, &rem) < 0) {
        if (errno != EINTR) {
            return cm_errno();
        }
        req = rem;
    }
    return 0;
}

static ssize_t read_retry(const struct iso_sys *s, int fd, void *buf, size_t n)
{
    ssize_t r;
    do {
        r = s->read(fd, buf, n);
    } while (r < 0 && errno == EINTR);
    return r;
}

int iso__read_at(const struct iso_sys *s, int dirfd, const char *name, char *buf,
                 size_t cap, size_t *ret_len)
{
    iso__cleanup_close int fd = iso__openat(s, dirfd, name, O_RDONLY);
    if (fd < 0) {
        return fd;
    }
    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap) {
            return CM_ETOOBIG;
        }
        ssize_t r = read_retry(s, fd, buf + len, cap - 1 - len);
        if (r < 0) {
            return cm_errno();
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    *ret_len = len;
    return 0;
}

int iso__read_all_at(const struct iso_sys *s, int dirfd, const char *name, char **ret_buf,
                     size_t *ret_len)
{
    iso__cleanup_close int fd = iso__openat(s, dirfd, name, O_RDONLY);
    if (fd < 0) {
        return fd;
    }
    struct cm_buf b = {NULL, 0, 0};
    for (;;) {
        if (cm_buf_reserve(&b, 4096) != 0) {
            cm_buf_done(&b);
            return CM_ENOMEM;
        }
        ssize_t r = read_retry(s, fd, b.data + b.len, b.cap - b.len - 1);
        if (r < 0) {
            int err = cm_errno();
            cm_buf_done(&b);
            return err;
        }
        if (r == 0) {
            break;
        }
        b.len += (size_t)r;
        b.data[b.len] = '\0';
    }
    *ret_len = b.len;
    *ret_buf = cm_buf_steal(&b);
    return 0;
}

int iso__write_at(const struct iso_sys *s, int dirfd, const char *name, const char *val)
{
    iso__cleanup_close int fd = iso__openat(s, dirfd, name, O_WRONLY | O_TRUNC);
    if (fd < 0) {
        return fd;
    }
    size_t n = strlen(val);
    ssize_t w;
    /* cgroupfs takes a value in one write; a short write is an error. */
    do {
        w = s->write(fd, val, n);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        return cm_errno();
    }
    if ((size_t)w != n) {
        return CM_EIO;
    }
    return 0;
}

bool iso__exists_at(int dirfd, const char *name)
{
    return faccessat(dirfd, name, F_OK, 0) == 0;
}

int iso__read_u64_at(const struct iso_sys *s, int dirfd, const char *name, bool limit,
                     uint64_t *ret)
{
    char buf[64];
    size_t len;
    int rv = iso__read_at(s, dirfd, name, buf, sizeof(buf), &len);
    if (rv != 0) {
        return rv;
    }
    return limit ? iso_parse_limit(buf, len, ret) : iso_parse_u64(buf, len, ret);
}
