/* TLS contexts and streams (OpenSSL 3), a cm_stream implementation.
 *
 * A struct cm_tls owns one SSL_CTX built from files. Reload builds a new SSL_CTX and
 * swaps it in under a lock; every SSL holds its own reference to the SSL_CTX it was
 * made from (SSL_new up-refs it), so connections made before a reload keep their
 * certificates while new ones get the new ones.
 *
 * Choices, and why:
 * - TLS 1.3 only between nodes (RFC 8446): no renegotiation, no RSA key exchange, no
 *   CBC suites to configure away. Contexts made for `insecure` health checks accept
 *   TLS 1.2, because tasks we probe may not speak 1.3.
 * - No session tickets or cache: connections between nodes are long-lived, and
 *   tickets are post-handshake server writes that a dialling peer which never reads
 *   (the raft transport) would have to swallow.
 * - SSL_OP_IGNORE_UNEXPECTED_EOF: a peer that closes TCP without close_notify reads
 *   as end of stream, as with plain TCP. Truncation cannot go unnoticed because our
 *   protocols carry their own lengths (raft frames, HTTP Content-Length/chunks).
 * - SSL_MODE_ENABLE_PARTIAL_WRITE + SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: writev may
 *   return short counts like a socket, and after CM_EAGAIN the caller retries with
 *   the same bytes but not necessarily the same buffer address (we gather small iovs
 *   into a buffer on the stack). See tls_writev for the length OpenSSL wants then.
 * - Our own socket BIO: OpenSSL's socket BIO writes with write(2), which raises
 *   SIGPIPE on a closed connection; ours uses send(MSG_NOSIGNAL) like the TCP stream,
 *   so the library does not depend on the process ignoring SIGPIPE.
 * - Pinning (a joining node, which has a fingerprint but no CA file yet) replaces
 *   OpenSSL's chain verification with SSL_CTX_set_cert_verify_callback(): it picks the
 *   certificate with the pinned fingerprint out of the chain the server sent and runs
 *   the normal X509_verify_cert() with that certificate as the only trust anchor, so
 *   dates, signatures and key usage are checked exactly as with a CA file.
 */
#include "net/net.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"

/* The largest TLS record payload (RFC 8446 §5.1): small iovs are gathered up to this
 * much so that each record is full. */
#define TLS_RECORD_MAX 16384

struct cm_tls {
    atomic_int refs;      /* the owner's reference + one per stream */
    pthread_mutex_t lock; /* guards ctx */
    SSL_CTX *ctx;
    char *ca_file;
    char *cert_file;
    char *key_file;
    char *pin; /* lower-case hex */
    bool require_peer_cert;
    bool insecure;
};

enum tls_state {
    TLS_ST_HANDSHAKE = 0, /* [transient] the handshake has not completed */
    TLS_ST_OPEN,          /* application data flows */
    TLS_ST_FAILED,        /* a fatal error: every call returns err */
};

struct tls_stream {
    struct cm_stream s; /* first: the stream is freed through it */
    struct cm_tls *t;   /* a reference */
    SSL *ssl;
    enum tls_state state;
    int err;          /* TLS_ST_FAILED: the cm_err every call returns */
    bool server;      /* we accepted the connection */
    bool peer_ok;     /* the peer presented a certificate that verified */
    bool in_eof;      /* the socket read returned 0 (for BIO_CTRL_EOF) */
    size_t retry_len; /* length of the SSL_write to repeat after WANT_*, or 0 */
    bool notify_sent; /* close_notify went out (shutdown) */
    char peer_cn[65];
    char why[192]; /* why the stream failed */
};

/* ------------------------------------------------------------------ socket BIO */

static int bio_write(BIO *b, const char *buf, int len)
{
    struct tls_stream *ts = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = send(ts->s.fd, buf, (size_t)len, MSG_NOSIGNAL);
        if (n >= 0) {
            return (int)n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            BIO_set_retry_write(b);
        }
        return -1; /* errno stays for SSL_ERROR_SYSCALL */
    }
}

