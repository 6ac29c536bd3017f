/* raftkv: a real raft node (core + raft.db + TCP transport, through raft_host) with
 * a small key-value state machine, for the multi-process tests and the raft
 * benchmark. Not part of clusterctl itself.
 *
 *   raftkv --id N --dir DIR --raft HOST:PORT --client HOST:PORT
 *          --peers 1=HOST:PORT,2=HOST:PORT,... [--bootstrap]
 *
 * Client protocol, one line per request, answers in request order:
 *   PUT <key> <value>  ->  OK <index>           (committed and applied)
 *   GET <key>          ->  VAL <value> | NONE   (linearizable: ReadIndex)
 *   STATUS             ->  role=.. term=.. leader=.. commit=.. applied=.. last=..
 *   errors             ->  ERR <reason>         (ERR notleader <id> on followers)
 */
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"
#include "net/net.h"
#include "raft/raft.h"

/* ------------------------------------------------------------- state machine */

#define KV_BUCKETS 65536

struct kv_item {
    struct kv_item *next;
    char *key;
    char *value;
};

struct kv {
    struct kv_item *buckets[KV_BUCKETS];
    raft_index applied;
    uint64_t count;
};

static uint32_t kv_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    }
    return h;
}

static struct kv_item *kv_find(struct kv *kv, const char *key, size_t klen)
{
    struct kv_item *it = kv->buckets[kv_hash(key, klen) % KV_BUCKETS];
    for (; it != NULL; it = it->next) {
        if (strlen(it->key) == klen && memcmp(it->key, key, klen) == 0) {
            return it;
        }
    }
    return NULL;
}

static int kv_set(struct kv *kv, const char *key, size_t klen, const char *val,
                  size_t vlen)
{
    struct kv_item *it = kv_find(kv, key, klen);
    char *v = cm_strndup(val, vlen);
    if (v == NULL) {
        return CM_ENOMEM;
    }
    if (it != NULL) {
        cm_free(&it->value);
        it->value = v;
        return 0;
    }
    it = cm_calloc(1, sizeof(*it));
    char *k = cm_strndup(key, klen);
    if (it == NULL || k == NULL) {
        cm_free(&it);
        cm_free(&k);
        cm_free(&v);
        return CM_ENOMEM;
    }
    it->key = k;
    it->value = v;
    uint32_t b = kv_hash(key, klen) % KV_BUCKETS;
    it->next = kv->buckets[b];
    kv->buckets[b] = it;
    kv->count++;
    return 0;
}

static void kv_clear(struct kv *kv)
{
    for (size_t b = 0; b < KV_BUCKETS; b++) {
        struct kv_item *it = kv->buckets[b];
        while (it != NULL) {
            struct kv_item *next = it->next;
            cm_free(&it->key);
            cm_free(&it->value);
            cm_free(&it);
            it = next;
        }
        kv->buckets[b] = NULL;
    }
    kv->count = 0;
}

/* A command is "key\0value". */
static int fsm_apply(void *data, raft_index index, uint8_t type, const void *buf,
                     size_t len)
{
    struct kv *kv = data;
    kv->applied = index;
    if (type != RAFT_COMMAND) {
        return 0;
    }
    const char *p = buf;
    const char *nul = memchr(p, '\0', len);
    if (nul == NULL) {
        return 0; /* not ours: ignore deterministically */
    }
    return kv_set(kv, p, (size_t)(nul - p), nul + 1, len - (size_t)(nul - p) - 1);
}

static int fsm_snapshot(void *data, const char *path, struct cm_errbuf *eb)
{
    struct kv *kv = data;
    FILE *f = fopen(path, "wbx");
    if (f == NULL) {
        return cm_err_sys(eb, cm_errno(), "create %s", path);
    }
    for (size_t b = 0; b < KV_BUCKETS; b++) {
        for (struct kv_item *it = kv->buckets[b]; it != NULL; it = it->next) {
            fprintf(f, "%s %s\n", it->key, it->value);
        }
    }
    int rv = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rv = cm_err_sys(eb, cm_errno(), "write %s", path);
    }
    fclose(f);
    return rv;
}

