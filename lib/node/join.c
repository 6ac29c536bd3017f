/* Bootstrap and join (DESIGN.md §11, issue 8 item 1).
 *
 * The first server (no --join, no certificate yet) creates the cluster CA in
 * <data-dir>/tls, its own node certificate and a join token
 * "cmjoin1.<CA fingerprint>.<secret>", written to tls/join-token (0600) and
 * logged.
 *
 * A new node (--join HOST:PORT,... --token T) makes a key and a CSR, resolves
 * the join addresses (c-ares), connects over TLS to a member's rpc port without
 * a client certificate, accepting the member only if its chain holds the CA
 * whose fingerprint the token carries, and sends one RAFT_CHANNEL_JOIN frame:
 *   {"v":1,"secret","name","raft_id":"<hex>","address":"host:port","csr"}
 * The member checks the secret (constant time), signs the CSR, has the leader
 * add the node as a raft learner, and answers with one JOIN frame:
 *   {"v":1,"status","msg","cluster_id":"<hex>","ca","ca_key","cert","secret",
 *    "members":[{"id":"<hex>","address"}]}
 * The CA key travels too: every node is a server and signs later joins (and
 * renews its own certificate), so any member can admit a node while others are
 * down. The joiner stores the files (node.pem last: its presence means "joined"),
 * starts raft with the cluster id and no bootstrap, and receives the log. A
 * restarted member never joins again.
 *
 * The joining client is synchronous: it runs in cm_node_start before raft and
 * the API exist, so it has nothing to share the loop with. */
#include <arpa/inet.h>
#include <ares.h>
#include <ev.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "net/net.h"
#include "node/cluster_int.h"
#include "raft/raft.h"
#include "state/state.h"

/* How long a joining node keeps trying (members may still be starting). */
#define JOIN_DEADLINE_MS 120000
/* One attempt: connect, handshake, request, answer (adding a learner may wait
 * for another membership change). */
#define JOIN_ATTEMPT_MS 30000
/* A member gives a joining connection this long. */
#define JOIN_SERVE_MS 40000

/* ------------------------------------------------------------------ codec */

static bool put_u64_hex(cJSON *o, const char *k, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof(s), "%llx", (unsigned long long)v);
    return cJSON_AddStringToObject(o, k, s) != NULL;
}

static int get_hex(const cJSON *o, const char *k, uint64_t *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) > 16) {
        return CM_EMALFORMED;
    }
    uint64_t x = 0;
    for (const char *p = v->valuestring; *p != '\0'; p++) {
        int d = (*p >= '0' && *p <= '9')   ? *p - '0'
                : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
                                           : -1;
        if (d < 0) {
            return CM_EMALFORMED;
        }
        x = x << 4 | (uint64_t)d;
    }
    *ret = x;
    return 0;
}

static int get_s(const cJSON *o, const char *k, bool required, const char **ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    *ret = NULL;
    if (v == NULL) {
        return required ? CM_EMALFORMED : 0;
    }
    if (!cJSON_IsString(v)) {
        return CM_EMALFORMED;
    }
    *ret = v->valuestring;
    return 0;
}

static cJSON *parse_versioned(const void *body, size_t len, int *ret_err)
{
    *ret_err = CM_EMALFORMED;
    if (len > RAFT_JOIN_MAX) {
        *ret_err = CM_ETOOBIG;
        return NULL;
    }
    cm_state_json_init();
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (o == NULL) {
        return NULL;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "v");
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(v)) {
        cJSON_Delete(o);
        return NULL;
    }
    if (v->valuedouble != CM_JOIN_VERSION) {
        cJSON_Delete(o);
        *ret_err = CM_EPROTO;
        return NULL;
    }
    *ret_err = 0;
    return o;
}

static int print_into(cJSON *o, bool ok, struct cm_buf *out)
{
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (text == NULL) {
        return CM_ENOMEM;
    }
    int rv = strlen(text) > RAFT_JOIN_MAX ? CM_ETOOBIG : cm_buf_puts(out, text);
    cJSON_free(text);
    return rv;
}

int cm_join_req_encode(const struct cm_join_req *r, struct cm_buf *out)
{
    cm_state_json_init();
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddNumberToObject(o, "v", CM_JOIN_VERSION) != NULL &&
              cJSON_AddStringToObject(o, "secret", r->secret) != NULL &&
              cJSON_AddStringToObject(o, "name", r->name) != NULL &&
              put_u64_hex(o, "raft_id", r->raft_id) &&
              cJSON_AddStringToObject(o, "address", r->address) != NULL &&
              cJSON_AddStringToObject(o, "csr", r->csr) != NULL;
    return print_into(o, ok, out);
}

