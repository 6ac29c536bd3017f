/* VIP addresses on an interface (normally "lo") through rtnetlink (rtnetlink(7),
 * RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR with struct ifaddrmsg). Our addresses
 * carry the label "<ifname>:cm" so that we only ever remove what we added. */
#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "lb/lb.h"

#define NL_BUF 16384

struct nl {
    int fd;
    uint32_t seq;
};

static int nl_open(struct nl *nl, struct cm_errbuf *eb)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl->fd < 0) {
        return cm_err_sys(eb, cm_errno(), "netlink socket");
    }
    if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int rv = cm_err_sys(eb, cm_errno(), "netlink bind");
        close(nl->fd);
        return rv;
    }
    nl->seq = 1;
    return 0;
}

static void add_attr(struct nlmsghdr *h, size_t cap, uint16_t type, const void *data,
                     size_t len)
{
    struct rtattr *rta = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
    size_t alen = RTA_LENGTH(len);
    CM_BUG_ON(NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(alen) > cap);
    rta->rta_type = type;
    rta->rta_len = (unsigned short)alen;
    memcpy(RTA_DATA(rta), data, len);
    h->nlmsg_len = (uint32_t)(NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(alen));
}

static void make_label(const char *ifname, char label[IFNAMSIZ])
{
    snprintf(label, IFNAMSIZ, "%.12s:cm", ifname);
}

/* Send one request and read replies until its ACK / DONE. @each (may be NULL) gets
 * every RTM_NEWADDR of a dump. Returns 0 or the kernel's negative errno. */
static int nl_talk(struct nl *nl, struct nlmsghdr *req,
                   void (*each)(const struct ifaddrmsg *, struct rtattr **, void *),
                   void *data)
{
    static _Thread_local char buf[NL_BUF] __attribute__((aligned(4)));
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    req->nlmsg_seq = nl->seq++;
    if (sendto(nl->fd, req, req->nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
        return cm_errno();
    }
    for (;;) {
        ssize_t n = recv(nl->fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return cm_errno();
        }
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != req->nlmsg_seq) {
                continue;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                return 0;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e))) {
                    return CM_EPROTO;
                }
                return e->error; /* 0 is the ACK */
            }
            if (h->nlmsg_type == RTM_NEWADDR && each != NULL &&
                h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifaddrmsg))) {
                const struct ifaddrmsg *ifa = NLMSG_DATA(h);
                struct rtattr *tb[IFA_MAX + 1];
                memset(tb, 0, sizeof(tb));
                int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*ifa)));
                for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, alen);
                     a = RTA_NEXT(a, alen)) {
                    if (a->rta_type <= IFA_MAX) {
                        tb[a->rta_type] = a;
                    }
                }
                each(ifa, tb, data);
            }
        }
    }
}

static int addr_op(const char *ifname, struct in_addr a, bool add, struct cm_errbuf *eb)
{
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg ifa;
        char attrs[128];
    } req;
    char label[IFNAMSIZ], as[INET_ADDRSTRLEN];
    struct nl nl;

    inet_ntop(AF_INET, &a, as, sizeof(as));
    unsigned idx = if_nametoindex(ifname);
    if (idx == 0) {
        return cm_err_sys(eb, cm_errno(), "interface `%s`", ifname);
    }
    int rv = nl_open(&nl, eb);
    if (rv != 0) {
        return rv;
    }
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifa));
    req.h.nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    req.ifa.ifa_family = AF_INET;
    req.ifa.ifa_prefixlen = 32;
    req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
    req.ifa.ifa_index = idx;
    add_attr(&req.h, sizeof(req), IFA_LOCAL, &a, 4);
    add_attr(&req.h, sizeof(req), IFA_ADDRESS, &a, 4);
    make_label(ifname, label);
    /* On delete the label restricts the match to our own addresses. */
    add_attr(&req.h, sizeof(req), IFA_LABEL, label, strlen(label) + 1);
    rv = nl_talk(&nl, &req.h, NULL, NULL);
    close(nl.fd);
    if (add && rv == CM_EEXIST) {
        rv = 0; /* idempotent */
    }
    if (!add && rv == -EADDRNOTAVAIL) {
        rv = 0;
    }
    if (rv != 0) {
        return cm_err_sys(eb, rv, "%s address %s/32 %s `%s`", add ? "add" : "delete", as,
                          add ? "to" : "from", ifname);
    }
    return 0;
}

