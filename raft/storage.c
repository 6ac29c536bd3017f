/* raft/storage.c: the Raft storage adapter, raft.db in SQLite (DESIGN.md §4).
 *
 * Durability rules (Raft §3.8 / Fig. 3.1: currentTerm, votedFor and log[] are
 * persistent state, updated on stable storage before responding to RPCs):
 *  - the hard state is committed (fsync of the WAL, synchronous=FULL) before
 *    raft_store_set_hard_state() returns;
 *  - appends and truncations are queued in memory and written by one transaction
 *    in raft_store_flush() (group commit): one WAL fsync for any number of
 *    proposals. Only what a flush (or a hard-state write, which takes the queue
 *    along) reported is durable;
 *  - every change is one SQLite transaction, and a crash loses a suffix of the
 *    committed WAL transactions at worst, so the log on disk is always the
 *    contiguous log of some point in time;
 *  - snapshot files are written to a temp name, fsynced, renamed and the
 *    directory fsynced before raft_meta points at them; files raft_meta does not
 *    name are removed at open.
 *
 * The database is opened in EXCLUSIVE locking mode: one process owns raft.db
 * (a second open fails with CM_EBUSYDIR), and SQLite keeps the WAL index in heap
 * memory instead of a -shm mapping. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "raft/raft.h"

/* Shared with storage_vfs.c (no private header; keep the two in sync). */
const char *raft__vfs_name(void);
int raft__vfs_register(void);
int raft__fault_tick(void);

#define DB_NAME         "raft.db"
#define SNAP_PREFIX     "snapshot-"
#define SNAP_TMP_SUFFIX ".tmp"
#define STORE_FORMAT    1 /* keep SCHEMA_CREATE's value in step */
#define BUSY_TIMEOUT_MS 100

/* The exact text SQLite keeps in sqlite_master; open compares against it. */
#define SCHEMA_META \
    "CREATE TABLE raft_meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL)"
#define SCHEMA_LOG                                                                 \
    "CREATE TABLE raft_log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type " \
    "INTEGER NOT NULL, data BLOB NOT NULL)"

/* A new database: both tables and the format, in one transaction. */
#define SCHEMA_CREATE                               \
    "BEGIN IMMEDIATE; " SCHEMA_META "; " SCHEMA_LOG \
    "; "                                            \
    "INSERT INTO raft_meta (key, value) VALUES ('format', 1); COMMIT"

/* raft_meta keys. */
#define K_FORMAT       "format"
#define K_TERM         "term"
#define K_VOTED_FOR    "voted_for"
#define K_SNAP_INDEX   "snapshot_index"
#define K_SNAP_TERM    "snapshot_term"
#define K_SNAP_CONFIG  "snapshot_config"
#define K_SNAP_CFG_IDX "snapshot_config_index"
#define K_SNAP_SIZE    "snapshot_size"

enum stmt_id {
    ST_BEGIN = 0,    /* a write transaction */
    ST_BEGIN_READ,   /* a read transaction */
    ST_COMMIT,       /* */
    ST_ROLLBACK,     /* */
    ST_META_SET,     /* ?1 key, ?2 value */
    ST_META_ALL,     /* every key and value */
    ST_LOG_INSERT,   /* ?1 idx, ?2 term, ?3 type, ?4 data */
    ST_LOG_TRUNCATE, /* delete idx >= ?1 */
    ST_LOG_COMPACT,  /* delete idx <= ?1 */
    ST_LOG_CLEAR,    /* delete everything */
    ST_LOG_TERM,     /* term of ?1 */
    ST_LOG_LAST,     /* idx, term of the last entry */
    ST_LOG_BOUNDS,   /* min idx, max idx, count, total data bytes */
    ST_LOG_ALL,      /* every entry in order */
    ST__COUNT,
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_SET] = "INSERT OR REPLACE INTO raft_meta (key, value) VALUES (?1, ?2)",
    [ST_META_ALL] = "SELECT key, value FROM raft_meta",
    [ST_LOG_INSERT] =
        "INSERT INTO raft_log (idx, term, type, data) VALUES (?1, ?2, ?3, ?4)",
    [ST_LOG_TRUNCATE] = "DELETE FROM raft_log WHERE idx >= ?1",
    [ST_LOG_COMPACT] = "DELETE FROM raft_log WHERE idx <= ?1",
    [ST_LOG_CLEAR] = "DELETE FROM raft_log",
    [ST_LOG_TERM] = "SELECT term FROM raft_log WHERE idx = ?1",
    [ST_LOG_LAST] = "SELECT idx, term FROM raft_log ORDER BY idx DESC LIMIT 1",
    [ST_LOG_BOUNDS] =
        "SELECT min(idx), max(idx), count(*), total(length(data)) FROM raft_log",
    [ST_LOG_ALL] = "SELECT idx, term, type, data FROM raft_log ORDER BY idx",
};

/* One queued entry; its bytes are at q_data.data + off. */
struct q_entry {
    raft_term term;
    uint8_t type;
    size_t off;
    size_t len;
};

struct raft_store {
    sqlite3 *db;
    char *dir;
    char *db_path;
    sqlite3_stmt *st[ST__COUNT];

    /* Durable state, as committed. */
    raft_term term;
    raft_id voted_for;
    raft_index snap_index; /* 0: no snapshot */
    raft_term snap_term;
    struct raft_config snap_config;
    raft_index snap_config_index;
    uint64_t snap_size;
    char *snap_path;        /* the current snapshot file, NULL without one */
    int snap_fd;            /* snap_path opened for reading, or -1 */
    raft_index first_index; /* first entry on disk; last_index + 1 when empty */
    raft_index last_index;  /* last entry on disk, or snap_index when empty */
    raft_term last_term;

    /* Group commit queue: what the next flush writes. */
    raft_index q_truncate; /* 0, or delete durable entries >= it first */
    unsigned q_n;          /* queued entries, at q_first() ... */
    unsigned q_cap;
    struct q_entry *q;
    struct cm_buf q_data;
    raft_index q_last_index; /* the log's end once the queue is written */
    raft_term q_last_term;

    /* Incoming snapshot (InstallSnapshot chunks). */
    int in_fd; /* -1: none */
    raft_index in_index;
    uint64_t in_size;
    char *in_path;
};

