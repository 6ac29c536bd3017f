/* lib/base: what every other module of clusterctl stands on.
 *
 * - errors: one negative errno-compatible enum (cm_err) and a fixed message buffer
 *   for context (cm_errbuf) that never allocates;
 * - logging to stderr, one grep-able line per event;
 * - allocation through cm_malloc & co., with a fault-injection hook for tests;
 * - a bounds-checked read cursor (cm_wire) and a write cursor (cm_wbuf) for wire
 *   formats, both with sticky errors, and a growable byte buffer (cm_buf);
 * - an injectable clock (cm_clock) and a seeded PRNG (cm_rng) for pure cores;
 * - random ids and UUIDv4 from OpenSSL's CSPRNG;
 * - assertions in tiers (CM_ASSERT, CM_BUG_ON, CM_CHECK_IF).
 *
 * Thread safety: everything here is safe to call from any thread. The alloc fault
 * hook and the log level are process-wide settings meant for start-up and tests.
 */
#ifndef CM_BASE_H
#define CM_BASE_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ macros */

#define CM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define cm_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define CM_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define CM_UNUSED                   __attribute__((unused))
#define CM_WARN_UNUSED              __attribute__((warn_unused_result))

#define CM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ------------------------------------------------------------------ errors */

/* Project codes start at -1000; errno codes map one to one (CM_ENOMEM == -ENOMEM).
 * X(name, value, message) */
#define CM_ERR_TABLE(X)                                                  \
    X(CM_OK, 0, "success")                                               \
    X(CM_EPERM, -EPERM, "operation not permitted")                       \
    X(CM_ENOENT, -ENOENT, "no such file or directory")                   \
    X(CM_EINTR, -EINTR, "interrupted system call")                       \
    X(CM_EIO, -EIO, "input/output error")                                \
    X(CM_EBADF, -EBADF, "bad file descriptor")                           \
    X(CM_EAGAIN, -EAGAIN, "resource temporarily unavailable")            \
    X(CM_ENOMEM, -ENOMEM, "out of memory")                               \
    X(CM_EACCES, -EACCES, "permission denied")                           \
    X(CM_EBUSY, -EBUSY, "device or resource busy")                       \
    X(CM_EEXIST, -EEXIST, "already exists")                              \
    X(CM_ENOTDIR, -ENOTDIR, "not a directory")                           \
    X(CM_EINVAL, -EINVAL, "invalid argument")                            \
    X(CM_EMFILE, -EMFILE, "too many open files")                         \
    X(CM_ENOSPC, -ENOSPC, "no space left on device")                     \
    X(CM_ERANGE, -ERANGE, "result out of range")                         \
    X(CM_ENOSYS, -ENOSYS, "function not implemented")                    \
    X(CM_ENOTSUP, -ENOTSUP, "operation not supported")                   \
    X(CM_EMSGSIZE, -EMSGSIZE, "message too long")                        \
    X(CM_EPROTO, -EPROTO, "protocol error")                              \
    X(CM_EADDRINUSE, -EADDRINUSE, "address already in use")              \
    X(CM_ECONNREFUSED, -ECONNREFUSED, "connection refused")              \
    X(CM_ECONNRESET, -ECONNRESET, "connection reset by peer")            \
    X(CM_ETIMEDOUT, -ETIMEDOUT, "timed out")                             \
    X(CM_ECANCELED, -ECANCELED, "operation canceled")                    \
    X(CM_ESHUTDOWN, -ESHUTDOWN, "shutting down")                         \
    X(CM_ETRUNC, -1000, "input truncated")                               \
    X(CM_EMALFORMED, -1001, "malformed input")                           \
    X(CM_ETOOBIG, -1002, "input exceeds its limit")                      \
    X(CM_ENOTFOUND, -1003, "not found")                                  \
    X(CM_ECORRUPT, -1004, "stored data is corrupt")                      \
    X(CM_ENOTLEADER, -1005, "not the leader")                            \
    X(CM_ESTALE, -1006, "stale term or index")                           \
    X(CM_EVALIDATION, -1007, "validation failed")                        \
    X(CM_ECONFLICT, -1008, "conflicting change")                         \
    X(CM_EUNSUPPORTED, -1009, "feature not supported by clusterctl")     \
    X(CM_ECLOSED, -1010, "closed")                                       \
    X(CM_EBUSYDIR, -1011, "data directory is in use by another process") \
    X(CM_EINTERNAL, -1012, "internal error")

