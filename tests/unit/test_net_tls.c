/* lib/net: the cluster CA (keys, CSRs, signing, fingerprints, join tokens) and TLS
 * streams over socketpairs, pumped by hand in one thread (no sleeps). Temporary
 * directories are /tmp/tls-unit-*, removed at exit even when a test fails. */
#include <ev.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "net/http.h"
#include "net/net.h"
#include "test.h"

/* ------------------------------------------------------------------ helpers */

static char tmpdirs[256][64];
static int ntmpdirs;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tmpdirs(void)
{
    for (int i = 0; i < ntmpdirs; i++) {
        (void)nftw(tmpdirs[i], rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static const char *tmpdir(void)
{
    if (ntmpdirs == 0) {
        atexit(rm_tmpdirs);
    }
    ASSERT_TRUE(ntmpdirs < (int)CM_ARRAY_SIZE(tmpdirs));
    char *d = tmpdirs[ntmpdirs];
    snprintf(d, sizeof(tmpdirs[0]), "/tmp/tls-unit-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(d));
    ntmpdirs++;
    return d;
}

static const char *path_in(const char *dir, const char *name)
{
    static char bufs[8][256];
    static int next;
    char *p = bufs[next++ % 8];
    int n = snprintf(p, sizeof(bufs[0]), "%s/%s", dir, name);
    ASSERT_TRUE(n > 0 && (size_t)n < sizeof(bufs[0]));
    return p;
}

static void read_all(const char *path, struct cm_buf *out)
{
    FILE *f = fopen(path, "r");
    ASSERT_NOT_NULL(f);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        ASSERT_OK(cm_buf_append(out, buf, n));
    }
    fclose(f);
}

static X509 *pem_cert(const char *pem, size_t len, int index)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = NULL;
    for (int i = 0; i <= index; i++) {
        X509_free(x);
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    return x;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* A CA in a new temporary directory; its path. */
static const char *new_ca(uint64_t id)
{
    const char *d = tmpdir();
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_pki_ca_create(d, id, 30, &eb));
    return d;
}

/* A node directory (node.pem, node.key, and a copy of the CA's ca.pem) issued by the
 * CA in @ca with the given validity. */
static const char *new_node_validity(const char *ca, const char *cn, int64_t nb,
                                     int64_t na)
{
    const char *d = tmpdir();
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_pki_issue_node_validity(ca, d, cn, "127.0.0.1", nb, na, &eb));
    struct cm_buf b = {0};
    read_all(path_in(ca, "ca.pem"), &b);
    ASSERT_OK(cm_pki_write_file(path_in(d, "ca.pem"), b.data, b.len, 0644, &eb));
    cm_buf_done(&b);
    return d;
}

static const char *new_node(const char *ca, const char *cn)
{
    return new_node_validity(ca, cn, now_s() - 300, now_s() + 86400);
}

/* ------------------------------------------------------------------ files and the CA */

TEST(write_file_atomic_with_mode)
{
    const char *d = tmpdir();
    struct cm_errbuf eb = {0};
    const char *p = path_in(d, "f");
    ASSERT_OK(cm_pki_write_file(p, "hello", 5, 0600, &eb));
    ASSERT_OK(cm_pki_write_file(p, "again!", 6, 0640, &eb));
    struct stat st;
    ASSERT_INT_EQ(stat(p, &st), 0);
    ASSERT_UINT_EQ(st.st_mode & 0777, 0640);
    ASSERT_UINT_EQ(st.st_size, 6);
    /* No temporary file is left behind. */
    ASSERT_INT_EQ(stat(d, &st), 0);
    ASSERT_UINT_EQ(st.st_nlink, 2);
    struct cm_buf b = {0};
    read_all(p, &b);
    ASSERT_STR_EQ(b.data, "again!");
    cm_buf_done(&b);
    ASSERT_ERR(cm_pki_write_file("/nonexistent-tls-dir/f", "x", 1, 0600, &eb), CM_ENOENT);
    ASSERT_TRUE(strstr(eb.msg, "/nonexistent-tls-dir/f") != NULL);
}

TEST(ca_create)
{
    const char *parent = tmpdir();
    const char *d = path_in(parent, "data/tls");
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", d);
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_pki_ca_create(dir, 0x1234abcdULL, 10, &eb));
    struct stat st;
    ASSERT_INT_EQ(stat(dir, &st), 0);
    ASSERT_UINT_EQ(st.st_mode & 0777, 0700);
    ASSERT_INT_EQ(stat(path_in(dir, "ca.key"), &st), 0);
    ASSERT_UINT_EQ(st.st_mode & 0777, 0600);

    struct cm_buf b = {0};
    read_all(path_in(dir, "ca.pem"), &b);
    X509 *x = pem_cert(b.data, b.len, 0);
    ASSERT_NOT_NULL(x);
    char cn[128];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    ASSERT_STR_EQ(cn, "clusterctl CA 000000001234abcd");
    ASSERT_INT_EQ(X509_check_ca(x), 1);
    ASSERT_INT_EQ(X509_check_issued(x, x), X509_V_OK);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    ASSERT_TRUE(EVP_PKEY_is_a(pub, "EC"));
    ASSERT_INT_EQ(X509_verify(x, pub), 1);
    ASSERT_INT_EQ(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    X509_free(x);

    int64_t exp;
    ASSERT_OK(cm_pki_cert_expiry(path_in(dir, "ca.pem"), &exp, &eb));
    ASSERT_INT_OP(exp, >=, now_s() + 10 * 86400 - 60);
    ASSERT_INT_OP(exp, <=, now_s() + 10 * 86400 + 60);

    /* A second create must not replace the CA. */
    char fp1[65], fp2[65];
    ASSERT_OK(cm_pki_fingerprint_file(path_in(dir, "ca.pem"), fp1, &eb));
    ASSERT_ERR(cm_pki_ca_create(dir, 1, 10, &eb), CM_EEXIST);
    ASSERT_OK(cm_pki_fingerprint_file(path_in(dir, "ca.pem"), fp2, &eb));
    ASSERT_STR_EQ(fp1, fp2);
    ASSERT_ERR(cm_pki_ca_create(path_in(parent, "x"), 1, 0, &eb), CM_EINVAL);
    cm_buf_done(&b);
}

TEST(fingerprint)
{
    const char *ca = new_ca(1);
    struct cm_errbuf eb = {0};
    char fp[65], fp2[65];
    ASSERT_OK(cm_pki_fingerprint_file(path_in(ca, "ca.pem"), fp, &eb));
    ASSERT_UINT_EQ(strlen(fp), 64);
    for (int i = 0; i < 64; i++) {
        ASSERT_TRUE(strchr("0123456789abcdef", fp[i]) != NULL);
    }
    /* Independently: SHA-256 of the DER. */
    struct cm_buf b = {0};
    read_all(path_in(ca, "ca.pem"), &b);
    X509 *x = pem_cert(b.data, b.len, 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    unsigned char md[32];
    ASSERT_INT_EQ(EVP_Digest(der, (size_t)n, md, NULL, EVP_sha256(), NULL), 1);
    char hex[65];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    ASSERT_STR_EQ(fp, hex);
    OPENSSL_free(der);
    X509_free(x);
    ASSERT_OK(cm_pki_fingerprint_pem(b.data, b.len, fp2, &eb));
    ASSERT_STR_EQ(fp, fp2);
    ASSERT_ERR(cm_pki_fingerprint_pem("junk", 4, fp2, &eb), CM_EINVAL);
    ASSERT_ERR(cm_pki_fingerprint_file(path_in(ca, "nope.pem"), fp2, &eb), CM_ENOENT);
    ASSERT_TRUE(strstr(eb.msg, "nope.pem") != NULL);
    /* A different CA has a different fingerprint. */
    const char *ca2 = new_ca(1);
    ASSERT_OK(cm_pki_fingerprint_file(path_in(ca2, "ca.pem"), fp2, &eb));
    ASSERT_TRUE(strcmp(fp, fp2) != 0);
    cm_buf_done(&b);
}

/* Verify @pem (a chain: leaf then CA) against the CA in @ca_dir as a TLS client
 * certificate would be; X509_V_OK or the error. */
static int verify_chain(const char *ca_dir, const char *pem, size_t len)
{
    X509 *leaf = pem_cert(pem, len, 0);
    ASSERT_NOT_NULL(leaf);
    X509_STORE *store = X509_STORE_new();
    ASSERT_INT_EQ(X509_STORE_load_file(store, path_in(ca_dir, "ca.pem")), 1);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    ASSERT_INT_EQ(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    int ok = X509_verify_cert(ctx);
    int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(leaf);
    return err;
}

TEST(csr_sign_verify)
{
    const char *ca = new_ca(7);
    const char *node = tmpdir();
    struct cm_errbuf eb = {0};
    struct cm_buf csr = {0}, cert = {0};
    ASSERT_OK(cm_pki_key_and_csr(path_in(node, "tls/node.key"), "node-2", &csr, &eb));
    struct stat st;
    ASSERT_INT_EQ(stat(path_in(node, "tls/node.key"), &st), 0);
    ASSERT_UINT_EQ(st.st_mode & 0777, 0600);
    ASSERT_INT_EQ(stat(path_in(node, "tls"), &st), 0);
    ASSERT_UINT_EQ(st.st_mode & 0777, 0700);
    ASSERT_TRUE(strstr(csr.data, "BEGIN CERTIFICATE REQUEST") != NULL);

    ASSERT_OK(cm_pki_sign(ca, csr.data, csr.len, "node-2", "10.0.0.2", 30, &cert, &eb));
    ASSERT_INT_EQ(verify_chain(ca, cert.data, cert.len), X509_V_OK);
    X509 *leaf = pem_cert(cert.data, cert.len, 0);
    char cn[128];
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn,
                              sizeof(cn));
    ASSERT_STR_EQ(cn, "node-2");
    ASSERT_INT_EQ(X509_check_host(leaf, "node-2", 0, 0, NULL), 1);
    ASSERT_INT_EQ(X509_check_ip_asc(leaf, "10.0.0.2", 0), 1);
    ASSERT_INT_EQ(X509_check_ip_asc(leaf, "10.0.0.3", 0), 0);
    ASSERT_INT_EQ(X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0), 1);
    ASSERT_INT_EQ(X509_check_purpose(leaf, X509_PURPOSE_SSL_CLIENT, 0), 1);
    ASSERT_INT_EQ(X509_check_ca(leaf), 0);
    ASSERT_INT_EQ(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
    /* The certificate carries the CSR's key. */
    FILE *kf = fopen(path_in(node, "tls/node.key"), "r");
    EVP_PKEY *key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    fclose(kf);
    ASSERT_INT_EQ(X509_check_private_key(leaf, key), 1);
    EVP_PKEY_free(key);
    /* Validity now-5min .. now+30d; serials are random. */
    int diff_days, diff_secs;
    ASSERT_INT_EQ(ASN1_TIME_diff(&diff_days, &diff_secs, X509_get0_notBefore(leaf),
                                 X509_get0_notAfter(leaf)),
                  1);
    ASSERT_INT_EQ(diff_days, 30);
    ASSERT_INT_EQ(diff_secs, 300);
    /* The second certificate is the CA's. */
    char fp_ca[65], fp_chain[65];
    ASSERT_OK(cm_pki_fingerprint_file(path_in(ca, "ca.pem"), fp_ca, &eb));
    X509 *second = pem_cert(cert.data, cert.len, 1);
    ASSERT_NOT_NULL(second);
    unsigned char md[32];
    unsigned int mdlen;
    X509_digest(second, EVP_sha256(), md, &mdlen);
    for (int i = 0; i < 32; i++) {
        snprintf(fp_chain + 2 * i, 3, "%02x", md[i]);
    }
    ASSERT_STR_EQ(fp_chain, fp_ca);
    X509_free(second);

    /* A second signature of the same CSR: another serial; no IP: DNS only. */
    struct cm_buf cert2 = {0};
    ASSERT_OK(cm_pki_sign(ca, csr.data, csr.len, "node-2", NULL, 1, &cert2, &eb));
    X509 *leaf2 = pem_cert(cert2.data, cert2.len, 0);
    ASSERT_TRUE(ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf),
                                 X509_get0_serialNumber(leaf2)) != 0);
    ASSERT_INT_EQ(X509_check_ip_asc(leaf2, "10.0.0.2", 0), 0);
    ASSERT_INT_EQ(X509_check_host(leaf2, "node-2", 0, 0, NULL), 1);
    X509_free(leaf2);
    X509_free(leaf);

    /* Signed by another CA: does not verify against ours. */
    const char *other = new_ca(8);
    struct cm_buf cert3 = {0};
    ASSERT_OK(cm_pki_sign(other, csr.data, csr.len, "node-2", NULL, 1, &cert3, &eb));
    ASSERT_TRUE(verify_chain(ca, cert3.data, cert3.len) != X509_V_OK);
    cm_buf_done(&cert3);
    cm_buf_done(&cert2);
    cm_buf_done(&cert);
    cm_buf_done(&csr);
}

/* A CSR whose signature does not match its content: the key is swapped after
 * signing, so the request claims a key it cannot prove it holds. */
static void forged_csr(const struct cm_buf *good, struct cm_buf *out)
{
    BIO *bio = BIO_new_mem_buf(good->data, (int)good->len);
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ASSERT_NOT_NULL(req);
    EVP_PKEY *other = EVP_EC_gen("P-256");
    ASSERT_INT_EQ(X509_REQ_set_pubkey(req, other), 1);
    bio = BIO_new(BIO_s_mem());
    ASSERT_INT_EQ(PEM_write_bio_X509_REQ(bio, req), 1);
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    ASSERT_OK(cm_buf_append(out, p, (size_t)n));
    BIO_free(bio);
    EVP_PKEY_free(other);
    X509_REQ_free(req);
}

TEST(csr_refused)
{
    const char *ca = new_ca(9);
    const char *node = tmpdir();
    struct cm_errbuf eb = {0};
    struct cm_buf csr = {0}, bad = {0}, cert = {0};
    ASSERT_OK(cm_pki_key_and_csr(path_in(node, "node.key"), "n1", &csr, &eb));

    forged_csr(&csr, &bad);
    ASSERT_ERR(cm_pki_sign(ca, bad.data, bad.len, "n1", NULL, 1, &cert, &eb), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "signature") != NULL);
    ASSERT_UINT_EQ(cert.len, 0);

    ASSERT_ERR(cm_pki_sign(ca, "hello", 5, "n1", NULL, 1, &cert, &eb), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "PEM") != NULL);
    /* Truncated PEM. */
    ASSERT_ERR(cm_pki_sign(ca, csr.data, csr.len / 2, "n1", NULL, 1, &cert, &eb),
               CM_EINVAL);
    /* Too big, whatever it holds. */
    char *big = calloc(1, CM_PKI_PEM_MAX + 1);
    ASSERT_ERR(cm_pki_sign(ca, big, CM_PKI_PEM_MAX + 1, "n1", NULL, 1, &cert, &eb),
               CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "too big") != NULL);
    free(big);
    /* A key other than P-256. */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    X509_REQ *req = X509_REQ_new();
    X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName,
                               MBSTRING_UTF8, (const unsigned char *)"n1", -1, -1, 0);
    X509_REQ_set_pubkey(req, p384);
    ASSERT_INT_OP(X509_REQ_sign(req, p384, EVP_sha256()), >, 0);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(bio, req);
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    ASSERT_ERR(cm_pki_sign(ca, p, (size_t)n, "n1", NULL, 1, &cert, &eb), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "P-256") != NULL);
    BIO_free(bio);
    X509_REQ_free(req);
    EVP_PKEY_free(p384);

    /* Bad names and addresses. */
    ASSERT_ERR(cm_pki_sign(ca, csr.data, csr.len, "", NULL, 1, &cert, &eb), CM_EINVAL);
    ASSERT_ERR(cm_pki_sign(ca, csr.data, csr.len, "a,IP:1.2.3.4", NULL, 1, &cert, &eb),
               CM_EINVAL);
    ASSERT_ERR(cm_pki_sign(ca, csr.data, csr.len, "n1", "10.0.0", 1, &cert, &eb),
               CM_EINVAL);
    ASSERT_ERR(cm_pki_sign(ca, csr.data, csr.len, "n1", NULL, 0, &cert, &eb), CM_EINVAL);
    ASSERT_ERR(cm_pki_key_and_csr(path_in(node, "k2"), "a/b", &csr, &eb), CM_EINVAL);
    /* The CA's files: missing, or a key that is not the CA's. */
    ASSERT_ERR(cm_pki_sign(node, csr.data, csr.len, "n1", NULL, 1, &cert, &eb), CM_EIO);
    ASSERT_TRUE(strstr(eb.msg, "ca.pem") != NULL);
    const char *ca2 = new_ca(10);
    struct cm_buf k = {0};
    read_all(path_in(ca2, "ca.key"), &k);
    ASSERT_OK(cm_pki_write_file(path_in(ca, "ca.key"), k.data, k.len, 0600, &eb));
    ASSERT_ERR(cm_pki_sign(ca, csr.data, csr.len, "n1", NULL, 1, &cert, &eb), CM_EIO);
    ASSERT_TRUE(strstr(eb.msg, "ca.key") != NULL);
    ASSERT_UINT_EQ(cert.len, 0);
    cm_buf_done(&k);
    cm_buf_done(&csr);
    cm_buf_done(&bad);
}

