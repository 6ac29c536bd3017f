/* Fuzz the DNS message parser: any bytes through the reader and the query
 * validator. Whatever parses must survive a round trip through the writer: each
 * record written back reads back with the same type, owner and data. */
#include <stdlib.h>

#include "base/base.h"
#include "dns/dns.h"
#include "fuzz.h"

static uint8_t out[65535];

static void check_round_trip(const struct dns_header *h, const struct dns_question *q,
                             const struct dns_rr *rr, enum dns_section sec)
{
    struct dns_writer w;
    dns_writer_init(&w, out, sizeof(out), h);
    if (q != NULL && dns_writer_question(&w, q) != 0) {
        abort();
    }
    if (rr == NULL) {
        return;
    }
    if (dns_writer_rr(&w, sec, rr) != 0) {
        abort(); /* a parsed record always fits 64k again */
    }
    size_t len = dns_writer_finish(&w);
    struct dns_reader r;
    struct dns_rr back;
    if (dns_reader_init(&r, out, len) != 0 || dns_reader_rr(&r, &back, NULL) != 0) {
        abort();
    }
    if (back.type != rr->type || !dns_name_equal(&back.owner, &rr->owner) ||
        back.owner.len != rr->owner.len ||
        memcmp(back.owner.data, rr->owner.data, rr->owner.len) != 0) {
        abort();
    }
    switch (rr->type) {
    case DNS_TYPE_A:
        if (memcmp(back.data.a, rr->data.a, 4) != 0) {
            abort();
        }
        break;
    case DNS_TYPE_SRV:
        if (back.data.srv.port != rr->data.srv.port ||
            !dns_name_equal(&back.data.srv.target, &rr->data.srv.target)) {
            abort();
        }
        break;
    case DNS_TYPE_SOA:
        if (back.data.soa.serial != rr->data.soa.serial ||
            !dns_name_equal(&back.data.soa.mname, &rr->data.soa.mname) ||
            !dns_name_equal(&back.data.soa.rname, &rr->data.soa.rname)) {
            abort();
        }
        break;
    case DNS_TYPE_NS:
        if (!dns_name_equal(&back.data.ns, &rr->data.ns)) {
            abort();
        }
        break;
    case DNS_TYPE_OPT:
        break; /* options are not written back */
    default:
        if (back.rdlength != rr->rdlength ||
            (rr->rdlength > 0 && memcmp(back.rdata, rr->rdata, rr->rdlength) != 0)) {
            abort();
        }
    }
    if (dns_reader_rr(&r, &back, NULL) != CM_ENOENT || dns_reader_finish(&r) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exact-size copy so ASan sees reads one past the end. */
    uint8_t *msg = malloc(size ? size : 1);
    if (msg == NULL) {
        return 0;
    }
    memcpy(msg, data, size);

    struct dns_query q;
    int qrv = dns_query_parse(msg, size, &q);
    if (qrv == 0 && (!q.has_question || q.rcode != DNS_RCODE_NOERROR)) {
        abort();
    }

    int check = dns_message_check(msg, size);
    struct dns_reader r;
    if (dns_reader_init(&r, msg, size) == 0) {
        struct dns_question qs;
        char text[1100];
        int rv;
        struct dns_header h = {.id = r.header.id};
        while ((rv = dns_reader_question(&r, &qs)) == 0) {
            if (dns_name_to_str(&qs.name, text, sizeof(text)) < 0) {
                abort();
            }
            check_round_trip(&h, &qs, NULL, DNS_SECTION_QUESTION);
        }
        struct dns_rr rr;
        enum dns_section sec;
        while ((rv = dns_reader_rr(&r, &rr, &sec)) == 0) {
            if (dns_name_to_str(&rr.owner, text, sizeof(text)) < 0) {
                abort();
            }
            check_round_trip(&h, NULL, &rr, sec);
        }
        /* The whole-message check agrees with walking it. */
        if ((check == 0) != (rv == CM_ENOENT && dns_reader_finish(&r) == 0)) {
            abort();
        }
    } else if (size >= DNS_HEADER_LEN || check != CM_ETRUNC) {
        abort();
    }
    free(msg);
    return 0;
}