enum cm_err {
#define CM__ERR_ENUM(name, value, msg) name = (value),
    CM_ERR_TABLE(CM__ERR_ENUM)
#undef CM__ERR_ENUM
};

/* The message for @code: a static string, never NULL. Any errno not in the table
 * falls back to strerror's text; unknown project codes give "unknown error". */
const char *cm_strerror(int code);

/* The symbolic name ("CM_ENOMEM") of @code, or NULL when it is not in the table. */
const char *cm_errname(int code);

/* Negative errno of the last failed libc call, as a cm_err (e.g. -errno). */
static inline int cm_errno(void)
{
    return errno > 0 ? -errno : CM_EINTERNAL;
}

#define CM_ERRBUF_SIZE 256

/* Error context for boundary functions: caller-owned, fixed size, never allocates.
 * code == 0 means "no error recorded". */
struct cm_errbuf {
    int code;
    char msg[CM_ERRBUF_SIZE];
};

/* Reset to "no error". Accepts NULL. */
void cm_errbuf_clear(struct cm_errbuf *eb);

/* Record @code and a formatted message, replacing what was there.
 * Returns @code, so `return cm_err_setf(eb, CM_EINVAL, "...")` reads naturally.
 * @eb may be NULL (then only @code is returned). Long messages are truncated. */
int cm_err_setf(struct cm_errbuf *eb, int code, const char *fmt, ...) CM_PRINTF(3, 4);

/* Like cm_err_setf, with the message "<fmt>: <cm_strerror(code)>". */
int cm_err_sys(struct cm_errbuf *eb, int code, const char *fmt, ...) CM_PRINTF(3, 4);

/* Prefix the recorded message with context: "ctx: old message". Keeps the code.
 * When no message was recorded, the text is "ctx: <cm_strerror(code)>".
 * Returns eb->code (or CM_EINTERNAL when @eb is NULL). */
int cm_err_wrapf(struct cm_errbuf *eb, const char *fmt, ...) CM_PRINTF(2, 3);

/* ------------------------------------------------------------------ logging */

enum cm_log_level {
    CM_LOG_DEBUG = 0, /* developer detail */
    CM_LOG_INFO,      /* normal operation worth a line */
    CM_LOG_WARN,      /* something is wrong but we go on */
    CM_LOG_ERROR,     /* an operation failed */
};

/* Lines below @level are dropped. Default CM_LOG_INFO. */
void cm_log_set_level(enum cm_log_level level);
enum cm_log_level cm_log_get_level(void);

/* Parse "debug", "info", "warn", "error". Returns 0 or CM_EINVAL. */
int cm_log_parse_level(const char *s, enum cm_log_level *ret_level);

/* Write one line to stderr:
 *   2026-11-22T14:00:00.123Z level=info comp=raft msg="became leader term=3"
 * The message is quoted; '"' '\\' and control characters are escaped. One write(2)
 * per line, so lines from several threads or processes do not interleave. */
void cm_log(enum cm_log_level level, const char *comp, const char *fmt, ...)
    CM_PRINTF(3, 4);
void cm_logv(enum cm_log_level level, const char *comp, const char *fmt, va_list ap)
    CM_PRINTF(3, 0);

#define cm_debug(comp, ...) cm_log(CM_LOG_DEBUG, comp, __VA_ARGS__)
#define cm_info(comp, ...)  cm_log(CM_LOG_INFO, comp, __VA_ARGS__)
#define cm_warn(comp, ...)  cm_log(CM_LOG_WARN, comp, __VA_ARGS__)
#define cm_error(comp, ...) cm_log(CM_LOG_ERROR, comp, __VA_ARGS__)

