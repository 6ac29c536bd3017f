/* raft/storage.c: raft.db, group commit, snapshots, corruption, I/O faults,
 * crashes, OOM. Every test works in a fresh temp directory and removes it. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "raft/raft.h"
#include "test.h"

/* ------------------------------------------------------------------ helpers */

struct tdir {
    char path[256];
};

static void tdir_make(struct tdir *d)
{
    const char *base = getenv("TMPDIR");
    snprintf(d->path, sizeof(d->path), "%s/cm-raft-store-XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    ASSERT_NOT_NULL(mkdtemp(d->path));
}

/* The store's directory is flat: remove its files, then it. */
static void tdir_remove(struct tdir *d)
{
    DIR *dir = opendir(d->path);
    ASSERT_NOT_NULL(dir);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            ASSERT_INT_EQ(unlinkat(dirfd(dir), de->d_name, 0), 0);
        }
    }
    closedir(dir);
    ASSERT_INT_EQ(rmdir(d->path), 0);
}

/* Files in @d whose name starts with @prefix. */
static int tdir_count(const struct tdir *d, const char *prefix)
{
    DIR *dir = opendir(d->path);
    ASSERT_NOT_NULL(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    }
    closedir(dir);
    return n;
}

static bool file_exists(const struct tdir *d, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", d->path, name);
    return access(path, F_OK) == 0;
}

static void file_write(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_INT_EQ(write(fd, data, len), (long long)len);
    ASSERT_INT_EQ(fsync(fd), 0);
    close(fd);
}

/* Entry contents are a function of (index, term), so any mix-up shows. */
static size_t entry_len(raft_index idx)
{
    return 8 + idx % 23;
}

static void entry_fill(uint8_t *p, size_t len, raft_index idx, raft_term term)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(idx * 31 + term * 7 + i);
    }
}

static bool entry_ok(const struct raft_entry *e, raft_index idx, raft_term term)
{
    uint8_t want[64];
    size_t len = entry_len(idx);
    entry_fill(want, len, idx, term);
    return e->term == term && e->buf.len == len && memcmp(e->buf.base, want, len) == 0 &&
           e->type == (idx == 1 ? RAFT_CHANGE : RAFT_COMMAND);
}

/* Queue entries first .. first+n-1, all of @term, after truncating at @trunc. */
static int append_range(struct raft_store *s, raft_index trunc, raft_index first,
                        unsigned n, raft_term term, struct cm_errbuf *eb)
{
    struct raft_entry e[64];
    uint8_t data[64][64];
    CM_BUG_ON(n > 64);
    for (unsigned i = 0; i < n; i++) {
        raft_index idx = first + i;
        e[i].term = term;
        e[i].type = idx == 1 ? RAFT_CHANGE : RAFT_COMMAND;
        e[i].buf.base = data[i];
        e[i].buf.len = entry_len(idx);
        entry_fill(data[i], e[i].buf.len, idx, term);
    }
    return raft_store_append(s, trunc, first, e, n, eb);
}

static struct raft_store *store_open(const struct tdir *d)
{
    struct raft_store *s = NULL;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = raft_store_open(d->path, &s, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "open %s: %s", d->path, eb.msg);
    }
    return s;
}

static void store_flush_expect(struct raft_store *s, raft_index index, raft_term term)
{
    struct cm_errbuf eb;
    raft_index i = 99;
    raft_term t = 99;
    int rv = raft_store_flush(s, &i, &t, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "flush: %s", eb.msg);
    }
    ASSERT_UINT_EQ(i, index);
    ASSERT_UINT_EQ(t, term);
}

/* True when @l holds exactly entries 1..last with terms[idx]. */
static bool log_is(const struct raft_load *l, const raft_term *terms, raft_index last)
{
    if (l->first_index != 1 || l->n_entries != last) {
        return false;
    }
    for (unsigned i = 0; i < l->n_entries; i++) {
        if (!entry_ok(&l->entries[i], i + 1, terms[i + 1])) {
            return false;
        }
    }
    return true;
}

static void config_make(struct raft_config *c)
{
    c->n = 0;
    c->servers = NULL;
    ASSERT_OK(raft_config_add(c, 1, "10.0.0.1:7071", RAFT_VOTER));
    ASSERT_OK(raft_config_add(c, 2, "10.0.0.2:7071", RAFT_VOTER));
    ASSERT_OK(raft_config_add(c, 3, "10.0.0.3:7071", RAFT_LEARNER));
}

static void snap_fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(i * 13 + seed + (i >> 8));
    }
}

/* Open a raw SQLite connection on raft.db (the store must be closed) and run
 * @sql. */
static void raw_exec(const struct tdir *d, const char *sql)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/raft.db", d->path);
    sqlite3 *db;
    ASSERT_INT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        printf("# %s: %s\n", sql, err != NULL ? err : "?");
    }
    sqlite3_free(err);
    ASSERT_INT_EQ(sqlite3_close(db), SQLITE_OK);
    ASSERT_INT_EQ(rc, SQLITE_OK);
}

/* A store with entries 1..10 (term 1 up to 5, then 2), hard state (2, 1). */
static void store_seed(const struct tdir *d, raft_term *terms)
{
    struct cm_errbuf eb;
    struct raft_store *s = store_open(d);
    ASSERT_OK(append_range(s, 0, 1, 5, 1, &eb));
    ASSERT_OK(append_range(s, 0, 6, 5, 2, &eb));
    ASSERT_OK(raft_store_set_hard_state(s, 2, 1, &eb));
    store_flush_expect(s, 10, 2);
    raft_store_close(s);
    for (raft_index i = 1; i <= 10; i++) {
        terms[i] = i <= 5 ? 1 : 2;
    }
}

/* Open and load @d, expecting CM_ECORRUPT with the path in the message. */
static void expect_corrupt(const struct tdir *d)
{
    struct raft_store *s = NULL;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = raft_store_open(d->path, &s, &eb);
    if (rv == 0) {
        struct raft_load l;
        rv = raft_store_load(s, &l, &eb);
        if (rv == 0) {
            raft_load_close(&l);
        }
        raft_store_close(s);
    } else {
        ASSERT_NULL(s);
    }
    test_note(eb.msg);
    ASSERT_ERR(rv, CM_ECORRUPT);
    ASSERT_NOT_NULL(strstr(eb.msg, d->path));
    ASSERT_NOT_NULL(strstr(eb.msg, "raft.db"));
}

