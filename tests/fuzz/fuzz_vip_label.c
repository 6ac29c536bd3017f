/* Fuzz the Minuteman VIP label parsers and the DNS name of named VIPs. Input:
 * one selector byte (port label tcp/udp, or legacy app label), then the key, a NUL,
 * and the value (NUL-terminated copies, as labels come out of JSON). On success
 * the result must be well-formed; on failure the error message must be set and
 * terminated. */
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "lb/lb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t sel = data[0];
    const uint8_t *rest = data + 1;
    size_t rlen = size - 1;
    const uint8_t *nul = memchr(rest, '\0', rlen);
    size_t klen = nul != NULL ? (size_t)(nul - rest) : rlen;
    char *key = cm_strndup((const char *)rest, klen);
    char *value =
        nul != NULL ? cm_strndup((const char *)nul + 1, rlen - klen - 1) : cm_strdup("");
    if (key == NULL || value == NULL) {
        cm_free(&key);
        cm_free(&value);
        return 0;
    }
    struct lb_decl d;
    struct cm_errbuf eb = {0};
    int rv;
    if (sel % 3 == 2) {
        rv = lb_app_label_parse(key, value, &d, &eb);
    } else {
        rv = lb_port_label_parse(key, value, sel % 3 ? LB_PROTO_UDP : LB_PROTO_TCP, &d,
                                 &eb);
    }
    if (rv == 0) {
        if (d.port == 0 || memchr(d.name, '\0', sizeof(d.name)) == NULL) {
            abort();
        }
        if (d.kind == LB_DECL_NAMED) {
            if (d.name[0] == '\0' || d.addr.s_addr != 0) {
                abort();
            }
            char dns[600];
            (void)lb_vip_dns_name(d.name, "marathon", dns, sizeof(dns));
            if (memchr(dns, '\0', sizeof(dns)) == NULL) {
                abort();
            }
        } else if (d.kind != LB_DECL_ADDR || d.name[0] != '\0') {
            abort();
        }
        if ((sel % 3 == 2) != (d.port_index >= 0)) {
            abort();
        }
    } else if (rv != CM_ENOTFOUND) {
        if (eb.code != rv || memchr(eb.msg, '\0', sizeof(eb.msg)) == NULL ||
            eb.msg[0] == '\0') {
            abort();
        }
    }
    /* The DNS name fragment on the raw value too (any bytes). */
    char out[300];
    (void)lb_vip_dns_name(value, key, out, sizeof(out));
    cm_free(&key);
    cm_free(&value);
    return 0;
}