/* ------------------------------------------------------------------ allocation */

/* All heap memory goes through these. They return NULL on failure (real or
 * injected); cm_malloc(0) returns a unique pointer. */
void *cm_malloc(size_t size);
void *cm_calloc(size_t nmemb, size_t size);
void *cm_realloc(void *ptr, size_t size);
/* Multiplies with overflow check; NULL on overflow. */
void *cm_reallocarray(void *ptr, size_t nmemb, size_t size);
char *cm_strdup(const char *s);
char *cm_strndup(const char *s, size_t n);
void *cm_memdup(const void *p, size_t n);
/* Formatted string in new memory, NULL on failure. */
char *cm_asprintf(const char *fmt, ...) CM_PRINTF(1, 2);
void cm_free_raw(void *ptr);

/* Free *pp and set it to NULL. */
#define cm_free(pp)         \
    do {                    \
        cm_free_raw(*(pp)); \
        *(pp) = NULL;       \
    } while (0)

/* Fault injection (tests): after @delay more successful allocations, fail the next
 * @repeat allocations (repeat < 0: fail all further ones). cm_alloc_fault_reset()
 * turns it off. The settings are per thread. */
void cm_alloc_fault_set(int delay, int repeat);
void cm_alloc_fault_reset(void);
/* Allocations attempted on this thread since the last reset (counted while a
 * fault is armed or not); used to walk a failure point over every allocation. */
unsigned long cm_alloc_count(void);
/* True when an injected failure has fired since the last cm_alloc_fault_set. */
bool cm_alloc_fault_fired(void);
/* How many allocations of this thread have failed (returned NULL, for real or by
 * injection) since it started; not reset by cm_alloc_fault_reset(). Lets a caller
 * tell "out of memory" from "bad input" after a library (cJSON) that reports
 * both as NULL. */
unsigned long cm_alloc_failures(void);

/* ------------------------------------------------------------------ files */

/* mkdir -p @dir: missing parents 0755, the last component 0700 (data and key
 * directories). Errors: CM_EINVAL (empty or too long), CM_ENOTDIR, the OS error
 * naming the path. */
int cm_mkdir_p(const char *dir, struct cm_errbuf *eb);

/* ------------------------------------------------------------------ read cursor */

/* A bounds-checked reader over untrusted bytes. Once a read fails (not enough bytes,
 * bad seek), err is set to CM_ETRUNC or CM_EINVAL and every later read returns zero
 * and copies nothing: callers check cm_wire_err() once at the end. The bytes are
 * borrowed; the cursor never writes them. Multi-byte integers are big-endian
 * (network order). */
struct cm_wire {
    /* read-only */
    const uint8_t *start;
    const uint8_t *pos;
    const uint8_t *end;
    int err;
};

void cm_wire_init(struct cm_wire *w, const void *data, size_t len);
static inline size_t cm_wire_remaining(const struct cm_wire *w)
{
    return w->err ? 0 : (size_t)(w->end - w->pos);
}
static inline size_t cm_wire_offset(const struct cm_wire *w)
{
    return (size_t)(w->pos - w->start);
}
static inline int cm_wire_err(const struct cm_wire *w)
{
    return w->err;
}
/* Set a sticky error explicitly (for semantic errors found while parsing). */
void cm_wire_fail(struct cm_wire *w, int err);
uint8_t cm_wire_u8(struct cm_wire *w);
uint16_t cm_wire_u16(struct cm_wire *w);
uint32_t cm_wire_u32(struct cm_wire *w);
uint64_t cm_wire_u64(struct cm_wire *w);
/* Copy @n bytes to @dst; on failure @dst is zero-filled. */
void cm_wire_read(struct cm_wire *w, void *dst, size_t n);
/* Borrow @n bytes in place: a pointer into the buffer, or NULL on failure. */
const uint8_t *cm_wire_take(struct cm_wire *w, size_t n);
void cm_wire_skip(struct cm_wire *w, size_t n);
/* Move to absolute @offset from start (<= length). Used by DNS name pointers. */
void cm_wire_seek(struct cm_wire *w, size_t offset);
/* Look at the next byte without consuming it; 0 with err set at the end. */
uint8_t cm_wire_peek_u8(struct cm_wire *w);

