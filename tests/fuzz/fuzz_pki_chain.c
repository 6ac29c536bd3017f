/* Fuzz what a joining node does with the certificate chain it receives
 * (cm_pki_install_node) and the PEM fingerprint helper, on any bytes. The CA and the
 * node key are made once per process in a temporary directory (/tmp/tls-fuzz-chain-*,
 * removed at exit), so no input can hold a chain that verifies: every call must fail
 * with CM_EINVAL and a message, and write nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "fuzz.h"
#include "net/net.h"

static char dir[64];
static char fp[65];

static void rm_in(const char *name)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    (void)unlink(p);
}

static void cleanup(void)
{
    rm_in("ca.pem");
    rm_in("ca.key");
    rm_in("node.key");
    (void)rmdir(dir);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/tls-fuzz-chain-XXXXXX");
    struct cm_errbuf eb = {0};
    struct cm_buf csr = {0};
    char p[128];
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    atexit(cleanup);
    snprintf(p, sizeof(p), "%s/node.key", dir);
    if (cm_pki_ca_create(dir, 7, 1, &eb) != 0 ||
        cm_pki_key_and_csr(p, "n", &csr, &eb) != 0) {
        fprintf(stderr, "fuzz_pki_chain: setup: %s\n", eb.msg);
        abort();
    }
    cm_buf_done(&csr);
    snprintf(p, sizeof(p), "%s/ca.pem", dir);
    if (cm_pki_fingerprint_file(p, fp, &eb) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        setup();
    }
    struct cm_errbuf eb = {0};
    int rv = cm_pki_install_node(dir, (const char *)data, size, fp, &eb);
    char p[128];
    struct stat st;
    snprintf(p, sizeof(p), "%s/node.pem", dir);
    if (rv != CM_EINVAL || eb.msg[0] == '\0' || stat(p, &st) == 0) {
        fprintf(stderr, "fuzz_pki_chain: %d %s\n", rv, eb.msg);
        abort();
    }
    char out[65];
    rv = cm_pki_fingerprint_pem((const char *)data, size, out, &eb);
    if (rv == 0 ? strlen(out) != 64 : rv != CM_EINVAL) {
        abort();
    }
    return 0;
}