/* ------------------------------------------------------------------ errors */

static int err_from_sqlite(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return CM_ENOMEM;
    case SQLITE_FULL:
        return CM_ENOSPC;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
        return CM_ECORRUPT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CM_EBUSYDIR;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return CM_EACCES;
    case SQLITE_TOOBIG:
        return CM_ETOOBIG;
    case SQLITE_CANTOPEN: {
        int e = db != NULL ? sqlite3_system_errno(db) : 0;
        return e > 0 ? -e : CM_EIO;
    }
    case SQLITE_IOERR:
        return rc == SQLITE_IOERR_NOMEM ? CM_ENOMEM : CM_EIO;
    default:
        return CM_EINTERNAL;
    }
}

/* Report SQLite's failure @rc of operation @op on raft.db. */
static int db_fail(struct raft_store *s, struct cm_errbuf *eb, int rc, const char *op)
{
    const char *msg = s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    return cm_err_setf(eb, err_from_sqlite(s->db, rc), "%s `%s`: %s", op, s->db_path,
                       msg);
}

/* raft.db holds something we refuse to use. */
static int corrupt(struct raft_store *s, struct cm_errbuf *eb, const char *fmt, ...)
    CM_PRINTF(3, 4);
static int corrupt(struct raft_store *s, struct cm_errbuf *eb, const char *fmt, ...)
{
    char detail[CM_ERRBUF_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return cm_err_setf(eb, CM_ECORRUPT, "`%s` is corrupt: %s", s->db_path, detail);
}

/* ------------------------------------------------------------------ sqlite helpers */

/* Step @st to completion (or its first row, for single-row queries whose caller
 * reads nothing) and reset it. Returns a SQLite code, SQLITE_OK on success. */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int meta_set_int(struct raft_store *s, const char *key, uint64_t value)
{
    sqlite3_stmt *st = s->st[ST_META_SET];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)value);
    return run(st);
}

static int meta_set_blob(struct raft_store *s, const char *key, const void *p, size_t len)
{
    sqlite3_stmt *st = s->st[ST_META_SET];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, len > 0 ? p : "", (int)len, SQLITE_STATIC);
    return run(st);
}

static int tx_begin(struct raft_store *s)
{
    return run(s->st[ST_BEGIN]);
}

static int tx_commit(struct raft_store *s)
{
    return run(s->st[ST_COMMIT]);
}

/* After a failure inside a transaction. SQLite may have rolled back already. */
static void tx_abort(struct raft_store *s)
{
    if (!sqlite3_get_autocommit(s->db)) {
        run(s->st[ST_ROLLBACK]);
    }
}

/* Values are signed 64-bit in SQLite. */
static bool fits_i64(uint64_t v)
{
    return v <= (uint64_t)INT64_MAX;
}

/* ------------------------------------------------------------------ files */

/* fsync @fd; an injected fault counts as a failed fsync. */
static int sync_fd(int fd)
{
    int rv = raft__fault_tick();
    if (rv != 0) {
        return rv;
    }
    return fsync(fd) == 0 ? 0 : cm_errno();
}

/* Make a rename or unlink in @dir durable. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return cm_errno();
    }
    int rv = sync_fd(fd);
    close(fd);
    return rv;
}

/* Write all of @data at @offset; each write(2) can be an injected fault. */
static int write_all(int fd, const void *data, size_t len, uint64_t offset)
{
    const char *p = data;
    while (len > 0) {
        int rv = raft__fault_tick();
        if (rv != 0) {
            return rv;
        }
        ssize_t n = pwrite(fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return cm_errno();
        }
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static char *snap_file(const struct raft_store *s, raft_index index, bool tmp)
{
    return cm_asprintf("%s/" SNAP_PREFIX "%" PRIu64 "%s", s->dir, index,
                       tmp ? SNAP_TMP_SUFFIX : "");
}

/* Parse "snapshot-<index>" or "snapshot-<index>.tmp"; false for other names. */
static bool snap_name_parse(const char *name, raft_index *ret_index, bool *ret_tmp)
{
    size_t plen = strlen(SNAP_PREFIX);
    if (strncmp(name, SNAP_PREFIX, plen) != 0) {
        return false;
    }
    const char *p = name + plen;
    raft_index index = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits >= 19) {
            return false;
        }
        index = index * 10 + (raft_index)(*p - '0');
    }
    if (digits == 0) {
        return false;
    }
    if (*p == '\0') {
        *ret_tmp = false;
    } else if (strcmp(p, SNAP_TMP_SUFFIX) == 0) {
        *ret_tmp = true;
    } else {
        return false;
    }
    *ret_index = index;
    return true;
}

/* Remove snapshot files raft_meta does not name: temp files of an interrupted
 * transfer or install, and older snapshots whose removal a crash interrupted.
 * Best effort: a leftover is harmless, it is only garbage. */
static void snap_sweep(struct raft_store *s)
{
    DIR *d = opendir(s->dir);
    if (d == NULL) {
        return;
    }
    int dfd = dirfd(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        raft_index index;
        bool tmp;
        if (!snap_name_parse(de->d_name, &index, &tmp)) {
            continue;
        }
        if (tmp || index != s->snap_index) {
            unlinkat(dfd, de->d_name, 0);
        }
    }
    closedir(d);
}

static void snap_close_reader(struct raft_store *s)
{
    if (s->snap_fd >= 0) {
        close(s->snap_fd);
        s->snap_fd = -1;
    }
}

static void incoming_reset(struct raft_store *s, bool unlink_file)
{
    if (s->in_fd >= 0) {
        close(s->in_fd);
        s->in_fd = -1;
    }
    if (unlink_file && s->in_path != NULL) {
        unlink(s->in_path);
    }
    cm_free(&s->in_path);
    s->in_index = 0;
    s->in_size = 0;
}

/* ------------------------------------------------------------------ open */

static int check_quick(struct raft_store *s, struct cm_errbuf *eb)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(s, eb, rc, "check");
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_fail(s, eb, rc, "check");
    }
    const char *res = (const char *)sqlite3_column_text(st, 0);
    int rv = 0;
    if (res == NULL || strcmp(res, "ok") != 0) {
        rv = corrupt(s, eb, "quick_check: %s", res != NULL ? res : "(no answer)");
    }
    sqlite3_finalize(st);
    return rv;
}