static int fsm_restore(void *data, const char *path, raft_index index,
                       struct cm_errbuf *eb)
{
    struct kv *kv = data;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return cm_err_sys(eb, cm_errno(), "open %s", path);
    }
    kv_clear(kv);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rv = 0;
    while (rv == 0 && (n = getline(&line, &cap, f)) > 0) {
        char *sp = memchr(line, ' ', (size_t)n);
        if (sp == NULL) {
            rv = cm_err_setf(eb, CM_ECORRUPT, "bad snapshot line in %s", path);
            break;
        }
        size_t vlen = (size_t)n - (size_t)(sp - line) - 1;
        if (vlen > 0 && sp[vlen] == '\n') {
            vlen--;
        }
        rv = kv_set(kv, line, (size_t)(sp - line), sp + 1, vlen);
    }
    free(line);
    fclose(f);
    kv->applied = index;
    return rv;
}

static raft_index fsm_applied(void *data)
{
    return ((struct kv *)data)->applied;
}

/* ------------------------------------------------------------- client server */

struct node;

struct slot {
    struct conn *conn;
    char *reply; /* NULL while waiting */
    char *key;   /* GET: the key to read once the index is applied */
};

struct conn {
    struct node *node;
    int fd;
    ev_io r;
    ev_io w;
    struct cm_buf in;
    struct cm_buf out;
    struct slot **slots; /* in request order */
    size_t n_slots;
    size_t cap_slots;
    bool closing;
    unsigned refs; /* slots still referenced by raft callbacks */
};

struct node {
    struct ev_loop *loop;
    struct raft_host *host;
    struct kv kv;
    int listen_fd;
    ev_io accept_w;
    ev_signal sigterm_w;
    ev_signal sigint_w;
    raft_id id;
};

static void conn_maybe_free(struct conn *c)
{
    if (!c->closing || c->refs > 0) {
        return;
    }
    for (size_t i = 0; i < c->n_slots; i++) {
        cm_free(&c->slots[i]->reply);
        cm_free(&c->slots[i]->key);
        cm_free(&c->slots[i]);
    }
    cm_free(&c->slots);
    cm_buf_done(&c->in);
    cm_buf_done(&c->out);
    cm_free(&c);
}

static void conn_close(struct conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    ev_io_stop(c->node->loop, &c->r);
    ev_io_stop(c->node->loop, &c->w);
    close(c->fd);
    conn_maybe_free(c);
}

static void conn_flush(struct conn *c)
{
    if (c->closing) {
        return;
    }
    size_t k = 0;
    while (k < c->n_slots && c->slots[k]->reply != NULL) {
        cm_buf_puts(&c->out, c->slots[k]->reply);
        cm_free(&c->slots[k]->reply);
        cm_free(&c->slots[k]->key);
        cm_free(&c->slots[k]);
        k++;
    }
    if (k > 0) {
        memmove(c->slots, c->slots + k, (c->n_slots - k) * sizeof(*c->slots));
        c->n_slots -= k;
    }
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n > 0) {
            cm_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            ev_io_start(c->node->loop, &c->w);
            return;
        }
        conn_close(c);
        return;
    }
    ev_io_stop(c->node->loop, &c->w);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush(cm_container_of(w, struct conn, w));
}

static struct slot *slot_new(struct conn *c)
{
    if (c->n_slots == c->cap_slots) {
        size_t cap = c->cap_slots ? c->cap_slots * 2 : 16;
        struct slot **s = cm_reallocarray(c->slots, cap, sizeof(*s));
        if (s == NULL) {
            return NULL;
        }
        c->slots = s;
        c->cap_slots = cap;
    }
    struct slot *s = cm_calloc(1, sizeof(*s));
    if (s != NULL) {
        s->conn = c;
        c->slots[c->n_slots++] = s;
    }
    return s;
}

static void slot_reply(struct slot *s, char *reply)
{
    s->reply = reply != NULL ? reply : cm_strdup("ERR out of memory\n");
}

static char *not_leader_reply(struct node *n)
{
    return cm_asprintf("ERR notleader %llu\n",
                       (unsigned long long)raft_leader(raft_host_core(n->host)));
}

static void put_done(void *data, int status, raft_index index)
{
    struct slot *s = data;
    struct conn *c = s->conn;
    c->refs--;
    if (status == 0) {
        slot_reply(s, cm_asprintf("OK %llu\n", (unsigned long long)index));
    } else if (status == CM_ENOTLEADER) {
        slot_reply(s, not_leader_reply(c->node));
    } else {
        slot_reply(s, cm_asprintf("ERR %s\n", cm_strerror(status)));
    }
    conn_flush(c);
    conn_maybe_free(c);
}

