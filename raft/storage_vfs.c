/* raft/storage_vfs.c: I/O fault injection for raft.db and its snapshot files.
 *
 * A SQLite VFS named "cm-fault" that delegates everything to the default VFS
 * ("unix") and fails the Nth xWrite/xSync/xTruncate once armed with
 * raft_store_fault_set(). storage.c opens raft.db through it always (an armed
 * check is one branch per call) and runs its own snapshot writes and fsyncs
 * through raft__fault_tick(), so one counter walks over every write and sync the
 * store makes. The idea is SQLite's own test_syscall.c / test_vfs.c, done as a
 * thin shim (STYLE.md rule 3). */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>

#include "base/base.h"
#include "raft/raft.h"

/* Shared with storage.c (no private header; keep the two in sync). */
const char *raft__vfs_name(void);
int raft__vfs_register(void);
int raft__fault_tick(void);

#define FAULT_VFS_NAME "cm-fault"

/* Process-wide test knob, like cm_alloc_fault_set(); only tests arm it. Atomic
 * (relaxed) so that stores on other threads do not race on it. */
static struct {
    atomic_uint left;  /* operations until the failure; 0: disarmed */
    atomic_int err;    /* cm_err to report */
    atomic_bool fired; /* a failure was injected since the last raft_store_fault_set */
    atomic_uint count; /* operations seen since the last raft_store_fault_set */
} fault;

void raft_store_fault_set(unsigned n, int err)
{
    atomic_store_explicit(&fault.left, 0, memory_order_relaxed);
    atomic_store_explicit(&fault.err, err < 0 ? err : CM_EIO, memory_order_relaxed);
    atomic_store_explicit(&fault.fired, false, memory_order_relaxed);
    atomic_store_explicit(&fault.count, 0, memory_order_relaxed);
    atomic_store_explicit(&fault.left, n, memory_order_relaxed);
}

bool raft_store_fault_fired(void)
{
    return atomic_load_explicit(&fault.fired, memory_order_relaxed);
}

unsigned raft_store_fault_count(void)
{
    return atomic_load_explicit(&fault.count, memory_order_relaxed);
}

/* 0, or the cm_err this write/sync must fail with. */
int raft__fault_tick(void)
{
    atomic_fetch_add_explicit(&fault.count, 1, memory_order_relaxed);
    unsigned left = atomic_load_explicit(&fault.left, memory_order_relaxed);
    while (left != 0) {
        if (atomic_compare_exchange_weak_explicit(&fault.left, &left, left - 1,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if (left != 1) {
                return 0;
            }
            atomic_store_explicit(&fault.fired, true, memory_order_relaxed);
            return atomic_load_explicit(&fault.err, memory_order_relaxed);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ io methods */

struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, allocated right after us */
};

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((struct fault_file *)f)->real;
}

static int ff_close(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xClose(r);
}

static int ff_read(sqlite3_file *f, void *dst, int amt, sqlite3_int64 off)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xRead(r, dst, amt, off);
}

static int ff_write(sqlite3_file *f, const void *src, int amt, sqlite3_int64 off)
{
    int err = raft__fault_tick();
    if (err != 0) {
        return err == CM_ENOSPC ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    }
    sqlite3_file *r = real_of(f);
    return r->pMethods->xWrite(r, src, amt, off);
}

static int ff_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int err = raft__fault_tick();
    if (err != 0) {
        return err == CM_ENOSPC ? SQLITE_FULL : SQLITE_IOERR_TRUNCATE;
    }
    sqlite3_file *r = real_of(f);
    return r->pMethods->xTruncate(r, size);
}

static int ff_sync(sqlite3_file *f, int flags)
{
    if (raft__fault_tick() != 0) {
        return SQLITE_IOERR_FSYNC;
    }
    sqlite3_file *r = real_of(f);
    return r->pMethods->xSync(r, flags);
}

static int ff_file_size(sqlite3_file *f, sqlite3_int64 *ret)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFileSize(r, ret);
}

static int ff_lock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xLock(r, lock);
}

static int ff_unlock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xUnlock(r, lock);
}

static int ff_check_reserved_lock(sqlite3_file *f, int *ret)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xCheckReservedLock(r, ret);
}

static int ff_file_control(sqlite3_file *f, int op, void *arg)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFileControl(r, op, arg);
}

static int ff_sector_size(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xSectorSize(r);
}

static int ff_device_characteristics(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xDeviceCharacteristics(r);
}

static int ff_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    sqlite3_file *r = real_of(f);
    if (r->pMethods->iVersion < 2) {
        return SQLITE_IOERR_SHMMAP;
    }
    return r->pMethods->xShmMap(r, pg, pgsz, extend, pp);
}

static int ff_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    sqlite3_file *r = real_of(f);
    if (r->pMethods->iVersion < 2) {
        return SQLITE_IOERR_SHMLOCK;
    }
    return r->pMethods->xShmLock(r, offset, n, flags);
}

static void ff_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    if (r->pMethods->iVersion >= 2) {
        r->pMethods->xShmBarrier(r);
    }
}

static int ff_shm_unmap(sqlite3_file *f, int delete_flag)
{
    sqlite3_file *r = real_of(f);
    if (r->pMethods->iVersion < 2) {
        return SQLITE_OK;
    }
    return r->pMethods->xShmUnmap(r, delete_flag);
}

static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
    sqlite3_file *r = real_of(f);
    if (r->pMethods->iVersion < 3) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return r->pMethods->xFetch(r, off, amt, pp);
}

