/* The data directory: created on demand and locked against a second daemon. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/node.h"

int cm_node_lock_data_dir(const char *dir, int *ret_fd, struct cm_errbuf *eb)
{
    int rv = cm_mkdir_p(dir, eb);
    if (rv != 0) {
        return rv;
    }
    char path[1100];
    snprintf(path, sizeof(path), "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return cm_err_sys(eb, cm_errno(), "open `%s`", path);
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) {
            continue;
        }
        int err = errno;
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        if (err == EWOULDBLOCK) {
            if (holder[0] != '\0') {
                return cm_err_setf(eb, CM_EBUSYDIR,
                                   "data dir `%s` is in use by another clusterctl agent "
                                   "(pid %s)",
                                   dir, holder);
            }
            return cm_err_setf(eb, CM_EBUSYDIR,
                               "data dir `%s` is in use by another clusterctl agent",
                               dir);
        }
        return cm_err_sys(eb, -err, "lock `%s`", path);
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int err = cm_errno();
        close(fd);
        return cm_err_sys(eb, err, "write `%s`", path);
    }
    *ret_fd = fd;
    return 0;
}
