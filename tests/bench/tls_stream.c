/* TLS stream benchmark (lib/net tls.c): both ends in one thread over a socketpair,
 * so it measures the CPU cost of our streams and OpenSSL, not a network.
 *  - mTLS handshakes per second (EC P-256 certificates from a fresh cluster CA, both
 *    sides verifying, TLS 1.3);
 *  - bulk throughput one way through cm_stream_writev/cm_stream_read, in MiB/s.
 *
 * Usage: tls_stream [--handshakes N] [--mib M]
 * Prints `key=value` lines on stdout. Its files live in /tmp/tls-bench-* (removed). */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "net/net.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rv)
{
    fprintf(stderr, "tls_stream: %s: %s\n", what, cm_strerror(rv));
    exit(1);
}

static char dir[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    (void)nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static struct cm_tls *node_tls(const char *name)
{
    char d[128], ca[160], cert[160], key[160];
    snprintf(d, sizeof(d), "%s/%s", dir, name);
    struct cm_errbuf eb = {0};
    int rv = cm_pki_issue_node(dir, d, name, NULL, 1, &eb);
    if (rv != 0) {
        die(eb.msg, rv);
    }
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(cert, sizeof(cert), "%s/node.pem", d);
    snprintf(key, sizeof(key), "%s/node.key", d);
    struct cm_tls_options o = {
        .ca_file = ca, .cert_file = cert, .key_file = key, .require_peer_cert = true};
    struct cm_tls *t;
    rv = cm_tls_new(&o, &t, &eb);
    if (rv != 0) {
        die(eb.msg, rv);
    }
    return t;
}

static void pair_new(struct cm_tls *a, struct cm_tls *b, struct cm_stream **c,
                     struct cm_stream **s)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        die("socketpair", cm_errno());
    }
    int rv = cm_tls_wrap(a, sv[0], false, c);
    if (rv == 0) {
        rv = cm_tls_wrap(b, sv[1], true, s);
    }
    if (rv != 0) {
        die("wrap", rv);
    }
}

/* Drive both handshakes to the end (each step is a zero-length read). */
static void handshake(struct cm_stream *c, struct cm_stream *s)
{
    char b;
    while (!cm_tls_stream_ready(c) || !cm_tls_stream_ready(s)) {
        ssize_t n1 = cm_stream_read(c, &b, 0), n2 = cm_stream_read(s, &b, 0);
        if ((n1 < 0 && n1 != CM_EAGAIN) || (n2 < 0 && n2 != CM_EAGAIN)) {
            die("handshake", (int)(n1 < 0 && n1 != CM_EAGAIN ? n1 : n2));
        }
    }
    /* TLS 1.3: the server's verdict on the client reaches it with the first read. */
    if (cm_stream_read(c, &b, 1) != CM_EAGAIN) {
        die("handshake (client)", CM_EPROTO);
    }
}

int main(int argc, char **argv)
{
    unsigned handshakes = 500, mib = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        unsigned long v = strtoul(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--handshakes") == 0) {
            handshakes = (unsigned)v;
        } else if (strcmp(argv[i], "--mib") == 0) {
            mib = (unsigned)v;
        } else {
            fprintf(stderr, "usage: tls_stream [--handshakes N] [--mib M]\n");
            return 2;
        }
    }
    snprintf(dir, sizeof(dir), "/tmp/tls-bench-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp", cm_errno());
    }
    atexit(cleanup);
    struct cm_errbuf eb = {0};
    int rv = cm_pki_ca_create(dir, 1, 1, &eb);
    if (rv != 0) {
        die(eb.msg, rv);
    }
    struct cm_tls *srv = node_tls("server"), *cli = node_tls("client");
    struct cm_stream *c, *s;

    double t0 = now_s();
    for (unsigned i = 0; i < handshakes; i++) {
        pair_new(cli, srv, &c, &s);
        handshake(c, s);
        cm_stream_close(c);
        cm_stream_close(s);
    }
    double hs_secs = now_s() - t0;

    pair_new(cli, srv, &c, &s);
    handshake(c, s);
    static char out[256 * 1024], in[256 * 1024];
    memset(out, 0x5a, sizeof(out));
    size_t total = (size_t)mib << 20, sent = 0, got = 0, pos = 0;
    t0 = now_s();
    while (got < total) {
        if (sent < total) {
            /* Retry rule (net.h): resume at the same offset in the same buffer. */
            size_t len = CM_MIN(sizeof(out) - pos, total - sent);
            ssize_t n = cm_stream_write(c, out + pos, len);
            if (n > 0) {
                sent += (size_t)n;
                pos = (pos + (size_t)n) % sizeof(out);
            } else if (n != CM_EAGAIN) {
                die("write", (int)n);
            }
        }
        for (;;) {
            ssize_t n = cm_stream_read(s, in, sizeof(in));
            if (n == CM_EAGAIN) {
                break;
            }
            if (n <= 0) {
                die("read", n == 0 ? CM_ECONNRESET : (int)n);
            }
            got += (size_t)n;
        }
    }
    double bulk_secs = now_s() - t0;
    cm_stream_close(c);
    cm_stream_close(s);
    cm_tls_free(srv);
    cm_tls_free(cli);
    printf("handshakes=%u\nhandshake_seconds=%.3f\nmtls_handshakes_per_s=%.0f\n",
           handshakes, hs_secs, handshakes / hs_secs);
    printf("bulk_mib=%u\nbulk_seconds=%.3f\ntls_mib_per_s=%.0f\n", mib, bulk_secs,
           mib / bulk_secs);
    return 0;
}