/* ------------------------------------------------------------------ basics */

TEST(store_roundtrip_hard_state_and_entries)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    struct raft_load l;
    struct raft_store *s = store_open(&d);
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.term, 0);
    ASSERT_UINT_EQ(l.voted_for, 0);
    ASSERT_UINT_EQ(l.snapshot_index, 0);
    ASSERT_UINT_EQ(l.first_index, 1);
    ASSERT_UINT_EQ(l.n_entries, 0);
    raft_load_close(&l);
    store_flush_expect(s, 0, 0);

    ASSERT_OK(raft_store_set_hard_state(s, 3, 2, &eb));
    ASSERT_OK(append_range(s, 0, 1, 2, 1, &eb));
    ASSERT_OK(append_range(s, 0, 3, 2, 2, &eb));
    ASSERT_OK(append_range(s, 0, 5, 1, 3, &eb));
    store_flush_expect(s, 5, 3);
    ASSERT_OK(raft_store_set_hard_state(s, 4, 0, &eb));
    raft_store_close(s);

    s = store_open(&d);
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.term, 4);
    ASSERT_UINT_EQ(l.voted_for, 0);
    raft_term terms[] = {0, 1, 1, 2, 2, 3};
    ASSERT_TRUE(log_is(&l, terms, 5));
    raft_load_close(&l);
    store_flush_expect(s, 5, 3);
    raft_store_close(s);
    tdir_remove(&d);
}

TEST(store_hard_state_takes_queued_entries_along)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    struct raft_store *s = store_open(&d);
    ASSERT_OK(append_range(s, 0, 1, 3, 1, &eb));
    ASSERT_OK(raft_store_set_hard_state(s, 1, 7, &eb));
    raft_store_fault_set(0, 0);
    store_flush_expect(s, 3, 1);
    ASSERT_UINT_EQ(raft_store_fault_count(), 0); /* nothing left to write */
    raft_store_close(s);
    s = store_open(&d);
    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.voted_for, 7);
    ASSERT_UINT_EQ(l.n_entries, 3);
    raft_load_close(&l);
    raft_store_close(s);
    tdir_remove(&d);
}

TEST(store_group_commit_many_appends_one_flush)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    struct raft_store *s = store_open(&d);
    raft_term terms[301];
    for (unsigned b = 0; b < 100; b++) {
        raft_term term = 1 + b / 40;
        ASSERT_OK(append_range(s, 0, 1 + b * 3, 3, term, &eb));
        for (unsigned i = 0; i < 3; i++) {
            terms[1 + b * 3 + i] = term;
        }
    }
    /* One transaction: the WAL is synced once (plus its header on first use). */
    raft_store_fault_set(0, 0);
    store_flush_expect(s, 300, 3);
    printf("# 300 entries in one flush: %u writes and syncs\n", raft_store_fault_count());
    ASSERT_INT_OP(raft_store_fault_count(), <, 100);
    raft_store_close(s);

    s = store_open(&d);
    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_TRUE(log_is(&l, terms, 300));
    raft_load_close(&l);
    raft_store_close(s);
    tdir_remove(&d);
}

TEST(store_truncate_suffix_then_append)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    raft_term terms[32];
    store_seed(&d, terms);
    struct raft_store *s = store_open(&d);

    /* Durable suffix 6..10 replaced by 6..8 of term 3. */
    ASSERT_OK(append_range(s, 6, 6, 3, 3, &eb));
    /* Queued entries replaced again before the flush: 8 goes, 8..9 of term 4. */
    ASSERT_OK(append_range(s, 8, 8, 2, 4, &eb));
    /* Truncation only. */
    ASSERT_OK(append_range(s, 9, 0, 0, 0, &eb));
    store_flush_expect(s, 8, 4);
    raft_store_close(s);

    s = store_open(&d);
    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    terms[6] = 3;
    terms[7] = 3;
    terms[8] = 4;
    ASSERT_TRUE(log_is(&l, terms, 8));
    raft_load_close(&l);

    /* Truncation reaching back into durable entries while some are queued. */
    ASSERT_OK(append_range(s, 0, 9, 3, 4, &eb));
    ASSERT_OK(append_range(s, 4, 4, 2, 5, &eb));
    store_flush_expect(s, 5, 5);
    ASSERT_OK(append_range(s, 0, 6, 1, 5, &eb));
    store_flush_expect(s, 6, 5);

    /* Refused: a gap, an overlap without truncation, a term going down, a bad
     * type. Nothing changes. */
    ASSERT_ERR(append_range(s, 0, 8, 1, 5, &eb), CM_EINVAL);
    ASSERT_NOT_NULL(strstr(eb.msg, d.path));
    ASSERT_ERR(append_range(s, 0, 6, 1, 5, &eb), CM_EINVAL);
    ASSERT_ERR(append_range(s, 0, 7, 1, 4, &eb), CM_EINVAL);
    struct raft_entry bad = {.term = 5, .type = 9, .buf = {NULL, 0}};
    ASSERT_ERR(raft_store_append(s, 0, 7, &bad, 1, &eb), CM_EINVAL);
    store_flush_expect(s, 6, 5);
    raft_store_close(s);

    s = store_open(&d);
    ASSERT_OK(raft_store_load(s, &l, &eb));
    for (raft_index i = 4; i <= 6; i++) {
        terms[i] = 5;
    }
    ASSERT_TRUE(log_is(&l, terms, 6));
    raft_load_close(&l);
    raft_store_close(s);
    tdir_remove(&d);
}

