/* The Marathon app model: JSON -> struct cm_app with types checked and Marathon's
 * normalisation applied (AppNormalization: legacy fields to modern ones, then the
 * defaults of compat.md §1.2-§1.10). Validation proper is in app_validate.c,
 * output in app_out.c, groups in app_group.c.
 *
 * Reading never stops at the first problem: every type error of the body is
 * collected (Marathon reports them all in one 400), and normalisation errors join
 * the validation errors (422). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_int.h"

/* ------------------------------------------------------------------ reader */

struct rd {
    struct cm_app_report *rep;
    char path[1024];
    size_t plen;
    int nsyntax;
    int ninvalid;
    int nunsupported;
    bool oom;
};

static size_t rd_key(struct rd *r, const char *key)
{
    size_t old = r->plen;
    int n = snprintf(r->path + old, sizeof(r->path) - old, "/%s", key);
    r->plen = n < 0 ? old : CM_MIN(old + (size_t)n, sizeof(r->path) - 1);
    return old;
}

static size_t rd_idx(struct rd *r, size_t i)
{
    size_t old = r->plen;
    int n = snprintf(r->path + old, sizeof(r->path) - old, "(%zu)", i);
    r->plen = n < 0 ? old : CM_MIN(old + (size_t)n, sizeof(r->path) - 1);
    return old;
}

static void rd_pop(struct rd *r, size_t old)
{
    r->plen = old;
    r->path[old] = '\0';
}

static void rd_issue(struct rd *r, enum cm_app_issue_kind kind, const char *msg)
{
    if (app__issue(r->rep, kind, r->path, "%s", msg) != 0) {
        r->oom = true;
    }
    r->nsyntax += kind == CM_APP_ISSUE_SYNTAX;
    r->ninvalid += kind == CM_APP_ISSUE_INVALID;
    r->nunsupported += kind == CM_APP_ISSUE_UNSUPPORTED;
}

/* A type error at path + "/key". */
static void rd_type_err(struct rd *r, const char *key, const char *msg)
{
    size_t old = key != NULL ? rd_key(r, key) : r->plen;
    rd_issue(r, CM_APP_ISSUE_SYNTAX, msg);
    rd_pop(r, old);
}

static void rd_invalid_at(struct rd *r, const char *key, const char *msg)
{
    size_t old = key != NULL ? rd_key(r, key) : r->plen;
    rd_issue(r, CM_APP_ISSUE_INVALID, msg);
    rd_pop(r, old);
}

static void rd_unsupported_at(struct rd *r, const char *key, const char *msg)
{
    size_t old = rd_key(r, key);
    rd_issue(r, CM_APP_ISSUE_UNSUPPORTED, msg);
    rd_pop(r, old);
}

static char *rd_dup(struct rd *r, const char *s)
{
    char *d = cm_strdup(s);
    if (d == NULL) {
        r->oom = true;
    }
    return d;
}

/* The member @key of @obj, or NULL when absent or JSON null (Marathon reads
 * optional fields with readNullable: null is "absent"). */
static const cJSON *member(const cJSON *obj, const char *key)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(m) ? NULL : m;
}

/* Warn about members not in @known (NULL-terminated); @ignored lists fields that
 * are known but deliberately dropped (output-only, or ignored by Marathon too). */
static void rd_unknown(struct rd *r, const cJSON *obj, const char *const *known,
                       const char *const *ignored)
{
    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        bool hit = false;
        for (const char *const *k = known; *k && !hit; k++) {
            hit = strcmp(*k, c->string) == 0;
        }
        if (hit) {
            continue;
        }
        const char *why = "unknown field ignored";
        for (const char *const *k = ignored; k != NULL && *k && !hit; k++) {
            hit = strcmp(*k, c->string) == 0;
        }
        if (hit) {
            why = "output-only or obsolete field ignored";
        }
        size_t old = rd_key(r, c->string);
        rd_issue(r, CM_APP_ISSUE_WARNING, why);
        rd_pop(r, old);
    }
}

/* Each getter returns true when the member is present with the right type and
 * leaves *out untouched otherwise; a wrong type is recorded. */

static bool get_str(struct rd *r, const cJSON *obj, const char *key, char **out)
{
    const cJSON *m = member(obj, key);
    if (m == NULL) {
        return false;
    }
    if (!cJSON_IsString(m)) {
        rd_type_err(r, key, "error.expected.jsstring");
        return false;
    }
    char *d = rd_dup(r, m->valuestring);
    if (d == NULL) {
        return false;
    }
    cm_free(out);
    *out = d;
    return true;
}

static bool get_num(struct rd *r, const cJSON *obj, const char *key, double *out)
{
    const cJSON *m = member(obj, key);
    if (m == NULL) {
        return false;
    }
    if (!cJSON_IsNumber(m) || !isfinite(m->valuedouble)) {
        rd_type_err(r, key, "error.expected.jsnumber");
        return false;
    }
    *out = m->valuedouble;
    return true;
}

static bool num_to_i64(const cJSON *m, int64_t lo, int64_t hi, int64_t *out)
{
    double d = m->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi) {
        return false;
    }
    *out = (int64_t)d;
    return true;
}

static bool get_i32(struct rd *r, const cJSON *obj, const char *key, int32_t *out)
{
    const cJSON *m = member(obj, key);
    int64_t v;
    if (m == NULL) {
        return false;
    }
    if (!cJSON_IsNumber(m)) {
        rd_type_err(r, key, "error.expected.jsnumber");
        return false;
    }
    if (!num_to_i64(m, INT32_MIN, INT32_MAX, &v)) {
        rd_type_err(r, key, "error.expected.int");
        return false;
    }
    *out = (int32_t)v;
    return true;
}

/* int64 fields, limited to +-2^53 so that they survive a trip through a double. */
#define I64_SAFE ((int64_t)1 << 53)

static bool get_i64(struct rd *r, const cJSON *obj, const char *key, int64_t *out)
{
    const cJSON *m = member(obj, key);
    if (m == NULL) {
        return false;
    }
    if (!cJSON_IsNumber(m)) {
        rd_type_err(r, key, "error.expected.jsnumber");
        return false;
    }
    if (!num_to_i64(m, -I64_SAFE, I64_SAFE, out)) {
        rd_type_err(r, key, "error.expected.long");
        return false;
    }
    return true;
}

static bool get_bool(struct rd *r, const cJSON *obj, const char *key, bool *out)
{
    const cJSON *m = member(obj, key);
    if (m == NULL) {
        return false;
    }
    if (!cJSON_IsBool(m)) {
        rd_type_err(r, key, "error.expected.jsboolean");
        return false;
    }
    *out = cJSON_IsTrue(m);
    return true;
}

static const cJSON *get_arr(struct rd *r, const cJSON *obj, const char *key)
{
    const cJSON *m = member(obj, key);
    if (m != NULL && !cJSON_IsArray(m)) {
        rd_type_err(r, key, "error.expected.jsarray");
        return NULL;
    }
    return m;
}

static const cJSON *get_obj(struct rd *r, const cJSON *obj, const char *key)
{
    const cJSON *m = member(obj, key);
    if (m != NULL && !cJSON_IsObject(m)) {
        rd_type_err(r, key, "error.expected.jsobject");
        return NULL;
    }
    return m;
}

/* An enum given as a string; -1 when absent or bad (recorded). */
static int get_enum(struct rd *r, const cJSON *obj, const char *key,
                    const char *const *names, size_t n)
{
    const cJSON *m = member(obj, key);
    if (m == NULL) {
        return -1;
    }
    if (!cJSON_IsString(m)) {
        rd_type_err(r, key, "error.expected.jsstring");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m->valuestring, names[i]) == 0) {
            return (int)i;
        }
    }
    rd_type_err(r, key, "error.unknown.enum.literal");
    return -1;
}

/* Allocate @n zeroed elements; NULL (and oom) on failure, NULL for n == 0. */
static void *rd_calloc(struct rd *r, size_t n, size_t size)
{
    if (n == 0) {
        return NULL;
    }
    void *p = cm_calloc(n, size);
    if (p == NULL) {
        r->oom = true;
    }
    return p;
}

static bool get_str_arr(struct rd *r, const cJSON *obj, const char *key, char ***out,
                        size_t *n_out)
{
    const cJSON *a = get_arr(r, obj, key);
    if (a == NULL) {
        return false;
    }
    size_t n = (size_t)cJSON_GetArraySize(a);
    char **v = rd_calloc(r, n, sizeof(*v));
    if (n > 0 && v == NULL) {
        return false;
    }
    size_t old = rd_key(r, key), i = 0, k = 0;
    for (const cJSON *e = a->child; e != NULL; e = e->next, i++) {
        if (!cJSON_IsString(e)) {
            size_t o2 = rd_idx(r, i);
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsstring");
            rd_pop(r, o2);
            continue;
        }
        v[k] = rd_dup(r, e->valuestring);
        if (v[k] != NULL) {
            k++;
        }
    }
    rd_pop(r, old);
    *out = v;
    *n_out = k;
    return true;
}

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct cm_app_kv *)a)->key, ((const struct cm_app_kv *)b)->key);
}

