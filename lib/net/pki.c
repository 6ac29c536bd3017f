/* The cluster CA: keys, CSRs, signing, fingerprints and join tokens (OpenSSL 3).
 *
 * Everything is EC P-256 with ECDSA/SHA-256: small keys and signatures, fast to
 * generate, and supported by every TLS 1.3 stack. Certificates are X.509 v3 with the
 * extensions RFC 5280 asks for: the CA has basicConstraints CA:TRUE (critical, pathlen
 * 0: it signs node certificates only) and keyUsage keyCertSign+cRLSign (§4.2.1.3,
 * §4.2.1.9); node certificates have CA:FALSE, keyUsage digitalSignature (ECDHE_ECDSA
 * only signs) and extendedKeyUsage serverAuth+clientAuth, because every node is both
 * the server and the client of its peers (mTLS). Extensions are built with
 * X509V3_EXT_nconf_nid() from their config-file text form: it is the one API that
 * builds subjectKeyIdentifier/authorityKeyIdentifier from the certificates in a
 * X509V3_CTX, and the values we pass are checked (node names are restricted to
 * [A-Za-z0-9._-], IP addresses are parsed) so nothing can inject another field.
 *
 * OpenSSL allocates with its own allocator (not cm_malloc): the fault injection of
 * the tests covers our buffers only, and OpenSSL failures map to CM_EIO. */
#include "net/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"

#define PKI_PATH_MAX 1024
#define CN_MAX       64 /* ub-common-name, RFC 5280 Appendix A */
/* Certificates start 5 minutes in the past so that a peer whose clock is a little
 * behind does not refuse a fresh certificate as "not yet valid". */
#define BACKDATE_S (5 * 60)

/* ------------------------------------------------------------------ helpers */

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

static int join_path(char *out, const char *dir, const char *name, struct cm_errbuf *eb)
{
    int n = snprintf(out, PKI_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= PKI_PATH_MAX) {
        return cm_err_setf(eb, CM_EINVAL, "path `%s/%s` is too long", dir, name);
    }
    return 0;
}

/* cm_mkdir_p() for the directory part of @path (a joining node's tls dir). */
static int make_parent_dir(const char *path, struct cm_errbuf *eb)
{
    char dir[PKI_PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path) {
        return 0; /* the current directory, or / */
    }
    size_t n = (size_t)(slash - path);
    if (n >= sizeof(dir)) {
        return cm_err_setf(eb, CM_EINVAL, "path `%s` is too long", path);
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    return cm_mkdir_p(dir, eb);
}

/* Read all of @path (at most @max bytes) into @out, NUL-terminated. */
static int read_file(const char *path, size_t max, struct cm_buf *out,
                     struct cm_errbuf *eb)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return cm_err_sys(eb, cm_errno(), "open `%s`", path);
    }
    int rv = 0;
    for (;;) {
        if (cm_buf_reserve(out, 4096) != 0) {
            rv = cm_err_setf(eb, CM_ENOMEM, "read `%s`: out of memory", path);
            break;
        }
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rv = cm_err_sys(eb, cm_errno(), "read `%s`", path);
            break;
        }
        if (n == 0) {
            break;
        }
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > max) {
            rv = cm_err_setf(eb, CM_ETOOBIG, "`%s` is larger than %zu bytes", path, max);
            break;
        }
    }
    (void)close(fd);
    return rv;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int check_cn(const char *cn, struct cm_errbuf *eb)
{
    size_t n = cn != NULL ? strlen(cn) : 0;
    if (n == 0 || n > CN_MAX) {
        return cm_err_setf(eb, CM_EINVAL,
                           "certificate name: must have 1 to %d characters", CN_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        char c = cn[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) {
            return cm_err_setf(eb, CM_EINVAL,
                               "certificate name '%s': character %zu is not one of "
                               "[A-Za-z0-9._-]",
                               cn, i);
        }
    }
    return 0;
}

static int check_ip(const char *ip, struct cm_errbuf *eb)
{
    unsigned char addr[16];
    if (ip != NULL && inet_pton(AF_INET, ip, addr) != 1 &&
        inet_pton(AF_INET6, ip, addr) != 1) {
        return cm_err_setf(eb, CM_EINVAL, "certificate IP '%s': not a numeric address",
                           ip);
    }
    return 0;
}

/* Append the PEM form of @x to @out. */
static int cert_pem(X509 *x, struct cm_buf *out, struct cm_errbuf *eb)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1) {
        BIO_free(bio);
        return ossl_fail(eb, CM_EIO, "encode certificate");
    }
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    int rv = cm_buf_append(out, p, (size_t)n);
    BIO_free(bio);
    return rv != 0 ? cm_err_setf(eb, CM_ENOMEM, "encode certificate: out of memory") : 0;
}