TEST(store_compaction)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    raft_term terms[32];
    store_seed(&d, terms);
    struct raft_store *s = store_open(&d);
    struct raft_config c;
    config_make(&c);
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshot-8.taking", d.path);
    file_write(path, "state", 5);
    ASSERT_OK(raft_store_snapshot_put(s, path, 8, 2, &c, 1, &eb));
    /* Only what a snapshot covers may go. */
    ASSERT_ERR(raft_store_compact(s, 9, &eb), CM_EINVAL);
    ASSERT_OK(raft_store_compact(s, 6, &eb));
    ASSERT_OK(raft_store_compact(s, 3, &eb)); /* already gone: no-op */
    raft_store_close(s);

    s = store_open(&d);
    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.snapshot_index, 8);
    ASSERT_UINT_EQ(l.first_index, 7);
    ASSERT_UINT_EQ(l.n_entries, 4);
    for (unsigned i = 0; i < l.n_entries; i++) {
        ASSERT_TRUE(entry_ok(&l.entries[i], 7 + i, 2));
    }
    raft_load_close(&l);
    ASSERT_OK(append_range(s, 0, 11, 2, 3, &eb));
    store_flush_expect(s, 12, 3);
    /* Everything up to the snapshot: the log keeps 9..12. */
    ASSERT_OK(raft_store_compact(s, 8, &eb));
    raft_store_close(s);

    s = store_open(&d);
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.first_index, 9);
    ASSERT_UINT_EQ(l.n_entries, 4);
    raft_load_close(&l);
    raft_store_close(s);
    raft_config_close(&c);
    tdir_remove(&d);
}

/* ------------------------------------------------------------------ snapshots */

TEST(store_snapshot_put_and_read_at_offsets)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    raft_term terms[32];
    store_seed(&d, terms);
    struct raft_store *s = store_open(&d);
    ASSERT_NULL(raft_store_snapshot_path(s));
    static uint8_t snap[10000], got[10000];
    snap_fill(snap, sizeof(snap), 1);
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshot-8.taking", d.path);
    file_write(path, snap, sizeof(snap));
    struct raft_config c;
    config_make(&c);
    /* The term must agree with the log's entry 8. */
    ASSERT_ERR(raft_store_snapshot_put(s, path, 8, 1, &c, 1, &eb), CM_EINVAL);
    ASSERT_OK(raft_store_snapshot_put(s, path, 8, 2, &c, 1, &eb));
    ASSERT_FALSE(access(path, F_OK) == 0);
    ASSERT_TRUE(file_exists(&d, "snapshot-8"));
    ASSERT_NOT_NULL(strstr(raft_store_snapshot_path(s), "snapshot-8"));

    ASSERT_OK(raft_store_snapshot_read(s, 8, 0, got, 100, &eb));
    ASSERT_MEM_EQ(got, snap, 100);
    ASSERT_OK(raft_store_snapshot_read(s, 8, 4321, got, 1000, &eb));
    ASSERT_MEM_EQ(got, snap + 4321, 1000);
    ASSERT_OK(raft_store_snapshot_read(s, 8, 9990, got, 10, &eb));
    ASSERT_MEM_EQ(got, snap + 9990, 10);
    ASSERT_OK(raft_store_snapshot_read(s, 8, 10000, got, 0, &eb));
    ASSERT_ERR(raft_store_snapshot_read(s, 8, 9990, got, 11, &eb), CM_EINVAL);
    ASSERT_ERR(raft_store_snapshot_read(s, 7, 0, got, 1, &eb), CM_ENOTFOUND);
    raft_store_close(s);

    s = store_open(&d);
    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.snapshot_index, 8);
    ASSERT_UINT_EQ(l.snapshot_term, 2);
    ASSERT_UINT_EQ(l.snapshot_config_index, 1);
    ASSERT_UINT_EQ(l.snapshot_size, sizeof(snap));
    ASSERT_UINT_EQ(l.snapshot_config.n, 3);
    ASSERT_STR_EQ(l.snapshot_config.servers[2].address, "10.0.0.3:7071");
    ASSERT_UINT_EQ(l.snapshot_config.servers[2].role, RAFT_LEARNER);
    ASSERT_TRUE(log_is(&l, terms, 10)); /* a local snapshot keeps the log */
    raft_load_close(&l);
    ASSERT_OK(raft_store_snapshot_read(s, 8, 5000, got, 5000, &eb));
    ASSERT_MEM_EQ(got, snap + 5000, 5000);

    /* A newer one replaces it; the same again is a no-op; an older is refused. */
    file_write(path, "x", 1);
    ASSERT_OK(raft_store_snapshot_put(s, path, 8, 2, &c, 1, &eb));
    ASSERT_FALSE(access(path, F_OK) == 0);
    snprintf(path, sizeof(path), "%s/snapshot-10.taking", d.path);
    file_write(path, snap, 77);
    ASSERT_OK(raft_store_snapshot_put(s, path, 10, 2, &c, 1, &eb));
    ASSERT_FALSE(file_exists(&d, "snapshot-8"));
    ASSERT_TRUE(file_exists(&d, "snapshot-10"));
    ASSERT_ERR(raft_store_snapshot_read(s, 8, 0, got, 1, &eb), CM_ENOTFOUND);
    ASSERT_OK(raft_store_snapshot_read(s, 10, 0, got, 77, &eb));
    ASSERT_MEM_EQ(got, snap, 77);
    file_write(path, "x", 1);
    ASSERT_ERR(raft_store_snapshot_put(s, path, 9, 2, &c, 1, &eb), CM_ESTALE);

    /* A snapshot covering queued entries (a leader applies what its followers
     * acknowledged) takes the queue along, so the log on disk reaches it. */
    ASSERT_OK(append_range(s, 0, 11, 3, 3, &eb));
    ASSERT_ERR(raft_store_snapshot_put(s, path, 14, 3, &c, 1, &eb), CM_EINVAL);
    ASSERT_OK(raft_store_snapshot_put(s, path, 12, 3, &c, 1, &eb));
    raft_store_fault_set(0, 0);
    store_flush_expect(s, 13, 3);
    ASSERT_UINT_EQ(raft_store_fault_count(), 0);
    raft_store_close(s);
    s = store_open(&d);
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.snapshot_index, 12);
    ASSERT_UINT_EQ(l.n_entries, 13);
    ASSERT_TRUE(entry_ok(&l.entries[12], 13, 3));
    raft_load_close(&l);
    raft_store_close(s);
    raft_config_close(&c);
    tdir_remove(&d);
}

