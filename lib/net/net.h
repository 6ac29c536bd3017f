/* lib/net: byte streams and non-blocking TCP helpers.
 *
 * - struct cm_stream: a connected byte stream behind an ops table. Plain TCP is
 *   implemented here; TLS (OpenSSL) plugs in later as another ops table, so code
 *   written against cm_stream (the raft transport, the API server) does not
 *   change. Every operation is non-blocking: CM_EAGAIN means "try again when the
 *   fd is ready", and stream->want says for what (a TLS write may need the fd to
 *   become readable, e.g. during a renegotiation or the handshake).
 * - cm_tcp_*: listen, accept, connect (numeric addresses only; names will be
 *   resolved with c-ares by the caller) with O_NONBLOCK, O_CLOEXEC and
 *   TCP_NODELAY.
 *
 * Errors are negative cm_err codes (lib/base). Thread safety: none needed; each
 * stream is used by one thread.
 */
#ifndef CM_NET_H
#define CM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct cm_errbuf;
struct cm_stream;

/* ------------------------------------------------------------------ streams */

#define CM_STREAM_WANT_READ  1u /* wait for the fd to become readable */
#define CM_STREAM_WANT_WRITE 2u /* wait for the fd to become writable */

/* What an implementation provides. All are required except pending (NULL: never
 * any buffered input). */
struct cm_stream_ops {
    const char *name; /* "tcp", "tls" */
    /* Read up to @len bytes: > 0 bytes read, 0 at end of stream, < 0 a cm_err
     * (CM_EAGAIN: set s->want and wait). */
    ssize_t (*read)(struct cm_stream *s, void *buf, size_t len);
    /* Write from @iov (iovcnt <= CM_STREAM_IOV_MAX): bytes written (> 0, maybe
     * fewer than asked) or < 0 a cm_err (CM_EAGAIN: set s->want and wait). After
     * CM_EAGAIN (or a short count) the next call must start with the bytes that
     * were not written, at least as many as before (more may follow; the iovecs
     * may be cut differently): TLS has encrypted them already. */
    ssize_t (*writev)(struct cm_stream *s, const struct iovec *iov, int iovcnt);
    /* Send end-of-stream (TCP FIN, TLS close_notify); reads still work. */
    int (*shutdown)(struct cm_stream *s);
    /* Close the fd and free @s. */
    void (*close)(struct cm_stream *s);
    /* True when input is buffered inside the stream (TLS records already read
     * from the fd), so a reader must not wait for the fd before reading again. */
    bool (*pending)(const struct cm_stream *s);
};

/* Implementations embed this first and allocate with cm_malloc. */
struct cm_stream {
    /* read-only */
    const struct cm_stream_ops *ops;
    int fd;        /* the socket, owned by the stream */
    unsigned want; /* CM_STREAM_WANT_* after an operation returned CM_EAGAIN */
};

#define CM_STREAM_IOV_MAX 64

static inline ssize_t cm_stream_read(struct cm_stream *s, void *buf, size_t len)
{
    return s->ops->read(s, buf, len);
}
static inline ssize_t cm_stream_writev(struct cm_stream *s, const struct iovec *iov,
                                       int iovcnt)
{
    return s->ops->writev(s, iov, iovcnt);
}
ssize_t cm_stream_write(struct cm_stream *s, const void *buf, size_t len);
static inline int cm_stream_shutdown(struct cm_stream *s)
{
    return s->ops->shutdown(s);
}
static inline int cm_stream_fd(const struct cm_stream *s)
{
    return s->fd;
}
static inline bool cm_stream_pending(const struct cm_stream *s)
{
    return s->ops->pending != NULL && s->ops->pending(s);
}
/* Close the fd and free the stream. Accepts NULL. */
void cm_stream_close(struct cm_stream *s);

/* A plain TCP stream over the connected, non-blocking socket @fd. @fd transfers
 * on success only. Errors: CM_ENOMEM. */
int cm_stream_tcp_new(int fd, struct cm_stream **ret);

/* Turns a connected socket into a stream: plain TCP (cm_stream_tcp_wrap) or TLS.
 * @server: the socket was accepted (true) or connected (false). @fd transfers on
 * success only. */
typedef int (*cm_stream_wrap_fn)(void *data, int fd, bool server, struct cm_stream **ret);
/* The cm_stream_wrap_fn for plain TCP (@data unused). */
int cm_stream_tcp_wrap(void *data, int fd, bool server, struct cm_stream **ret);

/* ------------------------------------------------------------------ addresses */