static int bio_read(BIO *b, char *buf, int len)
{
    struct tls_stream *ts = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = recv(ts->s.fd, buf, (size_t)len, 0);
        if (n > 0) {
            return (int)n;
        }
        if (n == 0) {
            ts->in_eof = true;
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            BIO_set_retry_read(b);
        }
        return -1;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct tls_stream *ts = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing is buffered here */
    case BIO_CTRL_EOF:
        /* libssl asks this to tell an EOF from an error (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        return ts->in_eof ? 1 : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *sock_method;
static pthread_once_t sock_method_once = PTHREAD_ONCE_INIT;

/* A process-wide constant once made (never freed: OpenSSL may use it until exit). */
static void sock_method_init(void)
{
    BIO_METHOD *m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "clusterctl socket");
    if (m == NULL || BIO_meth_set_write(m, bio_write) != 1 ||
        BIO_meth_set_read(m, bio_read) != 1 || BIO_meth_set_ctrl(m, bio_ctrl) != 1 ||
        BIO_meth_set_create(m, bio_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    sock_method = m;
}

/* ------------------------------------------------------------------ contexts */

/* Record the first queued OpenSSL error after "@what: " and empty the queue. */
static int ossl_fail(struct cm_errbuf *eb, int code, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "unknown OpenSSL error";
    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    }
    ERR_clear_error();
    return cm_err_setf(eb, code, "%s: %s", what, reason);
}

/* Chain verification of a client that pinned the CA's fingerprint (see the top). */
static int pin_verify(X509_STORE_CTX *xs, void *arg)
{
    const struct cm_tls *t = arg;
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_untrusted(xs);
    X509 *anchor = NULL;
    for (int i = 0; chain != NULL && i < sk_X509_num(chain) && anchor == NULL; i++) {
        X509 *c = sk_X509_value(chain, i);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        char hex[65];
        if (X509_digest(c, EVP_sha256(), md, &n) != 1 || n != 32) {
            continue;
        }
        for (unsigned int j = 0; j < 32; j++) {
            snprintf(hex + 2 * j, 3, "%02x", md[j]);
        }
        /* Only a CA certificate may anchor: a leaf that merely matches proves
         * nothing more than the handshake already does. */
        if (strcmp(hex, t->pin) == 0 && X509_check_ca(c) >= 1) {
            anchor = c;
        }
    }
    if (anchor == NULL) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_UNTRUSTED);
        return 0;
    }
    STACK_OF(X509) *trusted = sk_X509_new_null();
    if (trusted == NULL || sk_X509_push(trusted, anchor) <= 0) {
        sk_X509_free(trusted);
        X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
        return 0;
    }
    /* The stack replaces the (empty) store as the source of trusted certificates for
     * this verification only; it borrows @anchor from the chain. */
    X509_STORE_CTX_set0_trusted_stack(xs, trusted);
    int ok = X509_verify_cert(xs);
    X509_STORE_CTX_set0_trusted_stack(xs, NULL);
    sk_X509_free(trusted);
    return ok == 1 ? 1 : 0;
}

static int ctx_build(struct cm_tls *t, SSL_CTX **ret, struct cm_errbuf *eb)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        return ossl_fail(eb, CM_ENOMEM, "TLS context");
    }
    if (SSL_CTX_set_min_proto_version(
            ctx, t->insecure ? TLS1_2_VERSION : TLS1_3_VERSION) != 1) {
        SSL_CTX_free(ctx);
        return ossl_fail(eb, CM_EIO, "TLS context: protocol version");
    }
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    (void)SSL_CTX_set_num_tickets(ctx, 0);
    /* Errors name the file: the queued OpenSSL error says what was wrong with it. */
    const char *file = t->ca_file;
    if (t->ca_file != NULL && SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1) {
        goto err_file;
    }
    file = t->cert_file;
    if (t->cert_file != NULL &&
        SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        goto err_file;
    }
    file = t->key_file;
    if (t->key_file != NULL &&
        SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        goto err_file;
    }
    if (t->cert_file != NULL && SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return cm_err_setf(eb, CM_EIO, "`%s` does not match the certificate in `%s`",
                           t->key_file, t->cert_file);
    }
    if (t->pin != NULL) {
        SSL_CTX_set_cert_verify_callback(ctx, pin_verify, t);
    }
    *ret = ctx;
    return 0;

err_file:
    SSL_CTX_free(ctx);
    (void)ossl_fail(eb, CM_EIO, "TLS");
    cm_err_wrapf(eb, "`%s`", file);
    return CM_EIO;
}

static bool is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i] != '\0'; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
              (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return i == 64;
}

static void tls_unref(struct cm_tls *t)
{
    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1) {
        return;
    }
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    cm_free(&t->ca_file);
    cm_free(&t->cert_file);
    cm_free(&t->key_file);
    cm_free(&t->pin);
    cm_free(&t);
}