TEST(store_snapshot_receive_chunks_and_finish)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    raft_term terms[32];
    store_seed(&d, terms);
    struct raft_store *s = store_open(&d);
    struct raft_config c;
    config_make(&c);
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshot-5.taking", d.path);
    file_write(path, "old", 3);
    ASSERT_OK(raft_store_snapshot_put(s, path, 5, 1, &c, 1, &eb));
    /* Queued entries are dropped with the log. */
    ASSERT_OK(append_range(s, 0, 11, 2, 2, &eb));

    static uint8_t snap[10000], got[10000];
    snap_fill(snap, sizeof(snap), 2);
    /* A transfer that restarts: offset 0 drops what came before. */
    ASSERT_OK(raft_store_snapshot_write_chunk(s, 50, 0, snap + 1, 3000, &eb));
    ASSERT_OK(raft_store_snapshot_write_chunk(s, 50, 0, snap, 4000, &eb));
    ASSERT_ERR(raft_store_snapshot_write_chunk(s, 50, 5000, snap, 10, &eb), CM_EINVAL);
    ASSERT_ERR(raft_store_snapshot_write_chunk(s, 51, 4000, snap, 10, &eb), CM_EINVAL);
    ASSERT_ERR(raft_store_snapshot_write_chunk(s, 5, 0, snap, 10, &eb), CM_ESTALE);
    ASSERT_OK(raft_store_snapshot_write_chunk(s, 50, 4000, snap + 4000, 4000, &eb));
    ASSERT_OK(raft_store_snapshot_write_chunk(s, 50, 8000, snap + 8000, 2000, &eb));
    ASSERT_TRUE(file_exists(&d, "snapshot-50.tmp"));
    const char *installed = NULL;
    ASSERT_ERR(raft_store_snapshot_finish(s, 49, 4, &c, 40, &installed, &eb), CM_EINVAL);
    ASSERT_OK(raft_store_snapshot_finish(s, 50, 4, &c, 40, &installed, &eb));
    ASSERT_NOT_NULL(installed);
    ASSERT_STR_EQ(installed, raft_store_snapshot_path(s));
    ASSERT_NOT_NULL(strstr(installed, "/snapshot-50"));
    ASSERT_FALSE(file_exists(&d, "snapshot-50.tmp"));
    ASSERT_FALSE(file_exists(&d, "snapshot-5"));
    ASSERT_INT_EQ(tdir_count(&d, "snapshot-"), 1);
    store_flush_expect(s, 50, 4);
    ASSERT_OK(raft_store_snapshot_read(s, 50, 0, got, sizeof(got), &eb));
    ASSERT_MEM_EQ(got, snap, sizeof(snap));

    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.n_entries, 0);
    ASSERT_UINT_EQ(l.first_index, 51);
    raft_load_close(&l);

    /* The log goes on after the snapshot. */
    ASSERT_ERR(append_range(s, 0, 50, 1, 4, &eb), CM_EINVAL);
    ASSERT_ERR(append_range(s, 0, 51, 1, 3, &eb), CM_EINVAL); /* below its term */
    ASSERT_OK(append_range(s, 0, 51, 2, 4, &eb));
    store_flush_expect(s, 52, 4);
    raft_store_close(s);

    s = store_open(&d);
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.term, 2);
    ASSERT_UINT_EQ(l.snapshot_index, 50);
    ASSERT_UINT_EQ(l.snapshot_term, 4);
    ASSERT_UINT_EQ(l.snapshot_config_index, 40);
    ASSERT_UINT_EQ(l.snapshot_size, sizeof(snap));
    ASSERT_UINT_EQ(l.snapshot_config.n, 3);
    ASSERT_UINT_EQ(l.first_index, 51);
    ASSERT_UINT_EQ(l.n_entries, 2);
    ASSERT_TRUE(entry_ok(&l.entries[0], 51, 4));
    ASSERT_TRUE(entry_ok(&l.entries[1], 52, 4));
    raft_load_close(&l);
    raft_store_close(s);
    raft_config_close(&c);
    tdir_remove(&d);
}

TEST(store_leftover_temp_snapshot_ignored_and_removed)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    raft_term terms[32];
    store_seed(&d, terms);
    struct raft_store *s = store_open(&d);
    static uint8_t snap[5000];
    snap_fill(snap, sizeof(snap), 3);
    ASSERT_OK(raft_store_snapshot_write_chunk(s, 30, 0, snap, 2500, &eb));
    raft_store_close(s); /* "crash" half-way through the transfer */
    ASSERT_TRUE(file_exists(&d, "snapshot-30.tmp"));
    /* Also what a crash between rename and raft_meta's update leaves. */
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshot-99", d.path);
    file_write(path, snap, 10);
    snprintf(path, sizeof(path), "%s/snapshot-7.tmp", d.path);
    file_write(path, snap, 10);
    snprintf(path, sizeof(path), "%s/snapshot-notes", d.path);
    file_write(path, snap, 10);

    s = store_open(&d);
    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.snapshot_index, 0);
    ASSERT_TRUE(log_is(&l, terms, 10));
    raft_load_close(&l);
    ASSERT_NULL(raft_store_snapshot_path(s));
    ASSERT_FALSE(file_exists(&d, "snapshot-30.tmp"));
    ASSERT_FALSE(file_exists(&d, "snapshot-7.tmp"));
    ASSERT_FALSE(file_exists(&d, "snapshot-99"));
    ASSERT_TRUE(file_exists(&d, "snapshot-notes")); /* not ours: left alone */
    /* A chunk that does not continue a transfer is refused after reopening. */
    ASSERT_ERR(raft_store_snapshot_write_chunk(s, 30, 2500, snap, 10, &eb), CM_EINVAL);
    raft_store_close(s);
    tdir_remove(&d);
}