/* Parse a numeric "host:port" ("127.0.0.1:7000", "[::1]:7000"; port 0 allowed
 * when @allow_port0) into @ret. Errors: CM_EINVAL (syntax, a name instead of an
 * address, port out of range). */
int cm_sockaddr_parse(const char *hostport, bool allow_port0,
                      struct sockaddr_storage *ret, socklen_t *ret_len);

/* ------------------------------------------------------------------ TCP */

/* Listen on @hostport (port 0: any free port) with SO_REUSEADDR, non-blocking and
 * close-on-exec. *ret_fd is the listening socket. Errors: CM_EINVAL (address),
 * CM_EADDRINUSE, CM_EACCES, others from the OS; @eb (may be NULL) names the
 * address. */
int cm_tcp_listen(const char *hostport, int backlog, int *ret_fd, struct cm_errbuf *eb);

/* Accept one connection from @lfd: non-blocking, close-on-exec, TCP_NODELAY.
 * Errors: CM_EAGAIN (none waiting); CM_ECONNRESET (that one connection failed
 * before it was accepted, or EINTR: try the next one); CM_EMFILE, CM_ENOMEM and
 * others from the OS. */
int cm_tcp_accept(int lfd, int *ret_fd);

/* Start a non-blocking connect to the numeric @hostport. On success *ret_fd is a
 * socket whose connection is in progress (or already established): wait until it
 * is writable, then call cm_tcp_connect_result(). TCP_NODELAY is set. Errors:
 * CM_EINVAL (address), CM_ECONNREFUSED and others from the OS. */
int cm_tcp_connect(const char *hostport, int *ret_fd);

/* The outcome of a non-blocking connect once the socket is writable: 0 or the
 * negative errno (CM_ECONNREFUSED, CM_ETIMEDOUT, ...). */
int cm_tcp_connect_result(int fd);

/* Set TCP_NODELAY. Errors from the OS. */
int cm_tcp_nodelay(int fd);

/* The local port of a bound socket. Errors from the OS. */
int cm_tcp_local_port(int fd, uint16_t *ret_port);

/* ------------------------------------------------------- TLS and the cluster CA */

/* Files in a node's tls dir (<data-dir>/tls): ca.pem (cluster CA certificate), ca.key
 * (CA private key, 0600), node.pem (this node's certificate chain: leaf then ca.pem),
 * node.key (0600). Keys are EC P-256 and signatures ECDSA with SHA-256 throughout.
 *
 * Every function here that reads files or untrusted bytes takes an @eb naming the file
 * or the field at fault. Thread safety: the pki and token functions keep no state; a
 * struct cm_tls may be shared by threads (wrap, reload and free lock what they share),
 * each stream is used by one thread. */

struct cm_buf;

/* Longest CSR and certificate file cm_pki_* will read (bytes). */
#define CM_PKI_PEM_MAX (64 * 1024)

/* Create a new CA in @dir (created 0700 if missing): ca.key + self-signed ca.pem valid
 * from 5 minutes ago for @days days, subject CN "clusterctl CA <cluster_id as 16 hex>".
 * Written via temp+fsync+rename (ca.key first, so ca.pem existing means a complete CA).
 * Errors: CM_EEXIST when @dir already holds ca.pem (a CA is never overwritten: it would
 * cut every node off the cluster); CM_EINVAL (@days is 0); errors from the OS naming
 * the path; CM_EIO when OpenSSL fails. */
int cm_pki_ca_create(const char *dir, uint64_t cluster_id, unsigned days,
                     struct cm_errbuf *eb);

/* SHA-256 of the DER of the first certificate in a PEM file or buffer, as 64 lower-case
 * hex chars + NUL into @out. Errors: CM_EINVAL (no PEM certificate), CM_ETOOBIG (file
 * over CM_PKI_PEM_MAX), errors from the OS naming the path. */
int cm_pki_fingerprint_file(const char *pem_path, char out[65], struct cm_errbuf *eb);
int cm_pki_fingerprint_pem(const char *pem, size_t len, char out[65],
                           struct cm_errbuf *eb);

/* Generate a new key into @key_path (0600, atomically; its directory is created 0700
 * if missing) and a CSR for @cn (signed with the key), appended as PEM to @csr. The key
 * file is written before @csr is appended, so on CM_ENOMEM from the append the new key
 * exists already (run it again). Errors: CM_EINVAL (@cn empty, longer than 64 or with
 * characters outside [A-Za-z0-9._-]), CM_ENOMEM, CM_EIO (OpenSSL), errors from the OS
 * naming the path. */