/* ------------------------------------------------------------------ write cursor */

/* A writer into a caller-owned fixed buffer. Writes past the end set err to
 * CM_EMSGSIZE and write nothing further. */
struct cm_wbuf {
    /* read-only */
    uint8_t *start;
    uint8_t *pos;
    uint8_t *end;
    int err;
};

void cm_wbuf_init(struct cm_wbuf *b, void *buf, size_t cap);
static inline size_t cm_wbuf_len(const struct cm_wbuf *b)
{
    return (size_t)(b->pos - b->start);
}
static inline size_t cm_wbuf_avail(const struct cm_wbuf *b)
{
    return b->err ? 0 : (size_t)(b->end - b->pos);
}
void cm_wbuf_u8(struct cm_wbuf *b, uint8_t v);
void cm_wbuf_u16(struct cm_wbuf *b, uint16_t v);
void cm_wbuf_u32(struct cm_wbuf *b, uint32_t v);
void cm_wbuf_u64(struct cm_wbuf *b, uint64_t v);
void cm_wbuf_write(struct cm_wbuf *b, const void *src, size_t n);
/* Overwrite 2 bytes at an earlier @offset (e.g. a length or count field). */
void cm_wbuf_put_u16_at(struct cm_wbuf *b, size_t offset, uint16_t v);
/* Overwrite 4 bytes at an earlier @offset. */
void cm_wbuf_put_u32_at(struct cm_wbuf *b, size_t offset, uint32_t v);

/* ------------------------------------------------------------------ growable buffer */

/* Owned, growable bytes. Zero-initialised is a valid empty buffer. The data is
 * always NUL-terminated after len (when data != NULL), so text can be used as a
 * C string. */
struct cm_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Make room for @extra more bytes (plus the terminator). 0 or CM_ENOMEM. */
int cm_buf_reserve(struct cm_buf *b, size_t extra);
int cm_buf_append(struct cm_buf *b, const void *data, size_t n);
int cm_buf_puts(struct cm_buf *b, const char *s);
int cm_buf_printf(struct cm_buf *b, const char *fmt, ...) CM_PRINTF(2, 3);
/* Drop the first @n bytes (n <= len). */
void cm_buf_consume(struct cm_buf *b, size_t n);
/* Empty it, keeping the memory. */
void cm_buf_clear(struct cm_buf *b);
/* Free the memory; the buffer is empty and reusable afterwards. */
void cm_buf_done(struct cm_buf *b);
/* Hand the data out (caller frees with cm_free) and leave the buffer empty. May
 * return NULL for an empty buffer that never allocated. */
char *cm_buf_steal(struct cm_buf *b);

/* ------------------------------------------------------------------ clock */

/* Time source. Cores never read clocks: they get `now` in events; adapters read
 * it from a cm_clock so tests can substitute a manual one. */
struct cm_clock {
    /* Monotonic nanoseconds (arbitrary origin). */
    uint64_t (*mono_ns)(struct cm_clock *c);
    /* Wall-clock nanoseconds since the Unix epoch. */
    int64_t (*real_ns)(struct cm_clock *c);
};

/* The process's real clocks (CLOCK_MONOTONIC, CLOCK_REALTIME). Static; never freed. */
struct cm_clock *cm_clock_system(void);