TEST(store_second_open_refused)
{
    struct tdir d;
    tdir_make(&d);
    struct raft_store *s = store_open(&d);
    struct raft_store *s2 = NULL;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    ASSERT_ERR(raft_store_open(d.path, &s2, &eb), CM_EBUSYDIR);
    ASSERT_NULL(s2);
    ASSERT_NOT_NULL(strstr(eb.msg, d.path));
    raft_store_close(s);
    raft_store_close(NULL);

    ASSERT_ERR(raft_store_open("/nonexistent/cm-raft", &s2, &eb), CM_ENOENT);
    ASSERT_NOT_NULL(strstr(eb.msg, "/nonexistent/cm-raft/raft.db"));
    tdir_remove(&d);
}

/* ------------------------------------------------------------------ corruption */

TEST(store_corrupt_garbage_file)
{
    struct tdir d;
    tdir_make(&d);
    char path[512];
    snprintf(path, sizeof(path), "%s/raft.db", d.path);
    static uint8_t junk[8192];
    snap_fill(junk, sizeof(junk), 9);
    file_write(path, junk, sizeof(junk));
    expect_corrupt(&d);
    tdir_remove(&d);
}

TEST(store_corrupt_damaged_page)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    struct raft_store *s = store_open(&d);
    for (unsigned b = 0; b < 20; b++) {
        ASSERT_OK(append_range(s, 0, 1 + b * 50, 50, 1, &eb));
    }
    store_flush_expect(s, 1000, 1);
    raft_store_close(s); /* checkpoints the WAL into raft.db */
    char path[512];
    snprintf(path, sizeof(path), "%s/raft.db", d.path);
    struct stat st;
    ASSERT_INT_EQ(stat(path, &st), 0);
    ASSERT_INT_OP(st.st_size, >=, 4096 * 8);
    static uint8_t junk[4096];
    snap_fill(junk, sizeof(junk), 5);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    ASSERT_INT_EQ(pwrite(fd, junk, sizeof(junk), 4096 * 4), 4096);
    close(fd);
    expect_corrupt(&d);
    tdir_remove(&d);
}

TEST(store_corrupt_wrong_schema)
{
    struct tdir d;
    tdir_make(&d);
    raw_exec(&d, "CREATE TABLE raft_log (x); CREATE TABLE raft_meta (k, v)");
    expect_corrupt(&d);
    tdir_remove(&d);

    tdir_make(&d);
    raft_term terms[32];
    store_seed(&d, terms);
    raw_exec(&d, "CREATE TABLE extra (x)");
    expect_corrupt(&d);
    tdir_remove(&d);
}

TEST(store_corrupt_log_hole)
{
    struct tdir d;
    tdir_make(&d);
    raft_term terms[32];
    store_seed(&d, terms);
    raw_exec(&d, "DELETE FROM raft_log WHERE idx = 5");
    expect_corrupt(&d);
    tdir_remove(&d);

    /* A log that does not start at 1 without a snapshot has a hole too. */
    tdir_make(&d);
    store_seed(&d, terms);
    raw_exec(&d, "DELETE FROM raft_log WHERE idx <= 2");
    expect_corrupt(&d);
    tdir_remove(&d);
}

TEST(store_corrupt_log_term_decreases)
{
    struct tdir d;
    tdir_make(&d);
    raft_term terms[32];
    store_seed(&d, terms);
    raw_exec(&d, "UPDATE raft_log SET term = 1 WHERE idx = 8");
    expect_corrupt(&d);
    tdir_remove(&d);
}

TEST(store_corrupt_log_bad_entry)
{
    static const char *const sql[] = {
        "UPDATE raft_log SET type = 9 WHERE idx = 4",
        "UPDATE raft_log SET term = 0 WHERE idx = 1",
        "UPDATE raft_log SET data = 'text' WHERE idx = 4",
        "UPDATE raft_log SET term = 'x' WHERE idx = 10",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(sql); i++) {
        struct tdir d;
        tdir_make(&d);
        raft_term terms[32];
        store_seed(&d, terms);
        raw_exec(&d, sql[i]);
        expect_corrupt(&d);
        tdir_remove(&d);
    }
}

TEST(store_corrupt_meta_values)
{
    static const char *const sql[] = {
        "UPDATE raft_meta SET value = 'abc' WHERE key = 'term'",
        "UPDATE raft_meta SET value = -3 WHERE key = 'voted_for'",
        "UPDATE raft_meta SET value = 2 WHERE key = 'format'",
        "DELETE FROM raft_meta WHERE key = 'format'",
        "INSERT INTO raft_meta VALUES ('bogus', 1)",
        "INSERT INTO raft_meta VALUES ('snapshot_index', 4)",
        "UPDATE raft_meta SET value = x'00ff' WHERE key = 'snapshot_config'",
        "UPDATE raft_meta SET value = 'x' WHERE key = 'snapshot_config'",
        "UPDATE raft_meta SET value = 9 WHERE key = 'snapshot_size'",
        "UPDATE raft_meta SET value = 3 WHERE key = 'snapshot_term'",
        "DELETE FROM raft_log WHERE idx >= 7",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(sql); i++) {
        struct tdir d;
        tdir_make(&d);
        raft_term terms[32];
        store_seed(&d, terms);
        if (i >= 6) { /* these need a snapshot to damage */
            struct cm_errbuf eb;
            struct raft_store *s = store_open(&d);
            struct raft_config c;
            config_make(&c);
            char path[512];
            snprintf(path, sizeof(path), "%s/snapshot-7.taking", d.path);
            file_write(path, "state", 5);
            ASSERT_OK(raft_store_snapshot_put(s, path, 7, 2, &c, 1, &eb));
            raft_config_close(&c);
            raft_store_close(s);
        }
        raw_exec(&d, sql[i]);
        expect_corrupt(&d);
        tdir_remove(&d);
    }
}