/* Write @key as unencrypted PKCS#8 PEM to @path, mode 0600 (the key protects nothing
 * that root on the node could not read anyway). The PEM text is wiped before the
 * memory BIO holding it is freed. */
static int write_key(EVP_PKEY *key, const char *path, struct cm_errbuf *eb)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL ||
        PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(bio);
        return ossl_fail(eb, CM_EIO, "encode private key");
    }
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    int rv = cm_pki_write_file(path, p, (size_t)n, 0600, eb);
    OPENSSL_cleanse(p, (size_t)n);
    BIO_free(bio);
    return rv;
}

static EVP_PKEY *new_key(struct cm_errbuf *eb)
{
    /* EVP_EC_gen is OpenSSL 3's one-call key generation (EVP_PKEY_Q_keygen). */
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL) {
        ossl_fail(eb, CM_EIO, "generate EC P-256 key");
    }
    return key;
}

static bool is_p256(EVP_PKEY *key)
{
    char group[64];
    size_t len;
    if (!EVP_PKEY_is_a(key, "EC") ||
        EVP_PKEY_get_group_name(key, group, sizeof(group), &len) != 1) {
        return false;
    }
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

/* A random positive 127-bit serial: RFC 5280 §4.1.2.2 allows up to 20 octets, and
 * CA/B forum practice is at least 64 random bits. */
static int set_serial(X509 *x)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return -1;
    }
    raw[0] &= 0x7f;
    raw[0] |= 0x01; /* never a shorter encoding, never zero */
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (ext == NULL) {
        return -1;
    }
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* Build and sign a certificate for @pub with subject CN @cn. @issuer NULL: a
 * self-signed CA certificate (@issuer_key is @pub's private key); otherwise a node
 * certificate with subjectAltName DNS:@cn (+ IP:@ip) signed by @issuer. */
static X509 *make_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub, const char *cn,
                       const char *ip, int64_t not_before, int64_t not_after,
                       struct cm_errbuf *eb)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    if (x == NULL || name == NULL) {
        goto err_ossl;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || set_serial(x) != 0 ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name) !=
            1 ||
        ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) == NULL ||
        X509_set_pubkey(x, pub) != 1) {
        goto err_ossl;
    }
    X509V3_CTX ctx;
    /* The subject key identifier must exist before the authority key identifier of a
     * self-signed certificate can copy it (the issuer is the certificate itself). */
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    if (issuer == NULL) {
        if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != 0 ||
            add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
            add_ext(x, &ctx, NID_subject_key_identifier, "hash") != 0 ||
            add_ext(x, &ctx, NID_authority_key_identifier, "keyid") != 0) {
            goto err_ossl;
        }
    } else {
        char san[CN_MAX + 64 + 16];
        snprintf(san, sizeof(san), "DNS:%s%s%s", cn, ip != NULL ? ",IP:" : "",
                 ip != NULL ? ip : "");
        if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") != 0 ||
            add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth") != 0 ||
            add_ext(x, &ctx, NID_subject_alt_name, san) != 0 ||
            add_ext(x, &ctx, NID_subject_key_identifier, "hash") != 0 ||
            add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") != 0) {
            goto err_ossl;
        }
    }
    if (X509_sign(x, issuer_key, EVP_sha256()) <= 0) {
        goto err_ossl;
    }
    X509_NAME_free(name);
    return x;

err_ossl:
    ossl_fail(eb, CM_EIO, "build certificate");
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

/* The first certificate of a PEM buffer. */
static X509 *parse_cert(const char *pem, size_t len)
{
    if (len > INT32_MAX) {
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return NULL;
    }
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    return x;
}