static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = real_of(f);
    if (r->pMethods->iVersion < 3) {
        return SQLITE_OK;
    }
    return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods fault_io = {
    .iVersion = 3,
    .xClose = ff_close,
    .xRead = ff_read,
    .xWrite = ff_write,
    .xTruncate = ff_truncate,
    .xSync = ff_sync,
    .xFileSize = ff_file_size,
    .xLock = ff_lock,
    .xUnlock = ff_unlock,
    .xCheckReservedLock = ff_check_reserved_lock,
    .xFileControl = ff_file_control,
    .xSectorSize = ff_sector_size,
    .xDeviceCharacteristics = ff_device_characteristics,
    .xShmMap = ff_shm_map,
    .xShmLock = ff_shm_lock,
    .xShmBarrier = ff_shm_barrier,
    .xShmUnmap = ff_shm_unmap,
    .xFetch = ff_fetch,
    .xUnfetch = ff_unfetch,
};

/* ------------------------------------------------------------------ vfs methods */

/* Room for our header, rounded so the real file that follows stays aligned. */
#define FAULT_FILE_HEAD ((sizeof(struct fault_file) + 15) & ~(size_t)15)

static sqlite3_vfs *base_of(sqlite3_vfs *v)
{
    return v->pAppData;
}

static int fv_open(sqlite3_vfs *v, const char *name, sqlite3_file *file, int flags,
                   int *out_flags)
{
    struct fault_file *f = (struct fault_file *)file;
    sqlite3_vfs *base = base_of(v);
    f->real = (sqlite3_file *)(void *)((char *)file + FAULT_FILE_HEAD);
    f->real->pMethods = NULL;
    int rv = base->xOpen(base, name, f->real, flags, out_flags);
    /* SQLite calls xClose whenever pMethods is set, even after a failed open. */
    f->base.pMethods = f->real->pMethods != NULL ? &fault_io : NULL;
    return rv;
}

static int fv_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    return base_of(v)->xDelete(base_of(v), name, sync_dir);
}

static int fv_access(sqlite3_vfs *v, const char *name, int flags, int *ret)
{
    return base_of(v)->xAccess(base_of(v), name, flags, ret);
}

static int fv_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    return base_of(v)->xFullPathname(base_of(v), name, n, out);
}

static void *fv_dl_open(sqlite3_vfs *v, const char *name)
{
    return base_of(v)->xDlOpen(base_of(v), name);
}

static void fv_dl_error(sqlite3_vfs *v, int n, char *msg)
{
    base_of(v)->xDlError(base_of(v), n, msg);
}

static void (*fv_dl_sym(sqlite3_vfs *v, void *lib, const char *sym))(void)
{
    return base_of(v)->xDlSym(base_of(v), lib, sym);
}

static void fv_dl_close(sqlite3_vfs *v, void *lib)
{
    base_of(v)->xDlClose(base_of(v), lib);
}

static int fv_randomness(sqlite3_vfs *v, int n, char *out)
{
    return base_of(v)->xRandomness(base_of(v), n, out);
}

static int fv_sleep(sqlite3_vfs *v, int us)
{
    return base_of(v)->xSleep(base_of(v), us);
}

static int fv_current_time(sqlite3_vfs *v, double *ret)
{
    return base_of(v)->xCurrentTime(base_of(v), ret);
}

static int fv_get_last_error(sqlite3_vfs *v, int n, char *out)
{
    return base_of(v)->xGetLastError(base_of(v), n, out);
}

static int fv_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *ret)
{
    sqlite3_vfs *base = base_of(v);
    if (base->iVersion >= 2 && base->xCurrentTimeInt64 != NULL) {
        return base->xCurrentTimeInt64(base, ret);
    }
    double d;
    int rv = base->xCurrentTime(base, &d);
    *ret = (sqlite3_int64)(d * 86400000.0);
    return rv;
}

static sqlite3_vfs fault_vfs;
static pthread_once_t fault_vfs_once = PTHREAD_ONCE_INIT;
static int fault_vfs_rv = SQLITE_ERROR;

static void fault_vfs_init(void)
{
    if (sqlite3_initialize() != SQLITE_OK) {
        return;
    }
    sqlite3_vfs *base = sqlite3_vfs_find(NULL);
    if (base == NULL) {
        return;
    }
    fault_vfs = (sqlite3_vfs){
        /* Version 2: the system-call hooks of version 3 are not forwarded. */
        .iVersion = 2,
        .szOsFile = (int)(FAULT_FILE_HEAD + (size_t)base->szOsFile),
        .mxPathname = base->mxPathname,
        .zName = FAULT_VFS_NAME,
        .pAppData = base,
        .xOpen = fv_open,
        .xDelete = fv_delete,
        .xAccess = fv_access,
        .xFullPathname = fv_full_pathname,
        .xDlOpen = fv_dl_open,
        .xDlError = fv_dl_error,
        .xDlSym = fv_dl_sym,
        .xDlClose = fv_dl_close,
        .xRandomness = fv_randomness,
        .xSleep = fv_sleep,
        .xCurrentTime = fv_current_time,
        .xGetLastError = fv_get_last_error,
        .xCurrentTimeInt64 = fv_current_time_int64,
    };
    fault_vfs_rv = sqlite3_vfs_register(&fault_vfs, 0);
}

const char *raft__vfs_name(void)
{
    return FAULT_VFS_NAME;
}

/* Register the VFS once per process. Returns a SQLite result code. */
int raft__vfs_register(void)
{
    if (pthread_once(&fault_vfs_once, fault_vfs_init) != 0) {
        return SQLITE_ERROR;
    }
    return fault_vfs_rv;
}