static int pragma_set(struct raft_store *s, const char *sql, const char *want,
                      struct cm_errbuf *eb)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(s, eb, rc, "open");
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sqlite3_finalize(st);
        return db_fail(s, eb, rc, "open");
    }
    int rv = 0;
    if (want != NULL) {
        const char *got =
            rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        if (got == NULL || sqlite3_stricmp(got, want) != 0) {
            rv = cm_err_setf(eb, CM_EIO, "open `%s`: %s gave `%s`, not `%s`", s->db_path,
                             sql, got != NULL ? got : "", want);
        }
    }
    sqlite3_finalize(st);
    return rv;
}

/* Create the tables in a new database, or check that an existing one has
 * exactly our schema. */
static int schema_ensure(struct raft_store *s, struct cm_errbuf *eb)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        s->db, "SELECT type, name, sql FROM sqlite_master WHERE type != 'index'", -1, &st,
        NULL);
    if (rc != SQLITE_OK) {
        return db_fail(s, eb, rc, "read schema of");
    }
    int tables = 0, ours = 0, rv = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *sql = (const char *)sqlite3_column_text(st, 2);
        tables++;
        if (name != NULL && sql != NULL &&
            ((strcmp(name, "raft_meta") == 0 && strcmp(sql, SCHEMA_META) == 0) ||
             (strcmp(name, "raft_log") == 0 && strcmp(sql, SCHEMA_LOG) == 0))) {
            ours++;
        } else if (rv == 0) {
            rv = corrupt(s, eb, "unexpected schema object `%s`",
                         name != NULL ? name : "?");
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return db_fail(s, eb, rc, "read schema of");
    }
    if (rv != 0) {
        return rv;
    }
    if (tables == 2 && ours == 2) {
        return 0;
    }
    if (tables != 0) {
        return corrupt(s, eb, "schema lacks raft_meta or raft_log");
    }
    /* A new database. */
    rc = sqlite3_exec(s->db, SCHEMA_CREATE, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int err = db_fail(s, eb, rc, "create tables in");
        if (!sqlite3_get_autocommit(s->db)) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        }
        return err;
    }
    return 0;
}

static int stmts_prepare(struct raft_store *s, struct cm_errbuf *eb)
{
    for (int i = 0; i < ST__COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->st[i], NULL);
        if (rc != SQLITE_OK) {
            return db_fail(s, eb, rc, "prepare statements for");
        }
    }
    return 0;
}

/* A non-negative integer meta value. */
static int meta_uint(struct raft_store *s, sqlite3_stmt *st, const char *key,
                     uint64_t *ret, struct cm_errbuf *eb)
{
    if (sqlite3_column_type(st, 1) != SQLITE_INTEGER) {
        return corrupt(s, eb, "raft_meta `%s` is not an integer", key);
    }
    sqlite3_int64 v = sqlite3_column_int64(st, 1);
    if (v < 0) {
        return corrupt(s, eb, "raft_meta `%s` is negative (%lld)", key, (long long)v);
    }
    *ret = (uint64_t)v;
    return 0;
}

/* Read raft_meta into @s, refusing unknown keys and bad values. */
static int meta_load(struct raft_store *s, struct cm_errbuf *eb)
{
    sqlite3_stmt *st = s->st[ST_META_ALL];
    uint64_t format = 0;
    bool have_config = false;
    int rc, rv = 0;
    while (rv == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (key == NULL) {
            rv = corrupt(s, eb, "raft_meta has a NULL key");
        } else if (strcmp(key, K_FORMAT) == 0) {
            rv = meta_uint(s, st, key, &format, eb);
        } else if (strcmp(key, K_TERM) == 0) {
            rv = meta_uint(s, st, key, &s->term, eb);
        } else if (strcmp(key, K_VOTED_FOR) == 0) {
            rv = meta_uint(s, st, key, &s->voted_for, eb);
        } else if (strcmp(key, K_SNAP_INDEX) == 0) {
            rv = meta_uint(s, st, key, &s->snap_index, eb);
        } else if (strcmp(key, K_SNAP_TERM) == 0) {
            rv = meta_uint(s, st, key, &s->snap_term, eb);
        } else if (strcmp(key, K_SNAP_CFG_IDX) == 0) {
            rv = meta_uint(s, st, key, &s->snap_config_index, eb);
        } else if (strcmp(key, K_SNAP_SIZE) == 0) {
            rv = meta_uint(s, st, key, &s->snap_size, eb);
        } else if (strcmp(key, K_SNAP_CONFIG) == 0) {
            if (sqlite3_column_type(st, 1) != SQLITE_BLOB || have_config) {
                rv = corrupt(s, eb, "raft_meta `%s` is not a blob", key);
                break;
            }
            const void *p = sqlite3_column_blob(st, 1);
            int len = sqlite3_column_bytes(st, 1);
            rv = raft_config_decode(p, (size_t)len, &s->snap_config);
            if (rv == CM_ENOMEM) {
                rv = cm_err_setf(eb, rv, "load `%s`: out of memory", s->db_path);
            } else if (rv != 0) {
                rv = corrupt(s, eb, "raft_meta `%s`: %s", key, cm_strerror(rv));
            }
            have_config = rv == 0;
        } else {
            rv = corrupt(s, eb, "raft_meta has an unknown key `%s`", key);
        }
    }
    sqlite3_reset(st);
    if (rv != 0) {
        return rv;
    }
    if (rc != SQLITE_DONE) {
        return db_fail(s, eb, rc, "read meta of");
    }
    if (format != STORE_FORMAT) {
        return corrupt(s, eb, "format %" PRIu64 ", expected %d", format, STORE_FORMAT);
    }
    if (s->snap_index == 0) {
        if (s->snap_term != 0 || s->snap_size != 0 || s->snap_config_index != 0 ||
            have_config) {
            return corrupt(s, eb, "snapshot meta without a snapshot index");
        }
        return 0;
    }
    if (s->snap_term == 0 || !have_config || s->snap_config_index > s->snap_index) {
        return corrupt(s, eb, "incomplete snapshot meta at index %" PRIu64,
                       s->snap_index);
    }
    return 0;
}