TEST(store_corrupt_snapshot_file_missing)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    raft_term terms[32];
    store_seed(&d, terms);
    struct raft_store *s = store_open(&d);
    struct raft_config c;
    config_make(&c);
    ASSERT_OK(raft_store_snapshot_write_chunk(s, 20, 0, "abc", 3, &eb));
    const char *p;
    ASSERT_OK(raft_store_snapshot_finish(s, 20, 3, &c, 1, &p, &eb));
    char path[512];
    snprintf(path, sizeof(path), "%s", p);
    raft_store_close(s);
    raft_config_close(&c);
    ASSERT_INT_EQ(unlink(path), 0);
    expect_corrupt(&d);
    tdir_remove(&d);
}

/* ------------------------------------------------------------------ I/O faults */

/* The flush the walk below fails: truncate 9..10, append 9..14 of term 3, with
 * the @n-th write or sync failing. Returns 0 when the fault did not fire (and
 * the flush succeeded), 1 when it fired and the flush reported it; anything else
 * is a test failure (2). */
static int flush_faulty(const struct tdir *d, unsigned n)
{
    struct cm_errbuf eb;
    struct raft_store *s;
    if (raft_store_open(d->path, &s, &eb) != 0 || append_range(s, 9, 9, 6, 3, &eb) != 0) {
        return 2;
    }
    raft_store_fault_set(n, n % 2 ? CM_EIO : CM_ENOSPC);
    raft_index idx = 0;
    raft_term term;
    cm_errbuf_clear(&eb);
    int rv = raft_store_flush(s, &idx, &term, &eb);
    bool fired = raft_store_fault_fired();
    raft_store_fault_set(0, 0);
    int res = 2;
    if (fired && (rv == CM_EIO || rv == CM_ENOSPC) && strstr(eb.msg, d->path)) {
        res = 1;
    } else if (!fired && rv == 0 && idx == 14) {
        res = 0;
    }
    raft_store_close(s);
    return res;
}

/* The same in a child that exits right after the failure without closing the
 * store, as a node that dies on a storage error would. */
static int flush_faulty_then_crash(const struct tdir *d, unsigned n)
{
    fflush(stdout);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        struct cm_errbuf eb;
        struct raft_store *s;
        if (raft_store_open(d->path, &s, &eb) != 0 ||
            append_range(s, 9, 9, 6, 3, &eb) != 0) {
            _exit(2);
        }
        raft_store_fault_set(n, CM_EIO);
        raft_index idx = 0;
        raft_term term;
        cm_errbuf_clear(&eb);
        int rv = raft_store_flush(s, &idx, &term, &eb);
        bool fired = raft_store_fault_fired();
        _exit(fired ? (rv == CM_EIO ? 1 : 2) : (rv == 0 && idx == 14 ? 0 : 2));
    }
    int status;
    ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Walk an injected failure over every write and sync of one flush that
 * truncates durable entries and appends new ones, then close the store (or die
 * without closing it). Reopened, the store holds either the old log or the new
 * one, never a mix, and the new one whenever the flush succeeded. */
TEST(store_fault_walk_flush)
{
    raft_term old_terms[32], new_terms[32];
    for (int crash = 0; crash <= 1; crash++) {
        unsigned n, failed_old = 0, failed_new = 0;
        for (n = 1;; n++) {
            struct tdir d;
            struct cm_errbuf eb;
            tdir_make(&d);
            store_seed(&d, old_terms);
            memcpy(new_terms, old_terms, sizeof(new_terms));
            for (raft_index i = 9; i <= 14; i++) {
                new_terms[i] = 3;
            }
            int res = crash ? flush_faulty_then_crash(&d, n) : flush_faulty(&d, n);
            ASSERT_TRUE(res == 0 || res == 1);
            bool fired = res == 1;

            struct raft_store *s = store_open(&d);
            struct raft_load l;
            ASSERT_OK(raft_store_load(s, &l, &eb));
            bool is_old = log_is(&l, old_terms, 10);
            bool is_new = log_is(&l, new_terms, 14);
            ASSERT_TRUE(is_old || is_new);
            ASSERT_TRUE(fired || is_new);
            ASSERT_UINT_EQ(l.term, 2);
            failed_old += fired && is_old;
            failed_new += fired && is_new;
            raft_load_close(&l);
            raft_store_close(s);
            tdir_remove(&d);
            if (!fired) {
                break;
            }
        }
        printf("# %s: %u failure points; reopened: %u old logs, %u new logs\n",
               crash ? "no close" : "closed", n - 1, failed_old, failed_new);
        ASSERT_INT_OP(n, >, 2);
    }
}

TEST(store_fault_walk_hard_state)
{
    unsigned n;
    for (n = 1;; n++) {
        struct tdir d;
        struct cm_errbuf eb;
        raft_term terms[32];
        tdir_make(&d);
        store_seed(&d, terms);
        struct raft_store *s = store_open(&d);
        raft_store_fault_set(n, CM_EIO);
        cm_errbuf_clear(&eb);
        int rv = raft_store_set_hard_state(s, 9, 3, &eb);
        bool fired = raft_store_fault_fired();
        raft_store_fault_set(0, 0);
        if (fired) {
            ASSERT_ERR(rv, CM_EIO);
            ASSERT_NOT_NULL(strstr(eb.msg, "raft.db"));
        } else {
            ASSERT_OK(rv);
        }
        raft_store_close(s);
        s = store_open(&d);
        struct raft_load l;
        ASSERT_OK(raft_store_load(s, &l, &eb));
        ASSERT_TRUE((l.term == 2 && l.voted_for == 1) ||
                    (l.term == 9 && l.voted_for == 3));
        ASSERT_TRUE(fired || l.term == 9);
        ASSERT_TRUE(log_is(&l, terms, 10));
        raft_load_close(&l);
        raft_store_close(s);
        tdir_remove(&d);
        if (!fired) {
            break;
        }
    }
    ASSERT_INT_OP(n, >, 1);
}

static uint8_t walk_snap[10000];

/* Receive walk_snap as snapshot 50 in three chunks and install it, with the
 * @n-th write or sync failing. 0: not fired and installed; 1: fired and
 * reported with the directory in the message; 2: anything else. With @crash the
 * store is left open (the caller is a child that exits at once). */
