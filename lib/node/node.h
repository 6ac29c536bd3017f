/* lib/node: the clusterctl agent daemon. It wires raft, the state machine, the
 * scheduler, the executor, DNS, the load balancer and the API into one process
 * (DESIGN.md §3). This header is its one public interface: the command line
 * (struct cm_node_config) and the daemon's life cycle.
 */
#ifndef CM_NODE_H
#define CM_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define CM_NODE_MAX_JOIN   16
#define CM_NODE_MAX_ATTRS  32
#define CM_NODE_MAX_RANGES 16

struct cm_port_range {
    uint16_t begin; /* inclusive */
    uint16_t end;   /* inclusive */
};

/* Resources a node offers. A negative or zero field means "detect". */
struct cm_resources {
    double cpus;
    double mem_mib;
    double disk_mib;
    unsigned n_ranges;
    struct cm_port_range ports[CM_NODE_MAX_RANGES];
};

struct cm_node_attr {
    char key[64];
    char value[128];
};

/* The agent's command line, DESIGN.md §3. Strings are copies inside the struct
 * (fixed sizes: no ownership questions). */
struct cm_node_config {
    char name[64]; /* node name; empty: the host name */
    char data_dir[1024];
    bool data_dir_given; /* --data-dir was passed (with --dev: keep it) */
    char bind[64];
    char advertise[64]; /* empty: first non-loopback IPv4, detected */
    uint16_t rpc_port;
    uint16_t http_port;
    char dns_addr[80]; /* "host:port" */
    char domain[64];
    char dns_compat[16];    /* "" or "mesos" */
    char dns_upstream[256]; /* comma-separated; "" = /etc/resolv.conf */
    char vip_cidr[48];
    char vip_mode[8]; /* "auto" (nat when nftables works, else proxy), "nat", "proxy",
                         "off" (no VIPs on this node) */
    unsigned vip_proxy_threads; /* proxy threads; 0: CPUs, capped (lb) */
    unsigned n_join;
    char join[CM_NODE_MAX_JOIN][128];
    char token[256];
    unsigned voters;
    unsigned n_attrs;
    struct cm_node_attr attrs[CM_NODE_MAX_ATTRS];
    struct cm_resources resources;
    bool dev;
    enum cm_log_level log_level;
    char cgroup_parent[128]; /* tasks' cgroup parent; empty: "clusterctl" */
};

/* Fill @c with the defaults of DESIGN.md §3. */
void cm_node_config_default(struct cm_node_config *c);

/* Parse the agent's arguments (argv[0] is the verb, as getopt expects) into @c,
 * which holds the defaults on entry. --dev changes the defaults it implies
 * (loopback, plaintext, DNS on 127.0.0.1:8600) unless they were given.
 * Returns 0, 1 when --help was asked (usage printed to stdout), or CM_EINVAL
 * with @eb naming the flag and the reason. Pure apart from printing --help. */
int cm_node_config_parse(struct cm_node_config *c, int argc, char **argv,
                         struct cm_errbuf *eb);

/* Parse "cpus=2,mem=4096,disk=10000,ports=[31000-32000,33000-33100]". Fields not
 * given stay as they are in @r. Errors: CM_EINVAL naming the field. */
int cm_resources_parse(const char *s, struct cm_resources *r, struct cm_errbuf *eb);

/* Parse "k=v" into an attribute. Errors: CM_EINVAL. */
int cm_node_attr_parse(const char *s, struct cm_node_attr *ret, struct cm_errbuf *eb);

/* Print the agent's usage to @out (a FILE *). */
void cm_node_usage(void *out);

/* Take an exclusive lock on @dir (creating it and a `lock` file inside), so two
 * daemons never share a data dir. The fd stays open (CLOEXEC) for the process's
 * life; *ret_fd receives it. Errors: CM_EBUSYDIR (another process holds it: the
 * message names its pid when known), or the OS error with the path. */
int cm_node_lock_data_dir(const char *dir, int *ret_fd, struct cm_errbuf *eb);

/* ------------------------------------------------------------------ the daemon */

struct ev_loop;
struct cm_node;

/* Start the daemon on @loop: lock the data dir (a temporary one for --dev without
 * --data-dir), load or create the node identity, open state.db, start raft (a new
 * cluster bootstraps with this node as its only voter), and register this node
 * in the replicated state once it leads. @c is copied.
 * Errors: CM_EBUSYDIR, storage errors naming the file, bind errors, CM_ENOMEM. */
int cm_node_start(struct ev_loop *loop, const struct cm_node_config *c,
                  struct cm_node **ret, struct cm_errbuf *eb);
/* Stop everything and free. A --dev node removes its temporary data dir. */
void cm_node_free(struct cm_node *n);

/* Run a daemon until SIGTERM or SIGINT: what `clusterctl agent` does. Returns an
 * exit code (0 on a clean stop). */
int cm_node_run(const struct cm_node_config *c);

/* This node's name (host name unless overridden) and raft id. */
const char *cm_node_name(const struct cm_node *n);
uint64_t cm_node_raft_id(const struct cm_node *n);

/* Detect what this machine offers: cpus from the online CPUs, mem from MemTotal
 * less 10% (at least 256 MiB kept for the system), disk from the data dir's file
 * system, ports 31000-32000. Fields already set in @r are kept. */
void cm_resources_detect(struct cm_resources *r, const char *data_dir);

#endif /* CM_NODE_H */