/* The snapshot raft_meta names must exist with its recorded size. */
static int snap_check(struct raft_store *s, struct cm_errbuf *eb)
{
    if (s->snap_index == 0) {
        return 0;
    }
    s->snap_path = snap_file(s, s->snap_index, false);
    if (s->snap_path == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "open `%s`: out of memory", s->db_path);
    }
    struct stat sb;
    if (stat(s->snap_path, &sb) != 0) {
        int err = cm_errno();
        if (err == CM_ENOENT) {
            return corrupt(s, eb, "snapshot file `%s` is missing", s->snap_path);
        }
        return cm_err_sys(eb, err, "stat `%s`", s->snap_path);
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != s->snap_size) {
        return corrupt(s, eb, "snapshot file `%s` has %lld bytes, expected %" PRIu64,
                       s->snap_path, (long long)sb.st_size, s->snap_size);
    }
    return 0;
}

/* Where the log starts and ends; holes are refused here already. */
static int log_bounds(struct raft_store *s, struct cm_errbuf *eb)
{
    sqlite3_stmt *st = s->st[ST_LOG_BOUNDS];
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return db_fail(s, eb, rc, "read log of");
    }
    bool empty = sqlite3_column_type(st, 0) == SQLITE_NULL;
    sqlite3_int64 lo = sqlite3_column_int64(st, 0);
    sqlite3_int64 hi = sqlite3_column_int64(st, 1);
    sqlite3_int64 count = sqlite3_column_int64(st, 2);
    sqlite3_reset(st);
    if (empty) {
        s->first_index = s->snap_index + 1;
        s->last_index = s->snap_index;
        s->last_term = s->snap_term;
        return 0;
    }
    if (lo < 1) {
        return corrupt(s, eb, "log index %lld", (long long)lo);
    }
    if (count != hi - lo + 1) {
        return corrupt(s, eb, "log %lld..%lld has holes (%lld entries)", (long long)lo,
                       (long long)hi, (long long)count);
    }
    if ((raft_index)lo > s->snap_index + 1) {
        return corrupt(s, eb, "log starts at %lld, after snapshot %" PRIu64 " + 1",
                       (long long)lo, s->snap_index);
    }
    if ((raft_index)hi < s->snap_index) {
        /* Compaction and installs never leave this: appends after the snapshot
         * would leave a hole. */
        return corrupt(s, eb, "log ends at %lld, before snapshot %" PRIu64, (long long)hi,
                       s->snap_index);
    }
    st = s->st[ST_LOG_LAST];
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return db_fail(s, eb, rc, "read log of");
    }
    sqlite3_int64 term = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    if (term < 1) {
        return corrupt(s, eb, "entry %lld has term %lld", (long long)hi, (long long)term);
    }
    s->first_index = (raft_index)lo;
    s->last_index = (raft_index)hi;
    s->last_term = (raft_term)term;
    return 0;
}

int raft_store_open(const char *dir, struct raft_store **ret, struct cm_errbuf *eb)
{
    int rv;
    struct raft_store *s = cm_calloc(1, sizeof *s);
    if (s == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "open store in `%s`: out of memory", dir);
    }
    s->snap_fd = -1;
    s->in_fd = -1;
    s->dir = cm_strdup(dir);
    s->db_path = cm_asprintf("%s/" DB_NAME, dir);
    if (s->dir == NULL || s->db_path == NULL) {
        rv = cm_err_setf(eb, CM_ENOMEM, "open store in `%s`: out of memory", dir);
        goto err;
    }
    int rc = raft__vfs_register();
    if (rc != SQLITE_OK) {
        rv = cm_err_setf(eb, CM_EINTERNAL, "open `%s`: register SQLite VFS: %s",
                         s->db_path, sqlite3_errstr(rc));
        goto err;
    }
    rc = sqlite3_open_v2(s->db_path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         raft__vfs_name());
    if (rc != SQLITE_OK) {
        rv = db_fail(s, eb, rc, "open");
        goto err;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* EXCLUSIVE before the first access: WAL without shared memory, and the file
     * lock held for the life of the store. */
    rv = pragma_set(s, "PRAGMA locking_mode=EXCLUSIVE", "exclusive", eb);
    if (rv == 0) {
        rv = pragma_set(s, "PRAGMA journal_mode=WAL", "wal", eb);
    }
    if (rv == 0) {
        rv = pragma_set(s, "PRAGMA synchronous=FULL", NULL, eb);
    }
    if (rv == 0) {
        rv = check_quick(s, eb);
    }
    if (rv == 0) {
        rv = schema_ensure(s, eb);
    }
    if (rv == 0) {
        rv = stmts_prepare(s, eb);
    }
    if (rv == 0) {
        rv = meta_load(s, eb);
    }
    if (rv == 0) {
        rv = log_bounds(s, eb);
    }
    if (rv == 0) {
        rv = snap_check(s, eb);
    }
    if (rv != 0) {
        goto err;
    }
    snap_sweep(s);
    s->q_last_index = s->last_index;
    s->q_last_term = s->last_term;
    *ret = s;
    return 0;

err:
    raft_store_close(s);
    return rv;
}