int cm_pki_key_and_csr(const char *key_path, const char *cn, struct cm_buf *csr,
                       struct cm_errbuf *eb);

/* Sign @csr (@len bytes of PEM, untrusted) with the CA in @ca_dir: the CSR's signature
 * must verify and its key must be EC P-256; the certificate gets CN = @cn (the CSR's
 * subject is ignored) and subjectAltName DNS:@cn plus IP:@ip when @ip is non-NULL, a
 * random serial, validity now-5min .. now+@days (but never past the CA's own notAfter),
 * extendedKeyUsage serverAuth+clientAuth,
 * and is appended to @cert as PEM followed by the CA certificate (a chain).
 * Errors: CM_EINVAL naming what is wrong with the CSR (bad PEM, bad signature, too big,
 * wrong key type) or with @cn (as cm_pki_key_and_csr) or @ip (not a numeric IPv4/IPv6
 * address); CM_EIO for the CA files (unreadable, unparsable, key not matching);
 * CM_ENOMEM. On error @cert is unchanged. */
int cm_pki_sign(const char *ca_dir, const char *csr, size_t len, const char *cn,
                const char *ip, unsigned days, struct cm_buf *cert, struct cm_errbuf *eb);

/* Issue a certificate for this node directly from the CA in @ca_dir: writes node.key
 * and node.pem (chain, as cm_pki_sign) into @dir (created 0700 if missing; the first
 * server does this for itself, and rotation uses it). node.key is replaced before
 * node.pem, so a reader may briefly see a new key with the old certificate: the pair
 * does not match and cm_tls_reload() refuses it (nothing changes). @ca_dir and @dir may
 * be the same. Errors: as cm_pki_sign, and from the OS naming the path. */
int cm_pki_issue_node(const char *ca_dir, const char *dir, const char *cn, const char *ip,
                      unsigned days, struct cm_errbuf *eb);
/* The same with an explicit validity, seconds since the epoch (tests of expiry and
 * rotation: @not_after may lie in the past). Errors: as cm_pki_issue_node, and
 * CM_EINVAL when @not_after < @not_before. */
int cm_pki_issue_node_validity(const char *ca_dir, const char *dir, const char *cn,
                               const char *ip, int64_t not_before, int64_t not_after,
                               struct cm_errbuf *eb);

/* A joining node received @chain (@len bytes of PEM, untrusted: its certificate then
 * the CA's, as cm_pki_sign makes it) for the key in @dir/node.key. Check that the CA
 * certificate has @ca_fingerprint (64 hex, from the join token), that the node
 * certificate is signed by it, valid now and usable for TLS, and that it carries
 * node.key's public key; then write ca.pem and node.pem (that order) into @dir.
 * Errors: CM_EINVAL naming the check that failed; errors from the OS naming the path;
 * CM_ENOMEM. Nothing is written when a check fails. */
int cm_pki_install_node(const char *dir, const char *chain, size_t len,
                        const char *ca_fingerprint, struct cm_errbuf *eb);

/* notAfter of the first certificate in @pem_path, seconds since the epoch, into *ret.
 * Errors: as cm_pki_fingerprint_file. */
int cm_pki_cert_expiry(const char *pem_path, int64_t *ret, struct cm_errbuf *eb);

/* Write @data to @path atomically (temp file in the same directory, fsync, rename, fsync
 * of the directory) with permission bits @mode. Errors from the OS naming the path. */
int cm_pki_write_file(const char *path, const void *data, size_t len, unsigned mode,
                      struct cm_errbuf *eb);

/* Join tokens: "cmjoin1.<64 hex: CA fingerprint>.<32 hex: secret>", 105 characters. */
#define CM_JOIN_TOKEN_PREFIX "cmjoin1."
#define CM_JOIN_TOKEN_LEN    105
#define CM_JOIN_TOKEN_MAX    (CM_JOIN_TOKEN_LEN + 1) /* with the NUL */
struct cm_join_token {
    char fingerprint[65]; /* lower-case hex */
    char secret[33];      /* lower-case hex */
};
/* Parse @s (hex digits of either case; stored lower-case). Errors: CM_EINVAL with a
 * message saying what is wrong (prefix, length, non-hex, extra parts); *ret untouched. */
int cm_join_token_parse(const char *s, struct cm_join_token *ret, struct cm_errbuf *eb);
/* "cmjoin1.<fp>.<secret>" into @buf; @cap >= CM_JOIN_TOKEN_MAX (106), else truncated. */
void cm_join_token_format(const struct cm_join_token *t, char *buf, size_t cap);
/* A new token for the CA certificate at @ca_pem_path with a fresh random secret (128
 * bits from OpenSSL's CSPRNG). Errors: as cm_pki_fingerprint_file; CM_EIO (no
 * randomness). */