static int dup_opt(const char *s, char **ret)
{
    *ret = NULL;
    if (s == NULL) {
        return 0;
    }
    *ret = cm_strdup(s);
    return *ret != NULL ? 0 : CM_ENOMEM;
}

int cm_tls_new(const struct cm_tls_options *o, struct cm_tls **ret, struct cm_errbuf *eb)
{
    if ((o->cert_file == NULL) != (o->key_file == NULL)) {
        return cm_err_setf(eb, CM_EINVAL, "TLS: cert_file and key_file go together");
    }
    if (o->require_peer_cert && o->ca_file == NULL) {
        return cm_err_setf(eb, CM_EINVAL, "TLS: require_peer_cert needs ca_file");
    }
    if (o->pin_fingerprint != NULL &&
        (o->ca_file != NULL || o->insecure || !is_hex64(o->pin_fingerprint))) {
        return cm_err_setf(eb, CM_EINVAL,
                           "TLS: pin_fingerprint must be 64 hex digits, without ca_file "
                           "or insecure");
    }
    if (o->insecure && o->ca_file != NULL) {
        return cm_err_setf(eb, CM_EINVAL, "TLS: insecure and ca_file exclude each other");
    }
    (void)pthread_once(&sock_method_once, sock_method_init);
    if (sock_method == NULL) {
        return ossl_fail(eb, CM_ENOMEM, "TLS: socket BIO");
    }
    struct cm_tls *t = cm_calloc(1, sizeof(*t));
    if (t == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "TLS: out of memory");
    }
    atomic_init(&t->refs, 1);
    t->require_peer_cert = o->require_peer_cert;
    t->insecure = o->insecure;
    int rv = pthread_mutex_init(&t->lock, NULL);
    if (rv != 0) {
        cm_free(&t);
        return cm_err_sys(eb, -rv, "TLS: mutex");
    }
    if (dup_opt(o->ca_file, &t->ca_file) != 0 ||
        dup_opt(o->cert_file, &t->cert_file) != 0 ||
        dup_opt(o->key_file, &t->key_file) != 0 ||
        dup_opt(o->pin_fingerprint, &t->pin) != 0) {
        tls_unref(t);
        return cm_err_setf(eb, CM_ENOMEM, "TLS: out of memory");
    }
    for (char *p = t->pin; p != NULL && *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'F') {
            *p = (char)(*p - 'A' + 'a');
        }
    }
    rv = ctx_build(t, &t->ctx, eb);
    if (rv != 0) {
        tls_unref(t);
        return rv;
    }
    *ret = t;
    return 0;
}

void cm_tls_free(struct cm_tls *t)
{
    tls_unref(t);
}

int cm_tls_reload(struct cm_tls *t, struct cm_errbuf *eb)
{
    SSL_CTX *ctx;
    int rv = ctx_build(t, &ctx, eb);
    if (rv != 0) {
        return rv;
    }
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* SSLs made from it keep their own reference */
    return 0;
}

/* ------------------------------------------------------------------ streams */

static void note_peer(struct tls_stream *ts)
{
    X509 *cert = SSL_get0_peer_certificate(ts->ssl);
    /* SSL_get_verify_result() is X509_V_OK when no certificate was presented, and
     * records the verdict even where we did not insist (a client without ca_file). */
    ts->peer_ok = cert != NULL && SSL_get_verify_result(ts->ssl) == X509_V_OK;
    ts->peer_cn[0] = '\0';
    if (cert != NULL &&
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName,
                                  ts->peer_cn, (int)sizeof(ts->peer_cn)) < 0) {
        ts->peer_cn[0] = '\0';
    }
    ERR_clear_error();
}

/* Turn the outcome @r of an SSL call that did not succeed into a cm_err: CM_EAGAIN
 * (with s.want), 0 (end of stream), or a fatal error that sticks. */