void raft_store_close(struct raft_store *s)
{
    if (s == NULL) {
        return;
    }
    incoming_reset(s, false);
    snap_close_reader(s);
    for (int i = 0; i < ST__COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    /* Checkpoints the WAL into raft.db; failures leave a WAL that the next open
     * recovers. */
    sqlite3_close(s->db);
    raft_config_close(&s->snap_config);
    cm_free(&s->q);
    cm_buf_done(&s->q_data);
    cm_free(&s->snap_path);
    cm_free(&s->db_path);
    cm_free(&s->dir);
    cm_free(&s);
}

/* ------------------------------------------------------------------ load */

/* Fill @l's entries from raft_log, checking the log as it goes (Raft §5.3 Log
 * Matching rests on terms never decreasing along the log). */
static int log_read(struct raft_store *s, struct raft_load *l, struct cm_errbuf *eb)
{
    sqlite3_stmt *st = s->st[ST_LOG_BOUNDS];
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return db_fail(s, eb, rc, "read log of");
    }
    sqlite3_int64 count = sqlite3_column_int64(st, 2);
    double total = sqlite3_column_double(st, 3);
    sqlite3_reset(st);
    if (count == 0) {
        return 0;
    }
    if (count > (sqlite3_int64)UINT_MAX || total < 0 || total > (double)(SIZE_MAX / 2)) {
        return cm_err_setf(eb, CM_ETOOBIG, "load `%s`: log too large (%lld entries)",
                           s->db_path, (long long)count);
    }
    size_t n = (size_t)count;
    size_t data_cap = (size_t)total;
    size_t head = n * sizeof(struct raft_entry);
    /* One block: the entries, then their bytes. */
    struct raft_entry *entries = cm_malloc(head + data_cap);
    if (entries == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "load `%s`: out of memory", s->db_path);
    }
    char *data = (char *)entries + head;
    size_t used = 0, i = 0;
    raft_index first = 0;
    raft_term prev_term = 0;
    int rv = 0;
    st = s->st[ST_LOG_ALL];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        raft_index idx = (raft_index)sqlite3_column_int64(st, 0);
        sqlite3_int64 term = sqlite3_column_int64(st, 1);
        sqlite3_int64 type = sqlite3_column_int64(st, 2);
        if (i == 0) {
            first = idx;
        }
        if (i >= n) {
            rv = corrupt(s, eb, "log changed while being read");
            break;
        }
        if (idx != first + i) {
            rv = corrupt(s, eb, "log has a hole before index %" PRIu64, idx);
            break;
        }
        if (sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
            sqlite3_column_type(st, 2) != SQLITE_INTEGER || term < 1 ||
            type < RAFT_COMMAND || type > RAFT_CHANGE) {
            rv = corrupt(s, eb, "entry %" PRIu64 " has a bad term or type", idx);
            break;
        }
        if ((raft_term)term < prev_term) {
            rv = corrupt(s, eb, "entry %" PRIu64 " has term %lld after term %" PRIu64,
                         idx, (long long)term, prev_term);
            break;
        }
        if (idx == s->snap_index && (raft_term)term != s->snap_term) {
            rv = corrupt(s, eb,
                         "entry %" PRIu64 " has term %lld, the snapshot says %" PRIu64,
                         idx, (long long)term, s->snap_term);
            break;
        }
        if (idx > s->snap_index && (raft_term)term < s->snap_term) {
            rv = corrupt(s, eb, "entry %" PRIu64 " has a term below the snapshot's", idx);
            break;
        }
        if (sqlite3_column_type(st, 3) != SQLITE_BLOB) {
            rv = corrupt(s, eb, "entry %" PRIu64 " data is not a blob", idx);
            break;
        }
        const void *p = sqlite3_column_blob(st, 3);
        size_t len = (size_t)sqlite3_column_bytes(st, 3);
        if (len > data_cap - used) {
            rv = corrupt(s, eb, "log changed while being read");
            break;
        }
        if (len > 0) {
            memcpy(data + used, p, len);
        }
        entries[i].term = (raft_term)term;
        entries[i].type = (uint8_t)type;
        entries[i].buf.base = len > 0 ? data + used : NULL;
        entries[i].buf.len = len;
        used += len;
        prev_term = (raft_term)term;
        i++;
    }
    sqlite3_reset(st);
    if (rv == 0 && rc != SQLITE_DONE) {
        rv = db_fail(s, eb, rc, "read log of");
    }
    if (rv == 0 && i != n) {
        rv = corrupt(s, eb, "log changed while being read");
    }
    if (rv == 0 && first > s->snap_index + 1) {
        rv = corrupt(s, eb, "log starts at %" PRIu64 ", after snapshot %" PRIu64 " + 1",
                     first, s->snap_index);
    }
    if (rv == 0 && first + n - 1 < s->snap_index) {
        rv = corrupt(s, eb, "log ends at %" PRIu64 ", before snapshot %" PRIu64,
                     first + n - 1, s->snap_index);
    }
    if (rv != 0) {
        cm_free(&entries);
        return rv;
    }
    l->first_index = first;
    l->n_entries = (unsigned)n;
    l->entries = entries;
    return 0;
}

int raft_store_load(struct raft_store *s, struct raft_load *ret, struct cm_errbuf *eb)
{
    struct raft_load l;
    memset(&l, 0, sizeof(l));
    l.term = s->term;
    l.voted_for = s->voted_for;
    l.snapshot_index = s->snap_index;
    l.snapshot_term = s->snap_term;
    l.snapshot_config_index = s->snap_config_index;
    l.snapshot_size = s->snap_size;
    l.first_index = s->snap_index + 1;
    int rv = raft_config_copy(&s->snap_config, &l.snapshot_config);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "load `%s`: out of memory", s->db_path);
    }
    int rc = run(s->st[ST_BEGIN_READ]);
    if (rc != SQLITE_OK) {
        rv = db_fail(s, eb, rc, "load");
        goto err_after_config;
    }
    rv = log_read(s, &l, eb);
    run(s->st[ST_COMMIT]);
    if (rv != 0) {
        goto err_after_config;
    }
    *ret = l;
    return 0;

err_after_config:
    raft_config_close(&l.snapshot_config);
    return rv;
}

void raft_load_close(struct raft_load *l)
{
    if (l == NULL) {
        return;
    }
    /* log_read allocated the entries and their bytes as one block. */
    void *block = (void *)l->entries;
    cm_free(&block);
    raft_config_close(&l->snapshot_config);
    memset(l, 0, sizeof(*l));
}

/* ------------------------------------------------------------------ group commit */

static raft_index q_first(const struct raft_store *s)
{
    return s->q_truncate != 0 ? s->q_truncate : s->last_index + 1;
}

static void q_clear(struct raft_store *s)
{
    s->q_truncate = 0;
    s->q_n = 0;
    cm_buf_clear(&s->q_data);
    s->q_last_index = s->last_index;
    s->q_last_term = s->last_term;
}

/* The term of the entry at @index as the log will be once the queue is written.
 * @index is at most q_last_index. */