int cm_join_req_decode(const void *body, size_t len, struct cm_join_req *ret)
{
    memset(ret, 0, sizeof(*ret));
    int rv;
    cJSON *o = parse_versioned(body, len, &rv);
    if (o == NULL) {
        return rv;
    }
    struct cm_join_req r = {.doc = o};
    rv = get_s(o, "secret", true, &r.secret);
    rv = rv ? rv : get_s(o, "name", true, &r.name);
    rv = rv ? rv : get_hex(o, "raft_id", &r.raft_id);
    rv = rv ? rv : get_s(o, "address", true, &r.address);
    rv = rv ? rv : get_s(o, "csr", true, &r.csr);
    if (rv == 0 && (r.raft_id == 0 || r.name[0] == '\0' ||
                    strlen(r.address) >= RAFT_ADDRESS_MAX || r.address[0] == '\0')) {
        rv = CM_EMALFORMED;
    }
    if (rv != 0) {
        cJSON_Delete(o);
        return rv;
    }
    *ret = r;
    return 0;
}

void cm_join_req_done(struct cm_join_req *r)
{
    cJSON_Delete(r->doc);
    memset(r, 0, sizeof(*r));
}

int cm_join_reply_encode(const struct cm_join_reply *r, struct cm_buf *out)
{
    cm_state_json_init();
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddNumberToObject(o, "v", CM_JOIN_VERSION) != NULL &&
              cJSON_AddNumberToObject(o, "status", r->status) != NULL &&
              (r->msg == NULL || cJSON_AddStringToObject(o, "msg", r->msg) != NULL);
    if (ok && r->status == 0) {
        ok = put_u64_hex(o, "cluster_id", r->cluster_id) &&
             cJSON_AddStringToObject(o, "ca", r->ca) != NULL &&
             cJSON_AddStringToObject(o, "ca_key", r->ca_key) != NULL &&
             cJSON_AddStringToObject(o, "cert", r->cert) != NULL &&
             cJSON_AddStringToObject(o, "secret", r->secret) != NULL;
        cJSON *a = ok ? cJSON_AddArrayToObject(o, "members") : NULL;
        ok = a != NULL;
        for (unsigned i = 0; ok && i < r->n_members; i++) {
            cJSON *m = cJSON_CreateObject();
            ok = m != NULL && cJSON_AddItemToArray(a, m) &&
                 put_u64_hex(m, "id", r->members[i].id) &&
                 cJSON_AddStringToObject(m, "address", r->members[i].address) != NULL;
        }
    }
    return print_into(o, ok, out);
}

int cm_join_reply_decode(const void *body, size_t len, struct cm_join_reply *ret)
{
    memset(ret, 0, sizeof(*ret));
    int rv;
    cJSON *o = parse_versioned(body, len, &rv);
    if (o == NULL) {
        return rv;
    }
    struct cm_join_reply r = {.doc = o};
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
    rv = cJSON_IsNumber(st) && st->valuedouble <= 0 && st->valuedouble >= -100000
             ? 0
             : CM_EMALFORMED;
    r.status = rv == 0 ? (int)st->valuedouble : 0;
    rv = rv ? rv : get_s(o, "msg", false, &r.msg);
    if (rv == 0 && r.status == 0) {
        rv = get_hex(o, "cluster_id", &r.cluster_id);
        rv = rv ? rv : get_s(o, "ca", true, &r.ca);
        rv = rv ? rv : get_s(o, "ca_key", true, &r.ca_key);
        rv = rv ? rv : get_s(o, "cert", true, &r.cert);
        rv = rv ? rv : get_s(o, "secret", true, &r.secret);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "members");
        if (rv == 0 && !cJSON_IsArray(a)) {
            rv = CM_EMALFORMED;
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, a)
        {
            if (rv != 0) {
                break;
            }
            if (r.n_members == CM_JOIN_MAX_MEMBERS) {
                break; /* enough to find the leader */
            }
            const char *addr;
            struct cm_join_member *jm = &r.members[r.n_members];
            rv = get_hex(m, "id", &jm->id);
            rv = rv ? rv : get_s(m, "address", true, &addr);
            if (rv == 0 && (jm->id == 0 || strlen(addr) >= sizeof(jm->address))) {
                rv = CM_EMALFORMED;
            }
            if (rv == 0) {
                snprintf(jm->address, sizeof(jm->address), "%s", addr);
                r.n_members++;
            }
        }
    }
    if (rv != 0) {
        cJSON_Delete(o);
        return rv;
    }
    *ret = r;
    return 0;
}