TEST(issue_node_and_expiry)
{
    const char *ca = new_ca(11);
    struct cm_errbuf eb = {0};
    /* The CA dir and the node dir may be the same (the first server). */
    ASSERT_OK(cm_pki_issue_node(ca, ca, "first", "127.0.0.1", 20, &eb));
    struct cm_buf b = {0};
    read_all(path_in(ca, "node.pem"), &b);
    ASSERT_INT_EQ(verify_chain(ca, b.data, b.len), X509_V_OK);
    int64_t exp;
    ASSERT_OK(cm_pki_cert_expiry(path_in(ca, "node.pem"), &exp, &eb));
    ASSERT_INT_OP(exp, >=, now_s() + 20 * 86400 - 60);
    ASSERT_INT_OP(exp, <=, now_s() + 20 * 86400 + 60);
    cm_buf_clear(&b);

    const char *d = tmpdir();
    int64_t nb = 1700000000, na = 1700000000 + 3600;
    ASSERT_OK(cm_pki_issue_node_validity(ca, d, "old", NULL, nb, na, &eb));
    ASSERT_OK(cm_pki_cert_expiry(path_in(d, "node.pem"), &exp, &eb));
    ASSERT_INT_EQ(exp, na);
    read_all(path_in(d, "node.pem"), &b);
    ASSERT_INT_EQ(verify_chain(ca, b.data, b.len), X509_V_ERR_CERT_HAS_EXPIRED);
    ASSERT_ERR(cm_pki_issue_node_validity(ca, d, "old", NULL, na, nb, &eb), CM_EINVAL);
    /* Never past the CA's end (30 days for new_ca). */
    int64_t ca_end;
    ASSERT_OK(cm_pki_cert_expiry(path_in(ca, "ca.pem"), &ca_end, &eb));
    ASSERT_OK(cm_pki_issue_node(ca, d, "long", NULL, 365, &eb));
    ASSERT_OK(cm_pki_cert_expiry(path_in(d, "node.pem"), &exp, &eb));
    ASSERT_INT_EQ(exp, ca_end);
    ASSERT_ERR(cm_pki_cert_expiry(path_in(d, "node.key"), &exp, &eb), CM_EINVAL);
    cm_buf_done(&b);
}