/* The first certificate of a PEM file; errors name the file. */
static int load_cert(const char *path, X509 **ret, struct cm_errbuf *eb)
{
    struct cm_buf b = {0};
    int rv = read_file(path, CM_PKI_PEM_MAX, &b, eb);
    if (rv == 0) {
        *ret = parse_cert(b.data, b.len);
        if (*ret == NULL) {
            rv = cm_err_setf(eb, CM_EINVAL, "`%s`: no PEM certificate", path);
        }
    }
    cm_buf_done(&b);
    return rv;
}

/* The CA of @ca_dir: its certificate and matching private key. Every failure is
 * CM_EIO (or CM_ENOMEM) naming the file. */
struct ca {
    X509 *cert;
    EVP_PKEY *key;
};

static void ca_done(struct ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    ca->cert = NULL;
    ca->key = NULL;
}

static int ca_load(const char *ca_dir, struct ca *ca, struct cm_errbuf *eb)
{
    char path[PKI_PATH_MAX];
    ca->cert = NULL;
    ca->key = NULL;
    int rv = join_path(path, ca_dir, "ca.pem", eb);
    if (rv == 0) {
        rv = load_cert(path, &ca->cert, eb);
    }
    if (rv == 0) {
        rv = join_path(path, ca_dir, "ca.key", eb);
    }
    struct cm_buf b = {0};
    if (rv == 0) {
        rv = read_file(path, CM_PKI_PEM_MAX, &b, eb);
    }
    if (rv == 0) {
        BIO *bio = BIO_new_mem_buf(b.data, (int)b.len);
        ca->key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (ca->key == NULL) {
            rv = ossl_fail(eb, CM_EIO, "CA key");
            cm_err_wrapf(eb, "`%s`", path);
        } else if (X509_check_private_key(ca->cert, ca->key) != 1) {
            ERR_clear_error();
            rv = cm_err_setf(eb, CM_EIO, "`%s` does not match the CA certificate", path);
        }
    }
    if (b.data != NULL) {
        OPENSSL_cleanse(b.data, b.len);
    }
    cm_buf_done(&b);
    if (rv != 0) {
        ca_done(ca);
        if (rv != CM_ENOMEM) {
            rv = CM_EIO; /* whatever the cause, keeping the message naming the file */
            if (eb != NULL) {
                eb->code = CM_EIO;
            }
        }
    }
    return rv;
}

/* Sign a node certificate for @pub and append it and the CA certificate to @out. */
static int issue(const struct ca *ca, EVP_PKEY *pub, const char *cn, const char *ip,
                 int64_t not_before, int64_t not_after, struct cm_buf *out,
                 struct cm_errbuf *eb)
{
    /* A certificate cannot outlive its CA in any useful way (chain verification
     * fails once the CA expires); say so in the certificate rather than surprise
     * the operator, as CAs commonly do. */
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(ca->cert), &tm) == 1) {
        int64_t ca_end = (int64_t)timegm(&tm);
        if (not_after > ca_end) {
            not_after = CM_MAX(ca_end, not_before);
        }
    }
    ERR_clear_error();
    X509 *x = make_cert(ca->cert, ca->key, pub, cn, ip, not_before, not_after, eb);
    if (x == NULL) {
        return CM_EIO;
    }
    int rv = cert_pem(x, out, eb);
    if (rv == 0) {
        rv = cert_pem(ca->cert, out, eb);
    }
    X509_free(x);
    return rv;
}

static int64_t now_s(void)
{
    return cm_clock_system()->real_ns(cm_clock_system()) / 1000000000;
}

/* ------------------------------------------------------------------ files */

int cm_pki_write_file(const char *path, const void *data, size_t len, unsigned mode,
                      struct cm_errbuf *eb)
{
    char tmp[PKI_PATH_MAX + 16];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return cm_err_setf(eb, CM_EINVAL, "path `%s` is too long", path);
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        return cm_err_sys(eb, cm_errno(), "create `%s`", tmp);
    }
    int rv = 0;
    /* mkostemp creates 0600; widen or keep before any byte is written. */
    if (fchmod(fd, (mode_t)mode) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "chmod `%s`", tmp);
        goto err_after_open;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            rv = cm_err_sys(eb, cm_errno(), "write `%s`", tmp);
            goto err_after_open;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "fsync `%s`", tmp);
        goto err_after_open;
    }
    if (close(fd) != 0) {
        fd = -1;
        rv = cm_err_sys(eb, cm_errno(), "close `%s`", tmp);
        goto err_after_open;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "rename `%s` to `%s`", tmp, path);
        goto err_after_open;
    }
    /* The rename is durable once the directory is. */
    char dir[PKI_PATH_MAX + 16];
    memcpy(dir, path, strlen(path) + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        return cm_err_sys(eb, cm_errno(), "open directory `%s`", dir);
    }
    if (fsync(dfd) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "fsync directory `%s`", dir);
    }
    (void)close(dfd);
    return rv;