static int ssl_result(struct tls_stream *ts, int r, const char *what)
{
    int saved_errno = errno;
    int e = SSL_get_error(ts->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ts->s.want = CM_STREAM_WANT_READ;
        return CM_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        ts->s.want = CM_STREAM_WANT_WRITE;
        return CM_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        if (ts->state == TLS_ST_OPEN) {
            return 0;
        }
        ts->err = CM_ECONNRESET;
        snprintf(ts->why, sizeof(ts->why), "%s: connection closed", what);
        break;
    case SSL_ERROR_SYSCALL:
        ts->err = saved_errno > 0 ? -saved_errno : CM_ECONNRESET;
        if (ts->err == CM_ECONNRESET && ts->in_eof && ts->state == TLS_ST_OPEN) {
            return 0;
        }
        snprintf(ts->why, sizeof(ts->why), "%s: %s", what, cm_strerror(ts->err));
        break;
    default: {
        char reason[160] = "unknown OpenSSL error";
        unsigned long ossl = ERR_peek_error();
        if (ossl != 0) {
            ERR_error_string_n(ossl, reason, sizeof(reason));
        }
        long vr = SSL_get_verify_result(ts->ssl);
        if (vr != X509_V_OK) {
            snprintf(ts->why, sizeof(ts->why), "%s: %s (peer certificate: %s)", what,
                     reason, X509_verify_cert_error_string(vr));
        } else {
            snprintf(ts->why, sizeof(ts->why), "%s: %s", what, reason);
        }
        ts->err = CM_EPROTO;
        break;
    }
    }
    ERR_clear_error();
    ts->state = TLS_ST_FAILED;
    cm_debug("tls", "%s fd=%d: %s", ts->server ? "server" : "client", ts->s.fd, ts->why);
    return ts->err;
}

/* 0 once the handshake is done, else CM_EAGAIN or the sticky error. */
static int handshake(struct tls_stream *ts)
{
    if (ts->state == TLS_ST_OPEN) {
        return 0;
    }
    if (ts->state == TLS_ST_FAILED) {
        return ts->err;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(ts->ssl);
    if (r == 1) {
        ts->state = TLS_ST_OPEN;
        note_peer(ts);
        return 0;
    }
    return ssl_result(ts, r, "handshake");
}

static ssize_t tls_read(struct cm_stream *s, void *buf, size_t len)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    int rv = handshake(ts);
    if (rv != 0) {
        return rv;
    }
    if (len == 0) {
        return 0;
    }
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ts->ssl, buf, len, &n);
    if (r == 1) {
        return (ssize_t)n;
    }
    return ssl_result(ts, r, "read");
}

static ssize_t tls_writev(struct cm_stream *s, const struct iovec *iov, int iovcnt)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    int rv = handshake(ts);
    if (rv != 0) {
        return rv;
    }
    char gather[TLS_RECORD_MAX];
    size_t total = 0;
    int i = 0;
    size_t off = 0; /* into iov[i] */
    for (;;) {
        size_t avail = 0;
        for (int j = i; j < iovcnt; j++) {
            avail += iov[j].iov_len - (j == i ? off : 0);
        }
        if (avail == 0) {
            return (ssize_t)total;
        }
        /* One record per SSL_write: after WANT_WRITE, OpenSSL wants the same bytes
         * again and at least as many as it consumed or holds (ssl3_write_bytes'
         * "bad length" check); with one record per call, repeating exactly the
         * length of the failed call satisfies it, whatever the caller's iovecs look
         * like this time (the caller retries with the same bytes, see net.h). */
        size_t len = ts->retry_len != 0 ? ts->retry_len : CM_MIN(avail, TLS_RECORD_MAX);
        if (len > avail) {
            CM_CHECK_IF(len > avail); /* the caller broke the retry rule */
            ts->err = CM_EINVAL;
            ts->state = TLS_ST_FAILED;
            snprintf(ts->why, sizeof(ts->why), "write: retried with fewer bytes");
            return ts->err;
        }
        while (off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        const char *p = (const char *)iov[i].iov_base + off;
        if (iov[i].iov_len - off < len) {
            /* TLS has no writev: gather small pieces into one full record. */
            size_t g = 0;
            for (int j = i; g < len; j++) {
                size_t from = j == i ? off : 0;
                size_t k = CM_MIN(iov[j].iov_len - from, len - g);
                memcpy(gather + g, (const char *)iov[j].iov_base + from, k);
                g += k;
            }
            p = gather;
        }
        size_t w = 0;
        ERR_clear_error();
        int r = SSL_write_ex(ts->ssl, p, len, &w);
        if (r != 1) {
            rv = ssl_result(ts, r, "write");
            if (rv == CM_EAGAIN) {
                ts->retry_len = len;
                return total > 0 ? (ssize_t)total : CM_EAGAIN;
            }
            return rv == 0 ? CM_ECONNRESET : rv;
        }
        ts->retry_len = 0;
        total += w;
        /* Advance over @w bytes of the iovs. */
        while (w > 0) {
            size_t k = CM_MIN(w, iov[i].iov_len - off);
            off += k;
            w -= k;
            if (off == iov[i].iov_len && w > 0) {
                i++;
                off = 0;
            }
        }
    }
}