static void get_done(void *data, int status, raft_index index)
{
    (void)index;
    struct slot *s = data;
    struct conn *c = s->conn;
    c->refs--;
    if (status == 0) {
        struct kv_item *it = kv_find(&c->node->kv, s->key, strlen(s->key));
        slot_reply(s,
                   it != NULL ? cm_asprintf("VAL %s\n", it->value) : cm_strdup("NONE\n"));
    } else if (status == CM_ENOTLEADER) {
        slot_reply(s, not_leader_reply(c->node));
    } else {
        slot_reply(s, cm_asprintf("ERR %s\n", cm_strerror(status)));
    }
    conn_flush(c);
    conn_maybe_free(c);
}

static const char *role_name(enum raft_role r)
{
    switch (r) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRECANDIDATE:
        return "precandidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "?";
}

static void handle_line(struct conn *c, char *line)
{
    struct node *n = c->node;
    struct slot *s = slot_new(c);
    if (s == NULL) {
        conn_close(c);
        return;
    }
    const struct raft *r = raft_host_core(n->host);
    if (strncmp(line, "PUT ", 4) == 0) {
        char *key = line + 4;
        char *sp = strchr(key, ' ');
        if (sp == NULL || sp == key) {
            slot_reply(s, cm_strdup("ERR usage: PUT <key> <value>\n"));
            return;
        }
        *sp = '\0'; /* the command is key\0value */
        size_t len = strlen(key) + 1 + strlen(sp + 1);
        int rv = raft_host_propose(n->host, key, len, put_done, s);
        if (rv == 0) {
            c->refs++;
        } else if (rv == CM_ENOTLEADER) {
            slot_reply(s, not_leader_reply(n));
        } else {
            slot_reply(s, cm_asprintf("ERR %s\n", cm_strerror(rv)));
        }
    } else if (strncmp(line, "GET ", 4) == 0) {
        s->key = cm_strdup(line + 4);
        int rv = s->key != NULL ? raft_host_read_index(n->host, get_done, s) : CM_ENOMEM;
        if (rv == 0) {
            c->refs++;
        } else if (rv == CM_ENOTLEADER) {
            slot_reply(s, not_leader_reply(n));
        } else {
            slot_reply(s, cm_asprintf("ERR %s\n", cm_strerror(rv)));
        }
    } else if (strcmp(line, "STATUS") == 0) {
        slot_reply(
            s,
            cm_asprintf("role=%s term=%llu leader=%llu commit=%llu applied=%llu "
                        "last=%llu keys=%llu\n",
                        role_name(raft_role(r)), (unsigned long long)raft_current_term(r),
                        (unsigned long long)raft_leader(r),
                        (unsigned long long)raft_commit_index(r),
                        (unsigned long long)n->kv.applied,
                        (unsigned long long)raft_last_index(r),
                        (unsigned long long)n->kv.count));
    } else {
        slot_reply(s, cm_strdup("ERR unknown request\n"));
    }
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = cm_container_of(w, struct conn, r);
    for (int round = 0; round < 16; round++) {
        if (cm_buf_reserve(&c->in, 65536) != 0) {
            conn_close(c);
            return;
        }
        ssize_t n = recv(c->fd, c->in.data + c->in.len, 65536, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            break;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        if (c->in.len > (1u << 20) && memchr(c->in.data, '\n', c->in.len) == NULL) {
            conn_close(c); /* a line longer than 1 MiB */
            return;
        }
    }
    size_t off = 0;
    char *nl;
    c->refs++; /* keep c alive while handling lines */
    while (!c->closing &&
           (nl = memchr(c->in.data + off, '\n', c->in.len - off)) != NULL) {
        *nl = '\0';
        if (nl > c->in.data + off && nl[-1] == '\r') {
            nl[-1] = '\0';
        }
        handle_line(c, c->in.data + off);
        off = (size_t)(nl - c->in.data) + 1;
    }
    c->refs--;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    cm_buf_consume(&c->in, off);
    conn_flush(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct node *n = cm_container_of(w, struct node, accept_w);
    for (int i = 0; i < 64; i++) {
        int fd = accept4(n->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        cm_tcp_nodelay(fd);
        struct conn *c = cm_calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->node = n;
        c->fd = fd;
        ev_io_init(&c->r, read_cb, fd, EV_READ);
        ev_io_init(&c->w, write_cb, fd, EV_WRITE);
        ev_io_start(loop, &c->r);
    }
}

static void on_change(void *data, enum raft_role role, raft_term term, raft_id leader)
{
    struct node *n = data;
    cm_info("raftkv", "node %llu: %s term=%llu leader=%llu", (unsigned long long)n->id,
            role_name(role), (unsigned long long)term, (unsigned long long)leader);
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* RAFTKV_TRACE=1: the core's trace lines on stderr. */
static void trace_line(void *data, raft_id id, raft_time now, const char *msg)
{
    (void)data;
    fprintf(stderr, "%llu raft %llu: %s\n", (unsigned long long)now,
            (unsigned long long)id, msg);
}

static int parse_peers(const char *s, struct raft_config *c)
{
    char *copy = cm_strdup(s);
    if (copy == NULL) {
        return CM_ENOMEM;
    }
    int rv = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rv == 0;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        int64_t id;
        if (eq == NULL) {
            rv = CM_EINVAL;
            break;
        }
        *eq = '\0';
        rv = cm_parse_i64(tok, 1, INT64_MAX, &id);
        if (rv == 0) {
            rv = raft_config_add(c, (raft_id)id, eq + 1, RAFT_VOTER);
        }
    }
    cm_free(&copy);
    return rv;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"dir", required_argument, NULL, 'd'},
        {"raft", required_argument, NULL, 'r'},
        {"client", required_argument, NULL, 'c'},
        {"peers", required_argument, NULL, 'p'},
        {"bootstrap", no_argument, NULL, 'b'},
        {"snapshot-threshold", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *raft_addr = NULL, *client_addr = NULL, *peers = NULL;
    int64_t id = 0, threshold = 0;
    bool bootstrap = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'i':
            cm_parse_i64(optarg, 1, INT64_MAX, &id);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'r':
            raft_addr = optarg;
            break;
        case 'c':
            client_addr = optarg;
            break;
        case 'p':
            peers = optarg;
            break;
        case 'b':
            bootstrap = true;
            break;
        case 's':
            cm_parse_i64(optarg, 1, INT64_MAX, &threshold);
            break;
        default:
            return 2;
        }
    }
    if (id == 0 || dir == NULL || raft_addr == NULL || client_addr == NULL ||
        peers == NULL) {
        fprintf(stderr,
                "usage: raftkv --id N --dir DIR --raft H:P --client H:P "
                "--peers 1=H:P,... [--bootstrap]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    static struct node n; /* large (the kv buckets): not on the stack */
    n.loop = ev_default_loop(0);
    n.id = (raft_id)id;
    struct raft_config config = {0};
    if (parse_peers(peers, &config) != 0) {
        fprintf(stderr, "raftkv: bad --peers\n");
        return 2;
    }
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = cm_tcp_listen(client_addr, 1024, &n.listen_fd, &eb);
    if (rv != 0) {
        fprintf(stderr, "raftkv: %s\n", eb.msg);
        return 1;
    }

    struct raft_host_options ho = {0};
    ho.id = (raft_id)id;
    ho.cluster_id = 0xc1u;
    ho.data_dir = dir;
    ho.bind_address = raft_addr;
    ho.bootstrap = bootstrap ? &config : NULL;
    raft_options_default(&ho.raft);
    struct cm_rng seed_rng;
    cm_rng_seed(&seed_rng, (uint64_t)id ^ (uint64_t)getpid());
    ho.raft.seed = cm_rng_next(&seed_rng);
    if (threshold > 0) {
        ho.raft.snapshot_threshold = (raft_index)threshold;
        ho.raft.snapshot_trailing = (raft_index)threshold / 4;
    }
    if (getenv("RAFTKV_TRACE") != NULL) {
        ho.raft.tracer.emit = trace_line;
    }
    ho.fsm = (struct raft_fsm){&n.kv, fsm_apply, fsm_snapshot, fsm_restore, fsm_applied};
    ho.on_change = on_change;
    ho.data = &n;
    rv = raft_host_start(n.loop, &ho, &n.host, &eb);
    raft_config_close(&config);
    if (rv != 0) {
        fprintf(stderr, "raftkv: %s\n", eb.msg);
        return 1;
    }
    ev_io_init(&n.accept_w, accept_cb, n.listen_fd, EV_READ);
    ev_io_start(n.loop, &n.accept_w);
    ev_signal_init(&n.sigterm_w, stop_cb, SIGTERM);
    ev_signal_start(n.loop, &n.sigterm_w);
    ev_signal_init(&n.sigint_w, stop_cb, SIGINT);
    ev_signal_start(n.loop, &n.sigint_w);
    cm_info("raftkv", "node %lld serving clients on %s, raft on %s", (long long)id,
            client_addr, raft_addr);
    ev_run(n.loop, 0);
    cm_info("raftkv", "node %lld stopping", (long long)id);
    raft_host_close(n.host);
    kv_clear(&n.kv);
    close(n.listen_fd);
    return 0;
}