static int term_at(struct raft_store *s, raft_index index, raft_term *ret,
                   struct cm_errbuf *eb)
{
    raft_index qf = q_first(s);
    if (index == 0) {
        *ret = 0;
        return 0;
    }
    if (s->q_n > 0 && index >= qf && index - qf < s->q_n) {
        *ret = s->q[index - qf].term;
        return 0;
    }
    if (index == s->snap_index) {
        *ret = s->snap_term;
        return 0;
    }
    sqlite3_stmt *st = s->st[ST_LOG_TERM];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)index);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret = (raft_term)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        return cm_err_setf(eb, CM_EINVAL, "`%s`: no entry at %" PRIu64, s->db_path,
                           index);
    }
    return db_fail(s, eb, rc, "read log of");
}

int raft_store_append(struct raft_store *s, raft_index truncate_from, raft_index first,
                      const struct raft_entry *entries, unsigned n, struct cm_errbuf *eb)
{
    raft_index last = s->q_last_index;
    raft_term last_term = s->q_last_term;
    int rv;
    if (truncate_from != 0) {
        if (truncate_from <= s->snap_index) {
            return cm_err_setf(eb, CM_EINVAL,
                               "truncate `%s` from %" PRIu64
                               ": at or below the snapshot at %" PRIu64,
                               s->db_path, truncate_from, s->snap_index);
        }
        if (truncate_from <= last) {
            last = truncate_from - 1;
            rv = term_at(s, last, &last_term, eb);
            if (rv != 0) {
                return rv;
            }
        }
    }
    size_t bytes = 0;
    if (n > 0) {
        if (first != last + 1) {
            return cm_err_setf(eb, CM_EINVAL,
                               "append to `%s` at %" PRIu64 ": the log ends at %" PRIu64,
                               s->db_path, first, last);
        }
        if (!fits_i64(first + n)) {
            return cm_err_setf(eb, CM_ERANGE, "append to `%s`: index out of range",
                               s->db_path);
        }
        raft_term prev = last_term;
        for (unsigned i = 0; i < n; i++) {
            const struct raft_entry *e = &entries[i];
            if (e->term < prev || e->term == 0 || !fits_i64(e->term) ||
                e->type < RAFT_COMMAND || e->type > RAFT_CHANGE ||
                (e->buf.len > 0 && e->buf.base == NULL)) {
                return cm_err_setf(eb, CM_EINVAL,
                                   "append to `%s`: bad entry %" PRIu64 " (term %" PRIu64
                                   " after %" PRIu64 ", type %u)",
                                   s->db_path, first + i, e->term, prev, e->type);
            }
            if (e->buf.len > (size_t)INT_MAX || bytes > SIZE_MAX - e->buf.len) {
                return cm_err_setf(eb, CM_ETOOBIG,
                                   "append to `%s`: entry %" PRIu64 " too large",
                                   s->db_path, first + i);
            }
            bytes += e->buf.len;
            prev = e->term;
        }
    }
    /* Reserve first, so that nothing changes on failure. */
    if (s->q_n + n > s->q_cap) {
        unsigned cap = s->q_cap != 0 ? s->q_cap : 64;
        while (cap < s->q_n + n) {
            cap *= 2;
        }
        struct q_entry *q = cm_reallocarray(s->q, cap, sizeof(*q));
        if (q == NULL) {
            return cm_err_setf(eb, CM_ENOMEM, "append to `%s`: out of memory",
                               s->db_path);
        }
        s->q = q;
        s->q_cap = cap;
    }
    if (cm_buf_reserve(&s->q_data, bytes) != 0) {
        return cm_err_setf(eb, CM_ENOMEM, "append to `%s`: out of memory", s->db_path);
    }
    if (truncate_from != 0 && truncate_from <= s->q_last_index) {
        raft_index qf = q_first(s);
        if (truncate_from >= qf) {
            /* Only queued entries go. */
            unsigned keep = (unsigned)(truncate_from - qf);
            s->q_data.len = keep < s->q_n ? s->q[keep].off : s->q_data.len;
            s->q_n = keep;
        } else {
            /* Durable entries go too: the flush deletes them first. */
            s->q_truncate = truncate_from;
            s->q_n = 0;
            s->q_data.len = 0;
        }
        s->q_last_index = last;
        s->q_last_term = last_term;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct raft_entry *e = &entries[i];
        struct q_entry *q = &s->q[s->q_n++];
        q->term = e->term;
        q->type = e->type;
        q->off = s->q_data.len;
        q->len = e->buf.len;
        cm_buf_append(&s->q_data, e->buf.base, e->buf.len); /* reserved */
    }
    if (n > 0) {
        s->q_last_index = first + n - 1;
        s->q_last_term = entries[n - 1].term;
    }
    return 0;
}

/* Inside a transaction: apply the queued truncation and inserts. */
static int queue_write(struct raft_store *s)
{
    int rc = SQLITE_OK;
    if (s->q_truncate != 0) {
        sqlite3_bind_int64(s->st[ST_LOG_TRUNCATE], 1, (sqlite3_int64)s->q_truncate);
        rc = run(s->st[ST_LOG_TRUNCATE]);
    }
    raft_index idx = q_first(s);
    sqlite3_stmt *ins = s->st[ST_LOG_INSERT];
    for (unsigned i = 0; rc == SQLITE_OK && i < s->q_n; i++, idx++) {
        const struct q_entry *q = &s->q[i];
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)idx);
        sqlite3_bind_int64(ins, 2, (sqlite3_int64)q->term);
        sqlite3_bind_int(ins, 3, q->type);
        sqlite3_bind_blob(ins, 4, q->len > 0 ? s->q_data.data + q->off : "", (int)q->len,
                          SQLITE_STATIC);
        rc = run(ins);
    }
    return rc;
}

/* After the transaction that ran queue_write() committed. */
static void queue_written(struct raft_store *s)
{
    s->last_index = s->q_last_index;
    s->last_term = s->q_last_term;
    if (s->first_index > s->last_index + 1) {
        s->first_index = s->last_index + 1;
    }
    q_clear(s);
}

/* Write the queue, and the hard state when @hard, in one transaction. */
static int commit_queue(struct raft_store *s, bool hard, raft_term term,
                        raft_id voted_for, const char *op, struct cm_errbuf *eb)
{
    int rc = tx_begin(s);
    if (rc != SQLITE_OK) {
        return db_fail(s, eb, rc, op);
    }
    if (hard) {
        rc = meta_set_int(s, K_TERM, term);
        if (rc == SQLITE_OK) {
            rc = meta_set_int(s, K_VOTED_FOR, voted_for);
        }
    }
    if (rc == SQLITE_OK) {
        rc = queue_write(s);
    }
    if (rc == SQLITE_OK) {
        rc = tx_commit(s);
    }
    if (rc != SQLITE_OK) {
        int err = db_fail(s, eb, rc, op);
        tx_abort(s);
        return err;
    }
    if (hard) {
        s->term = term;
        s->voted_for = voted_for;
    }
    queue_written(s);
    return 0;
}