static int install_faulty(const struct tdir *d, unsigned n, bool crash)
{
    struct cm_errbuf eb;
    struct raft_store *s;
    struct raft_config c;
    config_make(&c);
    if (raft_store_open(d->path, &s, &eb) != 0) {
        raft_config_close(&c);
        return 2;
    }
    raft_store_fault_set(n, n % 3 ? CM_EIO : CM_ENOSPC);
    cm_errbuf_clear(&eb);
    int rv = 0;
    for (uint64_t off = 0; rv == 0 && off < sizeof(walk_snap); off += 4000) {
        size_t len = CM_MIN(4000, sizeof(walk_snap) - off);
        rv = raft_store_snapshot_write_chunk(s, 50, off, walk_snap + off, len, &eb);
    }
    const char *installed = NULL;
    if (rv == 0) {
        rv = raft_store_snapshot_finish(s, 50, 4, &c, 40, &installed, &eb);
    }
    bool fired = raft_store_fault_fired();
    raft_store_fault_set(0, 0);
    raft_config_close(&c);
    if (crash) {
        _exit(fired ? (rv == CM_EIO || rv == CM_ENOSPC ? 1 : 2) : (rv == 0 ? 0 : 2));
    }
    raft_store_close(s);
    if (fired) {
        return (rv == CM_EIO || rv == CM_ENOSPC) && strstr(eb.msg, d->path) ? 1 : 2;
    }
    return rv == 0 ? 0 : 2;
}

/* Walk a failure over every write and sync of receiving and installing a
 * snapshot (temp file writes, its fsync, the directory fsync, the transaction),
 * then close the store or die without closing it. Reopened, the store has the
 * old snapshot and log, or the new snapshot and no log; no temp file and no
 * unused snapshot file survives. */
TEST(store_fault_walk_snapshot_install)
{
    static uint8_t got[sizeof(walk_snap)];
    snap_fill(walk_snap, sizeof(walk_snap), 4);
    for (int crash = 0; crash <= 1; crash++) {
        unsigned n, outcome_old = 0, outcome_new = 0;
        for (n = 1;; n++) {
            struct tdir d;
            struct cm_errbuf eb;
            raft_term terms[32];
            tdir_make(&d);
            store_seed(&d, terms);
            struct raft_config c;
            config_make(&c);
            struct raft_store *s = store_open(&d);
            char path[512];
            snprintf(path, sizeof(path), "%s/snapshot-5.taking", d.path);
            file_write(path, "old", 3);
            ASSERT_OK(raft_store_snapshot_put(s, path, 5, 1, &c, 1, &eb));
            raft_store_close(s);
            raft_config_close(&c);

            int res;
            if (crash) {
                fflush(stdout);
                pid_t pid = fork();
                ASSERT_TRUE(pid >= 0);
                if (pid == 0) {
                    install_faulty(&d, n, true);
                    _exit(2);
                }
                int status;
                ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
                ASSERT_TRUE(WIFEXITED(status));
                res = WEXITSTATUS(status);
            } else {
                res = install_faulty(&d, n, false);
            }
            ASSERT_TRUE(res == 0 || res == 1);
            bool fired = res == 1;

            s = store_open(&d);
            struct raft_load l;
            ASSERT_OK(raft_store_load(s, &l, &eb));
            ASSERT_INT_EQ(tdir_count(&d, "snapshot-"), 1);
            if (l.snapshot_index == 5) {
                ASSERT_TRUE(fired);
                ASSERT_TRUE(log_is(&l, terms, 10));
                ASSERT_TRUE(file_exists(&d, "snapshot-5"));
                outcome_old++;
            } else {
                ASSERT_UINT_EQ(l.snapshot_index, 50);
                ASSERT_UINT_EQ(l.snapshot_term, 4);
                ASSERT_UINT_EQ(l.snapshot_size, sizeof(walk_snap));
                ASSERT_UINT_EQ(l.n_entries, 0);
                ASSERT_UINT_EQ(l.first_index, 51);
                ASSERT_OK(raft_store_snapshot_read(s, 50, 0, got, sizeof(got), &eb));
                ASSERT_MEM_EQ(got, walk_snap, sizeof(walk_snap));
                outcome_new++;
            }
            raft_load_close(&l);
            raft_store_close(s);
            tdir_remove(&d);
            if (!fired) {
                break;
            }
        }
        printf(
            "# %s: %u failure points; reopened: %u old, %u new (incl. the "
            "success)\n",
            crash ? "no close" : "closed", n - 1, outcome_old, outcome_new);
        ASSERT_INT_OP(n, >, 5);
    }
}

/* ------------------------------------------------------------------ crash */

static raft_term crash_term(raft_index idx)
{
    return 1 + idx / 200;
}

/* Child: append and flush forever, reporting each durable index on @fd. */
static _Noreturn void crash_child(const char *dir, int fd, uint64_t seed)
{
    struct raft_store *s;
    struct cm_errbuf eb;
    struct raft_load l;
    if (raft_store_open(dir, &s, &eb) != 0 || raft_store_load(s, &l, &eb) != 0) {
        _exit(2);
    }
    raft_index last = l.first_index + l.n_entries - 1;
    raft_load_close(&l);
    struct cm_rng rng;
    cm_rng_seed(&rng, seed);
    for (;;) {
        unsigned n = 1 + (unsigned)cm_rng_below(&rng, 16);
        for (unsigned i = 0; i < n; i++) {
            raft_index idx = last + 1 + i;
            if (append_range(s, 0, idx, 1, crash_term(idx), &eb) != 0) {
                _exit(3);
            }
        }
        raft_index idx;
        raft_term term;
        if (raft_store_flush(s, &idx, &term, &eb) != 0 || idx != last + n) {
            _exit(4);
        }
        last = idx;
        if (write(fd, &idx, sizeof(idx)) != (ssize_t)sizeof(idx)) {
            _exit(5);
        }
    }
}