/* ------------------------------------------------------------------ join tokens */

#define FP64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define S32  "00112233445566778899aabbccddeeff"

TEST(join_token_parse_table)
{
    static const struct {
        const char *in;
        const char *err; /* NULL: valid; else a piece of the message */
    } cases[] = {
        {"cmjoin1." FP64 "." S32, NULL},
        {"cmjoin1.0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef."
         "00112233445566778899AABBCCDDEEFF",
         NULL},
        {"", "empty"},
        {"cmjoin2." FP64 "." S32, "start"},
        {"CMJOIN1." FP64 "." S32, "start"},
        {"cmjoin1", "start"},
        {"cmjoin1." FP64 S32, "'.'"},
        {"cmjoin1." FP64 "0." S32, "fingerprint has 65"},
        {"cmjoin1.0123." S32, "fingerprint has 4"},
        {"cmjoin1." FP64 "." S32 "0", "secret has 33"},
        {"cmjoin1." FP64 ".", "secret has 0"},
        {"cmjoin1." FP64 "." S32 ".extra", "extra parts"},
        {"cmjoin1." FP64 "." S32 ".", "extra parts"},
        {"cmjoin1.g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef." S32,
         "fingerprint: character 0 is not hex"},
        {"cmjoin1." FP64 ".0011223344556677889900aabbccddez", "secret: character 31"},
        {"cmjoin1." FP64 "." S32 "\n", "secret has 33"},
        {" cmjoin1." FP64 "." S32, "start"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
        struct cm_join_token t;
        memset(&t, 'x', sizeof(t));
        struct cm_errbuf eb = {0};
        int rv = cm_join_token_parse(cases[i].in, &t, &eb);
        if (cases[i].err == NULL) {
            ASSERT_OK(rv);
            ASSERT_STR_EQ(t.fingerprint, FP64);
            ASSERT_STR_EQ(t.secret, S32);
            char buf[CM_JOIN_TOKEN_MAX];
            cm_join_token_format(&t, buf, sizeof(buf));
            ASSERT_STR_EQ(buf, "cmjoin1." FP64 "." S32);
            ASSERT_UINT_EQ(strlen(buf), CM_JOIN_TOKEN_LEN);
        } else {
            ASSERT_ERR(rv, CM_EINVAL);
            if (strstr(eb.msg, cases[i].err) == NULL) {
                test__fail(__FILE__, __LINE__, "case %zu: message '%s' lacks '%s'", i,
                           eb.msg, cases[i].err);
            }
            ASSERT_UINT_EQ((unsigned char)t.fingerprint[0], 'x'); /* untouched */
        }
    }
    struct cm_errbuf eb = {0};
    struct cm_join_token t;
    ASSERT_ERR(cm_join_token_parse(NULL, &t, &eb), CM_EINVAL);
}

TEST(join_token_new_and_secret)
{
    const char *ca = new_ca(12);
    struct cm_errbuf eb = {0};
    struct cm_join_token a, b, parsed;
    ASSERT_OK(cm_join_token_new(path_in(ca, "ca.pem"), &a, &eb));
    ASSERT_OK(cm_join_token_new(path_in(ca, "ca.pem"), &b, &eb));
    char fp[65];
    ASSERT_OK(cm_pki_fingerprint_file(path_in(ca, "ca.pem"), fp, &eb));
    ASSERT_STR_EQ(a.fingerprint, fp);
    ASSERT_UINT_EQ(strlen(a.secret), 32);
    ASSERT_FALSE(cm_join_secret_equal(a.secret, b.secret));
    char s[CM_JOIN_TOKEN_MAX];
    cm_join_token_format(&a, s, sizeof(s));
    ASSERT_OK(cm_join_token_parse(s, &parsed, &eb));
    ASSERT_STR_EQ(parsed.fingerprint, a.fingerprint);
    ASSERT_TRUE(cm_join_secret_equal(parsed.secret, a.secret));
    ASSERT_TRUE(cm_join_secret_equal("", ""));
    ASSERT_FALSE(cm_join_secret_equal(S32, "00112233445566778899aabbccddeef0"));
    ASSERT_FALSE(cm_join_secret_equal(S32, "0011"));
    /* A small buffer truncates and stays terminated. */
    char small[10];
    cm_join_token_format(&a, small, sizeof(small));
    ASSERT_UINT_EQ(strlen(small), 9);
    ASSERT_MEM_EQ(small, "cmjoin1.", 8);
    ASSERT_TRUE(small[8] == a.fingerprint[0]);
    ASSERT_ERR(cm_join_token_new(path_in(ca, "missing.pem"), &a, &eb), CM_ENOENT);
}

/* ------------------------------------------------------------------ OOM walks (pki) */

struct walk_pki {
    const char *ca;
    const char *node;
    struct cm_buf csr;
    struct cm_buf chain;
    char fp[65];
};

static int walk_sign(void *arg)
{
    struct walk_pki *w = arg;
    struct cm_buf cert = {0};
    struct cm_errbuf eb = {0};
    int rv = cm_pki_sign(w->ca, w->csr.data, w->csr.len, "n", "::1", 1, &cert, &eb);
    if (rv == 0 && strstr(cert.data, "BEGIN CERTIFICATE") == NULL) {
        rv = CM_EINTERNAL;
    }
    cm_buf_done(&cert);
    return rv;
}

static int walk_csr(void *arg)
{
    struct walk_pki *w = arg;
    struct cm_buf csr = {0};
    struct cm_errbuf eb = {0};
    int rv = cm_pki_key_and_csr(path_in(w->node, "walk.key"), "n", &csr, &eb);
    cm_buf_done(&csr);
    return rv;
}

static int walk_issue(void *arg)
{
    struct walk_pki *w = arg;
    struct cm_errbuf eb = {0};
    return cm_pki_issue_node(w->ca, w->node, "n", NULL, 1, &eb);
}

static int walk_install(void *arg)
{
    struct walk_pki *w = arg;
    struct cm_errbuf eb = {0};
    return cm_pki_install_node(w->node, w->chain.data, w->chain.len, w->fp, &eb);
}

static int walk_token(void *arg)
{
    struct walk_pki *w = arg;
    struct cm_errbuf eb = {0};
    struct cm_join_token t;
    int64_t exp;
    int rv = cm_join_token_new(path_in(w->ca, "ca.pem"), &t, &eb);
    if (rv == 0) {
        rv = cm_pki_cert_expiry(path_in(w->ca, "ca.pem"), &exp, &eb);
    }
    return rv;
}

TEST(pki_oom_walks)
{
    struct walk_pki w = {.ca = new_ca(13), .node = tmpdir()};
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_pki_key_and_csr(path_in(w.node, "k"), "n", &w.csr, &eb));
    ASSERT_INT_OP(test_alloc_walk(walk_sign, &w), >, 0);
    ASSERT_INT_OP(test_alloc_walk(walk_csr, &w), >, 0);
    ASSERT_INT_OP(test_alloc_walk(walk_issue, &w), >, 0);
    ASSERT_INT_OP(test_alloc_walk(walk_token, &w), >, 0);
    cm_buf_clear(&w.csr);
    ASSERT_OK(cm_pki_key_and_csr(path_in(w.node, "node.key"), "n", &w.csr, &eb));
    ASSERT_OK(cm_pki_sign(w.ca, w.csr.data, w.csr.len, "n", NULL, 1, &w.chain, &eb));
    ASSERT_OK(cm_pki_fingerprint_file(path_in(w.ca, "ca.pem"), w.fp, &eb));
    ASSERT_INT_OP(test_alloc_walk(walk_install, &w), >, 0);
    cm_buf_done(&w.chain);
    cm_buf_done(&w.csr);
}