int raft_store_flush(struct raft_store *s, raft_index *ret_index, raft_term *ret_term,
                     struct cm_errbuf *eb)
{
    if (s->q_n > 0 || s->q_truncate != 0) {
        int rv = commit_queue(s, false, 0, 0, "flush", eb);
        if (rv != 0) {
            return rv;
        }
    }
    *ret_index = s->last_index;
    *ret_term = s->last_term;
    return 0;
}

int raft_store_set_hard_state(struct raft_store *s, raft_term term, raft_id voted_for,
                              struct cm_errbuf *eb)
{
    if (!fits_i64(term) || !fits_i64(voted_for)) {
        return cm_err_setf(eb, CM_ERANGE, "set hard state in `%s`: out of range",
                           s->db_path);
    }
    return commit_queue(s, true, term, voted_for, "set hard state in", eb);
}

int raft_store_compact(struct raft_store *s, raft_index index, struct cm_errbuf *eb)
{
    if (index > s->snap_index) {
        return cm_err_setf(eb, CM_EINVAL,
                           "compact `%s` to %" PRIu64 ": beyond the snapshot at %" PRIu64,
                           s->db_path, index, s->snap_index);
    }
    if (index < s->first_index) {
        return 0;
    }
    int rc = tx_begin(s);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s->st[ST_LOG_COMPACT], 1, (sqlite3_int64)index);
        rc = run(s->st[ST_LOG_COMPACT]);
    }
    if (rc == SQLITE_OK) {
        rc = tx_commit(s);
    }
    if (rc != SQLITE_OK) {
        int err = db_fail(s, eb, rc, "compact");
        tx_abort(s);
        return err;
    }
    s->first_index = index + 1;
    return 0;
}

/* ------------------------------------------------------------------ snapshots */

/* Point raft_meta at the snapshot file now named @path (renamed and its directory
 * synced), dropping the log when @drop_log, then remove the previous file. */
static int snap_commit(struct raft_store *s, char *path, raft_index index, raft_term term,
                       const struct raft_config *config, raft_index config_index,
                       uint64_t size, bool drop_log, const char *op, struct cm_errbuf *eb)
{
    struct raft_config copy;
    struct raft_buffer blob;
    int rv = raft_config_copy(config, &copy);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "%s `%s`: out of memory", op, s->db_path);
    }
    rv = raft_config_encode(config, &blob);
    if (rv != 0) {
        raft_config_close(&copy);
        return cm_err_setf(eb, rv, "%s `%s`: out of memory", op, s->db_path);
    }
    /* Keeping the log, the queue goes along: a local snapshot may cover entries
     * still queued (a leader commits on its followers' acknowledgements), and the
     * log on disk must reach the snapshot so that appends after it stay
     * contiguous. */
    int rc = tx_begin(s);
    if (rc == SQLITE_OK) {
        rc = drop_log ? run(s->st[ST_LOG_CLEAR]) : queue_write(s);
    }
    if (rc == SQLITE_OK) {
        rc = meta_set_int(s, K_SNAP_INDEX, index);
    }
    if (rc == SQLITE_OK) {
        rc = meta_set_int(s, K_SNAP_TERM, term);
    }
    if (rc == SQLITE_OK) {
        rc = meta_set_blob(s, K_SNAP_CONFIG, blob.base, blob.len);
    }
    if (rc == SQLITE_OK) {
        rc = meta_set_int(s, K_SNAP_CFG_IDX, config_index);
    }
    if (rc == SQLITE_OK) {
        rc = meta_set_int(s, K_SNAP_SIZE, size);
    }
    if (rc == SQLITE_OK) {
        rc = tx_commit(s);
    }
    cm_free(&blob.base);
    if (rc != SQLITE_OK) {
        /* The new file stays: a failed COMMIT may still have reached the WAL, and
         * the next open removes whichever file raft_meta does not name. */
        rv = db_fail(s, eb, rc, op);
        tx_abort(s);
        raft_config_close(&copy);
        return rv;
    }
    /* Durable now; the old file is garbage (swept at open if this fails). */
    snap_close_reader(s);
    if (s->snap_path != NULL && strcmp(s->snap_path, path) != 0) {
        unlink(s->snap_path);
    }
    cm_free(&s->snap_path);
    s->snap_path = path;
    raft_config_close(&s->snap_config);
    s->snap_config = copy;
    s->snap_index = index;
    s->snap_term = term;
    s->snap_config_index = config_index;
    s->snap_size = size;
    if (drop_log) {
        s->first_index = index + 1;
        s->last_index = index;
        s->last_term = term;
        q_clear(s);
    } else {
        queue_written(s);
    }
    return 0;
}

static int snap_args_check(struct raft_store *s, raft_index index, raft_term term,
                           const struct raft_config *config, raft_index config_index,
                           const char *op, struct cm_errbuf *eb)
{
    if (index <= s->snap_index) {
        return cm_err_setf(eb, CM_ESTALE,
                           "%s `%s`: snapshot %" PRIu64 " is not newer than %" PRIu64, op,
                           s->db_path, index, s->snap_index);
    }
    if (term == 0 || !fits_i64(index) || !fits_i64(term) || config == NULL ||
        config_index > index) {
        return cm_err_setf(eb, CM_EINVAL, "%s `%s`: bad snapshot meta", op, s->db_path);
    }
    return 0;
}

