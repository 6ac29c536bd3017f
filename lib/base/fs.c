/* File-system helpers shared by the components. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"

int cm_mkdir_p(const char *dir, struct cm_errbuf *eb)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) {
        return cm_err_setf(eb, CM_EINVAL, "bad directory path '%s'", dir);
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') {
            continue;
        }
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, saved == '\0' ? 0700 : 0755) != 0 && errno != EEXIST) {
            return cm_err_sys(eb, cm_errno(), "create directory `%s`", path);
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        return cm_err_sys(eb, cm_errno(), "directory `%s`", dir);
    }
    if (!S_ISDIR(st.st_mode)) {
        return cm_err_setf(eb, CM_ENOTDIR, "`%s` is not a directory", dir);
    }
    return 0;
}