/* ------------------------------------------------------------------ TLS: pumping */

struct pair {
    struct cm_stream *c; /* the client (connected) end */
    struct cm_stream *s; /* the server (accepted) end */
};

static void pair_open(struct cm_tls *client, struct cm_tls *server, struct pair *p)
{
    int sv[2];
    ASSERT_INT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
                  0);
    ASSERT_OK(cm_tls_wrap(client, sv[0], false, &p->c));
    ASSERT_OK(cm_tls_wrap(server, sv[1], true, &p->s));
    ASSERT_FALSE(cm_tls_stream_ready(p->c));
    ASSERT_TRUE(cm_stream_is_tls(p->c));
}

static void pair_close(struct pair *p)
{
    cm_stream_close(p->c);
    cm_stream_close(p->s);
    p->c = p->s = NULL;
}

/* One handshake step for @s: 0 once ready, CM_EAGAIN, or its error. */
static int step(struct cm_stream *s)
{
    char b;
    ssize_t n = cm_stream_read(s, &b, 0);
    if (n < 0) {
        if (n == CM_EAGAIN) {
            ASSERT_TRUE(s->want == CM_STREAM_WANT_READ ||
                        s->want == CM_STREAM_WANT_WRITE);
        }
        return (int)n;
    }
    return cm_tls_stream_ready(s) ? 0 : CM_EAGAIN;
}

/* Drive both handshakes until neither side can move: each result is 0 (ready) or an
 * error. Both ends live in this thread, so a bounded number of rounds suffices. */
static void handshake(struct pair *p, int *ret_c, int *ret_s)
{
    int rc = CM_EAGAIN, rs = CM_EAGAIN;
    for (int i = 0; i < 50 && (rc == CM_EAGAIN || rs == CM_EAGAIN); i++) {
        if (rc == CM_EAGAIN) {
            rc = step(p->c);
        }
        if (rs == CM_EAGAIN) {
            rs = step(p->s);
        }
    }
    *ret_c = rc;
    *ret_s = rs;
}

/* Read from @s until data, end of stream or an error arrives (the peer wrote or failed
 * already): the first non-EAGAIN result. */
static ssize_t read_settled(struct cm_stream *s, void *buf, size_t len)
{
    for (int i = 0; i < 50; i++) {
        ssize_t n = cm_stream_read(s, buf, len);
        if (n != CM_EAGAIN) {
            return n;
        }
    }
    return CM_EAGAIN;
}

/* A handshake that must succeed on both sides. */
static void connect_ok(struct cm_tls *client, struct cm_tls *server, struct pair *p)
{
    pair_open(client, server, p);
    int rc, rs;
    handshake(p, &rc, &rs);
    if (rc != 0 || rs != 0) {
        test__fail(__FILE__, __LINE__, "handshake: client %d (%s), server %d (%s)", rc,
                   cm_tls_stream_error(p->c), rs, cm_tls_stream_error(p->s));
    }
}

/* Writes @len bytes of @data from @w in irregular iovecs (drawn from @rng). */
struct flow {
    struct cm_stream *w, *r;
    const uint8_t *data;
    size_t len;
    size_t sent;
    struct {
        uint8_t *data; /* malloc, not cm_malloc: OOM walks count the library only */
        size_t len;
        size_t cap;
    } got;
};

static bool flow_step(struct flow *f, struct cm_rng *rng)
{
    bool moved = false;
    if (f->sent < f->len) {
        struct iovec iov[8];
        int n = 0;
        size_t off = f->sent;
        while (n < 8 && off < f->len) {
            /* (CM_MIN evaluates its arguments twice: no calls inside) */
            size_t k = 1 + cm_rng_below(rng, 40000);
            if (cm_rng_below(rng, 3) == 0) {
                k = 1 + cm_rng_below(rng, 100); /* small pieces too */
            }
            k = CM_MIN(k, f->len - off);
            if (n == 7) {
                k = f->len - off; /* a retry offers at least as many bytes (net.h) */
            }
            iov[n].iov_base = (void *)(f->data + off);
            iov[n].iov_len = k;
            off += k;
            n++;
        }
        ssize_t w = cm_stream_writev(f->w, iov, n);
        if (w > 0) {
            f->sent += (size_t)w;
            moved = true;
        } else {
            ASSERT_ERR((int)w, CM_EAGAIN);
        }
    }
    for (int i = 0; i < 4; i++) {
        char buf[7000];
        size_t want = 1 + cm_rng_below(rng, sizeof(buf));
        ssize_t n = cm_stream_read(f->r, buf, want);
        if (n == CM_EAGAIN) {
            break;
        }
        ASSERT_INT_OP(n, >, 0);
        ASSERT_INT_OP(f->got.len + (size_t)n, <=, f->got.cap);
        memcpy(f->got.data + f->got.len, buf, (size_t)n);
        f->got.len += (size_t)n;
        moved = true;
    }
    return moved;
}

/* Send @n1 bytes client->server and @n2 server->client at the same time and check
 * they arrive intact. */
