/* lib/net: the cluster CA (keys, CSRs, signing, fingerprints, join tokens) and TLS
 * streams over socketpairs, pumped by hand in one thread (no sleeps). Temporary
 * directories are /tmp/tls-unit-*, removed at exit even when a test fails. */
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
#include "net/net.h"
#include "test.h"

/* ------------------------------------------------------------------ helpers */

static char tmpdirs[64][64];
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

CM_UNUSED static const char *new_node(const char *ca, const char *cn)
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
    ASSERT_OK(cm_pki_key_and_csr(path_in(node, "node.key"), "node-2", &csr, &eb));
    struct stat st;
    ASSERT_INT_EQ(stat(path_in(node, "node.key"), &st), 0);
    ASSERT_UINT_EQ(st.st_mode & 0777, 0600);
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
    FILE *kf = fopen(path_in(node, "node.key"), "r");
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
    ASSERT_OK(cm_pki_issue_node(ca, ca, "first", "127.0.0.1", 90, &eb));
    struct cm_buf b = {0};
    read_all(path_in(ca, "node.pem"), &b);
    ASSERT_INT_EQ(verify_chain(ca, b.data, b.len), X509_V_OK);
    int64_t exp;
    ASSERT_OK(cm_pki_cert_expiry(path_in(ca, "node.pem"), &exp, &eb));
    ASSERT_INT_OP(exp, >=, now_s() + 90 * 86400 - 60);
    ASSERT_INT_OP(exp, <=, now_s() + 90 * 86400 + 60);
    cm_buf_clear(&b);

    const char *d = tmpdir();
    int64_t nb = 1700000000, na = 1700000000 + 3600;
    ASSERT_OK(cm_pki_issue_node_validity(ca, d, "old", NULL, nb, na, &eb));
    ASSERT_OK(cm_pki_cert_expiry(path_in(d, "node.pem"), &exp, &eb));
    ASSERT_INT_EQ(exp, na);
    read_all(path_in(d, "node.pem"), &b);
    ASSERT_INT_EQ(verify_chain(ca, b.data, b.len), X509_V_ERR_CERT_HAS_EXPIRED);
    ASSERT_ERR(cm_pki_issue_node_validity(ca, d, "old", NULL, na, nb, &eb), CM_EINVAL);
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
    cm_buf_done(&w.csr);
}
