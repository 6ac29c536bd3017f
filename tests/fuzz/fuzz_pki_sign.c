/* Fuzz the CSR signer (cm_pki_sign): any bytes as the CSR, signed by a CA made once
 * per process in a temporary directory (/tmp/tls-fuzz-pki-*, removed at exit). The
 * only acceptable outcomes are a certificate chain (two PEM certificates) or
 * CM_EINVAL with a message; CM_EIO would mean the CSR damaged the CA's state. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/base.h"
#include "fuzz.h"
#include "net/net.h"

static char ca_dir[64];

static void remove_ca(void)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/ca.pem", ca_dir);
    (void)unlink(p);
    snprintf(p, sizeof(p), "%s/ca.key", ca_dir);
    (void)unlink(p);
    (void)rmdir(ca_dir);
}

static void make_ca(void)
{
    snprintf(ca_dir, sizeof(ca_dir), "/tmp/tls-fuzz-pki-XXXXXX");
    struct cm_errbuf eb = {0};
    if (mkdtemp(ca_dir) == NULL || cm_pki_ca_create(ca_dir, 42, 1, &eb) != 0) {
        fprintf(stderr, "fuzz_pki_sign: no CA: %s\n", eb.msg);
        abort();
    }
    atexit(remove_ca);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ca_dir[0] == '\0') {
        make_ca();
    }
    struct cm_buf cert = {0};
    struct cm_errbuf eb = {0};
    int rv = cm_pki_sign(ca_dir, (const char *)data, size, "fuzz-node", "10.1.2.3", 1,
                         &cert, &eb);
    if (rv == 0) {
        const char *first = strstr(cert.data, "-----BEGIN CERTIFICATE-----");
        if (first == NULL || strstr(first + 1, "-----BEGIN CERTIFICATE-----") == NULL) {
            abort();
        }
    } else if (rv != CM_EINVAL || eb.msg[0] == '\0' || cert.len != 0) {
        fprintf(stderr, "fuzz_pki_sign: %d %s\n", rv, eb.msg);
        abort();
    }
    cm_buf_done(&cert);
    return 0;
}