/* A string -> string object, sorted by key. */
static void get_labels(struct rd *r, const cJSON *obj, const char *key,
                       struct cm_app_labels *out)
{
    const cJSON *o = get_obj(r, obj, key);
    if (o == NULL) {
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(o);
    struct cm_app_kv *v = rd_calloc(r, n, sizeof(*v));
    if (n > 0 && v == NULL) {
        return;
    }
    size_t old = rd_key(r, key), k = 0;
    for (const cJSON *e = o->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e)) {
            size_t o2 = rd_key(r, e->string);
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsstring");
            rd_pop(r, o2);
            continue;
        }
        v[k].key = rd_dup(r, e->string);
        v[k].value = rd_dup(r, e->valuestring);
        k++;
    }
    rd_pop(r, old);
    out->v = v;
    out->n = k;
    if (!r->oom && k > 1) {
        qsort(v, k, sizeof(*v), cmp_kv);
    }
}

static void labels_done(struct cm_app_labels *l)
{
    for (size_t i = 0; i < l->n; i++) {
        cm_free(&l->v[i].key);
        cm_free(&l->v[i].value);
    }
    cm_free(&l->v);
    l->n = 0;
}

static void str_arr_free(char ***v, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        cm_free(&(*v)[i]);
    }
    cm_free(v);
    *n = 0;
}

/* ------------------------------------------------------------------ free */

static void port_mapping_done(struct cm_app_port_mapping *pm)
{
    cm_free(&pm->name);
    labels_done(&pm->labels);
    str_arr_free(&pm->network_names, &pm->n_network_names);
}

static void volume_done(struct cm_app_volume *v)
{
    cm_free(&v->container_path);
    cm_free(&v->host_path);
    cm_free(&v->persistent_type);
    cm_free(&v->profile_name);
    cm_free(&v->ext_name);
    cm_free(&v->ext_provider);
    labels_done(&v->ext_options);
    cm_free(&v->secret);
}

void cm_app_free(struct cm_app *app)
{
    if (app == NULL) {
        return;
    }
    cm_free(&app->id);
    cm_free(&app->cmd);
    str_arr_free(&app->args, &app->n_args);
    cm_free(&app->user);
    for (size_t i = 0; i < app->n_env; i++) {
        cm_free(&app->env[i].name);
        cm_free(&app->env[i].value);
        cm_free(&app->env[i].secret);
    }
    cm_free(&app->env);
    for (size_t i = 0; i < app->n_secrets; i++) {
        cm_free(&app->secrets[i].name);
        cm_free(&app->secrets[i].source);
    }
    cm_free(&app->secrets);
    cm_free(&app->executor);
    for (size_t i = 0; i < app->n_constraints; i++) {
        cm_free(&app->constraints[i].field);
        cm_free(&app->constraints[i].value);
    }
    cm_free(&app->constraints);
    str_arr_free(&app->accepted_roles, &app->n_accepted_roles);
    cm_free(&app->role);
    labels_done(&app->labels);
    struct cm_app_container *c = &app->container;
    cm_free(&c->image);
    for (size_t i = 0; i < c->n_params; i++) {
        cm_free(&c->params[i].key);
        cm_free(&c->params[i].value);
    }
    cm_free(&c->params);
    cm_free(&c->pull_config_secret);
    for (size_t i = 0; i < c->n_port_mappings; i++) {
        port_mapping_done(&c->port_mappings[i]);
    }
    cm_free(&c->port_mappings);
    for (size_t i = 0; i < c->n_volumes; i++) {
        volume_done(&c->volumes[i]);
    }
    cm_free(&c->volumes);
    for (size_t i = 0; i < app->n_networks; i++) {
        cm_free(&app->networks[i].name);
        labels_done(&app->networks[i].labels);
    }
    cm_free(&app->networks);
    for (size_t i = 0; i < app->n_port_defs; i++) {
        cm_free(&app->port_defs[i].name);
        labels_done(&app->port_defs[i].labels);
    }
    cm_free(&app->port_defs);
    for (size_t i = 0; i < app->n_health_checks; i++) {
        cm_free(&app->health_checks[i].path);
        cm_free(&app->health_checks[i].port_name);
        cm_free(&app->health_checks[i].command);
    }
    cm_free(&app->health_checks);
    for (size_t i = 0; i < app->n_readiness_checks; i++) {
        struct cm_app_readiness_check *rc = &app->readiness_checks[i];
        cm_free(&rc->name);
        cm_free(&rc->path);
        cm_free(&rc->port_name);
        cm_free(&rc->ready_codes);
    }
    cm_free(&app->readiness_checks);
    cm_free(&app->check.path);
    cm_free(&app->check.command);
    str_arr_free(&app->dependencies, &app->n_dependencies);
    for (size_t i = 0; i < app->n_fetch; i++) {
        cm_free(&app->fetch[i].uri);
        cm_free(&app->fetch[i].dest_path);
    }
    cm_free(&app->fetch);
    cm_free_raw(app);
}

/* ------------------------------------------------------------------ legacy input */

/* Fields read from the body that normalisation folds into the modern ones. */
struct legacy {
    bool has_ports;
    int32_t *ports;
    size_t n_ports;
    bool has_port_defs; /* portDefinitions given (maybe []) */
    bool has_networks;
    bool has_docker_network;
    int docker_network; /* index into docker_networks[] */
    bool has_docker_mappings;
    bool has_container_mappings;
    bool has_ip_address;
    char *ip_network_name;
    struct cm_app_labels ip_labels;
    bool has_discovery;
    struct cm_app_port_mapping *discovery;
    size_t n_discovery;
    bool has_uris;
    char **uris;
    size_t n_uris;
    bool has_fetch;
    bool has_upgrade_min;
    bool has_upgrade_max;
    bool has_unreachable;
};

static void legacy_done(struct legacy *lg)
{
    cm_free(&lg->ports);
    cm_free(&lg->ip_network_name);
    labels_done(&lg->ip_labels);
    for (size_t i = 0; i < lg->n_discovery; i++) {
        port_mapping_done(&lg->discovery[i]);
    }
    cm_free(&lg->discovery);
    str_arr_free(&lg->uris, &lg->n_uris);
}

static const char *const docker_networks[] = {"HOST", "BRIDGE", "USER", "NONE"};
enum { DOCKER_NET_HOST, DOCKER_NET_BRIDGE, DOCKER_NET_USER, DOCKER_NET_NONE };

/* ------------------------------------------------------------------ pieces */

static const char *const proto_names[] = {"tcp", "udp", "udp,tcp"};

static enum cm_app_proto read_proto(struct rd *r, const cJSON *o)
{
    int p = get_enum(r, o, "protocol", proto_names, CM_ARRAY_SIZE(proto_names));
    return p < 0 ? CM_APP_PROTO_TCP : (enum cm_app_proto)(p + 1);
}