void cm_join_reply_done(struct cm_join_reply *r)
{
    cJSON_Delete(r->doc);
    memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------------ files */

static void tls_path(char *buf, size_t cap, const char *dir, const char *file)
{
    snprintf(buf, cap, "%s/%s", dir, file);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The host part of "host:port" when it is a numeric address, for the
 * certificate's subjectAltName. */
static const char *numeric_host(const char *hostport, char *buf, size_t cap)
{
    uint16_t port;
    struct in6_addr a6;
    if (cm_parse_hostport(hostport, buf, cap, &port) != 0) {
        return NULL;
    }
    if (inet_pton(AF_INET, buf, &a6) == 1 || inet_pton(AF_INET6, buf, &a6) == 1) {
        return buf;
    }
    return NULL;
}

int cm_join_bootstrap(const char *tls_dir, uint64_t cluster_id, const char *name,
                      const char *address, struct cm_errbuf *eb)
{
    char ca[1200], node[1200], token_path[1200];
    tls_path(ca, sizeof(ca), tls_dir, "ca.pem");
    tls_path(node, sizeof(node), tls_dir, "node.pem");
    tls_path(token_path, sizeof(token_path), tls_dir, "join-token");
    int rv;
    if (!file_exists(ca)) {
        rv = cm_pki_ca_create(tls_dir, cluster_id, CM_CA_DAYS, eb);
        if (rv != 0) {
            return cm_err_wrapf(eb, "cluster CA");
        }
        cm_info("cluster", "created the cluster CA in %s", tls_dir);
    }
    if (!file_exists(node)) {
        char host[RAFT_ADDRESS_MAX];
        rv = cm_pki_issue_node(tls_dir, tls_dir, name,
                               numeric_host(address, host, sizeof(host)),
                               CM_NODE_CERT_DAYS, eb);
        if (rv != 0) {
            return cm_err_wrapf(eb, "node certificate");
        }
    }
    char text[CM_JOIN_TOKEN_MAX + 1];
    if (!file_exists(token_path)) {
        struct cm_join_token t;
        rv = cm_join_token_new(ca, &t, eb);
        if (rv != 0) {
            return cm_err_wrapf(eb, "join token");
        }
        cm_join_token_format(&t, text, sizeof(text));
        rv = cm_pki_write_file(token_path, text, strlen(text), 0600, eb);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int cm_join_token_load(const char *tls_dir, struct cm_join_token *ret,
                       struct cm_errbuf *eb)
{
    char path[1200];
    tls_path(path, sizeof(path), tls_dir, "join-token");
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return cm_err_sys(eb, cm_errno(), "open `%s`", path);
    }
    char text[CM_JOIN_TOKEN_MAX + 8] = "";
    bool got = fgets(text, sizeof(text), f) != NULL;
    fclose(f);
    text[strcspn(text, "\r\n")] = '\0';
    if (!got) {
        return cm_err_setf(eb, CM_ECORRUPT, "`%s` is empty", path);
    }
    int rv = cm_join_token_parse(text, ret, eb);
    return rv != 0 ? cm_err_wrapf(eb, "`%s`", path) : 0;
}

/* ------------------------------------------------------------------ the client */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void addrinfo_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct ares_addrinfo **out = arg;
    if (status == ARES_SUCCESS) {
        *out = res;
    } else if (res != NULL) {
        ares_freeaddrinfo(res);
    }
}

/* Resolve "host:port" into numeric "ip:port" strings (c-ares; numeric hosts
 * pass through). Returns how many (up to @max). */
static unsigned resolve(const char *hostport, char out[][RAFT_ADDRESS_MAX], unsigned max)
{
    char host[128];
    uint16_t port;
    if (cm_parse_hostport(hostport, host, sizeof(host), &port) != 0) {
        return 0;
    }
    static bool inited;
    if (!inited) {
        if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
            return 0;
        }
        inited = true;
    }
    ares_channel ch;
    if (ares_init(&ch) != ARES_SUCCESS) {
        return 0;
    }
    struct ares_addrinfo *res = NULL;
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC,
                                        .ai_socktype = SOCK_STREAM};
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    ares_getaddrinfo(ch, host, service, &hints, addrinfo_done, &res);
    for (;;) {
        fd_set rfds, wfds;
        FD_ZERO(&rfds);
        FD_ZERO(&wfds);
        int nfds = ares_fds(ch, &rfds, &wfds);
        if (nfds == 0) {
            break;
        }
        struct timeval tv, *tvp = ares_timeout(ch, NULL, &tv);
        if (select(nfds, &rfds, &wfds, NULL, tvp) < 0 && errno != EINTR) {
            break;
        }
        ares_process(ch, &rfds, &wfds);
    }
    unsigned n = 0;
    for (struct ares_addrinfo_node *a = res != NULL ? res->nodes : NULL;
         a != NULL && n < max; a = a->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        const void *src =
            a->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        if (inet_ntop(a->ai_family, src, ip, sizeof(ip)) == NULL) {
            continue;
        }
        snprintf(out[n++], RAFT_ADDRESS_MAX,
                 a->ai_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
    }
    if (res != NULL) {
        ares_freeaddrinfo(res);
    }
    ares_destroy(ch);
    return n;
}

/* Wait until @s can go on after CM_EAGAIN, or the deadline. */
static int wait_stream(struct cm_stream *s, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left <= 0) {
        return CM_ETIMEDOUT;
    }
    struct pollfd p = {.fd = cm_stream_fd(s), .events = 0};
    if (s->want & CM_STREAM_WANT_READ) {
        p.events |= POLLIN;
    }
    if (s->want & CM_STREAM_WANT_WRITE) {
        p.events |= POLLOUT;
    }
    if (p.events == 0) {
        p.events = POLLIN;
    }
    int rv = poll(&p, 1, (int)CM_MIN(left, (int64_t)1000));
    return rv < 0 && errno != EINTR ? cm_errno() : 0;
}

