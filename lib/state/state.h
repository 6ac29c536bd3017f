/* lib/state: the replicated state machine and the app model.
 *
 * This header has one section per part of lib/state. Each section is
 * self-contained: its types, limits and functions are declared together under its
 * heading.
 *
 *   - apps: the Marathon app definition (parse, normalise, validate, serialise),
 *     group bodies, app paths and the DNS names derived from them.
 *
 * Thread safety: unless a section says otherwise, functions touch only the objects
 * passed to them; different objects may be used from different threads.
 */
#ifndef CM_STATE_H
#define CM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ==================================================================== apps
 *
 * The Marathon App (shared/specs/compat.md §1) as clusterctl stores it.
 *
 * Input is the JSON users already have for Marathon: POST /v2/apps bodies, the
 * array of apps of PUT /v2/apps, and group bodies (/v2/groups). Parsing runs four
 * passes and reports every problem of the pass that failed, each with a JSON path
 * in Marathon's form (`/container/portMappings(0)/hostPort`):
 *
 *   1. syntax: strict RFC 8259 JSON with hard limits (CM_APP_MAX_*); duplicate
 *      object keys are rejected (Marathon keeps the last one; we refuse to guess);
 *   2. types: every known field must have its JSON type ("error.expected.jsstring",
 *      "error.expected.int", ...). JSON null counts as "absent", as in Marathon.
 *      Unknown fields are ignored, as Marathon does (compat.md §1.2, §7.5), and
 *      recorded as warnings;
 *   3. normalisation (Marathon's AppNormalization): legacy `ports`, `uris`,
 *      `ipAddress`, `docker.network`, `docker.portMappings` become their modern
 *      forms, and every default is filled in (see cm_app_defaults below);
 *   4. validation with Marathon's rules and, where compat.md §1 lists them, its
 *      messages; then the features clusterctl cannot honour yet are refused with
 *      an error naming the feature (CM_EUNSUPPORTED), never silently dropped.
 *
 * A parsed struct cm_app is always normalised and valid. Serialising it gives
 * Marathon's GET shape (with every default explicit) or the canonical compact
 * form stored in the raft log; both parse back to an equal app.
 *
 * Ownership: every pointer inside a struct cm_app is owned by it and freed by
 * cm_app_free(). Callers treat a parsed app as read-only.
 * --------------------------------------------------------------------------- */

/* Hard limits on untrusted input (STYLE rule 13). */
#define CM_APP_MAX_BODY       (1u << 20) /* bytes of JSON text */
#define CM_APP_MAX_DEPTH      32         /* nesting of arrays and objects */
#define CM_APP_MAX_ELEMENTS   1024   /* elements of one array / members of one object */
#define CM_APP_MAX_STRING     65536  /* bytes of one decoded JSON string */
#define CM_APP_MAX_NUMBER     63     /* characters of one JSON number */
#define CM_APP_MAX_ISSUES     128    /* issues kept in a report (more are counted) */
#define CM_APP_MAX_ID         256    /* bytes of an absolute app or group id */
#define CM_APP_MAX_INSTANCES  100000 /* instances of one app */
#define CM_APP_MAX_GROUP_APPS 4096   /* apps in one group body, all levels */
#define CM_APP_MAX_REGEX      256    /* bytes of a LIKE/UNLIKE regular expression */

/* Defaults filled in by normalisation (Marathon's, except where noted). */
#define CM_APP_DEFAULT_INSTANCES        1
#define CM_APP_DEFAULT_CPUS             1.0
#define CM_APP_DEFAULT_MEM              128.0
#define CM_APP_DEFAULT_BACKOFF_SECONDS  1
#define CM_APP_DEFAULT_BACKOFF_FACTOR   1.15
#define CM_APP_DEFAULT_MAX_LAUNCH_DELAY 300
#define CM_APP_DEFAULT_ROLE             "*"
/* DESIGN §6: replacement after 10 s here, not Marathon's 0 (1.5+) or 300 (1.4). */
#define CM_APP_DEFAULT_INACTIVE_AFTER      10
#define CM_APP_DEFAULT_EXPUNGE_AFTER       600
#define CM_APP_DEFAULT_HC_GRACE_PERIOD     300
#define CM_APP_DEFAULT_HC_INTERVAL         60
#define CM_APP_DEFAULT_HC_TIMEOUT          20
#define CM_APP_DEFAULT_HC_MAX_FAILURES     3
#define CM_APP_DEFAULT_HC_DELAY            15
#define CM_APP_DEFAULT_RC_INTERVAL         30
#define CM_APP_DEFAULT_RC_TIMEOUT          10
#define CM_APP_DEFAULT_RELAUNCH_ESCALATION 3600
/* upgradeStrategy.progressDeadlineSeconds when autoRollback is on (ours). */
#define CM_APP_DEFAULT_PROGRESS_DEADLINE 300

/* Features clusterctl may not honour yet. A parse refuses an app that uses a
 * feature missing from cm_app_parse_opts.features with CM_EUNSUPPORTED and an
 * issue that names it. CM_APP_FEAT_NONE is today's node; tests and future
 * components turn bits on as support lands. */
enum cm_app_feature {
    CM_APP_FEAT_NONE = 0,
    CM_APP_FEAT_IMAGES = 1u << 0,             /* container.docker.image */
    CM_APP_FEAT_PERSISTENT_VOLUMES = 1u << 1, /* persistent volumes, residency */
    CM_APP_FEAT_EXTERNAL_VOLUMES = 1u << 2,   /* external volumes */
    CM_APP_FEAT_HOST_VOLUMES = 1u << 3,       /* hostPath bind mounts */
    CM_APP_FEAT_SECRETS = 1u << 4,            /* secrets, env secret refs, pullConfig */
    CM_APP_FEAT_FETCH = 1u << 5,              /* fetch / uris downloads */
    CM_APP_FEAT_GPUS = 1u << 6,               /* gpus > 0 */
    CM_APP_FEAT_EXECUTOR = 1u << 7,           /* custom executor */
    CM_APP_FEAT_CONTAINER_NETWORKS = 1u << 8, /* networks mode container, ipAddress */
    CM_APP_FEAT_DOCKER_OPTIONS = 1u << 9,     /* docker parameters, privileged */
    CM_APP_FEAT_RESOURCE_LIMITS = 1u << 10,   /* resourceLimits above the request */
    CM_APP_FEAT_TTY = 1u << 11,               /* tty: true */
    CM_APP_FEAT_LEGACY_VIP = 1u << 12, /* app label vip_PORT<n> (Minuteman <= 1.7) */
    CM_APP_FEAT_ALL = (1u << 13) - 1,
};

/* ---- report: what went wrong, with Marathon's paths and messages */

enum cm_app_issue_kind {
    CM_APP_ISSUE_WARNING = 0, /* ignored input (unknown field); never an error */
    CM_APP_ISSUE_SYNTAX,      /* not JSON, or a field of the wrong JSON type: 400 */
    CM_APP_ISSUE_INVALID,     /* Marathon would refuse it: 422 */
    CM_APP_ISSUE_UNSUPPORTED, /* valid, but clusterctl cannot honour it yet: 422 */
};

struct cm_app_issue {
    enum cm_app_issue_kind kind;
    char *path; /* "/healthChecks(0)/portIndex"; "/" for the whole object */
    char *msg;  /* "error.min", "Port names must be unique.", ... */
};

/* Issues collected by a parse. Zero-initialised is empty; call cm_app_report_done()
 * after use. At most CM_APP_MAX_ISSUES are kept; `dropped` counts the rest. */
struct cm_app_report {
    struct cm_app_issue *v;
    size_t n;
    size_t cap;
    size_t dropped;
};

/* Free the issues; the report is empty and reusable afterwards. Accepts NULL. */
void cm_app_report_done(struct cm_app_report *rep);

/* Number of issues of @kind. */
size_t cm_app_report_count(const struct cm_app_report *rep, enum cm_app_issue_kind kind);

/* The HTTP status for a parse result: 0 -> 200, CM_EMALFORMED -> 400,
 * CM_ETOOBIG -> 413, CM_EVALIDATION and CM_EUNSUPPORTED -> 422, else 500. */
int cm_app_http_status(int code);

/* Append Marathon's error body for a failed parse (@code its return value) to
 * @out (compat.md §2.3):
 *   CM_EMALFORMED:   {"message":"Invalid JSON","details":[{"path":..,"errors":[..]}]}
 *   CM_EVALIDATION:  {"message":"Object is not valid","details":[...]}
 *   CM_EUNSUPPORTED: {"message":"unsupported feature: <first feature> (<why>)",
 *                     "details":[...]}
 *   CM_ETOOBIG:      {"message":"Request body too large ..."}
 *   other:           {"message":"<cm_strerror(code)>"}
 * Details hold only the issues of the kind that made the parse fail, one entry per
 * path (in order of first appearance) with all its messages.
 * Errors: CM_ENOMEM (@out keeps what was appended). */
int cm_app_report_body(const struct cm_app_report *rep, int code, struct cm_buf *out);

/* ---- the app */

enum cm_app_proto {
    CM_APP_PROTO_TCP = 1,     /* "tcp" */
    CM_APP_PROTO_UDP = 2,     /* "udp" */
    CM_APP_PROTO_UDP_TCP = 3, /* "udp,tcp": both */
};

struct cm_app_kv {
    char *key;
    char *value;
};

/* A string map (labels, docker parameters are a list instead). Sorted by key
 * (byte order), keys unique. */
struct cm_app_labels {
    struct cm_app_kv *v;
    size_t n;
};

/* One env entry: exactly one of value (plain) and secret (the key of a `secrets`
 * entry, compat.md §1.5) is set. Sorted by name. */
struct cm_app_env {
    char *name;
    char *value;
    char *secret;
};

struct cm_app_secret {
    char *name;   /* key in the app's `secrets` map; sorted by it */
    char *source; /* store path */
};

enum cm_app_constraint_op {
    CM_APP_CONSTRAINT_UNIQUE = 0, /* value forbidden */
    CM_APP_CONSTRAINT_CLUSTER,    /* value optional */
    CM_APP_CONSTRAINT_GROUP_BY,   /* value optional, integer */
    CM_APP_CONSTRAINT_LIKE,       /* value required, POSIX ERE, full match */
    CM_APP_CONSTRAINT_UNLIKE,     /* value required, POSIX ERE, full match */
    CM_APP_CONSTRAINT_MAX_PER,    /* value required, integer */
    CM_APP_CONSTRAINT_IS,         /* value required */
};

struct cm_app_constraint {
    char *field; /* "hostname", "@zone", or an attribute name */
    enum cm_app_constraint_op op;
    char *value; /* NULL when absent */
};

struct cm_app_fetch {
    char *uri;
    char *dest_path; /* NULL when absent */
    bool extract;
    bool executable;
    bool cache;
};

struct cm_app_port_def {
    int32_t port; /* 0 = any (service port assigned by the leader) */
    enum cm_app_proto proto;
    char *name; /* NULL when absent */
    struct cm_app_labels labels;
};

struct cm_app_port_mapping {
    int32_t container_port; /* 0 = same as the allocated host port */
    int32_t host_port;      /* -1 = none (container mode); 0 = dynamic */
    int32_t service_port;   /* 0 = assigned by the leader */
    enum cm_app_proto proto;
    char *name; /* NULL when absent */
    struct cm_app_labels labels;
    char **network_names;
    size_t n_network_names;
};

enum cm_app_net_mode {
    CM_APP_NET_HOST = 0,  /* "host" */
    CM_APP_NET_BRIDGE,    /* "container/bridge" */
    CM_APP_NET_CONTAINER, /* "container": IP per task on a named network */
};

struct cm_app_network {
    enum cm_app_net_mode mode;
    char *name; /* CONTAINER only */
    struct cm_app_labels labels;
};

enum cm_app_container_type {
    CM_APP_CONTAINER_NONE = 0, /* no `container` */
    CM_APP_CONTAINER_DOCKER,
    CM_APP_CONTAINER_MESOS,
};

enum cm_app_volume_kind {
    CM_APP_VOLUME_HOST = 0,   /* {containerPath, hostPath, mode} */
    CM_APP_VOLUME_PERSISTENT, /* {containerPath, mode, persistent{...}} */
    CM_APP_VOLUME_EXTERNAL,   /* {containerPath, mode, external{...}} */
    CM_APP_VOLUME_SECRET,     /* {containerPath, secret} */
};

struct cm_app_volume {
    enum cm_app_volume_kind kind;
    char *container_path;
    bool read_only; /* mode "RO"; "RW" otherwise */
    char *host_path;
    /* persistent */
    char *persistent_type; /* "root" (default), "path", "mount" */
    int64_t size;          /* MiB; persistent and external (0 = unset for external) */
    int64_t max_size;      /* MiB; 0 = unset */
    char *profile_name;    /* NULL when absent */
    /* external */
    char *ext_name;
    char *ext_provider;
    struct cm_app_labels ext_options;
    bool ext_shared;
    /* secret */
    char *secret;
};

struct cm_app_docker_param {
    char *key;
    char *value;
};

struct cm_app_container {
    enum cm_app_container_type type;
    bool has_docker; /* a `docker` object was given */
    char *image;     /* NULL when absent */
    bool force_pull_image;
    bool privileged;
    struct cm_app_docker_param *params; /* in input order; duplicates allowed */
    size_t n_params;
    char *pull_config_secret; /* NULL when absent */
    struct cm_app_port_mapping *port_mappings;
    size_t n_port_mappings;
    struct cm_app_volume *volumes;
    size_t n_volumes;
};

enum cm_app_hc_proto {
    CM_APP_HC_HTTP = 0,
    CM_APP_HC_HTTPS,
    CM_APP_HC_TCP,
    CM_APP_HC_COMMAND,
    CM_APP_HC_MESOS_HTTP,
    CM_APP_HC_MESOS_HTTPS,
    CM_APP_HC_MESOS_TCP,
};

struct cm_app_health_check {
    enum cm_app_hc_proto proto;
    char *path;         /* HTTP(S) kinds only ("/" by default), else NULL */
    int32_t port_index; /* -1 = unset (then port is set, or COMMAND) */
    int32_t port;       /* -1 = unset */
    char *port_name;    /* portName (clusterctl extension; Marathon ignores it):
                         * the named port of portDefinitions/portMappings; NULL =
                         * unset */
    char *command;      /* COMMAND only */
    int32_t grace_period_s;
    int32_t interval_s;
    int32_t timeout_s;
    int32_t max_consecutive_failures;
    int32_t delay_s;
    bool ignore_http1xx;
    bool ipv6; /* ipProtocol "IPv6" */
};

struct cm_app_readiness_check {
    char *name;
    bool https;
    char *path;
    char *port_name;
    int32_t interval_s;
    int32_t timeout_s;
    int32_t *ready_codes; /* httpStatusCodesForReady, in input order */
    size_t n_ready_codes;
    bool preserve_last_response;
};

enum cm_app_check_kind {
    CM_APP_CHECK_NONE = 0, /* no `check` */
    CM_APP_CHECK_HTTP,
    CM_APP_CHECK_TCP,
    CM_APP_CHECK_EXEC,
};

/* `check` (Mesos checks, compat.md §1.9): status only, never kills. */
struct cm_app_check {
    enum cm_app_check_kind kind;
    int32_t port_index; /* HTTP/TCP; -1 = unset */
    int32_t port;       /* HTTP/TCP; -1 = unset */
    char *path;         /* HTTP */
    bool https;         /* HTTP scheme */
    char *command;      /* EXEC: command.shell */
    int32_t interval_s;
    int32_t timeout_s;
    int32_t delay_s;
};

enum cm_app_kill_selection {
    CM_APP_KILL_YOUNGEST_FIRST = 0,
    CM_APP_KILL_OLDEST_FIRST,
};

struct cm_app_unreachable {
    bool disabled; /* "disabled" */
    int64_t inactive_after_s;
    int64_t expunge_after_s;
};

struct cm_app_resource_limit {
    bool set;
    bool unlimited; /* "unlimited" */
    double value;
};

struct cm_app {
    char *id; /* absolute, normalised: "/shop/backend/api" */
    char *cmd;
    char **args;
    size_t n_args;
    char *user;
    struct cm_app_env *env;
    size_t n_env;
    struct cm_app_secret *secrets;
    size_t n_secrets;
    int32_t instances;
    double cpus;
    double mem;
    double disk;
    int32_t gpus;
    struct cm_app_resource_limit limit_cpus;
    struct cm_app_resource_limit limit_mem;
    char *executor; /* "" = default */
    struct cm_app_constraint *constraints;
    size_t n_constraints;
    char **accepted_roles; /* acceptedResourceRoles; NULL/0 = not given */
    size_t n_accepted_roles;
    char *role;
    struct cm_app_labels labels;
    struct cm_app_container container;
    struct cm_app_network *networks; /* never empty after normalisation */
    size_t n_networks;
    struct cm_app_port_def *port_defs; /* host networking only */
    size_t n_port_defs;
    bool require_ports;
    struct cm_app_health_check *health_checks;
    size_t n_health_checks;
    struct cm_app_readiness_check *readiness_checks; /* at most one */
    size_t n_readiness_checks;
    struct cm_app_check check;
    char **dependencies; /* absolute ids, in input order */
    size_t n_dependencies;
    double min_health_capacity;
    double max_over_capacity;
    /* Beyond Marathon (docs/deployments.md), upgradeStrategy.*: new tasks started
     * first and held until promoted (0: no canary phase); seconds healthy after
     * which the canaries promote themselves (0: only `clusterctl promote`); roll
     * back by itself when a deployment does not finish within
     * progressDeadlineSeconds (0: CM_APP_DEFAULT_PROGRESS_DEADLINE). */
    int32_t canaries;
    int32_t canary_promote_after_s;
    bool auto_rollback;
    int32_t progress_deadline_s;
    int32_t backoff_s;
    double backoff_factor;
    int32_t max_launch_delay_s;
    int32_t task_kill_grace_period_s; /* -1 = unset */
    enum cm_app_kill_selection kill_selection;
    struct cm_app_unreachable unreachable;
    struct cm_app_fetch *fetch;
    size_t n_fetch;
    bool has_residency; /* set (and defaulted) when persistent volumes exist */
    int64_t relaunch_escalation_timeout_s;
    bool task_lost_relaunch; /* taskLostBehavior RELAUNCH_AFTER_TIMEOUT, else WAIT_FOREVER
                              */
    int tty;                 /* -1 = unset, 0, 1 */
};

struct cm_app_parse_opts {
    /* Group against which relative ids resolve: "/" for /v2/apps, the enclosing
     * group for group bodies. NULL means "/". Borrowed for the call. */
    const char *base;
    /* enum cm_app_feature bits clusterctl honours; 0 = none of them. */
    unsigned features;
};

/* Parse, normalise and validate one app from JSON text.
 * @json: @len bytes, need not be NUL-terminated; borrowed for the call.
 * @opts: NULL for the defaults (base "/", no optional features).
 * @ret_app: set on success only; free with cm_app_free().
 * @rep: may be NULL; otherwise issues (and warnings, also on success) are appended.
 * Errors: CM_ETOOBIG (len > CM_APP_MAX_BODY), CM_EMALFORMED (syntax, limits, wrong
 * types, duplicate keys), CM_EVALIDATION, CM_EUNSUPPORTED (valid, but uses a feature
 * not in opts->features), CM_ENOMEM. */
int cm_app_parse(const char *json, size_t len, const struct cm_app_parse_opts *opts,
                 struct cm_app **ret_app, struct cm_app_report *rep);

/* Free an app, fully or half built. Accepts NULL. */
void cm_app_free(struct cm_app *app);

/* A deep copy of @app in *ret_app (set on success only). Errors: CM_ENOMEM. */
int cm_app_copy(const struct cm_app *app, struct cm_app **ret_app);

/* Output options for cm_app_to_json. All strings borrowed for the call. */
struct cm_app_out_opts {
    const char *version;               /* "2026-11-22T14:00:00.123Z"; NULL: omitted */
    const char *last_scaling_at;       /* versionInfo; NULL: same as version */
    const char *last_config_change_at; /* versionInfo; NULL: same as version */
    bool pretty;                       /* indent with two spaces */
};

/* Append the app in Marathon's GET /v2/apps/{id} shape (the app part, without
 * task counts) to @out: the modern field names only, every default explicit.
 * @opts may be NULL (no version). Errors: CM_ENOMEM. */
int cm_app_to_json(const struct cm_app *app, const struct cm_app_out_opts *opts,
                   struct cm_buf *out);

/* Append the canonical compact form (for the raft log and state.db) to @out: the
 * same fields as cm_app_to_json without version, in a fixed order, maps sorted by
 * key, no whitespace. Equal apps give equal bytes, and parsing the bytes back
 * (with CM_APP_FEAT_ALL) gives an equal app. Errors: CM_ENOMEM. */
int cm_app_canonical(const struct cm_app *app, struct cm_buf *out);

/* True when @a and @b describe the same app (their canonical forms are equal).
 * Returns false on OOM, which callers treat as "changed". */
bool cm_app_equal(const struct cm_app *a, const struct cm_app *b);

/* Parse the canonical form written by cm_app_canonical (state.db, raft log): like
 * cm_app_parse with every feature allowed and base "/".
 * Errors: as cm_app_parse; anything but CM_ENOMEM means corrupt data. */
int cm_app_from_canonical(const char *json, size_t len, struct cm_app **ret_app);

/* ---- arrays and groups */

/* A list of apps with absolute ids, as parsed from PUT /v2/apps or a group body. */
struct cm_app_list {
    struct cm_app **v;
    size_t n;
};

/* Free the apps and the array; the list is empty afterwards. Accepts NULL. */
void cm_app_list_done(struct cm_app_list *list);

/* Parse a JSON array of apps (PUT/PATCH /v2/apps). Issue paths start with the
 * element index: "(1)/cpus". Ids are unique (else CM_EVALIDATION).
 * @ret_list: filled on success only. Errors: as cm_app_parse. */
int cm_app_array_parse(const char *json, size_t len, const struct cm_app_parse_opts *opts,
                       struct cm_app_list *ret_list, struct cm_app_report *rep);

/* One group of a group body, flattened. */
struct cm_app_group_info {
    char *id;            /* absolute */
    char **dependencies; /* absolute */
    size_t n_dependencies;
};

/* A /v2/groups body (compat.md §2.1), flattened. */
struct cm_app_group {
    char *id;                         /* absolute id of the top group */
    struct cm_app_list apps;          /* every app at every level, absolute ids */
    struct cm_app_group_info *groups; /* the top group first, then depth-first */
    size_t n_groups;
    char *version; /* PUT rollback target; NULL when absent */
    bool has_scale_by;
    double scale_by;  /* PUT: multiply instances */
    int enforce_role; /* -1 unset, 0, 1 */
};

/* Parse a group body. opts->base is the group named in the URL ("/" for
 * /v2/groups); a relative or missing top id resolves against it. Every app and
 * subgroup id must be a direct child of its parent group. Dependencies (app- and
 * group-level, on apps or groups) are resolved to absolute ids and checked for
 * cycles ("Dependency graph has cyclic dependencies."). Issue paths follow the
 * body: "/groups(0)/apps(1)/cpus".
 * @ret_group: set on success only; free with cm_app_group_free().
 * Errors: as cm_app_parse. */
int cm_app_group_parse(const char *json, size_t len, const struct cm_app_parse_opts *opts,
                       struct cm_app_group **ret_group, struct cm_app_report *rep);

/* Accepts NULL. */
void cm_app_group_free(struct cm_app_group *group);

/* Check that the dependency graph over @apps (their own dependencies, plus those of
 * the @groups enclosing them; a dependency on a group means every app under it) has
 * no cycle. Dependencies on ids that are neither an app nor a group in the sets
 * are allowed (Marathon allows them). @groups may be NULL with @n_groups 0.
 * On a cycle, adds an INVALID issue at path "/" to @rep (may be NULL).
 * Errors: CM_EVALIDATION (cycle), CM_ENOMEM. */
int cm_app_check_dependencies(struct cm_app *const *apps, size_t n_apps,
                              const struct cm_app_group_info *groups, size_t n_groups,
                              struct cm_app_report *rep);

/* ---- paths and names */

/* Normalise a Marathon PathId (compat.md §1.1) against @base (absolute; NULL means
 * "/"): resolves relative ids, "." and "..", drops empty segments, and checks each
 * segment against Marathon's pattern. Does not apply the app-only rules (see
 * cm_app_id_check).
 * @out: @cap bytes, receives the absolute id ("/" for the root).
 * Errors: CM_EINVAL (bad segment, above the root), CM_ETOOBIG (longer than
 * CM_APP_MAX_ID or @cap). */
int cm_app_path_normalize(const char *id, const char *base, char *out, size_t cap);

/* The app-only rules for an absolute, normalised id: not the root, last segment not
 * a reserved keyword (restart, tasks, versions), first segment not a name clusterctl's
 * DNS reserves (vip, node, leader: DESIGN §8). Returns NULL when valid, else the
 * message (static string). */
const char *cm_app_id_check(const char *abs_id);

/* The parent group of an absolute id ("/a/b" -> "/a", "/a" -> "/") into @out.
 * Errors: CM_ETOOBIG. */
int cm_app_path_parent(const char *abs_id, char *out, size_t cap);

/* True when @id equals @group or lies under it ("/a/b" is under "/a" and "/"). */
bool cm_app_path_within(const char *id, const char *group);

/* DNS labels of an app: the path segments in reverse order, dot-joined
 * ("/shop/backend/api" -> "api.backend.shop", DESIGN §8). This is also Marathon's
 * Mesos task name and DiscoveryInfo name (compat.md §1.1).
 * Errors: CM_EINVAL (not an absolute, non-root id), CM_ETOOBIG (@cap). */
int cm_app_dns_name(const char *abs_id, char *out, size_t cap);

/* Mesos-DNS's label for a task name (compat.md §3.1 step 2): lower-case, keep
 * [a-z0-9], map '-' '.' '_' to '-', drop everything else, trim leading and trailing
 * '-', cut at 63 characters; with @rfc952, cut at 24 and also trim leading digits
 * (then '-' again). "myapp.mygroup" -> "myapp-mygroup".
 * Errors: CM_ETOOBIG (@cap too small for the result). */
int cm_app_mesos_dns_label(const char *name, bool rfc952, char *out, size_t cap);

/* Mesos-DNS's two names for an app's tasks under framework label @framework and
 * @domain (compat.md §3.1 step 4): the labelled one ("myapp-mygroup.marathon.mesos")
 * and the legacy dotted one ("myapp.mygroup.marathon.mesos").
 * Errors: CM_EINVAL, CM_ETOOBIG. */
int cm_app_mesos_dns_names(const char *abs_id, const char *framework, const char *domain,
                           char *labelled, size_t labelled_cap, char *legacy,
                           size_t legacy_cap);

/* A VIP port label value (DESIGN §9, compat.md §4.1): "<name>:<port>" (named; a
 * leading '/' is allowed) or "<ipv4|[ipv6]|ipv6>:<port>" (address). Split on the
 * last ':'; port 1..65535.
 * @name: receives the name or address text (@cap bytes). @ret_is_ip may be NULL.
 * Errors: CM_EINVAL, CM_ETOOBIG. */
int cm_app_vip_parse(const char *value, char *name, size_t cap, uint16_t *ret_port,
                     bool *ret_is_ip);

/* True when a port label key asks for a VIP ("VIP..." or "vip..."). */
bool cm_app_is_vip_label(const char *key);

/* Protocol / enum names as Marathon spells them (static strings). */
const char *cm_app_proto_name(enum cm_app_proto proto);
const char *cm_app_hc_proto_name(enum cm_app_hc_proto proto);
const char *cm_app_constraint_op_name(enum cm_app_constraint_op op);
const char *cm_app_net_mode_name(enum cm_app_net_mode mode);

/* Install cJSON allocation hooks so cJSON allocates through cm_malloc (and its
 * fault injection). Idempotent and thread-safe; every function above calls it, so
 * other users of cJSON in lib/state only need it if they parse first. */
void cm_state_json_init(void);

/* ================================================================ end apps */

#endif /* CM_STATE_H */
