/* lib/node internals: L4 virtual IPs on this node (DESIGN.md §9), wiring lb/ to
 * the replica. Not an API; used by node.c and controller.c.
 *
 * Labels (Minuteman's, compat.md §4.1), on an app's portDefinitions (host
 * networking) or container.portMappings (bridge, those with a host port):
 *   "VIP_<n>": "/name:port" | "name:port"   named VIP, address allocated by the
 *                                            leader from --vip-cidr (table vips)
 *   "VIP_<n>": "a.b.c.d:port"                address VIP
 *   "CLUSTERCTL_PROXY_PROTOCOL": "v2"        this port's VIPs go through the
 *                                            userspace proxy, which sends a PROXY
 *                                            protocol v2 header to the backends
 * and on the app, the legacy "VIP_PORT<idx>": "tcp://a.b.c.d:port".
 *
 * Backends of a VIP: the app's tasks that are running and healthy (or whose app
 * has no health checks), at their host address (the task's host when numeric,
 * else its node's address) and the host port of the labelled port. Killing tasks
 * are not running, so they leave at once.
 */
#ifndef CM_NODE_VIPS_H
#define CM_NODE_VIPS_H

#include <cjson/cJSON.h>

#include "base/base.h"
#include "lb/lb.h"

struct ev_loop;
struct cm_state;

/* The app port label asking for PROXY protocol v2 toward backends. */
#define CM_VIP_PROXY_PROTOCOL_LABEL "CLUSTERCTL_PROXY_PROTOCOL"

/* Leader: the commands that make table vips match the named VIPs the apps declare
 * (a stable address from @cidr for each new name, avoiding addresses taken by
 * names and by address VIPs; names no app declares any more are deleted).
 * Deterministic given the replica. *ret_cmds is a cJSON array of commands (empty
 * when nothing is to do); the caller deletes it.
 * Errors: CM_EINVAL (@cidr, in @eb), CM_ENOSPC (the range is full, naming the VIP),
 * CM_ENOMEM, storage errors. */
int cm_vips_plan(struct cm_state *s, const char *cidr, cJSON **ret_cmds,
                 struct cm_errbuf *eb);

/* cm_vips_plan for the controller: the commands, or NULL when there are none or
 * on failure (logged). @cidr NULL: NULL. */
cJSON *cm_vips_plan_cmds(struct cm_state *s, const char *cidr);

/* Build the VIP table from the replica (@prev: the table it replaces, for load
 * counters; may be NULL). VIPs whose name is not allocated yet, or without any
 * backend declared, are still listed when allocated (no eligible backend: nat
 * rejects, proxy refuses). A VIP whose remaining tasks all drain keeps those as
 * backends. Tasks of apps without health checks are backends when running (the
 * runner, cm_vips_update, also waits until it has seen them accept a connection).
 * Errors: as lb_table_new, CM_ENOMEM, storage errors. */
int cm_vips_build(struct cm_state *s, const struct lb_table *prev, struct lb_table **ret,
                  struct cm_errbuf *eb);

/* ---- the operator's view (GET /v1/vips, /metrics; docs/vips.md "Operating VIPs") */

/* Append to @out the JSON array of the VIPs of @t (may be NULL: none programmed
 * yet; borrowed) as this node serves them, on a node whose AUTO VIPs go to nat
 * (@auto_is_nat) or else to the proxy: per VIP its name, address, port,
 * protocol, mode ("nat", "proxy", or "none": UDP left to the proxy, which serves
 * TCP only), the apps declaring it, its backends (task, host, port,
 * eligible or why not, active connections) followed by the live tasks of those
 * apps that are not backends (draining, unhealthy, not running, no address),
 * its proxy metrics (null in nat mode) and listen error. Tasks come from the
 * replica @s; backends, modes and metrics from @t. Main loop (reads @t's
 * atomics only). Errors: CM_ENOMEM, storage errors (in @eb, may be NULL). */
int cm_vips_view_json(struct cm_state *s, const struct lb_table *t, bool auto_is_nat,
                      struct cm_buf *out, struct cm_errbuf *eb);

/* Append the Prometheus text lines (HELP, TYPE, samples) of @t's VIPs to @out:
 * clusterctl_vip_backends (eligible, both modes), and in proxy mode
 * clusterctl_vip_connections_active, _connections_total,
 * _connections_failed_total, _bytes_in_total, _bytes_out_total and, when the
 * VIP cannot be listened on, clusterctl_vip_listen_error{errno="E..."} 1.
 * Labels: vip (name, or address:port), address, port, proto, mode.
 * Errors: CM_ENOMEM. */
int cm_vips_view_metrics(const struct lb_table *t, bool auto_is_nat, struct cm_buf *out);

/* ---- the runner: programs addresses, nft table and proxy on this node */

struct cm_vips;

/* @mode: "auto", "nat", "proxy" or "off" (*ret NULL: nothing runs). The proxy
 * runs on @proxy_threads threads of its own (0: lb_proxy_threads_default()), off
 * @loop (DESIGN.md §3). Removes what
 * a crashed earlier run left (nft table `ip clusterctl`, our addresses on lo).
 * In auto mode a node without nftables or CAP_NET_ADMIN runs the proxy, or no
 * VIPs at all (warned). Errors: nat asked and nftables refused; proxy or nat
 * asked without CAP_NET_ADMIN; CM_ENOMEM. */
int cm_vips_start(struct ev_loop *loop, const char *mode, unsigned proxy_threads,
                  struct cm_vips **ret, struct cm_errbuf *eb);
/* Rebuild from the replica and program it (after a batch that changed apps,
 * tasks, nodes or VIPs, and when a listen probe succeeds: docs/vips.md
 * "Backends"). Failures are logged; the previous programming stays. Keeps @s
 * (the node's replica) for those rebuilds. Accepts NULL. */
void cm_vips_update(struct cm_vips *v, struct cm_state *s);
/* "nat" or "proxy". */
const char *cm_vips_mode(const struct cm_vips *v);
/* GET /v1/vips: {"node": @node, "mode": "nat"|"proxy"|"off", "vips": [...]} with
 * cm_vips_view_json's array for the table programmed now. @v NULL: mode "off",
 * no VIPs. Errors: CM_ENOMEM, storage errors (logged). */
int cm_vips_json(const struct cm_vips *v, struct cm_state *s, const char *node,
                 struct cm_buf *out);
/* cm_vips_view_metrics of the table programmed now; nothing when @v is NULL. */
int cm_vips_metrics(const struct cm_vips *v, struct cm_buf *out);
/* Stop the proxy, remove the nft table and our addresses, free. Accepts NULL. */
void cm_vips_free(struct cm_vips *v);

#endif