TEST(store_crash_sigkill_keeps_durable_entries)
{
    struct tdir d;
    tdir_make(&d);
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    printf("# seed %" PRIu64 "\n", seed);
    struct cm_rng rng;
    cm_rng_seed(&rng, seed);
    raft_index reported = 0;
    for (int round = 0; round < 5; round++) {
        int p[2];
        ASSERT_INT_EQ(pipe(p), 0);
        fflush(stdout);
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(d.path, p[1], cm_rng_next(&rng));
        }
        close(p[1]);
        struct timespec ts = {0, (long)(20 + cm_rng_below(&rng, 200)) * 1000000L};
        nanosleep(&ts, NULL);
        ASSERT_INT_EQ(kill(pid, SIGKILL), 0);
        int status;
        ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status)) {
            test__fail(__FILE__, __LINE__, "child exited with %d",
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        raft_index idx;
        unsigned reports = 0;
        while (read(p[0], &idx, sizeof(idx)) == (ssize_t)sizeof(idx)) {
            ASSERT_INT_OP(idx, >, reported);
            reported = idx;
            reports++;
        }
        close(p[0]);

        struct raft_store *s = store_open(&d);
        struct raft_load l;
        struct cm_errbuf eb;
        ASSERT_OK(raft_store_load(s, &l, &eb));
        ASSERT_UINT_EQ(l.first_index, 1);
        ASSERT_INT_OP(l.n_entries, >=, reported);
        for (unsigned i = 0; i < l.n_entries; i++) {
            ASSERT_TRUE(entry_ok(&l.entries[i], i + 1, crash_term(i + 1)));
        }
        printf("# round %d: %u flushes reported, durable up to %" PRIu64 ", log has %u\n",
               round, reports, reported, l.n_entries);
        /* The next child starts from what survived, which may be more. */
        reported = l.n_entries;
        raft_load_close(&l);
        raft_store_close(s);
    }
    ASSERT_INT_OP(reported, >, 0);
    tdir_remove(&d);
}

/* ------------------------------------------------------------------ OOM */

struct oom_ctx {
    const char *dir;
    struct raft_store *s;
};

static int oom_load(void *arg)
{
    struct oom_ctx *c = arg;
    struct raft_load l;
    struct cm_errbuf eb;
    int rv = raft_store_load(c->s, &l, &eb);
    if (rv == 0) {
        if (l.n_entries != 10 || l.snapshot_config.n != 3) {
            rv = CM_EINTERNAL;
        }
        raft_load_close(&l);
    }
    return rv;
}

static int oom_open_load(void *arg)
{
    struct oom_ctx *c = arg;
    struct raft_store *s;
    struct cm_errbuf eb;
    int rv = raft_store_open(c->dir, &s, &eb);
    if (rv != 0) {
        return rv;
    }
    struct raft_load l;
    rv = raft_store_load(s, &l, &eb);
    if (rv == 0) {
        raft_load_close(&l);
    }
    raft_store_close(s);
    return rv;
}

static int oom_append(void *arg)
{
    struct oom_ctx *c = arg;
    struct cm_errbuf eb;
    return append_range(c->s, 0, 11, 64, 3, &eb);
}

TEST(store_oom_load_open_append)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    raft_term terms[32];
    store_seed(&d, terms);
    struct raft_store *s = store_open(&d);
    struct raft_config c;
    config_make(&c);
    char path[512];
    snprintf(path, sizeof(path), "%s/snapshot-7.taking", d.path);
    file_write(path, "state", 5);
    ASSERT_OK(raft_store_snapshot_put(s, path, 7, 2, &c, 1, &eb));
    raft_config_close(&c);

    struct oom_ctx ctx = {d.path, s};
    ASSERT_INT_OP(test_alloc_walk(oom_load, &ctx), >=, 2);
    ASSERT_INT_OP(test_alloc_walk(oom_append, &ctx), >=, 2);
    store_flush_expect(s, 74, 3);
    raft_store_close(s);
    ctx.s = NULL;
    ASSERT_INT_OP(test_alloc_walk(oom_open_load, &ctx), >=, 4);
    tdir_remove(&d);
}

/* ------------------------------------------------------------------ throughput */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints, never asserts on timing: group commit makes a flush of 64 entries cost
 * about one fsync, like a flush of 1. */
TEST(store_flush_throughput)
{
    struct tdir d;
    tdir_make(&d);
    struct cm_errbuf eb;
    struct raft_store *s = store_open(&d);
    static uint8_t payload[64][256];
    struct raft_entry e[64];
    for (unsigned i = 0; i < 64; i++) {
        memset(payload[i], (int)i, sizeof(payload[i]));
        e[i] = (struct raft_entry){
            .term = 1, .type = RAFT_COMMAND, .buf = {payload[i], 256}};
    }
    raft_index last = 0, idx;
    raft_term term;
    static const unsigned batch[] = {1, 64};
    static const unsigned flushes[] = {400, 200};
    for (size_t b = 0; b < CM_ARRAY_SIZE(batch); b++) {
        for (int warm = 0; warm < 20; warm++) {
            ASSERT_OK(raft_store_append(s, 0, last + 1, e, batch[b], &eb));
            ASSERT_OK(raft_store_flush(s, &idx, &term, &eb));
            last = idx;
        }
        double t0 = now_s();
        for (unsigned f = 0; f < flushes[b]; f++) {
            ASSERT_OK(raft_store_append(s, 0, last + 1, e, batch[b], &eb));
            ASSERT_OK(raft_store_flush(s, &idx, &term, &eb));
            ASSERT_UINT_EQ(idx, last + batch[b]); /* the whole group is durable */
            last = idx;
        }
        double dt = now_s() - t0;
        printf(
            "# flush of %u x 256-byte entries: %.0f entries/s, %.3f ms per flush "
            "(%u flushes)\n",
            batch[b], batch[b] * flushes[b] / dt, dt * 1e3 / flushes[b], flushes[b]);
    }
    /* Timing is printed, never asserted; what was flushed must all be there. */
    raft_store_close(s);
    ASSERT_OK(raft_store_open(d.path, &s, &eb));
    struct raft_load l;
    ASSERT_OK(raft_store_load(s, &l, &eb));
    ASSERT_UINT_EQ(l.first_index + l.n_entries - 1, last);
    raft_load_close(&l);
    raft_store_close(s);
    tdir_remove(&d);
}