err_after_open:
    if (fd >= 0) {
        (void)close(fd);
    }
    (void)unlink(tmp);
    CM_ASSERT(rv < 0);
    return rv;
}

/* ------------------------------------------------------------------ the CA */

int cm_pki_ca_create(const char *dir, uint64_t cluster_id, unsigned days,
                     struct cm_errbuf *eb)
{
    char cert_path[PKI_PATH_MAX], key_path[PKI_PATH_MAX];
    if (days == 0) {
        return cm_err_setf(eb, CM_EINVAL, "CA validity: 0 days");
    }
    int rv = join_path(cert_path, dir, "ca.pem", eb);
    if (rv == 0) {
        rv = join_path(key_path, dir, "ca.key", eb);
    }
    if (rv == 0) {
        rv = cm_mkdir_p(dir, eb);
    }
    if (rv != 0) {
        return rv;
    }
    if (access(cert_path, F_OK) == 0) {
        return cm_err_setf(eb, CM_EEXIST, "`%s` exists: refusing to replace the CA",
                           cert_path);
    }
    char cn[64];
    snprintf(cn, sizeof(cn), "clusterctl CA %016" PRIx64, cluster_id);
    EVP_PKEY *key = new_key(eb);
    if (key == NULL) {
        return CM_EIO;
    }
    int64_t now = now_s();
    struct cm_buf pem = {0};
    X509 *x = make_cert(NULL, key, key, cn, NULL, now - BACKDATE_S,
                        now + (int64_t)days * 86400, eb);
    if (x == NULL) {
        rv = CM_EIO;
        goto out;
    }
    rv = cert_pem(x, &pem, eb);
    if (rv == 0) {
        rv = write_key(key, key_path, eb);
    }
    if (rv == 0) {
        rv = cm_pki_write_file(cert_path, pem.data, pem.len, 0644, eb);
    }
out:
    cm_buf_done(&pem);
    X509_free(x);
    EVP_PKEY_free(key);
    return rv;
}

/* ------------------------------------------------------------------ fingerprints */

int cm_pki_fingerprint_pem(const char *pem, size_t len, char out[65],
                           struct cm_errbuf *eb)
{
    X509 *x = parse_cert(pem, len);
    if (x == NULL) {
        return cm_err_setf(eb, CM_EINVAL, "no PEM certificate");
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = X509_digest(x, EVP_sha256(), md, &n);
    X509_free(x);
    if (ok != 1 || n != 32) {
        return ossl_fail(eb, CM_EIO, "certificate digest");
    }
    hex_encode(md, 32, out);
    return 0;
}

int cm_pki_fingerprint_file(const char *pem_path, char out[65], struct cm_errbuf *eb)
{
    struct cm_buf b = {0};
    int rv = read_file(pem_path, CM_PKI_PEM_MAX, &b, eb);
    if (rv == 0) {
        rv = cm_pki_fingerprint_pem(b.data, b.len, out, eb);
        if (rv != 0) {
            cm_err_wrapf(eb, "`%s`", pem_path);
        }
    }
    cm_buf_done(&b);
    return rv;
}

int cm_pki_cert_expiry(const char *pem_path, int64_t *ret, struct cm_errbuf *eb)
{
    X509 *x;
    int rv = load_cert(pem_path, &x, eb);
    if (rv != 0) {
        return rv;
    }
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
        X509_free(x);
        return ossl_fail(eb, CM_EINVAL, "certificate notAfter");
    }
    X509_free(x);
    *ret = (int64_t)timegm(&tm);
    return 0;
}

/* ------------------------------------------------------------------ keys, CSRs, signing
 */