int lb_addr_add(const char *ifname, struct in_addr a, struct cm_errbuf *eb)
{
    return addr_op(ifname, a, true, eb);
}

int lb_addr_del(const char *ifname, struct in_addr a, struct cm_errbuf *eb)
{
    return addr_op(ifname, a, false, eb);
}

struct list_ctx {
    unsigned idx;
    const char *label;
    struct in_addr *out;
    size_t cap, n;
};

static void list_each(const struct ifaddrmsg *ifa, struct rtattr **tb, void *data)
{
    struct list_ctx *c = data;
    if (ifa->ifa_index != c->idx || ifa->ifa_family != AF_INET || tb[IFA_LABEL] == NULL ||
        tb[IFA_LOCAL] == NULL || RTA_PAYLOAD(tb[IFA_LOCAL]) != 4) {
        return;
    }
    const char *l = RTA_DATA(tb[IFA_LABEL]);
    size_t llen = strnlen(l, RTA_PAYLOAD(tb[IFA_LABEL]));
    if (llen != strlen(c->label) || memcmp(l, c->label, llen) != 0) {
        return;
    }
    if (c->n < c->cap) {
        memcpy(&c->out[c->n], RTA_DATA(tb[IFA_LOCAL]), 4);
    }
    c->n++;
}

int lb_addr_list(const char *ifname, struct in_addr *out, size_t cap, size_t *ret_n,
                 struct cm_errbuf *eb)
{
    struct {
        struct nlmsghdr h;
        struct ifaddrmsg ifa;
    } req;
    char label[IFNAMSIZ];
    struct nl nl;
    struct list_ctx c = {.out = out, .cap = cap, .label = label};

    c.idx = if_nametoindex(ifname);
    if (c.idx == 0) {
        return cm_err_sys(eb, cm_errno(), "interface `%s`", ifname);
    }
    make_label(ifname, label);
    int rv = nl_open(&nl, eb);
    if (rv != 0) {
        return rv;
    }
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifa));
    req.h.nlmsg_type = RTM_GETADDR;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.ifa.ifa_family = AF_INET;
    rv = nl_talk(&nl, &req.h, list_each, &c);
    close(nl.fd);
    if (rv != 0) {
        return cm_err_sys(eb, rv, "list addresses of `%s`", ifname);
    }
    *ret_n = c.n;
    return 0;
}

int lb_addr_sync(const char *ifname, const struct in_addr *want, size_t n,
                 struct cm_errbuf *eb)
{
    size_t have_n = 0, cap = 64;
    struct in_addr *have = NULL;
    int rv;

    /* List, growing the array when the kernel reports more than fit. */
    for (;;) {
        have = cm_reallocarray(NULL, cap, sizeof(*have));
        if (have == NULL) {
            return cm_err_setf(eb, CM_ENOMEM, "address list");
        }
        rv = lb_addr_list(ifname, have, cap, &have_n, eb);
        if (rv != 0 || have_n <= cap) {
            break;
        }
        cap = have_n + 16;
        cm_free(&have);
    }
    for (size_t i = 0; rv == 0 && i < have_n; i++) {
        bool keep = false;
        for (size_t j = 0; j < n && !keep; j++) {
            keep = want[j].s_addr == have[i].s_addr;
        }
        if (!keep) {
            rv = lb_addr_del(ifname, have[i], eb);
        }
    }
    for (size_t j = 0; rv == 0 && j < n; j++) {
        bool present = false;
        for (size_t i = 0; i < have_n && !present; i++) {
            present = want[j].s_addr == have[i].s_addr;
        }
        if (!present) {
            rv = lb_addr_add(ifname, want[j], eb);
        }
    }
    cm_free(&have);
    return rv;
}