static int tls_shutdown(struct cm_stream *s)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    if (ts->state == TLS_ST_OPEN && !ts->notify_sent) {
        /* The first call queues close_notify and tries to send it; after WANT_WRITE
         * the next one flushes it. Once sent, SSL_shutdown is not called again: a
         * second call would wait for the peer's close_notify, and reads still work
         * for that. */
        ERR_clear_error();
        int r = SSL_shutdown(ts->ssl);
        if (r < 0) {
            int rv = ssl_result(ts, r, "shutdown");
            if (rv == CM_EAGAIN) {
                return rv;
            }
        } else {
            ts->notify_sent = true;
        }
    }
    return shutdown(s->fd, SHUT_WR) == 0 ? 0 : cm_errno();
}

static void tls_close(struct cm_stream *s)
{
    struct tls_stream *ts = (struct tls_stream *)s;
    if (ts->state == TLS_ST_OPEN && !(SSL_get_shutdown(ts->ssl) & SSL_SENT_SHUTDOWN)) {
        /* Best effort close_notify: the socket is non-blocking, so this never waits. */
        (void)SSL_shutdown(ts->ssl);
    }
    ERR_clear_error();
    SSL_free(ts->ssl); /* and the BIO */
    if (s->fd >= 0) {
        (void)close(s->fd);
        s->fd = -1;
    }
    tls_unref(ts->t);
    cm_free(&ts);
}

static bool tls_pending(const struct cm_stream *s)
{
    const struct tls_stream *ts = (const struct tls_stream *)s;
    /* Decrypted bytes of a record the caller has not read yet. Without read-ahead
     * (the default) OpenSSL never holds a further record it has not processed. */
    return ts->state == TLS_ST_OPEN && SSL_pending(ts->ssl) > 0;
}

static const struct cm_stream_ops tls_ops = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .pending = tls_pending,
};

int cm_tls_wrap(void *data, int fd, bool server, struct cm_stream **ret)
{
    struct cm_tls *t = data;
    struct tls_stream *ts = cm_calloc(1, sizeof(*ts));
    if (ts == NULL) {
        return CM_ENOMEM;
    }
    pthread_mutex_lock(&t->lock);
    ts->ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    BIO *bio = ts->ssl != NULL ? BIO_new(sock_method) : NULL;
    if (bio == NULL) {
        SSL_free(ts->ssl);
        cm_free(&ts);
        ERR_clear_error();
        return CM_EIO;
    }
    BIO_set_data(bio, ts);
    SSL_set_bio(ts->ssl, bio, bio); /* one reference, owned by the SSL */
    int mode;
    if (server) {
        /* A server without a CA asks for no certificate; with one, a certificate that
         * does not verify always ends the handshake, and its absence does when the
         * options say so. */
        mode = t->ca_file == NULL
                   ? SSL_VERIFY_NONE
                   : SSL_VERIFY_PEER |
                         (t->require_peer_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
        SSL_set_accept_state(ts->ssl);
    } else {
        mode = t->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER;
        SSL_set_connect_state(ts->ssl);
    }
    SSL_set_verify(ts->ssl, mode, NULL);
    atomic_fetch_add(&t->refs, 1);
    ts->t = t;
    ts->server = server;
    ts->state = TLS_ST_HANDSHAKE;
    ts->s.ops = &tls_ops;
    ts->s.fd = fd;
    ts->s.want = 0;
    *ret = &ts->s;
    return 0;
}

bool cm_stream_is_tls(const struct cm_stream *s)
{
    return s->ops == &tls_ops;
}

bool cm_tls_stream_peer(const struct cm_stream *s, char *cn, size_t cap)
{
    CM_ASSERT(cm_stream_is_tls(s));
    const struct tls_stream *ts = (const struct tls_stream *)s;
    bool ok = ts->state == TLS_ST_OPEN && ts->peer_ok;
    if (cn != NULL && cap > 0) {
        snprintf(cn, cap, "%s", ok ? ts->peer_cn : "");
    }
    return ok;
}

bool cm_tls_stream_ready(const struct cm_stream *s)
{
    CM_ASSERT(cm_stream_is_tls(s));
    return ((const struct tls_stream *)s)->state == TLS_ST_OPEN;
}

const char *cm_tls_stream_error(const struct cm_stream *s)
{
    CM_ASSERT(cm_stream_is_tls(s));
    return ((const struct tls_stream *)s)->why;
}