int cm_pki_key_and_csr(const char *key_path, const char *cn, struct cm_buf *csr,
                       struct cm_errbuf *eb)
{
    int rv = check_cn(cn, eb);
    if (rv != 0) {
        return rv;
    }
    EVP_PKEY *key = new_key(eb);
    if (key == NULL) {
        return CM_EIO;
    }
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    if (req == NULL || bio == NULL ||
        X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName,
                                   MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_REQ_set_pubkey(req, key) != 1 ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
        PEM_write_bio_X509_REQ(bio, req) != 1) {
        rv = ossl_fail(eb, CM_EIO, "build CSR");
        goto out;
    }
    rv = make_parent_dir(key_path, eb);
    if (rv == 0) {
        rv = write_key(key, key_path, eb);
    }
    if (rv == 0) {
        char *p;
        long n = BIO_get_mem_data(bio, &p);
        if (cm_buf_append(csr, p, (size_t)n) != 0) {
            rv = cm_err_setf(eb, CM_ENOMEM, "CSR: out of memory");
        }
    }
out:
    BIO_free(bio);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    return rv;
}

static int sign_validity(const char *ca_dir, const char *csr, size_t len, const char *cn,
                         const char *ip, int64_t not_before, int64_t not_after,
                         struct cm_buf *cert, struct cm_errbuf *eb)
{
    if (len > CM_PKI_PEM_MAX) {
        return cm_err_setf(eb, CM_EINVAL, "CSR: too big (%zu bytes, limit %d)", len,
                           CM_PKI_PEM_MAX);
    }
    int rv = check_cn(cn, eb);
    if (rv == 0) {
        rv = check_ip(ip, eb);
    }
    if (rv != 0) {
        return rv;
    }
    BIO *bio = BIO_new_mem_buf(csr, (int)len);
    X509_REQ *req = bio != NULL ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (req == NULL) {
        return cm_err_setf(eb, CM_EINVAL, "CSR: not a PEM certificate request");
    }
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    struct ca ca = {0};
    struct cm_buf out = {0};
    if (pub == NULL || !is_p256(pub)) {
        ERR_clear_error();
        rv = cm_err_setf(eb, CM_EINVAL, "CSR: the key is not EC P-256");
        goto out;
    }
    /* Proof of possession: the request is signed by the key it carries. Nothing else
     * of the request is used: not its subject, not the extensions it asks for. */
    if (X509_REQ_verify(req, pub) != 1) {
        ERR_clear_error();
        rv = cm_err_setf(eb, CM_EINVAL, "CSR: signature does not verify");
        goto out;
    }
    rv = ca_load(ca_dir, &ca, eb);
    if (rv == 0) {
        rv = issue(&ca, pub, cn, ip, not_before, not_after, &out, eb);
    }
    if (rv == 0 && cm_buf_append(cert, out.data, out.len) != 0) {
        rv = cm_err_setf(eb, CM_ENOMEM, "certificate: out of memory");
    }
out:
    cm_buf_done(&out);
    ca_done(&ca);
    X509_REQ_free(req);
    return rv;
}

int cm_pki_sign(const char *ca_dir, const char *csr, size_t len, const char *cn,
                const char *ip, unsigned days, struct cm_buf *cert, struct cm_errbuf *eb)
{
    if (days == 0) {
        return cm_err_setf(eb, CM_EINVAL, "certificate validity: 0 days");
    }
    int64_t now = now_s();
    return sign_validity(ca_dir, csr, len, cn, ip, now - BACKDATE_S,
                         now + (int64_t)days * 86400, cert, eb);
}

int cm_pki_issue_node_validity(const char *ca_dir, const char *dir, const char *cn,
                               const char *ip, int64_t not_before, int64_t not_after,
                               struct cm_errbuf *eb)
{
    char cert_path[PKI_PATH_MAX], key_path[PKI_PATH_MAX];
    if (not_after < not_before) {
        return cm_err_setf(eb, CM_EINVAL, "certificate validity: ends before it starts");
    }
    int rv = check_cn(cn, eb);
    if (rv == 0) {
        rv = check_ip(ip, eb);
    }
    if (rv == 0) {
        rv = join_path(cert_path, dir, "node.pem", eb);
    }
    if (rv == 0) {
        rv = join_path(key_path, dir, "node.key", eb);
    }
    if (rv != 0) {
        return rv;
    }
    struct ca ca;
    rv = ca_load(ca_dir, &ca, eb);
    if (rv != 0) {
        return rv;
    }
    struct cm_buf pem = {0};
    EVP_PKEY *key = NULL;
    rv = cm_mkdir_p(dir, eb);
    if (rv == 0) {
        key = new_key(eb);
        rv = key == NULL ? CM_EIO : 0;
    }
    if (rv == 0) {
        rv = issue(&ca, key, cn, ip, not_before, not_after, &pem, eb);
    }
    if (rv == 0) {
        rv = write_key(key, key_path, eb);
    }
    if (rv == 0) {
        rv = cm_pki_write_file(cert_path, pem.data, pem.len, 0644, eb);
    }
    cm_buf_done(&pem);
    EVP_PKEY_free(key);
    ca_done(&ca);
    return rv;
}