static void exchange(struct pair *p, size_t n1, size_t n2, uint64_t seed)
{
    struct cm_rng rng;
    cm_rng_seed(&rng, seed);
    uint8_t *d1 = malloc(n1 + 1), *d2 = malloc(n2 + 1);
    for (size_t i = 0; i < n1; i++) {
        d1[i] = (uint8_t)cm_rng_next(&rng);
    }
    for (size_t i = 0; i < n2; i++) {
        d2[i] = (uint8_t)cm_rng_next(&rng);
    }
    struct flow a = {.w = p->c, .r = p->s, .data = d1, .len = n1};
    struct flow b = {.w = p->s, .r = p->c, .data = d2, .len = n2};
    a.got.cap = n1 + 65536;
    b.got.cap = n2 + 65536;
    a.got.data = malloc(a.got.cap);
    b.got.data = malloc(b.got.cap);
    int idle = 0;
    while ((a.got.len < n1 || b.got.len < n2) && idle < 100) {
        bool moved = flow_step(&a, &rng);
        moved = flow_step(&b, &rng) || moved;
        idle = moved ? 0 : idle + 1;
    }
    ASSERT_UINT_EQ(a.got.len, n1);
    ASSERT_UINT_EQ(b.got.len, n2);
    ASSERT_MEM_EQ(a.got.data, d1, n1);
    ASSERT_MEM_EQ(b.got.data, d2, n2);
    free(a.got.data);
    free(b.got.data);
    free(d1);
    free(d2);
}

static struct cm_tls *tls_node(const char *node_dir, bool require)
{
    struct cm_tls_options o = {
        .ca_file = path_in(node_dir, "ca.pem"),
        .cert_file = path_in(node_dir, "node.pem"),
        .key_file = path_in(node_dir, "node.key"),
        .require_peer_cert = require,
    };
    struct cm_tls *t;
    struct cm_errbuf eb = {0};
    int rv = cm_tls_new(&o, &t, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "cm_tls_new: %s", eb.msg);
    }
    return t;
}

static struct cm_tls *tls_opts(const struct cm_tls_options *o)
{
    struct cm_tls *t;
    struct cm_errbuf eb = {0};
    int rv = cm_tls_new(o, &t, &eb);
    if (rv != 0) {
        test__fail(__FILE__, __LINE__, "cm_tls_new: %s", eb.msg);
    }
    return t;
}

/* ------------------------------------------------------------------ TLS: tests */