/* A clock that only moves when told: for tests. */
struct cm_clock_manual {
    struct cm_clock clock; /* public: pass &m.clock */
    uint64_t mono;         /* read-only */
    int64_t real;          /* read-only */
};
void cm_clock_manual_init(struct cm_clock_manual *m, uint64_t mono_ns, int64_t real_ns);
/* Advance both clocks by @ns. */
void cm_clock_manual_advance(struct cm_clock_manual *m, uint64_t ns);
/* Set wall-clock time (may jump backwards, as real clocks do). */
void cm_clock_manual_set_real(struct cm_clock_manual *m, int64_t real_ns);

static inline uint64_t cm_clock_mono_ms(struct cm_clock *c)
{
    return c->mono_ns(c) / 1000000u;
}
static inline int64_t cm_clock_real_ms(struct cm_clock *c)
{
    return c->real_ns(c) / 1000000;
}

/* Format wall-clock ms as ISO 8601 UTC with milliseconds ("2026-11-22T14:00:00.123Z",
 * Marathon's timestamp form) into @out (at least 25 bytes). Returns @out. */
char *cm_time_iso8601(int64_t real_ms, char out[32]);

/* ------------------------------------------------------------------ randomness */

/* Deterministic PRNG (xoshiro256**) for pure cores and simulations: the same seed
 * gives the same sequence on every platform. Not for secrets. */
struct cm_rng {
    uint64_t s[4];
};
void cm_rng_seed(struct cm_rng *r, uint64_t seed);
uint64_t cm_rng_next(struct cm_rng *r);
/* Uniform in [0, n); n == 0 returns 0. Unbiased (rejection sampling). */
uint64_t cm_rng_below(struct cm_rng *r, uint64_t n);
/* Uniform in [lo, hi); returns lo when hi <= lo. */
uint64_t cm_rng_range(struct cm_rng *r, uint64_t lo, uint64_t hi);

/* Fill @buf with @n bytes from OpenSSL's CSPRNG. 0 or CM_EIO. */
int cm_random_bytes(void *buf, size_t n);
/* A random UUID version 4 (RFC 9562 §5.4), lower-case with hyphens, into @out
 * (37 bytes with the terminator). 0 or CM_EIO. */
int cm_uuid4(char out[37]);
/* @nbytes random bytes as lower-case hex into @out (2*nbytes+1 bytes). 0 or CM_EIO. */
int cm_random_hex(char *out, size_t nbytes);

/* ------------------------------------------------------------------ assertions */

/* Debug and test builds only (compiled out with NDEBUG). */
#ifndef NDEBUG
#define CM_ASSERT(cond) \
    ((cond) ? (void)0 : cm__assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define CM_ASSERT(cond) ((void)0)
#endif

/* Always on; crashes. For corruption-class invariants (raft, scheduler). */
#define CM_BUG_ON(cond) \
    ((cond) ? cm__assert_fail("BUG: " #cond, __FILE__, __LINE__, __func__) : (void)0)

/* Always on; warns once per site and counts; evaluates to the condition. */
#define CM_CHECK_IF(cond)                                              \
    __extension__({                                                    \
        static int cm__warned_;                                        \
        bool cm__c_ = (cond);                                          \
        if (cm__c_)                                                    \
            cm__check_failed(#cond, __FILE__, __LINE__, &cm__warned_); \
        cm__c_;                                                        \
    })

_Noreturn void cm__assert_fail(const char *expr, const char *file, int line,
                               const char *func);
void cm__check_failed(const char *expr, const char *file, int line, int *warned);
/* Total CM_CHECK_IF hits in this process. */
unsigned long cm_check_count(void);

/* Hook called by cm__assert_fail before aborting (tests longjmp out of it). */
typedef void (*cm_assert_hook_fn)(const char *msg);
void cm_assert_set_hook(cm_assert_hook_fn hook);

/* ------------------------------------------------------------------ misc */

/* Parse a whole decimal string into [min, max]. 0, CM_EINVAL or CM_ERANGE. */
int cm_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret);
/* Parse "host:port" (IPv4, [IPv6] or a name) into @host (cap bytes) and @port. */
int cm_parse_hostport(const char *s, char *host, size_t cap, uint16_t *ret_port);

#endif /* CM_BASE_H */