/* One attempt against @addr: the whole exchange. */
static int join_once(const char *addr, struct cm_tls *tls, const struct cm_buf *frame,
                     struct cm_buf *reply_body, struct cm_errbuf *eb)
{
    int64_t deadline = now_ms() + JOIN_ATTEMPT_MS;
    int fd;
    int rv = cm_tcp_connect(addr, &fd);
    if (rv != 0) {
        return cm_err_setf(eb, rv, "connect to %s: %s", addr, cm_strerror(rv));
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    while ((rv = poll(&p, 1, 5000)) < 0 && errno == EINTR) {
    }
    rv = rv == 0 ? CM_ETIMEDOUT : cm_tcp_connect_result(fd);
    struct cm_stream *s = NULL;
    if (rv == 0) {
        rv = cm_tls_wrap(tls, fd, false, &s);
    }
    if (rv != 0) {
        close(fd);
        return cm_err_setf(eb, rv, "connect to %s: %s", addr, cm_strerror(rv));
    }
    size_t off = 0;
    while (off < frame->len) {
        ssize_t w = cm_stream_write(s, frame->data + off, frame->len - off);
        if (w == CM_EAGAIN) {
            rv = wait_stream(s, deadline);
        } else if (w < 0) {
            rv = (int)w;
        } else {
            off += (size_t)w;
        }
        if (rv != 0) {
            goto fail;
        }
    }
    /* The answer: one JOIN frame. */
    uint8_t buf[4096];
    struct cm_buf in = {0};
    for (;;) {
        if (in.len >= RAFT_FRAME_HEADER) {
            uint8_t ch;
            uint32_t blen;
            rv = raft_frame_header(in.data, in.len, &ch, &blen);
            if (rv == 0 && (ch != RAFT_CHANNEL_JOIN || blen > RAFT_JOIN_MAX)) {
                rv = CM_EPROTO;
            }
            if (rv != 0) {
                cm_buf_done(&in);
                goto fail;
            }
            if (in.len >= RAFT_FRAME_HEADER + (size_t)blen) {
                rv = cm_buf_append(reply_body, in.data + RAFT_FRAME_HEADER, blen);
                cm_buf_done(&in);
                cm_stream_close(s);
                return rv;
            }
        }
        ssize_t n = cm_stream_read(s, buf, sizeof(buf));
        if (n == CM_EAGAIN) {
            rv = wait_stream(s, deadline);
        } else if (n <= 0) {
            rv = n == 0 ? CM_ECONNRESET : (int)n;
        } else {
            rv = cm_buf_append(&in, buf, (size_t)n);
        }
        if (rv != 0) {
            cm_buf_done(&in);
            goto fail;
        }
    }
fail:
    cm_err_setf(eb, rv, "join through %s: %s%s%s", addr, cm_strerror(rv),
                cm_stream_is_tls(s) && cm_tls_stream_error(s)[0] != '\0' ? ": " : "",
                cm_stream_is_tls(s) ? cm_tls_stream_error(s) : "");
    cm_stream_close(s);
    return rv;
}

static int write_pem(const char *dir, const char *file, const char *text, unsigned mode,
                     struct cm_errbuf *eb)
{
    char path[1200];
    tls_path(path, sizeof(path), dir, file);
    return cm_pki_write_file(path, text, strlen(text), mode, eb);
}

int cm_join_run(const struct cm_join_client *jc, struct cm_join_result *ret,
                struct cm_errbuf *eb)
{
    struct cm_join_token token;
    int rv = cm_join_token_parse(jc->token, &token, eb);
    if (rv != 0) {
        return cm_err_wrapf(eb, "--token");
    }
    if (mkdir(jc->tls_dir, 0700) != 0 && errno != EEXIST) {
        return cm_err_sys(eb, cm_errno(), "create `%s`", jc->tls_dir);
    }
    char key[1200];
    tls_path(key, sizeof(key), jc->tls_dir, "node.key");
    struct cm_buf csr = {0};
    rv = cm_pki_key_and_csr(key, jc->name, &csr, eb);
    if (rv != 0) {
        cm_buf_done(&csr);
        return cm_err_wrapf(eb, "node key");
    }
    struct cm_join_req req = {
        .secret = token.secret,
        .name = jc->name,
        .raft_id = jc->raft_id,
        .address = jc->address,
        .csr = csr.data,
    };
    struct cm_buf body = {0}, frame = {0};
    rv = cm_join_req_encode(&req, &body);
    if (rv == 0) {
        rv = raft_frame_encode(RAFT_CHANNEL_JOIN, body.data, body.len, &frame);
    }
    cm_buf_done(&body);
    cm_buf_done(&csr);
    if (rv != 0) {
        cm_buf_done(&frame);
        return cm_err_setf(eb, rv, "join request: %s", cm_strerror(rv));
    }
    struct cm_tls *tls = NULL;
    struct cm_tls_options to = {.pin_fingerprint = token.fingerprint};
    rv = cm_tls_new(&to, &tls, eb);
    if (rv != 0) {
        cm_buf_done(&frame);
        return cm_err_wrapf(eb, "TLS for joining");
    }
    int64_t deadline = now_ms() + JOIN_DEADLINE_MS;
    struct cm_join_reply reply = {0};
    struct cm_buf rbody = {0};
    bool done = false;
    while (!done) {
        for (unsigned i = 0; i < jc->n_join && !done; i++) {
            char addrs[8][RAFT_ADDRESS_MAX];
            unsigned n = resolve(jc->join[i], addrs, CM_ARRAY_SIZE(addrs));
            if (n == 0) {
                cm_warn("join", "cannot resolve %s", jc->join[i]);
            }
            for (unsigned k = 0; k < n && !done; k++) {
                cm_buf_clear(&rbody);
                rv = join_once(addrs[k], tls, &frame, &rbody, eb);
                if (rv == 0) {
                    rv = cm_join_reply_decode(rbody.data, rbody.len, &reply);
                    if (rv != 0) {
                        cm_err_setf(eb, rv, "join through %s: bad answer: %s", addrs[k],
                                    cm_strerror(rv));
                    } else if (reply.status != 0) {
                        rv = reply.status;
                        cm_err_setf(
                            eb, rv, "join through %s refused: %s", addrs[k],
                            reply.msg != NULL ? reply.msg : cm_strerror(reply.status));
                        cm_join_reply_done(&reply);
                        if (rv == CM_EPERM || rv == CM_EINVAL) {
                            goto out; /* retrying cannot help */
                        }
                    } else {
                        done = true;
                        break;
                    }
                }
                cm_warn("join", "%s", eb->msg);
            }
        }
        if (!done) {
            if (now_ms() >= deadline) {
                cm_err_wrapf(eb, "giving up joining after %d s", JOIN_DEADLINE_MS / 1000);
                goto out;
            }
            sleep(1);
        }
    }
    /* Store the identity; node.pem last (see the top of the file). */
    char tok[CM_JOIN_TOKEN_MAX + 1];
    struct cm_join_token mine = token;
    snprintf(mine.secret, sizeof(mine.secret), "%s", reply.secret);
    cm_join_token_format(&mine, tok, sizeof(tok));
    char fp[65];
    rv = cm_pki_fingerprint_pem(reply.ca, strlen(reply.ca), fp, eb);
    if (rv == 0 && strcmp(fp, token.fingerprint) != 0) {
        rv = cm_err_setf(eb, CM_EPERM,
                         "the CA sent does not match the token's fingerprint");
    }
    rv = rv ? rv : write_pem(jc->tls_dir, "ca.key", reply.ca_key, 0600, eb);
    rv = rv ? rv : write_pem(jc->tls_dir, "join-token", tok, 0600, eb);
    if (rv == 0) {
        ret->cluster_id = reply.cluster_id;
        ret->n_members = reply.n_members;
        memcpy(ret->members, reply.members, sizeof(reply.members));
        /* The caller records the cluster id, then stores the certificate. */
        snprintf(ret->tls_dir, sizeof(ret->tls_dir), "%s", jc->tls_dir);
        snprintf(ret->fingerprint, sizeof(ret->fingerprint), "%s", token.fingerprint);
        ret->cert = cm_strdup(reply.cert);
        if (ret->cert == NULL) {
            rv = cm_err_setf(eb, CM_ENOMEM, "out of memory");
        }
    }
    cm_join_reply_done(&reply);
out:
    cm_buf_done(&rbody);
    cm_buf_done(&frame);
    cm_tls_free(tls);
    return rv;
}

int cm_join_finish(struct cm_join_result *r, struct cm_errbuf *eb)
{
    /* Checks the chain against the token's CA and node.key, then writes ca.pem
     * and node.pem. */
    int rv =
        cm_pki_install_node(r->tls_dir, r->cert, strlen(r->cert), r->fingerprint, eb);
    cm_free(&r->cert);
    return rv != 0 ? cm_err_wrapf(eb, "the certificate the member sent") : 0;
}

/* ------------------------------------------------------------------ the server */

enum join_conn_state {
    JC_ADDING = 0, /* waiting for the leader to add the learner */
    JC_WRITING,    /* writing the answer */
    JC_DRAINING,   /* answer written and shut down: wait for the peer to close */
};

struct join_conn {
    struct cm_join_server *js;
    struct join_conn *prev;
    struct join_conn *next;
    enum join_conn_state state;
    struct cm_stream *s;
    ev_io io;
    ev_timer timer;
    struct cm_buf out;
    size_t off;
    bool dead; /* closed while the learner change was out: the callback frees */
    char name[64];
    char cert_pem[8192];
};

struct cm_join_server {
    struct ev_loop *loop;
    struct cm_cluster *cluster;
    char tls_dir[1100];
    uint64_t cluster_id;
    struct join_conn *conns;
    uint64_t served;
    uint64_t refused;
};

int cm_join_server_new(struct ev_loop *loop, struct cm_cluster *cluster,
                       const char *tls_dir, uint64_t cluster_id,
                       struct cm_join_server **ret)
{
    struct cm_join_server *js = cm_calloc(1, sizeof(*js));
    if (js == NULL) {
        return CM_ENOMEM;
    }
    js->loop = loop;
    js->cluster = cluster;
    js->cluster_id = cluster_id;
    snprintf(js->tls_dir, sizeof(js->tls_dir), "%s", tls_dir);
    *ret = js;
    return 0;
}

static void conn_free(struct join_conn *jc)
{
    struct cm_join_server *js = jc->js;
    ev_io_stop(js->loop, &jc->io);
    ev_timer_stop(js->loop, &jc->timer);
    if (jc->prev != NULL) {
        jc->prev->next = jc->next;
    } else {
        js->conns = jc->next;
    }
    if (jc->next != NULL) {
        jc->next->prev = jc->prev;
    }
    cm_stream_close(jc->s);
    cm_buf_done(&jc->out);
    cm_free(&jc);
}

/* Close now, or once the learner change answers. */
static void conn_close(struct join_conn *jc)
{
    if (jc->state == JC_ADDING) {
        jc->dead = true;
        ev_io_stop(jc->js->loop, &jc->io);
        ev_timer_stop(jc->js->loop, &jc->timer);
        return;
    }
    conn_free(jc);
}

static void conn_write(struct join_conn *jc)
{
    while (jc->state == JC_WRITING && jc->off < jc->out.len) {
        ssize_t w = cm_stream_write(jc->s, jc->out.data + jc->off, jc->out.len - jc->off);
        if (w == CM_EAGAIN) {
            int ev = (jc->s->want & CM_STREAM_WANT_WRITE) ? EV_WRITE : EV_READ;
            ev_io_stop(jc->js->loop, &jc->io);
            ev_io_set(&jc->io, cm_stream_fd(jc->s), ev);
            ev_io_start(jc->js->loop, &jc->io);
            return;
        }
        if (w < 0) {
            conn_free(jc);
            return;
        }
        jc->off += (size_t)w;
    }
    (void)cm_stream_shutdown(jc->s);
    jc->state = JC_DRAINING;
    ev_io_stop(jc->js->loop, &jc->io);
    ev_io_set(&jc->io, cm_stream_fd(jc->s), EV_READ);
    ev_io_start(jc->js->loop, &jc->io);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct join_conn *jc = cm_container_of(w, struct join_conn, io);
    if (jc->state == JC_WRITING) {
        conn_write(jc);
        return;
    }
    /* Draining: the joiner closes once it has read the answer. */
    uint8_t junk[256];
    ssize_t n = cm_stream_read(jc->s, junk, sizeof(junk));
    if (n != CM_EAGAIN) {
        conn_free(jc);
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(cm_container_of(w, struct join_conn, timer));
}

/* Queue the answer as one JOIN frame and start writing. */
static void conn_answer(struct join_conn *jc, const struct cm_join_reply *r)
{
    struct cm_buf body = {0};
    int rv = cm_join_reply_encode(r, &body);
    if (rv == 0) {
        rv = raft_frame_encode(RAFT_CHANNEL_JOIN, body.data, body.len, &jc->out);
    }
    cm_buf_done(&body);
    if (rv != 0) {
        cm_warn("join", "answer to %s: %s", jc->name, cm_strerror(rv));
        conn_free(jc);
        return;
    }
    jc->state = JC_WRITING;
    jc->off = 0;
    ev_timer_stop(jc->js->loop, &jc->timer);
    ev_timer_set(&jc->timer, 10.0, 0.);
    ev_timer_start(jc->js->loop, &jc->timer);
    conn_write(jc);
}

static void conn_refuse(struct join_conn *jc, int status, const char *msg)
{
    jc->js->refused++;
    cm_warn("join", "refused %s: %s", jc->name[0] != '\0' ? jc->name : "a node", msg);
    struct cm_join_reply r = {.status = status, .msg = msg};
    conn_answer(jc, &r);
}

static char *read_text(const char *dir, const char *file)
{
    char path[1200];
    tls_path(path, sizeof(path), dir, file);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    struct cm_buf b = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && b.len < CM_PKI_PEM_MAX) {
        if (cm_buf_append(&b, buf, n) != 0) {
            break;
        }
    }
    fclose(f);
    return cm_buf_steal(&b);
}

static void conn_added(void *arg, int status, uint64_t index, const char *msg)
{
    (void)index;
    struct join_conn *jc = arg;
    struct cm_join_server *js = jc->js;
    if (jc->dead) {
        conn_free(jc);
        return;
    }
    jc->state = JC_WRITING;
    if (status != 0) {
        char why[200];
        snprintf(why, sizeof(why), "the leader could not add it: %s",
                 msg != NULL ? msg : cm_strerror(status));
        /* Not final for the joiner: another attempt may find a leader. */
        conn_refuse(jc, status == CM_EINVAL ? CM_ECONFLICT : status, why);
        return;
    }
    struct cm_join_token tok;
    struct cm_errbuf eb;
    char *ca = read_text(js->tls_dir, "ca.pem");
    char *ca_key = read_text(js->tls_dir, "ca.key");
    if (ca == NULL || ca_key == NULL || cm_join_token_load(js->tls_dir, &tok, &eb) != 0) {
        cm_free(&ca);
        cm_free(&ca_key);
        conn_refuse(jc, CM_EIO, "this member cannot read its CA files");
        return;
    }
    struct cm_join_reply r = {
        .status = 0,
        .cluster_id = js->cluster_id,
        .ca = ca,
        .ca_key = ca_key,
        .cert = jc->cert_pem,
        .secret = tok.secret,
    };
    struct raft_config cfg = {0};
    cm_cluster_config(js->cluster, &cfg);
    for (unsigned i = 0; i < cfg.n && r.n_members < CM_JOIN_MAX_MEMBERS; i++) {
        r.members[r.n_members].id = cfg.servers[i].id;
        snprintf(r.members[r.n_members].address, sizeof(r.members[0].address), "%s",
                 cfg.servers[i].address);
        r.n_members++;
    }
    raft_config_close(&cfg);
    js->served++;
    cm_info("join", "node %s joined as a learner", jc->name);
    conn_answer(jc, &r);
    cm_free(&ca);
    cm_free(&ca_key);
}

void cm_join_server_accept(struct cm_join_server *js, struct cm_stream *s,
                           const void *body, size_t len)
{
    struct join_conn *jc = cm_calloc(1, sizeof(*jc));
    if (jc == NULL) {
        cm_stream_close(s);
        return;
    }
    jc->js = js;
    jc->s = s;
    ev_io_init(&jc->io, conn_io_cb, cm_stream_fd(s), EV_READ);
    ev_timer_init(&jc->timer, conn_timer_cb, JOIN_SERVE_MS / 1000.0, 0.);
    ev_timer_start(js->loop, &jc->timer);
    jc->next = js->conns;
    if (jc->next != NULL) {
        jc->next->prev = jc;
    }
    js->conns = jc;
    jc->state = JC_WRITING; /* until the learner change starts */

    struct cm_join_req req;
    int rv = cm_join_req_decode(body, len, &req);
    if (rv != 0) {
        conn_refuse(jc, CM_EINVAL, "malformed join request");
        return;
    }
    snprintf(jc->name, sizeof(jc->name), "%s", req.name);
    struct cm_join_token tok;
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    if (cm_join_token_load(js->tls_dir, &tok, &eb) != 0) {
        cm_join_req_done(&req);
        conn_refuse(jc, CM_EIO, "this member has no join token");
        return;
    }
    if (!cm_join_secret_equal(req.secret, tok.secret)) {
        cm_join_req_done(&req);
        conn_refuse(jc, CM_EPERM, "the join token's secret is wrong");
        return;
    }
    char host[RAFT_ADDRESS_MAX];
    struct cm_buf cert = {0};
    rv = cm_pki_sign(js->tls_dir, req.csr, strlen(req.csr), req.name,
                     numeric_host(req.address, host, sizeof(host)), CM_NODE_CERT_DAYS,
                     &cert, &eb);
    if (rv == 0 && cert.len >= sizeof(jc->cert_pem)) {
        rv = cm_err_setf(&eb, CM_ETOOBIG, "certificate chain too big");
    }
    if (rv != 0) {
        cm_buf_done(&cert);
        cm_join_req_done(&req);
        conn_refuse(jc, rv == CM_EINVAL ? CM_EINVAL : CM_EIO, eb.msg);
        return;
    }
    memcpy(jc->cert_pem, cert.data, cert.len + 1);
    cm_buf_done(&cert);
    jc->state = JC_ADDING;
    rv = cm_cluster_add_learner(js->cluster, req.raft_id, req.name, req.address,
                                conn_added, jc);
    cm_join_req_done(&req);
    if (rv != 0) {
        jc->state = JC_WRITING;
        conn_refuse(jc, rv, "cannot add the node");
    }
}

void cm_join_server_free(struct cm_join_server *js)
{
    if (js == NULL) {
        return;
    }
    while (js->conns != NULL) {
        conn_free(js->conns);
    }
    cm_free(&js);
}

/* ------------------------------------------------------------------ peers, renewal */

int cm_join_peers_save(const char *data_dir, const struct cm_join_result *r,
                       struct cm_errbuf *eb)
{
    struct cm_buf b = {0};
    int rv = 0;
    for (unsigned i = 0; rv == 0 && i < r->n_members; i++) {
        rv = cm_buf_printf(&b, "%llx %s\n", (unsigned long long)r->members[i].id,
                           r->members[i].address);
    }
    char path[1200];
    snprintf(path, sizeof(path), "%s/peers", data_dir);
    if (rv == 0) {
        rv = cm_pki_write_file(path, b.data != NULL ? b.data : "", b.len, 0600, eb);
    } else {
        cm_err_setf(eb, rv, "peers: %s", cm_strerror(rv));
    }
    cm_buf_done(&b);
    return rv;
}

unsigned cm_join_peers_load(const char *data_dir, struct raft_server *out, unsigned max)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/peers", data_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    unsigned n = 0;
    char line[160];
    while (n < max && fgets(line, sizeof(line), f) != NULL) {
        unsigned long long id;
        char addr[RAFT_ADDRESS_MAX];
        if (sscanf(line, "%llx %63s", &id, addr) == 2 && id != 0) {
            out[n].id = id;
            out[n].role = RAFT_VOTER;
            snprintf(out[n].address, sizeof(out[n].address), "%s", addr);
            n++;
        }
    }
    fclose(f);
    return n;
}

int cm_join_renew(const char *tls_dir, const char *name, const char *address,
                  struct cm_tls *tls, bool force, int64_t now_s, struct cm_errbuf *eb)
{
    char node[1200];
    tls_path(node, sizeof(node), tls_dir, "node.pem");
    int64_t expiry = 0;
    int rv = cm_pki_cert_expiry(node, &expiry, eb);
    if (rv != 0) {
        return rv;
    }
    if (!force && expiry - now_s > CM_NODE_RENEW_BEFORE) {
        return 0;
    }
    char host[RAFT_ADDRESS_MAX];
    rv = cm_pki_issue_node(tls_dir, tls_dir, name,
                           numeric_host(address, host, sizeof(host)), CM_NODE_CERT_DAYS,
                           eb);
    if (rv == 0) {
        rv = cm_tls_reload(tls, eb);
    }
    if (rv != 0) {
        return cm_err_wrapf(eb, "renewing the node certificate");
    }
    cm_info("cluster", "node certificate renewed (the old one expired at %lld)",
            (long long)expiry);
    return 1;
}