static void read_env(struct rd *r, const cJSON *obj, struct cm_app *app)
{
    const cJSON *o = get_obj(r, obj, "env");
    if (o == NULL) {
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(o), k = 0;
    app->env = rd_calloc(r, n, sizeof(*app->env));
    if (n > 0 && app->env == NULL) {
        return;
    }
    size_t old = rd_key(r, "env");
    for (const cJSON *e = o->child; e != NULL; e = e->next) {
        struct cm_app_env *ev = &app->env[k];
        size_t o2 = rd_key(r, e->string);
        if (cJSON_IsString(e)) {
            ev->name = rd_dup(r, e->string);
            ev->value = rd_dup(r, e->valuestring);
            k++;
        } else if (cJSON_IsObject(e)) {
            const cJSON *s = member(e, "secret");
            if (!cJSON_IsString(s)) {
                rd_type_err(r, "secret",
                            s == NULL ? "error.path.missing" : "error.expected.jsstring");
            } else {
                ev->name = rd_dup(r, e->string);
                ev->secret = rd_dup(r, s->valuestring);
                k++;
            }
        } else {
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsstring");
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
    app->n_env = k;
}

static int cmp_env(const void *a, const void *b)
{
    return strcmp(((const struct cm_app_env *)a)->name,
                  ((const struct cm_app_env *)b)->name);
}

static int cmp_secret(const void *a, const void *b)
{
    return strcmp(((const struct cm_app_secret *)a)->name,
                  ((const struct cm_app_secret *)b)->name);
}

static void read_secrets(struct rd *r, const cJSON *obj, struct cm_app *app)
{
    const cJSON *o = get_obj(r, obj, "secrets");
    if (o == NULL) {
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(o), k = 0;
    app->secrets = rd_calloc(r, n, sizeof(*app->secrets));
    if (n > 0 && app->secrets == NULL) {
        return;
    }
    size_t old = rd_key(r, "secrets");
    for (const cJSON *e = o->child; e != NULL; e = e->next) {
        size_t o2 = rd_key(r, e->string);
        if (!cJSON_IsObject(e)) {
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
        } else {
            char *src = NULL;
            if (!get_str(r, e, "source", &src) && member(e, "source") == NULL) {
                rd_type_err(r, "source", "error.path.missing");
            }
            if (src != NULL) {
                app->secrets[k].name = rd_dup(r, e->string);
                app->secrets[k].source = src;
                k++;
            }
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
    app->n_secrets = k;
    if (!r->oom && k > 1) {
        qsort(app->secrets, k, sizeof(*app->secrets), cmp_secret);
    }
}

static const char *const op_msg =
    "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, "
    "UNLIKE or IS";

/* One constraint from its parts; @field/@op/@value borrowed. */
static void add_constraint(struct rd *r, struct cm_app *app, const char *field,
                           const char *op, const char *value)
{
    static const char *const ops[] = {"UNIQUE", "CLUSTER", "GROUP_BY", "LIKE",
                                      "UNLIKE", "MAX_PER", "IS"};
    int found = -1;
    for (size_t i = 0; i < CM_ARRAY_SIZE(ops) && found < 0; i++) {
        /* Marathon upper-cases the operator before matching it (compat.md §1.6). */
        if (strcasecmp(op, ops[i]) == 0) {
            found = (int)i;
        }
    }
    if (found < 0) {
        rd_issue(r, CM_APP_ISSUE_INVALID, op_msg);
        return;
    }
    struct cm_app_constraint *c = &app->constraints[app->n_constraints];
    c->field = rd_dup(r, field);
    c->op = (enum cm_app_constraint_op)found;
    c->value = value != NULL ? rd_dup(r, value) : NULL;
    app->n_constraints++;
}

static void read_constraints(struct rd *r, const cJSON *obj, struct cm_app *app)
{
    const cJSON *a = get_arr(r, obj, "constraints");
    if (a == NULL) {
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    app->constraints = rd_calloc(r, n, sizeof(*app->constraints));
    if (n > 0 && app->constraints == NULL) {
        return;
    }
    size_t old = rd_key(r, "constraints");
    for (const cJSON *e = a->child; e != NULL; e = e->next, i++) {
        size_t o2 = rd_idx(r, i);
        if (cJSON_IsArray(e)) {
            /* The canonical form: [field, OPERATOR] or [field, OPERATOR, value]. */
            const char *parts[3] = {NULL, NULL, NULL};
            int np = cJSON_GetArraySize(e), j = 0;
            bool types_ok = true;
            for (const cJSON *p = e->child; p != NULL; p = p->next, j++) {
                if (!cJSON_IsString(p)) {
                    size_t o3 = rd_idx(r, (size_t)j);
                    rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsstring");
                    rd_pop(r, o3);
                    types_ok = false;
                } else if (j < 3) {
                    parts[j] = p->valuestring;
                }
            }
            if (types_ok && (np < 2 || np > 3)) {
                rd_issue(r, CM_APP_ISSUE_INVALID,
                         "Each constraint must have either 2 or 3 fields");
            } else if (types_ok) {
                add_constraint(r, app, parts[0], parts[1], parts[2]);
            }
        } else if (cJSON_IsString(e)) {
            /* Legacy string form "field:OPERATOR[:value]" (Marathon's CLI flag form);
             * the value may itself contain ':'. */
            const char *s = e->valuestring;
            const char *c1 = strchr(s, ':');
            if (c1 == NULL) {
                rd_issue(r, CM_APP_ISSUE_INVALID,
                         "Each constraint must have either 2 or 3 fields");
            } else {
                char buf[512];
                size_t fl = (size_t)(c1 - s);
                const char *c2 = strchr(c1 + 1, ':');
                size_t ol = c2 != NULL ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
                if (fl + ol + 2 > sizeof(buf)) {
                    rd_issue(r, CM_APP_ISSUE_INVALID, "constraint is too long");
                } else {
                    memcpy(buf, s, fl);
                    buf[fl] = '\0';
                    memcpy(buf + fl + 1, c1 + 1, ol);
                    buf[fl + 1 + ol] = '\0';
                    add_constraint(r, app, buf, buf + fl + 1, c2 != NULL ? c2 + 1 : NULL);
                }
            }
        } else if (cJSON_IsObject(e)) {
            /* The object form of pods and Metronome: {fieldName|attribute, operator,
             * value}. */
            char *field = NULL, *op = NULL, *value = NULL;
            if (!get_str(r, e, "fieldName", &field)) {
                get_str(r, e, "attribute", &field);
            }
            get_str(r, e, "operator", &op);
            get_str(r, e, "value", &value);
            if (field == NULL) {
                rd_type_err(r, "fieldName", "error.path.missing");
            }
            if (op == NULL) {
                rd_type_err(r, "operator", "error.path.missing");
            }
            if (field != NULL && op != NULL) {
                add_constraint(r, app, field, op, value);
            }
            cm_free(&field);
            cm_free(&op);
            cm_free(&value);
        } else {
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsarray");
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
}

static void read_port_mapping(struct rd *r, const cJSON *e,
                              struct cm_app_port_mapping *pm, bool discovery)
{
    static const char *const known[] = {"containerPort", "hostPort", "servicePort",
                                        "protocol",      "name",     "labels",
                                        "networkNames",  NULL};
    static const char *const known_disc[] = {"number", "name", "protocol", "labels",
                                             NULL};
    rd_unknown(r, e, discovery ? known_disc : known, NULL);
    pm->host_port = -1;
    if (discovery) {
        if (!get_i32(r, e, "number", &pm->container_port) &&
            member(e, "number") == NULL) {
            rd_type_err(r, "number", "error.path.missing");
        }
    } else {
        get_i32(r, e, "containerPort", &pm->container_port);
        if (get_i32(r, e, "hostPort", &pm->host_port) && pm->host_port < 0) {
            rd_invalid_at(r, "hostPort", "error.min");
        }
        get_i32(r, e, "servicePort", &pm->service_port);
        get_str_arr(r, e, "networkNames", &pm->network_names, &pm->n_network_names);
    }
    pm->proto = read_proto(r, e);
    get_str(r, e, "name", &pm->name);
    get_labels(r, e, "labels", &pm->labels);
}

/* Read an array of port mappings at obj[key]. */
static bool read_port_mappings(struct rd *r, const cJSON *obj, const char *key,
                               struct cm_app_port_mapping **out, size_t *n_out,
                               bool discovery)
{
    const cJSON *a = get_arr(r, obj, key);
    if (a == NULL) {
        return false;
    }
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0, k = 0;
    struct cm_app_port_mapping *v = rd_calloc(r, n, sizeof(*v));
    if (n > 0 && v == NULL) {
        return true;
    }
    size_t old = rd_key(r, key);
    for (const cJSON *e = a->child; e != NULL; e = e->next, i++) {
        size_t o2 = rd_idx(r, i);
        if (!cJSON_IsObject(e)) {
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
        } else {
            read_port_mapping(r, e, &v[k++], discovery);
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
    *out = v;
    *n_out = k;
    return true;
}

static void read_volume(struct rd *r, const cJSON *e, struct cm_app_volume *v)
{
    static const char *const known[] = {"containerPath", "hostPath", "mode", "persistent",
                                        "external",      "secret",   NULL};
    static const char *const modes[] = {"RW", "RO"};
    rd_unknown(r, e, known, NULL);
    if (!get_str(r, e, "containerPath", &v->container_path) &&
        member(e, "containerPath") == NULL) {
        rd_type_err(r, "containerPath", "error.path.missing");
    }
    int mode = get_enum(r, e, "mode", modes, 2);
    v->read_only = mode == 1;
    const cJSON *pers = get_obj(r, e, "persistent");
    const cJSON *ext = get_obj(r, e, "external");
    if (pers != NULL) {
        static const char *const pknown[] = {"type",        "size",        "maxSize",
                                             "profileName", "constraints", NULL};
        static const char *const ptypes[] = {"root", "path", "mount"};
        size_t old = rd_key(r, "persistent");
        v->kind = CM_APP_VOLUME_PERSISTENT;
        rd_unknown(r, pers, pknown, NULL);
        int t = get_enum(r, pers, "type", ptypes, 3);
        v->persistent_type = rd_dup(r, ptypes[t < 0 ? 0 : t]);
        if (!get_i64(r, pers, "size", &v->size) && member(pers, "size") == NULL) {
            rd_type_err(r, "size", "error.path.missing");
        }
        get_i64(r, pers, "maxSize", &v->max_size);
        get_str(r, pers, "profileName", &v->profile_name);
        const cJSON *pc = get_arr(r, pers, "constraints");
        if (pc != NULL && cJSON_GetArraySize(pc) > 0) {
            /* Disk-selection constraints on mount volumes: nothing to select here. */
            rd_invalid_at(r, "constraints",
                          "persistent volume constraints are not supported");
        }
        rd_pop(r, old);
    } else if (ext != NULL) {
        static const char *const eknown[] = {"name", "provider", "options",
                                             "size", "shared",   NULL};
        size_t old = rd_key(r, "external");
        v->kind = CM_APP_VOLUME_EXTERNAL;
        rd_unknown(r, ext, eknown, NULL);
        if (!get_str(r, ext, "name", &v->ext_name) && member(ext, "name") == NULL) {
            rd_type_err(r, "name", "error.path.missing");
        }
        if (!get_str(r, ext, "provider", &v->ext_provider) &&
            member(ext, "provider") == NULL) {
            rd_type_err(r, "provider", "error.path.missing");
        }
        get_labels(r, ext, "options", &v->ext_options);
        get_i64(r, ext, "size", &v->size);
        get_bool(r, ext, "shared", &v->ext_shared);
        rd_pop(r, old);
    } else if (member(e, "secret") != NULL) {
        v->kind = CM_APP_VOLUME_SECRET;
        v->read_only = false; /* secret volumes have no mode */
        get_str(r, e, "secret", &v->secret);
    } else {
        v->kind = CM_APP_VOLUME_HOST;
        if (!get_str(r, e, "hostPath", &v->host_path) && member(e, "hostPath") == NULL) {
            rd_type_err(r, "hostPath", "error.path.missing");
        }
    }
}

static void read_container(struct rd *r, const cJSON *obj, struct cm_app *app,
                           struct legacy *lg)
{
    const cJSON *c = get_obj(r, obj, "container");
    if (c == NULL) {
        return;
    }
    static const char *const known[] = {"type",    "docker",    "portMappings",
                                        "volumes", "linuxInfo", NULL};
    static const char *const types[] = {"DOCKER", "MESOS"};
    struct cm_app_container *ct = &app->container;
    size_t old = rd_key(r, "container");
    rd_unknown(r, c, known, NULL);
    int t = get_enum(r, c, "type", types, 2);
    /* compat.md §1.3: a container without a type is DOCKER. */
    ct->type = t == 1 ? CM_APP_CONTAINER_MESOS : CM_APP_CONTAINER_DOCKER;
    if (member(c, "linuxInfo") != NULL) {
        rd_unsupported_at(r, "linuxInfo",
                          "unsupported feature: container.linuxInfo (seccomp, IPC and "
                          "shared memory settings are not supported)");
    }
    const cJSON *d = get_obj(r, c, "docker");
    if (d != NULL) {
        static const char *const dknown[] = {
            "image",   "forcePullImage", "privileged", "parameters", "pullConfig",
            "network", "portMappings",   "credential", NULL};
        static const char *const dignored[] = {"forcePull", "requirePorts", NULL};
        size_t o2 = rd_key(r, "docker");
        ct->has_docker = true;
        rd_unknown(r, d, dknown, dignored);
        get_str(r, d, "image", &ct->image);
        get_bool(r, d, "forcePullImage", &ct->force_pull_image);
        get_bool(r, d, "privileged", &ct->privileged);
        const cJSON *params = get_arr(r, d, "parameters");
        if (params != NULL) {
            size_t n = (size_t)cJSON_GetArraySize(params), i = 0;
            ct->params = rd_calloc(r, n, sizeof(*ct->params));
            size_t o3 = rd_key(r, "parameters");
            for (const cJSON *e = params->child; e != NULL && ct->params != NULL;
                 e = e->next, i++) {
                size_t o4 = rd_idx(r, i);
                char *k = NULL, *v = NULL;
                if (!cJSON_IsObject(e)) {
                    rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
                } else {
                    if (!get_str(r, e, "key", &k)) {
                        rd_type_err(r, "key", "error.path.missing");
                    }
                    if (!get_str(r, e, "value", &v)) {
                        rd_type_err(r, "value", "error.path.missing");
                    }
                }
                if (k != NULL && v != NULL) {
                    ct->params[ct->n_params].key = k;
                    ct->params[ct->n_params].value = v;
                    ct->n_params++;
                } else {
                    cm_free(&k);
                    cm_free(&v);
                }
                rd_pop(r, o4);
            }
            rd_pop(r, o3);
        }
        const cJSON *pull = get_obj(r, d, "pullConfig");
        if (pull != NULL) {
            size_t o3 = rd_key(r, "pullConfig");
            if (!get_str(r, pull, "secret", &ct->pull_config_secret)) {
                rd_type_err(r, "secret", "error.path.missing");
            }
            rd_pop(r, o3);
        }
        if (member(d, "credential") != NULL) {
            rd_invalid_at(r, "credential",
                          "docker credentials are deprecated and no longer supported; "
                          "use pullConfig");
        }
        int net =
            get_enum(r, d, "network", docker_networks, CM_ARRAY_SIZE(docker_networks));
        if (net >= 0) {
            lg->has_docker_network = true;
            lg->docker_network = net;
        }
        lg->has_docker_mappings = read_port_mappings(
            r, d, "portMappings", &ct->port_mappings, &ct->n_port_mappings, false);
        rd_pop(r, o2);
    }
    struct cm_app_port_mapping *pms = NULL;
    size_t npms = 0;
    lg->has_container_mappings =
        read_port_mappings(r, c, "portMappings", &pms, &npms, false);
    if (lg->has_container_mappings && lg->has_docker_mappings) {
        rd_invalid_at(r, "portMappings",
                      "cannot specify both container.portMappings and the deprecated "
                      "container.docker.portMappings");
        for (size_t i = 0; i < npms; i++) {
            port_mapping_done(&pms[i]);
        }
        cm_free(&pms);
    } else if (lg->has_container_mappings) {
        ct->port_mappings = pms;
        ct->n_port_mappings = npms;
    }
    const cJSON *vols = get_arr(r, c, "volumes");
    if (vols != NULL) {
        size_t n = (size_t)cJSON_GetArraySize(vols), i = 0;
        ct->volumes = rd_calloc(r, n, sizeof(*ct->volumes));
        size_t o2 = rd_key(r, "volumes");
        for (const cJSON *e = vols->child; e != NULL && ct->volumes != NULL;
             e = e->next, i++) {
            size_t o3 = rd_idx(r, i);
            if (!cJSON_IsObject(e)) {
                rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
            } else {
                read_volume(r, e, &ct->volumes[ct->n_volumes++]);
            }
            rd_pop(r, o3);
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
}

static void read_networks(struct rd *r, const cJSON *obj, struct cm_app *app,
                          struct legacy *lg)
{
    const cJSON *a = get_arr(r, obj, "networks");
    if (a == NULL) {
        return;
    }
    static const char *const modes[] = {"host", "container/bridge", "container"};
    static const char *const known[] = {"mode", "name", "labels", NULL};
    lg->has_networks = true;
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    app->networks = rd_calloc(r, n, sizeof(*app->networks));
    size_t old = rd_key(r, "networks");
    for (const cJSON *e = a->child; e != NULL && app->networks != NULL;
         e = e->next, i++) {
        size_t o2 = rd_idx(r, i);
        if (!cJSON_IsObject(e)) {
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
        } else {
            struct cm_app_network *nw = &app->networks[app->n_networks++];
            rd_unknown(r, e, known, NULL);
            int m = get_enum(r, e, "mode", modes, 3);
            /* compat.md §1.4: an element without a mode is "container". */
            nw->mode = m < 0 ? CM_APP_NET_CONTAINER : (enum cm_app_net_mode)m;
            get_str(r, e, "name", &nw->name);
            get_labels(r, e, "labels", &nw->labels);
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
}

static void read_port_defs(struct rd *r, const cJSON *obj, struct cm_app *app,
                           struct legacy *lg)
{
    const cJSON *a = get_arr(r, obj, "portDefinitions");
    if (a != NULL) {
        static const char *const known[] = {"port", "protocol", "name", "labels", NULL};
        lg->has_port_defs = true;
        size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
        app->port_defs = rd_calloc(r, n, sizeof(*app->port_defs));
        size_t old = rd_key(r, "portDefinitions");
        for (const cJSON *e = a->child; e != NULL && app->port_defs != NULL;
             e = e->next, i++) {
            size_t o2 = rd_idx(r, i);
            if (!cJSON_IsObject(e)) {
                rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
            } else {
                struct cm_app_port_def *pd = &app->port_defs[app->n_port_defs++];
                rd_unknown(r, e, known, NULL);
                get_i32(r, e, "port", &pd->port);
                pd->proto = read_proto(r, e);
                get_str(r, e, "name", &pd->name);
                get_labels(r, e, "labels", &pd->labels);
            }
            rd_pop(r, o2);
        }
        rd_pop(r, old);
    }
    const cJSON *p = get_arr(r, obj, "ports");
    if (p != NULL) {
        size_t n = (size_t)cJSON_GetArraySize(p), i = 0;
        lg->has_ports = true;
        lg->ports = rd_calloc(r, n, sizeof(*lg->ports));
        size_t old = rd_key(r, "ports");
        for (const cJSON *e = p->child; e != NULL && lg->ports != NULL;
             e = e->next, i++) {
            size_t o2 = rd_idx(r, i);
            int64_t v;
            if (!cJSON_IsNumber(e)) {
                rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsnumber");
            } else if (!num_to_i64(e, INT32_MIN, INT32_MAX, &v)) {
                rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.int");
            } else {
                lg->ports[lg->n_ports++] = (int32_t)v;
            }
            rd_pop(r, o2);
        }
        rd_pop(r, old);
    }
}

static void read_health_checks(struct rd *r, const cJSON *obj, struct cm_app *app)
{
    const cJSON *a = get_arr(r, obj, "healthChecks");
    if (a == NULL) {
        return;
    }
    static const char *const known[] = {"protocol",
                                        "path",
                                        "portIndex",
                                        "port",
                                        "command",
                                        "gracePeriodSeconds",
                                        "intervalSeconds",
                                        "timeoutSeconds",
                                        "maxConsecutiveFailures",
                                        "delaySeconds",
                                        "ignoreHttp1xx",
                                        "ipProtocol",
                                        "portName",
                                        NULL};
    static const char *const protos[] = {
        "HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"};
    static const char *const ipp[] = {"IPv4", "IPv6"};
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    app->health_checks = rd_calloc(r, n, sizeof(*app->health_checks));
    size_t old = rd_key(r, "healthChecks");
    for (const cJSON *e = a->child; e != NULL && app->health_checks != NULL;
         e = e->next, i++) {
        size_t o2 = rd_idx(r, i);
        if (!cJSON_IsObject(e)) {
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
            rd_pop(r, o2);
            continue;
        }
        struct cm_app_health_check *hc = &app->health_checks[app->n_health_checks++];
        rd_unknown(r, e, known, NULL);
        int p = get_enum(r, e, "protocol", protos, CM_ARRAY_SIZE(protos));
        hc->proto = p < 0 ? CM_APP_HC_HTTP : (enum cm_app_hc_proto)p;
        hc->port_index = -1;
        hc->port = -1;
        /* -1 means "unset" inside; an explicit negative value is an error. */
        if (get_i32(r, e, "portIndex", &hc->port_index) && hc->port_index < 0) {
            rd_invalid_at(r, "portIndex", "error.min");
        }
        if (get_i32(r, e, "port", &hc->port) && hc->port < 0) {
            rd_invalid_at(r, "port", "error.min");
        }
        get_str(r, e, "portName", &hc->port_name);
        hc->grace_period_s = CM_APP_DEFAULT_HC_GRACE_PERIOD;
        hc->interval_s = CM_APP_DEFAULT_HC_INTERVAL;
        hc->timeout_s = CM_APP_DEFAULT_HC_TIMEOUT;
        hc->max_consecutive_failures = CM_APP_DEFAULT_HC_MAX_FAILURES;
        hc->delay_s = CM_APP_DEFAULT_HC_DELAY;
        get_i32(r, e, "gracePeriodSeconds", &hc->grace_period_s);
        get_i32(r, e, "intervalSeconds", &hc->interval_s);
        get_i32(r, e, "timeoutSeconds", &hc->timeout_s);
        get_i32(r, e, "maxConsecutiveFailures", &hc->max_consecutive_failures);
        get_i32(r, e, "delaySeconds", &hc->delay_s);
        get_bool(r, e, "ignoreHttp1xx", &hc->ignore_http1xx);
        hc->ipv6 = get_enum(r, e, "ipProtocol", ipp, 2) == 1;
        bool http = hc->proto == CM_APP_HC_HTTP || hc->proto == CM_APP_HC_HTTPS ||
                    hc->proto == CM_APP_HC_MESOS_HTTP ||
                    hc->proto == CM_APP_HC_MESOS_HTTPS;
        char *path = NULL;
        get_str(r, e, "path", &path);
        if (http) {
            hc->path = path != NULL ? path : rd_dup(r, "/");
        } else {
            cm_free(&path); /* Marathon drops it for non-HTTP checks */
            hc->ignore_http1xx = false;
        }
        const cJSON *cmd = get_obj(r, e, "command");
        if (cmd != NULL) {
            size_t o3 = rd_key(r, "command");
            if (!get_str(r, cmd, "value", &hc->command)) {
                rd_type_err(r, "value", "error.path.missing");
            }
            rd_pop(r, o3);
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
}

static void read_readiness_checks(struct rd *r, const cJSON *obj, struct cm_app *app)
{
    const cJSON *a = get_arr(r, obj, "readinessChecks");
    if (a == NULL) {
        return;
    }
    static const char *const known[] = {"name",
                                        "protocol",
                                        "path",
                                        "portName",
                                        "intervalSeconds",
                                        "timeoutSeconds",
                                        "httpStatusCodesForReady",
                                        "preserveLastResponse",
                                        NULL};
    static const char *const protos[] = {"HTTP", "HTTPS"};
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    app->readiness_checks = rd_calloc(r, n, sizeof(*app->readiness_checks));
    size_t old = rd_key(r, "readinessChecks");
    for (const cJSON *e = a->child; e != NULL && app->readiness_checks != NULL;
         e = e->next, i++) {
        size_t o2 = rd_idx(r, i);
        if (!cJSON_IsObject(e)) {
            rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
            rd_pop(r, o2);
            continue;
        }
        struct cm_app_readiness_check *rc =
            &app->readiness_checks[app->n_readiness_checks++];
        rd_unknown(r, e, known, NULL);
        if (!get_str(r, e, "name", &rc->name)) {
            rc->name = rd_dup(r, "readinessCheck");
        }
        rc->https = get_enum(r, e, "protocol", protos, 2) == 1;
        if (!get_str(r, e, "path", &rc->path)) {
            rc->path = rd_dup(r, "/");
        }
        /* The RAML default of portName (compat.md §1.8). */
        if (!get_str(r, e, "portName", &rc->port_name)) {
            rc->port_name = rd_dup(r, "http-api");
        }
        rc->interval_s = CM_APP_DEFAULT_RC_INTERVAL;
        rc->timeout_s = CM_APP_DEFAULT_RC_TIMEOUT;
        get_i32(r, e, "intervalSeconds", &rc->interval_s);
        get_i32(r, e, "timeoutSeconds", &rc->timeout_s);
        get_bool(r, e, "preserveLastResponse", &rc->preserve_last_response);
        const cJSON *codes = get_arr(r, e, "httpStatusCodesForReady");
        if (codes == NULL) {
            rc->ready_codes = rd_calloc(r, 1, sizeof(int32_t));
            if (rc->ready_codes != NULL) {
                rc->ready_codes[0] = 200;
                rc->n_ready_codes = 1;
            }
        } else {
            size_t nc = (size_t)cJSON_GetArraySize(codes), j = 0;
            rc->ready_codes = rd_calloc(r, nc, sizeof(int32_t));
            size_t o3 = rd_key(r, "httpStatusCodesForReady");
            for (const cJSON *c = codes->child; c != NULL && rc->ready_codes != NULL;
                 c = c->next, j++) {
                int64_t v;
                size_t o4 = rd_idx(r, j);
                if (!cJSON_IsNumber(c)) {
                    rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsnumber");
                } else if (!num_to_i64(c, INT32_MIN, INT32_MAX, &v)) {
                    rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.int");
                } else {
                    rc->ready_codes[rc->n_ready_codes++] = (int32_t)v;
                }
                rd_pop(r, o4);
            }
            rd_pop(r, o3);
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
}

static void read_check(struct rd *r, const cJSON *obj, struct cm_app *app)
{
    const cJSON *c = get_obj(r, obj, "check");
    if (c == NULL) {
        return;
    }
    static const char *const known[] = {
        "http", "tcp", "exec", "intervalSeconds", "timeoutSeconds", "delaySeconds", NULL};
    static const char *const schemes[] = {"HTTP", "HTTPS"};
    struct cm_app_check *ck = &app->check;
    size_t old = rd_key(r, "check");
    rd_unknown(r, c, known, NULL);
    ck->port_index = -1;
    ck->port = -1;
    ck->interval_s = CM_APP_DEFAULT_HC_INTERVAL;
    ck->timeout_s = CM_APP_DEFAULT_HC_TIMEOUT;
    ck->delay_s = CM_APP_DEFAULT_HC_DELAY;
    get_i32(r, c, "intervalSeconds", &ck->interval_s);
    get_i32(r, c, "timeoutSeconds", &ck->timeout_s);
    get_i32(r, c, "delaySeconds", &ck->delay_s);
    const cJSON *http = get_obj(r, c, "http");
    const cJSON *tcp = get_obj(r, c, "tcp");
    const cJSON *exec = get_obj(r, c, "exec");
    int kinds = (http != NULL) + (tcp != NULL) + (exec != NULL);
    if (kinds != 1) {
        if (r->nsyntax == 0) {
            rd_issue(r, CM_APP_ISSUE_INVALID,
                     "exactly one of http, tcp or exec must be set");
        }
        rd_pop(r, old);
        return;
    }
    if (http != NULL || tcp != NULL) {
        const cJSON *h = http != NULL ? http : tcp;
        size_t o2 = rd_key(r, http != NULL ? "http" : "tcp");
        ck->kind = http != NULL ? CM_APP_CHECK_HTTP : CM_APP_CHECK_TCP;
        if (get_i32(r, h, "portIndex", &ck->port_index) && ck->port_index < 0) {
            rd_invalid_at(r, "portIndex", "error.min");
        }
        if (get_i32(r, h, "port", &ck->port) && ck->port < 0) {
            rd_invalid_at(r, "port", "error.min");
        }
        if (http != NULL) {
            if (!get_str(r, h, "path", &ck->path)) {
                ck->path = rd_dup(r, "/");
            }
            ck->https = get_enum(r, h, "scheme", schemes, 2) == 1;
        }
        rd_pop(r, o2);
    } else {
        size_t o2 = rd_key(r, "exec");
        ck->kind = CM_APP_CHECK_EXEC;
        const cJSON *cmd = get_obj(r, exec, "command");
        if (cmd == NULL || !get_str(r, cmd, "shell", &ck->command)) {
            rd_type_err(r, "command", "error.path.missing");
        }
        rd_pop(r, o2);
    }
    rd_pop(r, old);
}

static void read_fetch(struct rd *r, const cJSON *obj, struct cm_app *app,
                       struct legacy *lg)
{
    const cJSON *a = get_arr(r, obj, "fetch");
    if (a != NULL) {
        static const char *const known[] = {"uri",   "extract",  "executable",
                                            "cache", "destPath", NULL};
        lg->has_fetch = true;
        size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
        app->fetch = rd_calloc(r, n, sizeof(*app->fetch));
        size_t old = rd_key(r, "fetch");
        for (const cJSON *e = a->child; e != NULL && app->fetch != NULL;
             e = e->next, i++) {
            size_t o2 = rd_idx(r, i);
            if (!cJSON_IsObject(e)) {
                rd_issue(r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
            } else {
                struct cm_app_fetch *f = &app->fetch[app->n_fetch++];
                rd_unknown(r, e, known, NULL);
                if (!get_str(r, e, "uri", &f->uri)) {
                    rd_type_err(r, "uri", "error.path.missing");
                }
                f->extract = true;
                get_bool(r, e, "extract", &f->extract);
                get_bool(r, e, "executable", &f->executable);
                get_bool(r, e, "cache", &f->cache);
                get_str(r, e, "destPath", &f->dest_path);
            }
            rd_pop(r, o2);
        }
        rd_pop(r, old);
    }
    lg->has_uris = get_str_arr(r, obj, "uris", &lg->uris, &lg->n_uris);
}

static void read_ip_address(struct rd *r, const cJSON *obj, struct legacy *lg)
{
    const cJSON *ip = get_obj(r, obj, "ipAddress");
    if (ip == NULL) {
        return;
    }
    static const char *const known[] = {"networkName", "discovery", "labels", "groups",
                                        NULL};
    size_t old = rd_key(r, "ipAddress");
    lg->has_ip_address = true;
    rd_unknown(r, ip, known, NULL);
    get_str(r, ip, "networkName", &lg->ip_network_name);
    get_labels(r, ip, "labels", &lg->ip_labels);
    char **groups = NULL;
    size_t ng = 0;
    if (get_str_arr(r, ip, "groups", &groups, &ng) && ng > 0) {
        /* Network security groups were dropped by Marathon's migration too. */
        size_t o2 = rd_key(r, "groups");
        rd_issue(r, CM_APP_ISSUE_WARNING, "ignored: ipAddress.groups are obsolete");
        rd_pop(r, o2);
    }
    str_arr_free(&groups, &ng);
    const cJSON *disc = get_obj(r, ip, "discovery");
    if (disc != NULL) {
        size_t o2 = rd_key(r, "discovery");
        lg->has_discovery =
            read_port_mappings(r, disc, "ports", &lg->discovery, &lg->n_discovery, true);
        rd_pop(r, o2);
    }
    rd_pop(r, old);
}

/* ------------------------------------------------------------------ normalisation */

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Marathon: uris -> fetch, extract iff an archive by its name (compat.md §1.2). */
static void norm_fetch(struct rd *r, struct cm_app *app, struct legacy *lg)
{
    if (!lg->has_uris) {
        return;
    }
    if (lg->has_fetch) {
        rd_invalid_at(r, "uris", "cannot specify both uris and fetch");
        return;
    }
    app->fetch = rd_calloc(r, lg->n_uris, sizeof(*app->fetch));
    if (app->fetch == NULL) {
        return;
    }
    static const char *const archives[] = {
        ".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".gz", ".tgz", ".tbz2", ".txz", ".zip"};
    for (size_t i = 0; i < lg->n_uris; i++) {
        struct cm_app_fetch *f = &app->fetch[app->n_fetch++];
        f->uri = rd_dup(r, lg->uris[i]);
        for (size_t j = 0; j < CM_ARRAY_SIZE(archives) && !f->extract; j++) {
            f->extract = has_suffix(lg->uris[i], archives[j]);
        }
    }
}

static bool set_network(struct rd *r, struct cm_app *app, enum cm_app_net_mode mode,
                        const char *name)
{
    app->networks = rd_calloc(r, 1, sizeof(*app->networks));
    if (app->networks == NULL) {
        return false;
    }
    app->n_networks = 1;
    app->networks[0].mode = mode;
    if (name != NULL) {
        app->networks[0].name = rd_dup(r, name);
    }
    return true;
}

/* The name Mesos gives its CNI bridge (--mesos_bridge_name): an ipAddress on it is
 * bridge networking, not a container network (compat.md §1.4). */
#define MESOS_BRIDGE_NAME "mesos-bridge"

/* AppNormalization's NetworkTranslation plus the port defaults of compat.md §1.4. */
static void norm_networks(struct rd *r, struct cm_app *app, struct legacy *lg)
{
    if (lg->has_networks && lg->has_docker_network) {
        rd_invalid_at(r, NULL,
                      "must not specify both container.docker.network and networks");
        return;
    }
    if (lg->has_networks && lg->has_ip_address) {
        rd_invalid_at(r, NULL, "must not specify both networks and ipAddress");
        return;
    }
    if (!lg->has_networks || app->n_networks == 0) {
        cm_free(&app->networks);
        app->n_networks = 0;
        bool ok = true;
        if (lg->has_docker_network) {
            switch (lg->docker_network) {
            case DOCKER_NET_HOST:
                ok = set_network(r, app, CM_APP_NET_HOST, NULL);
                break;
            case DOCKER_NET_BRIDGE:
                ok = set_network(r, app, CM_APP_NET_BRIDGE, NULL);
                break;
            case DOCKER_NET_USER:
                ok = set_network(r, app, CM_APP_NET_CONTAINER, lg->ip_network_name);
                break;
            default:
                rd_invalid_at(r, "container",
                              "docker network NONE (no network at all) is not supported");
                ok = set_network(r, app, CM_APP_NET_HOST, NULL);
                break;
            }
        } else if (lg->has_ip_address) {
            if (lg->ip_network_name != NULL &&
                strcmp(lg->ip_network_name, MESOS_BRIDGE_NAME) == 0) {
                ok = set_network(r, app, CM_APP_NET_BRIDGE, NULL);
            } else {
                ok = set_network(r, app, CM_APP_NET_CONTAINER, lg->ip_network_name);
            }
        } else {
            ok = set_network(r, app, CM_APP_NET_HOST, NULL);
        }
        if (!ok) {
            return;
        }
        if (lg->has_ip_address && app->networks[0].mode == CM_APP_NET_CONTAINER) {
            app->networks[0].labels = lg->ip_labels;
            lg->ip_labels = (struct cm_app_labels){0};
        }
    }
    bool host = app->networks[0].mode == CM_APP_NET_HOST;
    struct cm_app_container *ct = &app->container;

    /* ipAddress.discovery.ports become port mappings (Mesos containerizer only). */
    if (lg->has_discovery) {
        if (ct->type == CM_APP_CONTAINER_DOCKER) {
            rd_invalid_at(r, "ipAddress",
                          "ipAddress/discovery is not allowed for Docker "
                          "containers");
        } else if (ct->n_port_mappings > 0 || lg->has_container_mappings) {
            rd_invalid_at(r, "ipAddress",
                          "cannot specify both ipAddress.discovery and "
                          "container.portMappings");
        } else {
            ct->port_mappings = lg->discovery;
            ct->n_port_mappings = lg->n_discovery;
            lg->discovery = NULL;
            lg->n_discovery = 0;
            lg->has_container_mappings = true;
        }
    }
    if (lg->has_ip_address && (app->n_port_defs > 0 || lg->n_ports > 0)) {
        rd_invalid_at(r, NULL, "cannot specify both an IP address and port");
    }

    /* Ports: legacy `ports` -> portDefinitions. */
    if (lg->has_ports && lg->has_port_defs) {
        bool same = lg->n_ports == app->n_port_defs;
        for (size_t i = 0; same && i < lg->n_ports; i++) {
            same = lg->ports[i] == app->port_defs[i].port;
        }
        if (!same) {
            rd_invalid_at(r, NULL, "cannot specify both ports and port definitions");
        }
    }
    if (host) {
        if (ct->n_port_mappings > 0) {
            rd_invalid_at(r, "container",
                          "portMappings are not allowed with host-networking");
        }
        if (!lg->has_port_defs) {
            size_t n = lg->has_ports ? lg->n_ports : 1;
            app->port_defs = rd_calloc(r, n, sizeof(*app->port_defs));
            if (app->port_defs == NULL) {
                return;
            }
            app->n_port_defs = n;
            for (size_t i = 0; i < n; i++) {
                app->port_defs[i].proto = CM_APP_PROTO_TCP;
                app->port_defs[i].port = lg->has_ports ? lg->ports[i] : 0;
            }
            if (!lg->has_ports) {
                app->port_defs[0].name = rd_dup(r, "default");
            }
        }
    } else {
        if (app->n_port_defs > 0) {
            rd_invalid_at(r, "portDefinitions",
                          "portDefinitions are only allowed with host-networking");
        }
        if (lg->has_ports && !lg->has_port_defs && lg->n_ports > 0) {
            /* Old bridge apps carry `ports` next to their port mappings; Marathon's
             * migration dropped them, and so do we. */
            size_t old = rd_key(r, "ports");
            rd_issue(r, CM_APP_ISSUE_WARNING,
                     "ignored: ports only apply to host networking; use "
                     "container.portMappings");
            rd_pop(r, old);
        }
        app->require_ports = false;
        if (ct->type == CM_APP_CONTAINER_NONE) {
            ct->type =
                CM_APP_CONTAINER_MESOS; /* compat.md §1.4: implicit {type: MESOS} */
        }
        if (!lg->has_container_mappings && !lg->has_docker_mappings) {
            ct->port_mappings = rd_calloc(r, 1, sizeof(*ct->port_mappings));
            if (ct->port_mappings == NULL) {
                return;
            }
            ct->n_port_mappings = 1;
            ct->port_mappings[0].proto = CM_APP_PROTO_TCP;
            ct->port_mappings[0].host_port = -1;
            ct->port_mappings[0].name = rd_dup(r, "default");
        }
        bool bridge = app->networks[0].mode == CM_APP_NET_BRIDGE;
        for (size_t i = 0; i < ct->n_port_mappings; i++) {
            if (bridge && ct->port_mappings[i].host_port < 0) {
                ct->port_mappings[i].host_port = 0;
            }
        }
    }
}

static size_t app_port_count(const struct cm_app *app)
{
    return app->networks != NULL && app->networks[0].mode != CM_APP_NET_HOST
               ? app->container.n_port_mappings
               : app->n_port_defs;
}

static void norm_defaults(struct rd *r, struct cm_app *app, struct legacy *lg)
{
    bool resident = false;
    for (size_t i = 0; i < app->container.n_volumes; i++) {
        resident |= app->container.volumes[i].kind == CM_APP_VOLUME_PERSISTENT;
    }
    if (resident && !app->has_residency) {
        app->has_residency = true;
        app->relaunch_escalation_timeout_s = CM_APP_DEFAULT_RELAUNCH_ESCALATION;
    }
    /* compat.md §1.10: resident apps default to 0.5 / 0. */
    if (!lg->has_upgrade_min) {
        app->min_health_capacity = resident ? 0.5 : 1.0;
    }
    if (!lg->has_upgrade_max) {
        app->max_over_capacity = resident ? 0.0 : 1.0;
    }
    if (!lg->has_unreachable) {
        if (resident) {
            app->unreachable.disabled = true;
        } else {
            app->unreachable.inactive_after_s = CM_APP_DEFAULT_INACTIVE_AFTER;
            app->unreachable.expunge_after_s = CM_APP_DEFAULT_EXPUNGE_AFTER;
        }
    }
    if (app->role == NULL) {
        app->role = rd_dup(r, CM_APP_DEFAULT_ROLE);
    }
    if (app->executor == NULL) {
        app->executor = rd_dup(r, "");
    }
    /* compat.md §1.7: portIndex 0 when neither port nor portIndex is given and the
     * app has ports. */
    size_t nports = app_port_count(app);
    for (size_t i = 0; i < app->n_health_checks; i++) {
        struct cm_app_health_check *hc = &app->health_checks[i];
        if (hc->proto != CM_APP_HC_COMMAND && hc->port < 0 && hc->port_index < 0 &&
            hc->port_name == NULL && nports > 0) {
            hc->port_index = 0;
        }
    }
    if ((app->check.kind == CM_APP_CHECK_HTTP || app->check.kind == CM_APP_CHECK_TCP) &&
        app->check.port < 0 && app->check.port_index < 0 && nports > 0) {
        app->check.port_index = 0;
    }
}

static void norm_dependencies(struct rd *r, struct cm_app *app)
{
    char parent[CM_APP_MAX_ID + 1];
    if (app->id == NULL || cm_app_path_parent(app->id, parent, sizeof(parent)) != 0) {
        return;
    }
    size_t old = rd_key(r, "dependencies");
    for (size_t i = 0; i < app->n_dependencies; i++) {
        char abs[CM_APP_MAX_ID + 1];
        int code;
        const char *why =
            app__path_norm(app->dependencies[i], parent, abs, sizeof(abs), &code);
        if (why != NULL) {
            size_t o2 = rd_idx(r, i);
            rd_issue(r, CM_APP_ISSUE_INVALID, why);
            rd_pop(r, o2);
            continue;
        }
        char *d = rd_dup(r, abs);
        if (d != NULL) {
            cm_free(&app->dependencies[i]);
            app->dependencies[i] = d;
        }
    }
    rd_pop(r, old);
}

/* ------------------------------------------------------------------ the app */

static const char *const app_known[] = {
    "id",
    "cmd",
    "args",
    "user",
    "env",
    "secrets",
    "instances",
    "cpus",
    "mem",
    "disk",
    "gpus",
    "resourceLimits",
    "executor",
    "executorResources",
    "constraints",
    "acceptedResourceRoles",
    "role",
    "labels",
    "container",
    "networks",
    "portDefinitions",
    "ports",
    "requirePorts",
    "healthChecks",
    "readinessChecks",
    "check",
    "dependencies",
    "upgradeStrategy",
    "backoffSeconds",
    "backoffFactor",
    "maxLaunchDelaySeconds",
    "taskKillGracePeriodSeconds",
    "killSelection",
    "unreachableStrategy",
    "fetch",
    "uris",
    "residency",
    "ipAddress",
    "tty",
    NULL,
};

/* Output-only (AppInfo) and obsolete fields: known, dropped, warned about. */
static const char *const app_ignored[] = {
    "version",      "versionInfo",  "tasksStaged",
    "tasksRunning", "tasksHealthy", "tasksUnhealthy",
    "deployments",  "tasks",        "lastTaskFailure",
    "taskStats",    "tasksStats",   "readinessCheckResults",
    "storeUrls",    NULL,
};

static void read_limit(struct rd *r, const cJSON *o, const char *key,
                       struct cm_app_resource_limit *out)
{
    const cJSON *m = member(o, key);
    if (m == NULL) {
        return;
    }
    if (cJSON_IsString(m) && strcmp(m->valuestring, "unlimited") == 0) {
        out->set = out->unlimited = true;
    } else if (cJSON_IsNumber(m) && isfinite(m->valuedouble)) {
        out->set = true;
        out->value = m->valuedouble;
    } else {
        rd_type_err(r, key, "error.expected.jsnumber");
    }
}

static void read_app(struct rd *r, const cJSON *obj, const struct cm_app_parse_opts *opts,
                     struct cm_app *app, struct legacy *lg)
{
    rd_unknown(r, obj, app_known, app_ignored);

    char *raw_id = NULL;
    if (!get_str(r, obj, "id", &raw_id) && member(obj, "id") == NULL) {
        rd_type_err(r, "id", "error.path.missing");
    }
    if (raw_id != NULL) {
        char abs[CM_APP_MAX_ID + 1];
        int code;
        const char *why = app__path_norm(raw_id, opts->base, abs, sizeof(abs), &code);
        if (why == NULL) {
            why = cm_app_id_check(abs);
        }
        if (why != NULL) {
            rd_invalid_at(r, "id", why);
        }
        app->id = rd_dup(r, why == NULL ? abs : raw_id);
        cm_free(&raw_id);
    }
    get_str(r, obj, "cmd", &app->cmd);
    get_str_arr(r, obj, "args", &app->args, &app->n_args);
    get_str(r, obj, "user", &app->user);
    read_env(r, obj, app);
    if (!r->oom && app->n_env > 1) {
        qsort(app->env, app->n_env, sizeof(*app->env), cmp_env);
    }
    read_secrets(r, obj, app);

    app->instances = CM_APP_DEFAULT_INSTANCES;
    app->cpus = CM_APP_DEFAULT_CPUS;
    app->mem = CM_APP_DEFAULT_MEM;
    get_i32(r, obj, "instances", &app->instances);
    get_num(r, obj, "cpus", &app->cpus);
    get_num(r, obj, "mem", &app->mem);
    get_num(r, obj, "disk", &app->disk);
    get_i32(r, obj, "gpus", &app->gpus);
    const cJSON *lim = get_obj(r, obj, "resourceLimits");
    if (lim != NULL) {
        size_t old = rd_key(r, "resourceLimits");
        read_limit(r, lim, "cpus", &app->limit_cpus);
        read_limit(r, lim, "mem", &app->limit_mem);
        rd_pop(r, old);
    }
    get_str(r, obj, "executor", &app->executor);
    if (member(obj, "executorResources") != NULL) {
        rd_unsupported_at(r, "executorResources",
                          "unsupported feature: executorResources (tasks run under "
                          "clusterctl's own executor)");
    }
    read_constraints(r, obj, app);
    get_str_arr(r, obj, "acceptedResourceRoles", &app->accepted_roles,
                &app->n_accepted_roles);
    get_str(r, obj, "role", &app->role);
    get_labels(r, obj, "labels", &app->labels);

    read_container(r, obj, app, lg);
    read_networks(r, obj, app, lg);
    read_port_defs(r, obj, app, lg);
    get_bool(r, obj, "requirePorts", &app->require_ports);
    read_ip_address(r, obj, lg);

    read_health_checks(r, obj, app);
    read_readiness_checks(r, obj, app);
    read_check(r, obj, app);
    get_str_arr(r, obj, "dependencies", &app->dependencies, &app->n_dependencies);

    const cJSON *up = get_obj(r, obj, "upgradeStrategy");
    if (up != NULL) {
        static const char *const known[] = {"minimumHealthCapacity",
                                            "maximumOverCapacity",
                                            "canaries",
                                            "canaryPromoteAfterSeconds",
                                            "autoRollback",
                                            "progressDeadlineSeconds",
                                            NULL};
        size_t old = rd_key(r, "upgradeStrategy");
        rd_unknown(r, up, known, NULL);
        lg->has_upgrade_min =
            get_num(r, up, "minimumHealthCapacity", &app->min_health_capacity);
        lg->has_upgrade_max =
            get_num(r, up, "maximumOverCapacity", &app->max_over_capacity);
        get_i32(r, up, "canaries", &app->canaries);
        get_i32(r, up, "canaryPromoteAfterSeconds", &app->canary_promote_after_s);
        get_bool(r, up, "autoRollback", &app->auto_rollback);
        get_i32(r, up, "progressDeadlineSeconds", &app->progress_deadline_s);
        rd_pop(r, old);
    }
    app->backoff_s = CM_APP_DEFAULT_BACKOFF_SECONDS;
    app->backoff_factor = CM_APP_DEFAULT_BACKOFF_FACTOR;
    app->max_launch_delay_s = CM_APP_DEFAULT_MAX_LAUNCH_DELAY;
    app->task_kill_grace_period_s = -1;
    get_i32(r, obj, "backoffSeconds", &app->backoff_s);
    get_num(r, obj, "backoffFactor", &app->backoff_factor);
    get_i32(r, obj, "maxLaunchDelaySeconds", &app->max_launch_delay_s);
    if (get_i32(r, obj, "taskKillGracePeriodSeconds", &app->task_kill_grace_period_s) &&
        app->task_kill_grace_period_s < 0) {
        rd_invalid_at(r, "taskKillGracePeriodSeconds", "error.min");
    }
    static const char *const kills[] = {"YOUNGEST_FIRST", "OLDEST_FIRST"};
    app->kill_selection = get_enum(r, obj, "killSelection", kills, 2) == 1
                              ? CM_APP_KILL_OLDEST_FIRST
                              : CM_APP_KILL_YOUNGEST_FIRST;

    const cJSON *un = member(obj, "unreachableStrategy");
    if (un != NULL) {
        lg->has_unreachable = true;
        if (cJSON_IsString(un)) {
            if (strcmp(un->valuestring, "disabled") == 0) {
                app->unreachable.disabled = true;
            } else {
                rd_type_err(r, "unreachableStrategy", "error.unknown.enum.literal");
            }
        } else if (cJSON_IsObject(un)) {
            static const char *const known[] = {"inactiveAfterSeconds",
                                                "expungeAfterSeconds", NULL};
            size_t old = rd_key(r, "unreachableStrategy");
            rd_unknown(r, un, known, NULL);
            app->unreachable.inactive_after_s = CM_APP_DEFAULT_INACTIVE_AFTER;
            app->unreachable.expunge_after_s = CM_APP_DEFAULT_EXPUNGE_AFTER;
            get_i64(r, un, "inactiveAfterSeconds", &app->unreachable.inactive_after_s);
            get_i64(r, un, "expungeAfterSeconds", &app->unreachable.expunge_after_s);
            rd_pop(r, old);
        } else {
            rd_type_err(r, "unreachableStrategy", "error.expected.jsobject");
        }
    }
    read_fetch(r, obj, app, lg);

    const cJSON *res = get_obj(r, obj, "residency");
    if (res != NULL) {
        static const char *const known[] = {"relaunchEscalationTimeoutSeconds",
                                            "taskLostBehavior", NULL};
        static const char *const behaviours[] = {"WAIT_FOREVER",
                                                 "RELAUNCH_AFTER_TIMEOUT"};
        size_t old = rd_key(r, "residency");
        rd_unknown(r, res, known, NULL);
        app->has_residency = true;
        app->relaunch_escalation_timeout_s = CM_APP_DEFAULT_RELAUNCH_ESCALATION;
        get_i64(r, res, "relaunchEscalationTimeoutSeconds",
                &app->relaunch_escalation_timeout_s);
        app->task_lost_relaunch =
            get_enum(r, res, "taskLostBehavior", behaviours, 2) == 1;
        rd_pop(r, old);
    }
    app->tty = -1;
    bool tty;
    if (get_bool(r, obj, "tty", &tty)) {
        app->tty = tty;
    }
}

int app__parse_obj(const cJSON *obj, const char *path_prefix,
                   const struct cm_app_parse_opts *opts, struct cm_app **ret_app,
                   struct cm_app_report *rep)
{
    static const struct cm_app_parse_opts defaults = {.base = "/", .features = 0};
    if (opts == NULL) {
        opts = &defaults;
    }
    struct rd r = {.rep = rep};
    snprintf(r.path, sizeof(r.path), "%s", path_prefix);
    r.plen = strlen(r.path);
    if (!cJSON_IsObject(obj)) {
        rd_issue(&r, CM_APP_ISSUE_SYNTAX, "error.expected.jsobject");
        return r.oom ? CM_ENOMEM : CM_EMALFORMED;
    }
    struct cm_app *app = cm_calloc(1, sizeof(*app));
    if (app == NULL) {
        return CM_ENOMEM;
    }
    struct legacy lg = {0};
    read_app(&r, obj, opts, app, &lg);
    int rv = 0;
    if (r.oom) {
        rv = CM_ENOMEM;
        goto out;
    }
    if (r.nsyntax > 0) {
        rv = CM_EMALFORMED;
        goto out;
    }
    norm_fetch(&r, app, &lg);
    norm_networks(&r, app, &lg);
    if (app->networks != NULL) {
        norm_defaults(&r, app, &lg);
    }
    norm_dependencies(&r, app);
    if (r.oom) {
        rv = CM_ENOMEM;
        goto out;
    }
    /* Validate even after normalisation errors, so one answer lists them all. */
    if (app->networks != NULL) {
        int n = app__validate(app, r.path, rep);
        if (n < 0) {
            rv = n;
            goto out;
        }
        r.ninvalid += n;
    }
    if (r.ninvalid > 0) {
        rv = CM_EVALIDATION;
        goto out;
    }
    int nu = app__check_features(app, opts->features, r.path, rep);
    if (nu < 0) {
        rv = nu;
        goto out;
    }
    if (nu > 0 || r.nunsupported > 0) {
        rv = CM_EUNSUPPORTED;
        goto out;
    }
out:
    legacy_done(&lg);
    if (rv != 0) {
        cm_app_free(app);
        return rv;
    }
    *ret_app = app;
    return 0;
}

int cm_app_parse(const char *json, size_t len, const struct cm_app_parse_opts *opts,
                 struct cm_app **ret_app, struct cm_app_report *rep)
{
    cJSON *root = NULL;
    int rv = app__json_parse(json, len, &root, rep);
    if (rv != 0) {
        return rv;
    }
    rv = app__parse_obj(root, "", opts, ret_app, rep);
    cJSON_Delete(root);
    return rv;
}

int cm_app_from_canonical(const char *json, size_t len, struct cm_app **ret_app)
{
    struct cm_app_parse_opts opts = {.base = "/", .features = CM_APP_FEAT_ALL};
    return cm_app_parse(json, len, &opts, ret_app, NULL);
}

int cm_app_copy(const struct cm_app *app, struct cm_app **ret_app)
{
    struct cm_buf b = {0};
    int rv = cm_app_canonical(app, &b);
    if (rv == 0) {
        rv = cm_app_from_canonical(b.data, b.len, ret_app);
        /* A valid app always reads back; anything else is a bug in the writer. */
        CM_ASSERT(rv == 0 || rv == CM_ENOMEM);
        if (rv != 0 && rv != CM_ENOMEM) {
            rv = CM_EINTERNAL;
        }
    }
    cm_buf_done(&b);
    return rv;
}