int cm_pki_issue_node(const char *ca_dir, const char *dir, const char *cn, const char *ip,
                      unsigned days, struct cm_errbuf *eb)
{
    if (days == 0) {
        return cm_err_setf(eb, CM_EINVAL, "certificate validity: 0 days");
    }
    int64_t now = now_s();
    return cm_pki_issue_node_validity(ca_dir, dir, cn, ip, now - BACKDATE_S,
                                      now + (int64_t)days * 86400, eb);
}

static bool same_hex(const char *a, const char *b)
{
    size_t n = strlen(a);
    if (n != strlen(b)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char x = a[i] >= 'A' && a[i] <= 'F' ? (char)(a[i] - 'A' + 'a') : a[i];
        char y = b[i] >= 'A' && b[i] <= 'F' ? (char)(b[i] - 'A' + 'a') : b[i];
        if (x != y) {
            return false;
        }
    }
    return true;
}

int cm_pki_install_node(const char *dir, const char *chain, size_t len,
                        const char *ca_fingerprint, struct cm_errbuf *eb)
{
    char key_path[PKI_PATH_MAX], cert_path[PKI_PATH_MAX], ca_path[PKI_PATH_MAX];
    if (len > CM_PKI_PEM_MAX) {
        return cm_err_setf(eb, CM_EINVAL, "certificate chain: too big (%zu bytes)", len);
    }
    int rv = join_path(key_path, dir, "node.key", eb);
    if (rv == 0) {
        rv = join_path(cert_path, dir, "node.pem", eb);
    }
    if (rv == 0) {
        rv = join_path(ca_path, dir, "ca.pem", eb);
    }
    if (rv != 0) {
        return rv;
    }
    X509 *leaf = NULL, *ca = NULL;
    EVP_PKEY *key = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    struct cm_buf pem = {0}, keypem = {0};
    BIO *bio = BIO_new_mem_buf(chain, (int)len);
    if (bio != NULL) {
        leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        ca = leaf != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
    }
    ERR_clear_error();
    if (ca == NULL) {
        rv = cm_err_setf(eb, CM_EINVAL,
                         "certificate chain: want two PEM certificates (node, CA)");
        goto out;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char fp[65];
    if (X509_digest(ca, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        rv = ossl_fail(eb, CM_EIO, "certificate digest");
        goto out;
    }
    hex_encode(md, 32, fp);
    if (!same_hex(fp, ca_fingerprint)) {
        rv = cm_err_setf(eb, CM_EINVAL,
                         "certificate chain: the CA certificate's fingerprint is %s, "
                         "not the pinned one",
                         fp);
        goto out;
    }
    /* The leaf as a TLS peer would check it: signed by that CA, dates, key usage. */
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    if (store == NULL || ctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
        X509_STORE_CTX_init(ctx, store, leaf, NULL) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        rv = ossl_fail(eb, CM_EIO, "certificate chain");
        goto out;
    }
    if (X509_verify_cert(ctx) != 1) {
        rv = cm_err_setf(eb, CM_EINVAL, "certificate chain: the node certificate: %s",
                         X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        ERR_clear_error();
        goto out;
    }
    rv = read_file(key_path, CM_PKI_PEM_MAX, &keypem, eb);
    if (rv != 0) {
        goto out;
    }
    bio = BIO_new_mem_buf(keypem.data, (int)keypem.len);
    key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (key == NULL) {
        rv = ossl_fail(eb, CM_EINVAL, "private key");
        cm_err_wrapf(eb, "`%s`", key_path);
        goto out;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        rv = cm_err_setf(eb, CM_EINVAL,
                         "certificate chain: the node certificate is not for `%s`",
                         key_path);
        goto out;
    }
    /* ca.pem first: node.pem existing then means both are in place. */
    rv = cert_pem(ca, &pem, eb);
    if (rv == 0) {
        rv = cm_pki_write_file(ca_path, pem.data, pem.len, 0644, eb);
    }
    if (rv == 0) {
        cm_buf_clear(&pem);
        rv = cert_pem(leaf, &pem, eb);
    }
    if (rv == 0) {
        rv = cert_pem(ca, &pem, eb);
    }
    if (rv == 0) {
        rv = cm_pki_write_file(cert_path, pem.data, pem.len, 0644, eb);
    }
out:
    if (keypem.data != NULL) {
        OPENSSL_cleanse(keypem.data, keypem.len);
    }
    cm_buf_done(&keypem);
    cm_buf_done(&pem);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    EVP_PKEY_free(key);
    X509_free(leaf);
    X509_free(ca);
    return rv;
}

/* ------------------------------------------------------------------ join tokens */

/* Copy @n hex digits of @src lower-cased to @dst; the offset of the first non-hex
 * character, or -1. */
static long copy_hex(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (!is_hex(c)) {
            return (long)i;
        }
        dst[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    dst[n] = '\0';
    return -1;
}

int cm_join_token_parse(const char *s, struct cm_join_token *ret, struct cm_errbuf *eb)
{
    static const char prefix[] = CM_JOIN_TOKEN_PREFIX;
    const size_t plen = sizeof(prefix) - 1;
    if (s == NULL || s[0] == '\0') {
        return cm_err_setf(eb, CM_EINVAL, "join token: empty");
    }
    if (strncmp(s, prefix, plen) != 0) {
        return cm_err_setf(eb, CM_EINVAL, "join token: does not start with '%s'", prefix);
    }
    const char *fp = s + plen;
    const char *dot = strchr(fp, '.');
    if (dot == NULL) {
        return cm_err_setf(eb, CM_EINVAL,
                           "join token: no '.' between the fingerprint and the secret");
    }
    const char *secret = dot + 1;
    if (strchr(secret, '.') != NULL) {
        return cm_err_setf(eb, CM_EINVAL, "join token: extra parts after the secret");
    }
    size_t fplen = (size_t)(dot - fp);
    size_t slen = strlen(secret);
    if (fplen != 64) {
        return cm_err_setf(eb, CM_EINVAL,
                           "join token: fingerprint has %zu characters, want 64", fplen);
    }
    if (slen != 32) {
        return cm_err_setf(eb, CM_EINVAL,
                           "join token: secret has %zu characters, want 32", slen);
    }
    struct cm_join_token t;
    long bad = copy_hex(t.fingerprint, fp, 64);
    if (bad >= 0) {
        return cm_err_setf(eb, CM_EINVAL,
                           "join token: fingerprint: character %ld is not hex", bad);
    }
    bad = copy_hex(t.secret, secret, 32);
    if (bad >= 0) {
        return cm_err_setf(eb, CM_EINVAL, "join token: secret: character %ld is not hex",
                           bad);
    }
    *ret = t;
    return 0;
}

void cm_join_token_format(const struct cm_join_token *t, char *buf, size_t cap)
{
    if (cap > 0) {
        snprintf(buf, cap, "%s%s.%s", CM_JOIN_TOKEN_PREFIX, t->fingerprint, t->secret);
    }
}

int cm_join_token_new(const char *ca_pem_path, struct cm_join_token *ret,
                      struct cm_errbuf *eb)
{
    struct cm_join_token t;
    int rv = cm_pki_fingerprint_file(ca_pem_path, t.fingerprint, eb);
    if (rv != 0) {
        return rv;
    }
    if (cm_random_hex(t.secret, 16) != 0) {
        return cm_err_setf(eb, CM_EIO, "join token: no random bytes");
    }
    *ret = t;
    return 0;
}

bool cm_join_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    /* The lengths are public (32 hex digits); only the contents must not leak. */
    if (la != lb) {
        return false;
    }
    return CRYPTO_memcmp(a, b, la) == 0;
}