TEST(tls_mtls_both_ways)
{
    const char *ca = new_ca(20);
    struct cm_tls *srv = tls_node(new_node(ca, "n1"), true);
    struct cm_tls *cli = tls_node(new_node(ca, "n2"), true);
    struct pair p;
    connect_ok(cli, srv, &p);
    char cn[65];
    ASSERT_TRUE(cm_tls_stream_peer(p.s, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "n2");
    ASSERT_TRUE(cm_tls_stream_peer(p.c, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "n1");
    ASSERT_STR_EQ(cm_tls_stream_error(p.c), "");

    /* Large writes both ways at once, in irregular iovecs. */
    exchange(&p, 3 << 20, 1 << 20, 1);
    exchange(&p, 1, 70000, 2);

    /* pending(): a record read in part is still buffered inside the stream. */
    char big[1000], got[1000];
    memset(big, 'p', sizeof(big));
    ASSERT_INT_EQ(cm_stream_write(p.s, big, sizeof(big)), (ssize_t)sizeof(big));
    ASSERT_FALSE(cm_stream_pending(p.c));
    ASSERT_INT_EQ(read_settled(p.c, got, 10), 10);
    ASSERT_TRUE(cm_stream_pending(p.c));
    ASSERT_INT_EQ(cm_stream_read(p.c, got + 10, sizeof(got) - 10), 990);
    ASSERT_FALSE(cm_stream_pending(p.c));
    ASSERT_MEM_EQ(got, big, sizeof(big));
    ASSERT_ERR((int)cm_stream_read(p.c, got, sizeof(got)), CM_EAGAIN);
    ASSERT_UINT_EQ(p.c->want, CM_STREAM_WANT_READ);

    /* shutdown(): close_notify, read as end of stream; the other way still works. */
    ASSERT_OK(cm_stream_shutdown(p.c));
    ASSERT_INT_EQ(read_settled(p.s, got, sizeof(got)), 0);
    ASSERT_INT_EQ(cm_stream_write(p.s, "late", 4), 4);
    ASSERT_INT_EQ(read_settled(p.c, got, sizeof(got)), 4);
    ASSERT_MEM_EQ(got, "late", 4);
    pair_close(&p);

    /* The contexts are reference counted: a stream outlives its context's owner. */
    connect_ok(cli, srv, &p);
    cm_tls_free(srv);
    cm_tls_free(cli);
    exchange(&p, 5000, 5000, 3);
    pair_close(&p);
}

TEST(tls_shutdown_when_the_socket_is_full)
{
    const char *ca = new_ca(32);
    struct cm_tls *srv = tls_node(new_node(ca, "n1"), true);
    struct cm_tls *cli = tls_node(new_node(ca, "n2"), true);
    struct pair p;
    connect_ok(cli, srv, &p);
    /* Fill the socket: the close_notify cannot go out yet. */
    static char chunk[16384];
    size_t sent = 0;
    for (;;) {
        ssize_t n = cm_stream_write(p.c, chunk, sizeof(chunk));
        if (n == CM_EAGAIN) {
            break;
        }
        ASSERT_INT_EQ(n, (ssize_t)sizeof(chunk));
        sent += (size_t)n;
    }
    /* Complete the record OpenSSL holds first (the retry rule), then shut down. */
    int rv;
    size_t got = 0;
    char buf[20000];
    while ((rv = (int)cm_stream_write(p.c, chunk, sizeof(chunk))) == CM_EAGAIN) {
        ssize_t n = cm_stream_read(p.s, buf, sizeof(buf));
        ASSERT_INT_OP(n, >, 0);
        got += (size_t)n;
    }
    ASSERT_INT_EQ(rv, (int)sizeof(chunk));
    sent += sizeof(chunk);
    for (;;) {
        ssize_t n = cm_stream_write(p.c, chunk, sizeof(chunk));
        if (n == CM_EAGAIN) {
            break;
        }
        sent += (size_t)n;
    }
    ASSERT_ERR(cm_stream_shutdown(p.c), CM_EAGAIN);
    ASSERT_UINT_EQ(p.c->want, CM_STREAM_WANT_WRITE);
    /* Drain; retry the shutdown until it goes out; the server then sees every byte
     * and the end of the stream. */
    int rs = CM_EAGAIN;
    ssize_t n;
    for (int i = 0; i < 100000; i++) {
        if (rs == CM_EAGAIN) {
            rs = cm_stream_shutdown(p.c);
        }
        n = cm_stream_read(p.s, buf, sizeof(buf));
        if (n == 0) {
            break;
        }
        if (n > 0) {
            got += (size_t)n;
        } else {
            ASSERT_ERR((int)n, CM_EAGAIN);
        }
    }
    ASSERT_OK(rs);
    ASSERT_INT_EQ(n, 0);
    ASSERT_UINT_EQ(got, sent);
    ASSERT_OK(cm_stream_shutdown(p.c)); /* again: harmless */
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

TEST(tls_peer_close_without_notify_is_eof)
{
    const char *ca = new_ca(21);
    struct cm_tls *srv = tls_node(new_node(ca, "n1"), true);
    struct cm_tls *cli = tls_node(new_node(ca, "n2"), true);
    struct pair p;
    connect_ok(cli, srv, &p);
    /* Close the client's socket under it: no close_notify is sent. */
    ASSERT_INT_EQ(shutdown(cm_stream_fd(p.c), SHUT_RDWR), 0);
    char b[16];
    ASSERT_INT_EQ(read_settled(p.s, b, sizeof(b)), 0);
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

TEST(tls_client_without_cert_refused_when_required)
{
    const char *ca = new_ca(22);
    struct cm_tls *srv = tls_node(new_node(ca, "n1"), true);
    struct cm_tls_options o = {.ca_file = path_in(ca, "ca.pem")};
    struct cm_tls *cli = tls_opts(&o);
    struct pair p;
    pair_open(cli, srv, &p);
    int rc, rs;
    handshake(&p, &rc, &rs);
    ASSERT_ERR(rs, CM_EPROTO);
    ASSERT_TRUE(strstr(cm_tls_stream_error(p.s), "certificate") != NULL);
    ASSERT_FALSE(cm_tls_stream_peer(p.s, NULL, 0));
    /* TLS 1.3: the client finished first; it learns of the refusal on reading. */
    char b[16];
    ASSERT_ERR((int)read_settled(p.c, b, sizeof(b)), CM_EPROTO);
    /* Sticky. */
    ASSERT_ERR((int)cm_stream_read(p.s, b, sizeof(b)), CM_EPROTO);
    ASSERT_ERR((int)cm_stream_write(p.s, "x", 1), CM_EPROTO);
    ASSERT_ERR((int)cm_stream_write(p.c, "x", 1), CM_EPROTO);
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

TEST(tls_client_without_cert_accepted_when_not_required)
{
    const char *ca = new_ca(23);
    struct cm_tls *srv = tls_node(new_node(ca, "n1"), false);
    struct cm_tls_options o = {.ca_file = path_in(ca, "ca.pem")};
    struct cm_tls *cli = tls_opts(&o);
    struct pair p;
    connect_ok(cli, srv, &p);
    char cn[65] = "junk";
    ASSERT_FALSE(cm_tls_stream_peer(p.s, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "");
    ASSERT_TRUE(cm_tls_stream_peer(p.c, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "n1");
    exchange(&p, 10000, 10000, 4);
    pair_close(&p);
    /* A client WITH a good certificate is still recognised. */
    struct cm_tls *cli2 = tls_node(new_node(ca, "n3"), false);
    connect_ok(cli2, srv, &p);
    ASSERT_TRUE(cm_tls_stream_peer(p.s, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "n3");
    pair_close(&p);
    cm_tls_free(cli2);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

/* A client whose certificate comes from @bad_ca (trusting the right CA for the
 * server) is refused by a server of @ca, whether or not it requires a certificate. */
static void expect_client_refused(const char *ca, const char *client_dir)
{
    for (int require = 0; require < 2; require++) {
        struct cm_tls *srv = tls_node(new_node(ca, "n1"), require);
        struct cm_tls_options o = {
            .ca_file = path_in(ca, "ca.pem"),
            .cert_file = path_in(client_dir, "node.pem"),
            .key_file = path_in(client_dir, "node.key"),
        };
        struct cm_tls *cli = tls_opts(&o);
        struct pair p;
        pair_open(cli, srv, &p);
        int rc, rs;
        handshake(&p, &rc, &rs);
        ASSERT_ERR(rs, CM_EPROTO);
        char b[8];
        ASSERT_ERR((int)read_settled(p.c, b, sizeof(b)), CM_EPROTO);
        pair_close(&p);
        cm_tls_free(srv);
        cm_tls_free(cli);
    }
}

/* A client trusting @ca refuses a server presenting @server_dir's certificate. */
static void expect_server_refused(const char *ca, const char *server_dir)
{
    struct cm_tls_options so = {
        .cert_file = path_in(server_dir, "node.pem"),
        .key_file = path_in(server_dir, "node.key"),
    };
    struct cm_tls *srv = tls_opts(&so);
    struct cm_tls_options co = {.ca_file = path_in(ca, "ca.pem")};
    struct cm_tls *cli = tls_opts(&co);
    struct pair p;
    pair_open(cli, srv, &p);
    int rc, rs;
    handshake(&p, &rc, &rs);
    ASSERT_ERR(rc, CM_EPROTO);
    ASSERT_TRUE(strstr(cm_tls_stream_error(p.c), "peer certificate") != NULL);
    ASSERT_TRUE(rs != 0);
    ASSERT_FALSE(cm_tls_stream_ready(p.c));
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

TEST(tls_other_ca_refused)
{
    const char *ca = new_ca(24);
    const char *other = new_ca(24); /* same id, other key: only the key counts */
    const char *stranger = new_node(other, "n2");
    expect_client_refused(ca, stranger);
    expect_server_refused(ca, stranger);
    /* The control: the same steps with a certificate of the right CA succeed. */
    struct cm_tls *srv = tls_node(new_node(ca, "n1"), true);
    struct cm_tls *cli = tls_node(new_node(ca, "n2"), true);
    struct pair p;
    connect_ok(cli, srv, &p);
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

TEST(tls_expired_refused)
{
    const char *ca = new_ca(25);
    int64_t now = now_s();
    const char *expired = new_node_validity(ca, "old", now - 10 * 86400, now - 86400);
    const char *future = new_node_validity(ca, "new", now + 86400, now + 10 * 86400);
    expect_client_refused(ca, expired);
    expect_server_refused(ca, expired);
    expect_client_refused(ca, future);
    expect_server_refused(ca, future);
    /* The control: valid dates, same CA, same steps. */
    const char *fresh = new_node_validity(ca, "ok", now - 60, now + 86400);
    struct cm_tls *srv = tls_node(fresh, true);
    struct cm_tls *cli = tls_node(new_node(ca, "n2"), true);
    struct pair p;
    connect_ok(cli, srv, &p);
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

/* A joining client that pins @fp connects to a server presenting @server_dir's
 * chain (no client certificate): its result. */
static int pinned_handshake(const char *fp, const char *server_dir, bool *ret_peer)
{
    struct cm_tls_options so = {
        .cert_file = path_in(server_dir, "node.pem"),
        .key_file = path_in(server_dir, "node.key"),
    };
    struct cm_tls *srv = tls_opts(&so);
    struct cm_tls_options co = {.pin_fingerprint = fp};
    struct cm_tls *cli = tls_opts(&co);
    struct pair p;
    pair_open(cli, srv, &p);
    int rc, rs;
    handshake(&p, &rc, &rs);
    *ret_peer = rc == 0 && cm_tls_stream_peer(p.c, NULL, 0);
    if (rc == 0) {
        ASSERT_OK(rs);
        exchange(&p, 100, 100, 5);
    }
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
    return rc;
}

TEST(tls_pinning)
{
    const char *ca = new_ca(26);
    const char *other = new_ca(26);
    struct cm_errbuf eb = {0};
    char fp[65], fp_other[65], fp_upper[65];
    ASSERT_OK(cm_pki_fingerprint_file(path_in(ca, "ca.pem"), fp, &eb));
    ASSERT_OK(cm_pki_fingerprint_file(path_in(other, "ca.pem"), fp_other, &eb));
    const char *n1 = new_node(ca, "n1");
    bool peer;
    ASSERT_OK(pinned_handshake(fp, n1, &peer));
    ASSERT_TRUE(peer);
    for (int i = 0; i < 65; i++) {
        fp_upper[i] = (char)(fp[i] >= 'a' && fp[i] <= 'f' ? fp[i] - 'a' + 'A' : fp[i]);
    }
    ASSERT_OK(pinned_handshake(fp_upper, n1, &peer));
    /* The wrong fingerprint. */
    ASSERT_ERR(pinned_handshake(fp_other, n1, &peer), CM_EPROTO);
    /* A server of another CA that sends our (public) CA certificate along: the pinned
     * certificate is there, but the leaf does not verify against it. */
    const char *impostor = new_node(other, "n1");
    struct cm_buf chain = {0}, ca_pem = {0};
    read_all(path_in(impostor, "node.pem"), &chain);
    read_all(path_in(ca, "ca.pem"), &ca_pem);
    ASSERT_OK(cm_buf_append(&chain, ca_pem.data, ca_pem.len));
    ASSERT_OK(cm_pki_write_file(path_in(impostor, "node.pem"), chain.data, chain.len,
                                0644, &eb));
    ASSERT_ERR(pinned_handshake(fp, impostor, &peer), CM_EPROTO);
    /* A server that sends its leaf only: nothing to pin. */
    X509 *leaf = pem_cert(chain.data, chain.len, 0);
    cm_buf_clear(&chain);
    read_all(path_in(n1, "node.pem"), &chain);
    X509_free(leaf);
    leaf = pem_cert(chain.data, chain.len, 0);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, leaf);
    char *pp;
    long pn = BIO_get_mem_data(bio, &pp);
    ASSERT_OK(cm_pki_write_file(path_in(n1, "node.pem"), pp, (size_t)pn, 0644, &eb));
    BIO_free(bio);
    X509_free(leaf);
    ASSERT_ERR(pinned_handshake(fp, n1, &peer), CM_EPROTO);
    /* An expired leaf under the pinned CA. */
    int64_t now = now_s();
    ASSERT_ERR(pinned_handshake(
                   fp, new_node_validity(ca, "x", now - 2 * 86400, now - 86400), &peer),
               CM_EPROTO);
    cm_buf_done(&chain);
    cm_buf_done(&ca_pem);
}

TEST(tls_insecure_accepts_anything)
{
    const char *ca = new_ca(27);
    int64_t now = now_s();
    const char *servers[] = {
        new_node(ca, "n1"),
        new_node_validity(ca, "old", now - 10 * 86400, now - 86400),
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(servers); i++) {
        struct cm_tls_options so = {
            .cert_file = path_in(servers[i], "node.pem"),
            .key_file = path_in(servers[i], "node.key"),
        };
        struct cm_tls *srv = tls_opts(&so);
        struct cm_tls_options co = {.insecure = true};
        struct cm_tls *cli = tls_opts(&co);
        struct pair p;
        connect_ok(cli, srv, &p);
        /* Nothing was verified, so the peer is not vouched for. */
        ASSERT_FALSE(cm_tls_stream_peer(p.c, NULL, 0));
        exchange(&p, 1000, 1000, 6);
        pair_close(&p);
        cm_tls_free(srv);
        cm_tls_free(cli);
    }
}

TEST(tls_reload_rotates_for_new_connections)
{
    const char *ca = new_ca(28);
    const char *sdir = new_node(ca, "before");
    struct cm_tls *srv = tls_node(sdir, true);
    struct cm_tls *cli = tls_node(new_node(ca, "client"), true);
    struct pair old;
    connect_ok(cli, srv, &old);
    char cn[65];
    ASSERT_TRUE(cm_tls_stream_peer(old.c, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "before");

    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_pki_issue_node(ca, sdir, "after", NULL, 1, &eb));
    ASSERT_OK(cm_tls_reload(srv, &eb));
    struct pair fresh;
    connect_ok(cli, srv, &fresh);
    ASSERT_TRUE(cm_tls_stream_peer(fresh.c, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "after");
    /* The old connection goes on, both ways. */
    exchange(&old, 200000, 200000, 7);
    exchange(&fresh, 1000, 1000, 8);
    pair_close(&fresh);

    /* A failed reload changes nothing: a key that does not match the certificate (as
     * between the two renames of a rotation), then a missing file. */
    const char *elsewhere = new_node(ca, "x");
    struct cm_buf k = {0};
    read_all(path_in(elsewhere, "node.key"), &k);
    ASSERT_OK(cm_pki_write_file(path_in(sdir, "node.key"), k.data, k.len, 0600, &eb));
    ASSERT_ERR(cm_tls_reload(srv, &eb), CM_EIO);
    ASSERT_TRUE(strstr(eb.msg, "node.key") != NULL);
    ASSERT_INT_EQ(unlink(path_in(sdir, "ca.pem")), 0);
    ASSERT_ERR(cm_tls_reload(srv, &eb), CM_EIO);
    ASSERT_TRUE(strstr(eb.msg, "ca.pem") != NULL);
    connect_ok(cli, srv, &fresh);
    ASSERT_TRUE(cm_tls_stream_peer(fresh.c, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "after");
    pair_close(&fresh);
    exchange(&old, 1000, 1000, 9);
    pair_close(&old);
    cm_buf_done(&k);
    cm_tls_free(srv);
    cm_tls_free(cli);
}

TEST(tls_options_checked)
{
    const char *ca = new_ca(29);
    const char *n = new_node(ca, "n");
    struct cm_errbuf eb = {0};
    struct cm_tls *t = NULL;
    const char *fp = FP64;
    struct cm_tls_options bad[] = {
        {.cert_file = path_in(n, "node.pem")},
        {.key_file = path_in(n, "node.key")},
        {.require_peer_cert = true},
        {.pin_fingerprint = "abc"},
        {.pin_fingerprint = FP64 "0"},
        {.pin_fingerprint = fp, .ca_file = path_in(ca, "ca.pem")},
        {.pin_fingerprint = fp, .insecure = true},
        {.insecure = true, .ca_file = path_in(ca, "ca.pem")},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
        ASSERT_ERR(cm_tls_new(&bad[i], &t, &eb), CM_EINVAL);
        ASSERT_NULL(t);
    }
    struct cm_tls_options missing = {.ca_file = path_in(ca, "nope.pem")};
    ASSERT_ERR(cm_tls_new(&missing, &t, &eb), CM_EIO);
    ASSERT_TRUE(strstr(eb.msg, "nope.pem") != NULL);
    struct cm_tls_options badkey = {
        .ca_file = path_in(ca, "ca.pem"),
        .cert_file = path_in(n, "node.pem"),
        .key_file = path_in(ca, "ca.key"),
    };
    ASSERT_ERR(cm_tls_new(&badkey, &t, &eb), CM_EIO);
    ASSERT_TRUE(strstr(eb.msg, "ca.key") != NULL);
    struct cm_tls_options notpem = {.ca_file = path_in(n, "node.key")};
    ASSERT_ERR(cm_tls_new(&notpem, &t, &eb), CM_EIO);
    ASSERT_NULL(t);
    cm_tls_free(NULL);
}

/* The whole join as the two nodes would do it, up to an mTLS connection. */
TEST(join_flow_install_node)
{
    const char *ca = new_ca(14);
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_pki_issue_node(ca, ca, "first", NULL, 1, &eb));
    struct cm_join_token tok;
    ASSERT_OK(cm_join_token_new(path_in(ca, "ca.pem"), &tok, &eb));

    const char *joiner = tmpdir();
    struct cm_buf csr = {0}, chain = {0};
    ASSERT_OK(cm_pki_key_and_csr(path_in(joiner, "node.key"), "second", &csr, &eb));
    ASSERT_OK(cm_pki_sign(ca, csr.data, csr.len, "second", "127.0.0.2", 1, &chain, &eb));

    /* Refusals first: nothing may be written. */
    char wrong[65];
    memcpy(wrong, tok.fingerprint, sizeof(wrong));
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    ASSERT_ERR(cm_pki_install_node(joiner, chain.data, chain.len, wrong, &eb), CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "fingerprint") != NULL);
    const char *end_of_first = strstr(chain.data, "-----END CERTIFICATE-----");
    size_t first_len = (size_t)(end_of_first - chain.data) + 26;
    ASSERT_ERR(cm_pki_install_node(joiner, chain.data, first_len, tok.fingerprint, &eb),
               CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "two PEM certificates") != NULL);
    /* A certificate for another key. */
    struct cm_buf csr2 = {0}, chain2 = {0};
    ASSERT_OK(cm_pki_key_and_csr(path_in(joiner, "other.key"), "second", &csr2, &eb));
    ASSERT_OK(cm_pki_sign(ca, csr2.data, csr2.len, "second", NULL, 1, &chain2, &eb));
    ASSERT_ERR(cm_pki_install_node(joiner, chain2.data, chain2.len, tok.fingerprint, &eb),
               CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "not for") != NULL);
    /* A certificate of another CA, sent along with our (public) CA certificate. */
    const char *other = new_ca(15);
    struct cm_buf forged = {0}, ca_pem = {0};
    ASSERT_OK(cm_pki_sign(other, csr.data, csr.len, "second", NULL, 1, &forged, &eb));
    forged.len =
        (size_t)(strstr(forged.data, "-----END CERTIFICATE-----") - forged.data) + 26;
    read_all(path_in(ca, "ca.pem"), &ca_pem);
    ASSERT_OK(cm_buf_append(&forged, ca_pem.data, ca_pem.len));
    ASSERT_ERR(cm_pki_install_node(joiner, forged.data, forged.len, tok.fingerprint, &eb),
               CM_EINVAL);
    ASSERT_TRUE(strstr(eb.msg, "node certificate") != NULL);
    struct stat st;
    ASSERT_INT_EQ(stat(path_in(joiner, "ca.pem"), &st), -1);
    ASSERT_INT_EQ(stat(path_in(joiner, "node.pem"), &st), -1);

    ASSERT_OK(cm_pki_install_node(joiner, chain.data, chain.len, tok.fingerprint, &eb));
    char fp[65];
    ASSERT_OK(cm_pki_fingerprint_file(path_in(joiner, "ca.pem"), fp, &eb));
    ASSERT_STR_EQ(fp, tok.fingerprint);

    /* Both now speak mTLS. */
    struct cm_tls *srv = tls_node(ca, true);
    struct cm_tls *cli = tls_node(joiner, true);
    struct pair p;
    connect_ok(cli, srv, &p);
    char cn[65];
    ASSERT_TRUE(cm_tls_stream_peer(p.s, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "second");
    ASSERT_TRUE(cm_tls_stream_peer(p.c, cn, sizeof(cn)));
    ASSERT_STR_EQ(cn, "first");
    pair_close(&p);
    cm_tls_free(srv);
    cm_tls_free(cli);
    cm_buf_done(&csr);
    cm_buf_done(&chain);
    cm_buf_done(&csr2);
    cm_buf_done(&chain2);
    cm_buf_done(&forged);
    cm_buf_done(&ca_pem);
}

/* ------------------------------------------------------------------ HTTP over TLS */

/* The HTTP server and client of lib/net on a libev loop over 127.0.0.1, with TLS
 * plugged in through their wrap hooks: the streams under real event-driven callers
 * (want flags, partial writes, pending input). */

struct call_result {
    bool done;
    int err;
    int status;
    struct cm_buf body;
};

static void h_echo(struct cm_http_req *req, void *data)
{
    (void)data;
    const struct cm_http_request *r = cm_http_req_request(req);
    (void)cm_http_respond(req, 200, "application/octet-stream", r->body, r->body_len);
}

static void call_done(struct cm_http_call *call, int err,
                      const struct cm_http_response *resp, void *user)
{
    (void)call;
    struct call_result *r = user;
    r->done = true;
    r->err = err;
    if (err == 0) {
        r->status = resp->status;
        ASSERT_OK(cm_buf_append(&r->body, resp->body, resp->body_len));
    }
}

static void bound_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    if (((struct call_result *)w->data)->done) {
        ev_break(loop, EVBREAK_ALL);
    }
}

/* POST @len bytes to /echo at @addr through @cli; run the loop until the call ends
 * (bounded: a hang fails the test instead of blocking it). */
static void echo_call(struct ev_loop *loop, const char *addr, struct cm_tls *cli,
                      size_t len, struct call_result *r)
{
    char *body = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        body[i] = (char)('a' + i % 26);
    }
    struct cm_http_call_options o = {
        .method = "POST",
        .path = "/echo",
        .content_type = "application/octet-stream",
        .body = body,
        .body_len = len,
        .timeout_ms = 20000,
        .on_done = call_done,
        .user = r,
        .wrap = cm_tls_wrap,
        .wrap_data = cli,
    };
    memset(r, 0, sizeof(*r));
    ASSERT_OK(cm_http_call_start(loop, addr, &o, NULL));
    ev_timer bound;
    ev_prepare check;
    ev_timer_init(&bound, bound_cb, 30., 0.);
    ev_prepare_init(&check, check_cb);
    check.data = r;
    ev_timer_start(loop, &bound);
    ev_prepare_start(loop, &check);
    ev_run(loop, 0);
    ev_timer_stop(loop, &bound);
    ev_prepare_stop(loop, &check);
    ASSERT_TRUE(r->done);
    if (r->err == 0) {
        ASSERT_UINT_EQ(r->body.len, len);
        ASSERT_MEM_EQ(r->body.data, body, len);
    }
    free(body);
}

TEST(tls_http_server_and_client)
{
    const char *ca = new_ca(31);
    struct cm_tls *srv_tls = tls_node(new_node(ca, "api"), true);
    struct cm_tls *cli_tls = tls_node(new_node(ca, "cli"), true);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct cm_http_server_options so = {.wrap = cm_tls_wrap, .wrap_data = srv_tls};
    struct cm_http_server *srv;
    ASSERT_OK(cm_http_server_new(loop, &so, &srv));
    struct cm_errbuf eb = {0};
    ASSERT_OK(cm_http_server_listen(srv, "127.0.0.1:0", &eb));
    ASSERT_OK(cm_http_server_route(srv, "POST", "/echo", 8 << 20, h_echo, NULL));
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", cm_http_server_port(srv));

    struct call_result r;
    echo_call(loop, addr, cli_tls, 5, &r);
    ASSERT_OK(r.err);
    ASSERT_INT_EQ(r.status, 200);
    cm_buf_done(&r.body);
    /* Big enough to fill the socket buffers both ways. */
    echo_call(loop, addr, cli_tls, 6 << 20, &r);
    ASSERT_OK(r.err);
    ASSERT_INT_EQ(r.status, 200);
    cm_buf_done(&r.body);

    /* Without a client certificate the server refuses the connection. */
    struct cm_tls_options o = {.ca_file = path_in(ca, "ca.pem")};
    struct cm_tls *anon = tls_opts(&o);
    echo_call(loop, addr, anon, 100, &r);
    ASSERT_TRUE(r.err != 0);
    cm_buf_done(&r.body);

    cm_http_server_free(srv);
    ev_run(loop, EVRUN_NOWAIT);
    ev_loop_destroy(loop);
    cm_tls_free(anon);
    cm_tls_free(srv_tls);
    cm_tls_free(cli_tls);
}

/* ------------------------------------------------------------------ OOM walk (tls) */

struct walk_tls {
    const char *srv_dir;
    const char *cli_dir;
};

static int walk_tls_fn(void *arg)
{
    struct walk_tls *w = arg;
    struct cm_errbuf eb = {0};
    struct cm_tls_options so = {
        .ca_file = path_in(w->srv_dir, "ca.pem"),
        .cert_file = path_in(w->srv_dir, "node.pem"),
        .key_file = path_in(w->srv_dir, "node.key"),
        .require_peer_cert = true,
    };
    struct cm_tls_options co = so;
    co.cert_file = path_in(w->cli_dir, "node.pem");
    co.key_file = path_in(w->cli_dir, "node.key");
    struct cm_tls *srv = NULL, *cli = NULL;
    struct pair p = {0};
    int sv[2] = {-1, -1};
    int rv = cm_tls_new(&so, &srv, &eb);
    if (rv == 0) {
        rv = cm_tls_new(&co, &cli, &eb);
    }
    if (rv == 0) {
        ASSERT_INT_EQ(
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        rv = cm_tls_wrap(cli, sv[0], false, &p.c);
        if (rv == 0) {
            sv[0] = -1;
            rv = cm_tls_wrap(srv, sv[1], true, &p.s);
        }
        if (rv == 0) {
            sv[1] = -1;
            rv = cm_tls_reload(srv, &eb);
        }
    }
    if (rv == 0) {
        int rc, rs;
        handshake(&p, &rc, &rs);
        ASSERT_OK(rc);
        ASSERT_OK(rs);
        exchange(&p, 3000, 3000, 10);
    }
    if (sv[0] >= 0) {
        close(sv[0]);
    }
    if (sv[1] >= 0) {
        close(sv[1]);
    }
    cm_stream_close(p.c);
    cm_stream_close(p.s);
    cm_tls_free(srv);
    cm_tls_free(cli);
    return rv;
}

TEST(tls_oom_walk)
{
    const char *ca = new_ca(30);
    struct walk_tls w = {.srv_dir = new_node(ca, "s"), .cli_dir = new_node(ca, "c")};
    ASSERT_INT_OP(test_alloc_walk(walk_tls_fn, &w), >=, 8);
}