int cm_join_token_new(const char *ca_pem_path, struct cm_join_token *ret,
                      struct cm_errbuf *eb);
/* Constant-time comparison of two NUL-terminated secrets (the time depends on their
 * lengths only). */
bool cm_join_secret_equal(const char *a, const char *b);

/* TLS contexts and streams: TLS 1.3 only (RFC 8446), except that an `insecure`
 * context also speaks TLS 1.2 (tasks probed by health checks may not have 1.3). */
struct cm_tls;
struct cm_tls_options {
    const char *ca_file;   /* trust anchor (PEM); NULL with pin_fingerprint: see below */
    const char *cert_file; /* our chain (PEM); NULL: present no certificate */
    const char *key_file;  /* with cert_file, and only with it */
    /* Server side: refuse a client without a certificate that verifies against ca_file
     * (mTLS). When false, a client may connect without one (a joining node); the
     * application then asks cm_tls_stream_peer() and limits what it may do. A client
     * that presents a certificate that does NOT verify is always refused (when ca_file
     * is set; a server without ca_file asks clients for no certificate). */
    bool require_peer_cert;
    /* Client side without ca_file (a joining node): accept the server only when the
     * chain it sends contains a CA certificate with this SHA-256 fingerprint (64 hex)
     * and the leaf verifies against that certificate (signature, validity dates). */
    const char *pin_fingerprint;
    /* Client side: skip all verification of the server (health checks of tasks over
     * HTTPS, as Marathon does). Never used between nodes. */
    bool insecure;
};
/* A context for both sides of connections (the same one serves accept and connect).
 * The strings in @o are copied; the files are read now (and again by cm_tls_reload).
 * Server names are not checked against certificates: between nodes, a certificate
 * signed by the cluster CA is the identity (its CN is the node's name, see
 * cm_tls_stream_peer()).
 * Errors: CM_EINVAL (inconsistent options: cert_file without key_file or the reverse,
 * require_peer_cert without ca_file, pin_fingerprint not 64 hex or together with
 * ca_file or insecure, insecure with ca_file), CM_EIO naming the file that cannot be
 * read or does not parse, or the key that does not match the certificate; CM_ENOMEM. */
int cm_tls_new(const struct cm_tls_options *o, struct cm_tls **ret, struct cm_errbuf *eb);
/* Drop the caller's reference. Reference counted: streams made from @t keep it alive.
 * Accepts NULL. */
void cm_tls_free(struct cm_tls *t);
/* Re-read ca/cert/key from the same files (certificate rotation): connections made
 * after this use the new ones, existing connections go on. On error nothing changes.
 * Errors: as cm_tls_new. */
int cm_tls_reload(struct cm_tls *t, struct cm_errbuf *eb);
/* A cm_stream_wrap_fn: @data is a struct cm_tls *. Non-blocking: the handshake runs
 * inside the first read/write calls (CM_EAGAIN with s->want set); pending() reports
 * buffered records; shutdown() sends close_notify; a failed handshake or verification
 * returns CM_EPROTO from read/write (every later call too) and logs why at debug level
 * (also available from cm_tls_stream_error()). A peer closing TCP without close_notify
 * reads as end of stream (our protocols frame their own messages). Note for clients:
 * in TLS 1.3 the server checks the client's certificate after the client's handshake
 * has completed, so a refused client sees CM_EPROTO from its next read, not from the
 * handshake. Errors: CM_ENOMEM, CM_EIO (OpenSSL failed to make the connection). */
int cm_tls_wrap(void *data, int fd, bool server, struct cm_stream **ret);
/* After the handshake: true when the peer presented a certificate that verified; its
 * subject CN into @cn (may be NULL; truncated to @cap; "" when this returns false or
 * the certificate has no CN). @s must be a TLS stream (cm_stream_is_tls). */
bool cm_tls_stream_peer(const struct cm_stream *s, char *cn, size_t cap);
/* Whether the handshake has completed. */
bool cm_tls_stream_ready(const struct cm_stream *s);
/* Why the handshake or the connection failed (static storage of the stream; "" while
 * nothing failed). */
const char *cm_tls_stream_error(const struct cm_stream *s);
/* Whether @s is a TLS stream (made by cm_tls_wrap). */
bool cm_stream_is_tls(const struct cm_stream *s);

#endif /* CM_NET_H */