int raft_store_snapshot_put(struct raft_store *s, const char *path, raft_index index,
                            raft_term term, const struct raft_config *config,
                            raft_index config_index, struct cm_errbuf *eb)
{
    if (index != 0 && index == s->snap_index && term == s->snap_term) {
        /* Already stored (the state machine did not move); ownership of @path
         * still passes to us. */
        unlink(path);
        return 0;
    }
    int rv = snap_args_check(s, index, term, config, config_index, "snapshot", eb);
    if (rv != 0) {
        return rv;
    }
    /* A local snapshot covers applied entries, which are in the log; its term
     * must agree with the log, or the next load would refuse the store. */
    if (index > s->q_last_index) {
        return cm_err_setf(eb, CM_EINVAL,
                           "snapshot `%s` at %" PRIu64 ": beyond the log's end %" PRIu64,
                           s->db_path, index, s->q_last_index);
    }
    raft_term log_term;
    rv = term_at(s, index, &log_term, eb);
    if (rv != 0) {
        return rv;
    }
    if (log_term != term) {
        return cm_err_setf(eb, CM_EINVAL,
                           "snapshot `%s` at %" PRIu64 ": term %" PRIu64
                           ", the log has %" PRIu64,
                           s->db_path, index, term, log_term);
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return cm_err_sys(eb, cm_errno(), "snapshot: stat `%s`", path);
    }
    char *final = snap_file(s, index, false);
    if (final == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "snapshot `%s`: out of memory", path);
    }
    if (rename(path, final) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "snapshot: rename `%s` to `%s`", path, final);
        goto err_after_final;
    }
    rv = sync_dir(s->dir);
    if (rv != 0) {
        rv = cm_err_sys(eb, rv, "snapshot: fsync directory `%s`", s->dir);
        goto err_after_final;
    }
    rv = snap_commit(s, final, index, term, config, config_index, (uint64_t)sb.st_size,
                     false, "snapshot", eb);
    if (rv != 0) {
        goto err_after_final;
    }
    return 0;

err_after_final:
    cm_free(&final);
    return rv;
}

int raft_store_snapshot_read(struct raft_store *s, raft_index index, uint64_t offset,
                             void *dst, size_t len, struct cm_errbuf *eb)
{
    if (s->snap_index == 0 || index != s->snap_index) {
        return cm_err_setf(eb, CM_ENOTFOUND, "`%s`: no snapshot at %" PRIu64, s->db_path,
                           index);
    }
    if (offset > s->snap_size || len > s->snap_size - offset) {
        return cm_err_setf(eb, CM_EINVAL,
                           "read `%s`: %zu bytes at %" PRIu64 " beyond its %" PRIu64,
                           s->snap_path, len, offset, s->snap_size);
    }
    if (s->snap_fd < 0) {
        s->snap_fd = open(s->snap_path, O_RDONLY | O_CLOEXEC);
        if (s->snap_fd < 0) {
            return cm_err_sys(eb, cm_errno(), "open `%s`", s->snap_path);
        }
    }
    char *p = dst;
    while (len > 0) {
        ssize_t n = pread(s->snap_fd, p, len, (off_t)offset);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return cm_err_sys(eb, cm_errno(), "read `%s`", s->snap_path);
        }
        if (n == 0) {
            return cm_err_setf(eb, CM_EIO, "read `%s`: file ends at %" PRIu64,
                               s->snap_path, offset);
        }
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

const char *raft_store_snapshot_path(struct raft_store *s)
{
    return s->snap_path;
}

int raft_store_snapshot_write_chunk(struct raft_store *s, raft_index index,
                                    uint64_t offset, const void *data, size_t len,
                                    struct cm_errbuf *eb)
{
    if (index <= s->snap_index || !fits_i64(index)) {
        return cm_err_setf(eb, CM_ESTALE,
                           "receive snapshot %" PRIu64
                           " in `%s`: not newer than %" PRIu64,
                           index, s->dir, s->snap_index);
    }
    if (offset == 0) {
        incoming_reset(s, true);
        s->in_path = snap_file(s, index, true);
        if (s->in_path == NULL) {
            return cm_err_setf(eb, CM_ENOMEM, "receive snapshot in `%s`: out of memory",
                               s->dir);
        }
        s->in_fd = open(s->in_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (s->in_fd < 0) {
            int err = cm_err_sys(eb, cm_errno(), "create `%s`", s->in_path);
            cm_free(&s->in_path);
            return err;
        }
        s->in_index = index;
    } else if (s->in_fd < 0 || index != s->in_index || offset != s->in_size) {
        return cm_err_setf(eb, CM_EINVAL,
                           "receive snapshot %" PRIu64 " in `%s`: chunk at %" PRIu64
                           ", expected snapshot %" PRIu64 " at %" PRIu64,
                           index, s->dir, offset, s->in_index, s->in_size);
    }
    int rv = write_all(s->in_fd, data, len, offset);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "write `%s`", s->in_path);
    }
    s->in_size = offset + len;
    return 0;
}

int raft_store_snapshot_finish(struct raft_store *s, raft_index index, raft_term term,
                               const struct raft_config *config, raft_index config_index,
                               const char **ret_path, struct cm_errbuf *eb)
{
    if (s->in_fd < 0 || index != s->in_index) {
        return cm_err_setf(eb, CM_EINVAL,
                           "install snapshot %" PRIu64 " in `%s`: nothing received",
                           index, s->dir);
    }
    int rv = snap_args_check(s, index, term, config, config_index, "install", eb);
    if (rv != 0) {
        return rv;
    }
    char *final = snap_file(s, index, false);
    if (final == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "install snapshot in `%s`: out of memory",
                           s->dir);
    }
    /* Whatever fails from here on, the transfer starts over at offset 0: data
     * that failed to fsync is not to be trusted again. */
    rv = sync_fd(s->in_fd);
    if (rv != 0) {
        rv = cm_err_sys(eb, rv, "fsync `%s`", s->in_path);
        incoming_reset(s, true);
        goto err_after_final;
    }
    if (rename(s->in_path, final) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "rename `%s` to `%s`", s->in_path, final);
        incoming_reset(s, true);
        goto err_after_final;
    }
    uint64_t size = s->in_size;
    incoming_reset(s, false);
    rv = sync_dir(s->dir);
    if (rv != 0) {
        rv = cm_err_sys(eb, rv, "install snapshot: fsync directory `%s`", s->dir);
        goto err_after_final;
    }
    rv = snap_commit(s, final, index, term, config, config_index, size, true,
                     "install snapshot in", eb);
    if (rv != 0) {
        goto err_after_final;
    }
    *ret_path = s->snap_path;
    return 0;

err_after_final:
    cm_free(&final);
    return rv;
}
