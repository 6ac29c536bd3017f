/* Marathon v2 apps, tasks and queue (shared/specs/compat.md §2.2).
 *
 * Handlers read the local replica and write only app.put / app.delete /
 * task.kill commands; the leader's controller turns apps into tasks.
 *
 * Versions: an app's `version` here is the version of its configuration, which
 * is also the version its tasks carry (the controller replaces tasks whose
 * version differs). So a change of `instances` alone keeps the version (Marathon
 * would give a new `version` and keep `versionInfo.lastConfigChangeAt`; keeping
 * it is what lets a scale leave running tasks alone), an unchanged PUT proposes
 * nothing, and every other change, a restart or a rollback gets a new version.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"

/* ------------------------------------------------------------------ helpers */

static void respond_report(struct cm_http_req *req, int rv,
                           const struct cm_app_report *rep)
{
    struct cm_buf b = {0};
    if (cm_app_report_body(rep, rv, &b) != 0) {
        cm_buf_done(&b);
        api__respond_internal(req, CM_ENOMEM);
        return;
    }
    api__respond_json(req, cm_app_http_status(rv), &b);
    cm_buf_done(&b);
}

static void respond_no_app(struct cm_http_req *req, const char *raw)
{
    cm_http_respond_error(req, 404, "App '%s%s' does not exist",
                          raw != NULL && raw[0] == '/' ? "" : "/",
                          raw != NULL ? raw : "");
}

/* {"version": .., "deploymentId": ..} into @b, and the Marathon header on @w;
 * the write becomes that deployment (?force defaults to @force). */
static int deployment_result(struct api_write *w, const char *version, bool force)
{
    char dep[37];
    if (cm_uuid4(dep) != 0) {
        return CM_EIO;
    }
    api__write_deploy(w, dep, version, force);
    struct cm_buf *b = api__write_body(w);
    int rv =
        cm_buf_printf(b, "{\"version\":\"%s\",\"deploymentId\":\"%s\"}", version, dep);
    rv = rv ? rv : api__write_header(w, "Marathon-Deployment-Id", dep);
    return rv;
}

static int parse_opts_features(const struct cm_api *api)
{
    return (int)api->ops.features;
}

/* How an app change relates to the current one. */
enum change_kind {
    CHANGE_NONE = 0, /* equal: nothing to propose */
    CHANGE_SCALE,    /* only `instances` differs: same version */
    CHANGE_CONFIG,   /* a new version */
};

static enum change_kind classify(struct cm_app *next, const struct cm_app *cur)
{
    if (cur == NULL) {
        return CHANGE_CONFIG;
    }
    if (cm_app_equal(next, cur)) {
        return CHANGE_NONE;
    }
    int32_t inst = next->instances;
    next->instances = cur->instances;
    bool same = cm_app_equal(next, cur);
    next->instances = inst;
    return same ? CHANGE_SCALE : CHANGE_CONFIG;
}

/* Propose app.put for @next unless nothing changed. The version used is
 * @cur_version for a scale, @new_version for a config change. */
static int write_app(struct api_write *w, struct cm_app *next, const struct api_app *cur,
                     const char *new_version)
{
    enum change_kind k = classify(next, cur != NULL ? cur->spec : NULL);
    if (k == CHANGE_NONE) {
        return 0;
    }
    struct cm_buf cmd = {0};
    int rv = api__app_put_cmd(next, k == CHANGE_SCALE ? cur->version : new_version, &cmd);
    if (rv == 0) {
        api__write_propose(w, cmd.data, cmd.len);
    }
    cm_buf_done(&cmd);
    return rv;
}

/* ------------------------------------------------------------------ building an app */

/* Field names are case-sensitive, as in the app model (cJSON_HasObjectItem is
 * not: "PORTS" dropped the portDefinitions, and a replace of "Instances" that
 * did not happen leaked its copy). */
static bool has_key(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key) != NULL;
}

/* Fields Marathon's normalisation derives from others: when an update gives the
 * legacy or the deciding field, the current derived one must not be kept, or
 * the merged app would state both (compat.md §1.4). */
static void drop_derived(cJSON *base, const cJSON *upd)
{
    bool has_pd = has_key(upd, "portDefinitions");
    bool has_ports = has_key(upd, "ports");
    const cJSON *container = cJSON_GetObjectItemCaseSensitive(upd, "container");
    const cJSON *docker = cJSON_GetObjectItemCaseSensitive(container, "docker");
    bool legacy_net = has_key(upd, "ipAddress") || has_key(docker, "network");
    if (has_ports && !has_pd) {
        cJSON_DeleteItemFromObjectCaseSensitive(base, "portDefinitions");
    }
    if (has_key(upd, "uris") && !has_key(upd, "fetch")) {
        cJSON_DeleteItemFromObjectCaseSensitive(base, "fetch");
    }
    if (legacy_net && !has_key(upd, "networks")) {
        cJSON_DeleteItemFromObjectCaseSensitive(base, "networks");
    }
    if ((legacy_net || has_key(upd, "networks")) && !has_pd && !has_ports) {
        cJSON_DeleteItemFromObjectCaseSensitive(base, "portDefinitions");
    }
    if (legacy_net && !has_key(upd, "container")) {
        cJSON_DeleteItemFromObjectCaseSensitive(base, "container");
    }
}

/* Marathon's PUT with partialUpdate (compat.md §2.2, §7): the given top-level
 * fields replace the current ones; the rest stays. The id always comes from
 * the URL. Returns the merged JSON text in *ret (cJSON-allocated). */
static int merge_json(const struct cm_app *cur, const cJSON *upd, const char *id,
                      char **ret)
{
    struct cm_buf b = {0};
    int rv = cur != NULL ? cm_app_to_json(cur, NULL, &b) : cm_buf_puts(&b, "{}");
    if (rv != 0) {
        cm_buf_done(&b);
        return rv;
    }
    cJSON *base = cJSON_Parse(b.data);
    cm_buf_done(&b);
    if (base == NULL) {
        return CM_ENOMEM;
    }
    if (cur != NULL) {
        drop_derived(base, upd);
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, upd)
    {
        if (strcmp(f->string, "id") == 0 || strcmp(f->string, "version") == 0 ||
            strcmp(f->string, "versionInfo") == 0) {
            continue;
        }
        cJSON *copy = cJSON_Duplicate(f, true);
        if (copy == NULL) {
            cJSON_Delete(base);
            return CM_ENOMEM;
        }
        if (has_key(base, f->string)) {
            cJSON_ReplaceItemInObjectCaseSensitive(base, f->string, copy);
        } else {
            cJSON_AddItemToObject(base, f->string, copy);
        }
    }
    cJSON *idv = cJSON_CreateString(id);
    if (idv == NULL) {
        cJSON_Delete(base);
        return CM_ENOMEM;
    }
    if (has_key(base, "id")) {
        cJSON_ReplaceItemInObjectCaseSensitive(base, "id", idv);
    } else {
        cJSON_AddItemToObject(base, "id", idv);
    }
    *ret = cJSON_PrintUnformatted(base);
    cJSON_Delete(base);
    return *ret != NULL ? 0 : CM_ENOMEM;
}

/* True when @upd is a rollback: only `version` (and `id`). */
static const char *rollback_version(const cJSON *upd)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(upd, "version");
    if (!cJSON_IsString(v)) {
        return NULL;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, upd)
    {
        if (strcmp(f->string, "id") != 0 && strcmp(f->string, "version") != 0) {
            return NULL;
        }
    }
    return v->valuestring;
}

struct version_find {
    const char *version;
    char *spec;
};

static int find_version(void *data, const struct cm_app_row *row)
{
    struct version_find *vf = data;
    if (strcmp(row->version, vf->version) != 0) {
        return 0;
    }
    vf->spec = cm_strdup(row->spec);
    return vf->spec != NULL ? 1 : CM_ENOMEM;
}

/* The app as stored at @version; CM_ENOTFOUND when there is no such version. */
static int load_version(struct cm_api *api, const char *id, const char *version,
                        struct cm_app **ret)
{
    struct version_find vf = {version, NULL};
    int rv = cm_state_app_versions(api->ops.state(api->ops.data), id, find_version, &vf);
    if (rv < 0) {
        return rv;
    }
    if (vf.spec == NULL) {
        return CM_ENOTFOUND;
    }
    rv = cm_app_from_canonical(vf.spec, strlen(vf.spec), ret);
    cm_free(&vf.spec);
    return rv;
}

/* One app of an update body (@upd, an object): merged into @cur when @partial,
 * else taken as it is, with @id from the URL (NULL: the body's own). A
 * rollback body gives the stored version. */
static int build_app(struct cm_api *api, const cJSON *upd, const char *id,
                     const struct api_app *cur, bool partial, struct cm_app **ret,
                     struct cm_app_report *rep)
{
    const char *rb = cur != NULL ? rollback_version(upd) : NULL;
    if (rb != NULL) {
        int rv = load_version(api, cur->id, rb, ret);
        if (rv == CM_ENOTFOUND) {
            return CM_ENOTFOUND;
        }
        return rv;
    }
    if (id == NULL) {
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(upd, "id");
        id = cJSON_IsString(idv) ? idv->valuestring : "";
    }
    char *text = NULL;
    int rv =
        merge_json(partial ? (cur != NULL ? cur->spec : NULL) : NULL, upd, id, &text);
    if (rv != 0) {
        return rv;
    }
    struct cm_app_parse_opts o = {.base = "/",
                                  .features = (unsigned)parse_opts_features(api)};
    rv = cm_app_parse(text, strlen(text), &o, ret, rep);
    cJSON_free(text);
    return rv;
}

/* The strict syntax and type pass of the app model over a raw body: the cJSON
 * view of a body is used only once it passed. Returns 0 when the body is JSON of
 * the right types (even if invalid as a whole app), else the parse error. */
static int syntax_check(struct cm_api *api, const char *body, size_t len, bool array,
                        struct cm_app_report *rep)
{
    struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
    (void)api;
    int rv;
    if (array) {
        struct cm_app_list list = {0};
        rv = cm_app_array_parse(body, len, &o, &list, rep);
        cm_app_list_done(&list);
    } else {
        struct cm_app *app = NULL;
        rv = cm_app_parse(body, len, &o, &app, rep);
        cm_app_free(app);
    }
    if (rv == CM_EMALFORMED) {
        /* An update may leave out required fields (they come from the current
         * app): only a missing field is not a syntax error here. */
        bool real = rep->dropped > 0;
        for (size_t i = 0; i < rep->n; i++) {
            real |= rep->v[i].kind == CM_APP_ISSUE_SYNTAX &&
                    strcmp(rep->v[i].msg, "error.path.missing") != 0;
        }
        rv = real ? rv : 0;
    }
    if (rv == CM_EMALFORMED || rv == CM_ETOOBIG || rv == CM_ENOMEM) {
        return rv;
    }
    cm_app_report_done(rep);
    return 0;
}

/* ------------------------------------------------------------------ GET /v2/apps */

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p != '\0'; p++) {
        if (strncasecmp(p, needle, n) == 0) {
            return true;
        }
    }
    return n == 0;
}

static const char *label_of(const struct cm_app *a, const char *key, size_t klen)
{
    for (size_t i = 0; i < a->labels.n; i++) {
        if (strlen(a->labels.v[i].key) == klen &&
            strncmp(a->labels.v[i].key, key, klen) == 0) {
            return a->labels.v[i].value;
        }
    }
    return NULL;
}

/* @s[0, n) without the blanks around it, as a NUL-terminated copy in @out. */
static void trimmed(const char *s, size_t n, char *out, size_t cap)
{
    while (n > 0 && *s == ' ') {
        s++;
        n--;
    }
    while (n > 0 && s[n - 1] == ' ') {
        n--;
    }
    snprintf(out, cap, "%.*s", (int)n, s);
}

/* Whether @have is one of the comma-separated values of @set ("a, b"). */
static bool in_set(const char *have, const char *set)
{
    for (const char *p = set;;) {
        const char *c = strchr(p, ',');
        size_t n = c != NULL ? (size_t)(c - p) : strlen(p);
        char v[512];
        trimmed(p, n, v, sizeof(v));
        if (strcmp(v, have) == 0) {
            return true;
        }
        if (c == NULL) {
            return false;
        }
        p = c + 1;
    }
}

/* One selector term. As Marathon's LabelSelector, every form needs the label:
 * `k`, `k==v`, `k!=v` (k set to another value), `k in (a, b)`, `k notin (a, b)`.
 * Returns -1 for a term it cannot read. */
static int term_match(const struct cm_app *a, const char *term)
{
    const char *ne = strstr(term, "!=");
    const char *eq = strstr(term, "==");
    const char *in = strstr(term, " in ");
    const char *notin = strstr(term, " notin ");
    const char *op = ne != NULL ? ne : eq != NULL ? eq : notin != NULL ? notin : in;
    char key[256];
    trimmed(term, op != NULL ? (size_t)(op - term) : strlen(term), key, sizeof(key));
    if (key[0] == '\0') {
        return -1;
    }
    const char *have = label_of(a, key, strlen(key));
    if (op == NULL) {
        return have != NULL;
    }
    if (op == ne || op == eq) {
        char want[512];
        trimmed(op + 2, strlen(op + 2), want, sizeof(want));
        return have != NULL && (strcmp(have, want) == 0) == (op == eq);
    }
    const char *open = strchr(op, '(');
    const char *close = open != NULL ? strrchr(open, ')') : NULL;
    if (close == NULL) {
        return -1;
    }
    char set[512];
    trimmed(open + 1, (size_t)(close - open - 1), set, sizeof(set));
    return have != NULL && in_set(have, set) == (op == in);
}

/* Marathon's label selector (compat.md §2.2): terms joined by ',' (AND), commas
 * inside a set's parentheses belonging to the set. Returns -1 for a form we do
 * not read. */
static int label_match(const struct cm_app *a, const char *sel)
{
    char term[1024];
    size_t n = 0;
    int depth = 0;
    for (const char *p = sel;; p++) {
        if (*p == '\0' || (*p == ',' && depth == 0)) {
            term[n] = '\0';
            int m = term_match(a, term);
            if (m <= 0) {
                return m;
            }
            if (*p == '\0') {
                return 1;
            }
            n = 0;
            continue;
        }
        depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
        if (n + 1 >= sizeof(term)) {
            return -1;
        }
        term[n++] = *p;
    }
}

static void h_apps_list(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    const char *fid = cm_http_request_query(r, "id");
    const char *fcmd = cm_http_request_query(r, "cmd");
    const char *flabel = cm_http_request_query(r, "label");
    unsigned embed = api__embed(r, "apps.") | API_EMBED_COUNTS | API_EMBED_DEPLOYMENTS;
    struct api_apps apps;
    struct api_tasks tasks;
    int rv = api__apps_load(api, NULL, &apps);
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    rv = api__tasks_load(api, NULL, &tasks);
    if (rv != 0) {
        api__apps_done(&apps);
        api__respond_internal(req, rv);
        return;
    }
    struct cm_buf b = {0};
    rv = cm_buf_puts(&b, "{\"apps\":[");
    bool first = true;
    for (size_t i = 0; rv == 0 && i < apps.n; i++) {
        const struct api_app *a = &apps.v[i];
        if (fid != NULL && strstr(a->id, fid) == NULL) {
            continue;
        }
        if (fcmd != NULL && (a->spec == NULL || a->spec->cmd == NULL ||
                             !contains_ci(a->spec->cmd, fcmd))) {
            continue;
        }
        if (flabel != NULL && a->spec != NULL) {
            int m = label_match(a->spec, flabel);
            if (m < 0) {
                cm_buf_done(&b);
                api__apps_done(&apps);
                api__tasks_done(&tasks);
                cm_http_respond_error(
                    req, 400,
                    "label: cannot read the selector; use k, k==v, k!=v, "
                    "k in (a, b) or k notin (a, b), joined by ','");
                return;
            }
            if (m == 0) {
                continue;
            }
        }
        size_t begin, end;
        api__tasks_of(&tasks, a->id, &begin, &end);
        rv = first ? 0 : cm_buf_puts(&b, ",");
        first = false;
        rv = rv ? rv : api__app_info(api, a, &tasks, begin, end, embed, &b);
    }
    rv = rv ? rv : cm_buf_puts(&b, "]}");
    api__respond_ok_json(req, rv, &b);
    api__apps_done(&apps);
    api__tasks_done(&tasks);
}

/* ------------------------------------------------------------------ GET /v2/apps/{id} */

static void h_app_get(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const char *raw = cm_http_req_param(req, "id");
    char id[CM_APP_MAX_ID + 1];
    struct api_apps apps;
    if (!api__app_id(raw, id, sizeof(id))) {
        respond_no_app(req, raw);
        return;
    }
    int rv = api__apps_load(api, id, &apps);
    if (rv == CM_ENOTFOUND) {
        respond_no_app(req, id);
        return;
    }
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    struct api_tasks tasks;
    rv = api__tasks_load(api, id, &tasks);
    struct cm_buf b = {0};
    if (rv == 0) {
        rv = cm_buf_puts(&b, "{\"app\":");
        rv = rv ? rv
                : api__app_info(api, &apps.v[0], &tasks, 0, tasks.n,
                                API_EMBED_TASKS | API_EMBED_COUNTS |
                                    API_EMBED_DEPLOYMENTS | API_EMBED_LAST_FAILURE,
                                &b);
        rv = rv ? rv : cm_buf_puts(&b, "}");
        api__tasks_done(&tasks);
    }
    api__respond_ok_json(req, rv, &b);
    api__apps_done(&apps);
}

/* ------------------------------------------------------------------ POST /v2/apps */

static void h_apps_post(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    struct cm_app_report rep = {0};
    struct cm_app *app = NULL;
    struct cm_app_parse_opts o = {.base = "/", .features = api->ops.features};
    int rv = cm_app_parse(r->body, r->body_len, &o, &app, &rep);
    if (rv != 0) {
        respond_report(req, rv, &rep);
        cm_app_report_done(&rep);
        return;
    }
    cm_app_report_done(&rep);
    struct api_apps cur;
    rv = api__apps_load(api, app->id, &cur);
    if (rv == 0) {
        api__apps_done(&cur);
        cm_http_respond_error(req, 409, "An app with id [%s] already exists.", app->id);
        cm_app_free(app);
        return;
    }
    if (rv != CM_ENOTFOUND) {
        cm_app_free(app);
        api__respond_internal(req, rv);
        return;
    }
    struct api_write *w = api__write_new(api, req, 201);
    if (w == NULL) {
        cm_app_free(app);
        return;
    }
    char version[32], dep[37];
    api__new_version(api, NULL, version);
    rv = cm_uuid4(dep);
    struct cm_buf *b = api__write_body(w);
    struct cm_app_out_opts oo = {.version = version};
    rv = rv ? rv : cm_app_to_json(app, &oo, b);
    if (rv == 0) {
        b->len--; /* reopen the object: AppInfo's parts */
        rv = cm_buf_printf(b,
                           ",\"tasksStaged\":0,\"tasksRunning\":0,\"tasksHealthy\":0,"
                           "\"tasksUnhealthy\":0,\"deployments\":[{\"id\":\"%s\"}],"
                           "\"tasks\":[]}",
                           dep);
    }
    rv = rv ? rv : api__write_header(w, "Location", app->id);
    rv = rv ? rv : api__write_header(w, "Marathon-Deployment-Id", dep);
    api__write_deploy(w, dep, version, false);
    struct cm_buf cmd = {0};
    rv = rv ? rv : api__app_put_cmd(app, version, &cmd);
    if (rv == 0) {
        api__write_propose(w, cmd.data, cmd.len);
        api__write_commit(w);
    } else {
        api__write_fail(w, rv, NULL);
    }
    cm_buf_done(&cmd);
    cm_app_free(app);
}

/* ------------------------------------------------------------------ PUT /v2/apps/{id} */

/* PUT and PATCH of one app. PATCH never creates (compat.md §2.2). */
static void app_update(struct cm_http_req *req, struct cm_api *api, bool patch)
{
    const struct cm_http_request *r = cm_http_req_request(req);
    const char *raw = cm_http_req_param(req, "id");
    bool partial = patch || api__query_bool(r, "partialUpdate", true);
    char id[CM_APP_MAX_ID + 1];
    bool valid_id = api__app_id(raw, id, sizeof(id));
    struct cm_app_report rep = {0};
    int rv = syntax_check(api, r->body, r->body_len, false, &rep);
    if (rv != 0) {
        respond_report(req, rv, &rep);
        cm_app_report_done(&rep);
        return;
    }
    struct api_apps cur = {0};
    bool exists = false;
    if (valid_id) {
        rv = api__apps_load(api, id, &cur);
        if (rv != 0 && rv != CM_ENOTFOUND) {
            api__respond_internal(req, rv);
            return;
        }
        exists = rv == 0;
    }
    if (patch && !exists) {
        respond_no_app(req, valid_id ? id : raw);
        return;
    }
    cJSON *upd = cJSON_ParseWithLength(r->body, r->body_len);
    if (upd == NULL) {
        api__apps_done(&cur);
        api__respond_internal(req, CM_ENOMEM);
        return;
    }
    struct cm_app *app = NULL;
    const struct api_app *c = exists ? &cur.v[0] : NULL;
    /* An invalid URL id goes into the body so the parse names it. */
    rv = build_app(api, upd, valid_id ? id : raw, c, partial, &app, &rep);
    bool is_rollback = c != NULL && rollback_version(upd) != NULL;
    cJSON_Delete(upd);
    if (rv == CM_ENOTFOUND) {
        cm_http_respond_error(req, 404, "App '%s' has no version to roll back to", id);
        goto out;
    }
    if (rv != 0) {
        if (rv == CM_ENOMEM) {
            api__respond_internal(req, rv);
        } else {
            respond_report(req, rv, &rep);
        }
        goto out;
    }
    struct api_write *w = api__write_new(api, req, exists ? 200 : 201);
    if (w == NULL) {
        goto out;
    }
    char version[32];
    api__new_version(api, c != NULL ? c->version : NULL, version);
    enum change_kind k = classify(app, c != NULL ? c->spec : NULL);
    const char *answer = k == CHANGE_CONFIG ? version : c->version;
    rv = deployment_result(w, answer, false);
    if (is_rollback) {
        api__write_rollback(w); /* no canary phase (docs/deployments.md) */
    }
    if (rv == 0 && !exists) {
        rv = api__write_header(w, "Location", app->id);
    }
    rv = rv ? rv : write_app(w, app, c, version);
    if (rv != 0) {
        api__write_fail(w, rv, NULL);
    } else {
        api__write_commit(w);
    }
out:
    cm_app_free(app);
    cm_app_report_done(&rep);
    api__apps_done(&cur);
}

static void h_app_put(struct cm_http_req *req, void *data)
{
    app_update(req, data, false);
}

static void h_app_patch(struct cm_http_req *req, void *data)
{
    app_update(req, data, true);
}

/* ------------------------------------------------------------------ PUT /v2/apps */

/* Move @src's issues into @dst with @prefix before their paths ("(1)"). */
static int report_move(struct cm_app_report *dst, struct cm_app_report *src,
                       const char *prefix)
{
    for (size_t i = 0; i < src->n; i++) {
        if (dst->n == CM_APP_MAX_ISSUES) {
            dst->dropped++;
            continue;
        }
        if (dst->n == dst->cap) {
            size_t cap = dst->cap ? 2 * dst->cap : 8;
            struct cm_app_issue *v = cm_reallocarray(dst->v, cap, sizeof(*v));
            if (v == NULL) {
                return CM_ENOMEM;
            }
            dst->v = v;
            dst->cap = cap;
        }
        const char *p = src->v[i].path;
        char *path = cm_asprintf("%s%s", prefix, strcmp(p, "/") == 0 ? "" : p);
        if (path == NULL) {
            return CM_ENOMEM;
        }
        dst->v[dst->n] = (struct cm_app_issue){src->v[i].kind, path, src->v[i].msg};
        src->v[i].msg = NULL;
        dst->n++;
    }
    dst->dropped += src->dropped;
    cm_app_report_done(src);
    return 0;
}

static void h_apps_put(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    bool partial = api__query_bool(r, "partialUpdate", true);
    struct cm_app_report rep = {0};
    int rv = syntax_check(api, r->body, r->body_len, true, &rep);
    if (rv != 0) {
        respond_report(req, rv, &rep);
        cm_app_report_done(&rep);
        return;
    }
    cJSON *arr = cJSON_ParseWithLength(r->body, r->body_len);
    int n = cJSON_GetArraySize(arr);
    struct cm_app **apps = cm_calloc((size_t)n + 1, sizeof(*apps));
    struct api_apps *curs = cm_calloc((size_t)n + 1, sizeof(*curs));
    if (arr == NULL || apps == NULL || curs == NULL) {
        api__respond_internal(req, CM_ENOMEM);
        goto out;
    }
    int worst = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *el = cJSON_GetArrayItem(arr, i);
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(el, "id");
        char id[CM_APP_MAX_ID + 1];
        bool exists = false;
        if (cJSON_IsString(idv) && api__app_id(idv->valuestring, id, sizeof(id))) {
            rv = api__apps_load(api, id, &curs[i]);
            if (rv != 0 && rv != CM_ENOTFOUND) {
                api__respond_internal(req, rv);
                goto out;
            }
            exists = rv == 0;
        }
        struct cm_app_report one = {0};
        rv = build_app(api, el, exists ? id : NULL, exists ? &curs[i].v[0] : NULL,
                       partial, &apps[i], &one);
        if (rv == CM_ENOMEM) {
            cm_app_report_done(&one);
            api__respond_internal(req, rv);
            goto out;
        }
        if (rv == CM_ENOTFOUND) {
            cm_app_report_done(&one);
            cm_http_respond_error(req, 404,
                                  "(%d): App '%s' has no version to roll back to", i, id);
            goto out;
        }
        if (rv != 0) {
            char prefix[24];
            snprintf(prefix, sizeof(prefix), "(%d)", i);
            if (report_move(&rep, &one, prefix) != 0) {
                cm_app_report_done(&one);
                api__respond_internal(req, CM_ENOMEM);
                goto out;
            }
            worst = worst == CM_EVALIDATION || rv == CM_EVALIDATION ? CM_EVALIDATION : rv;
        }
        cm_app_report_done(&one); /* a valid app's warnings (unknown fields) */
    }
    for (int i = 0; worst == 0 && i < n; i++) {
        for (int k = 0; k < i; k++) {
            if (strcmp(apps[i]->id, apps[k]->id) == 0) {
                cm_http_respond_error(req, 422, "(%d)/id: app '%s' is given twice", i,
                                      apps[i]->id);
                goto out;
            }
        }
    }
    if (worst != 0) {
        respond_report(req, worst, &rep);
        goto out;
    }
    struct api_write *w = api__write_new(api, req, 200);
    if (w == NULL) {
        goto out;
    }
    char version[32];
    api__new_version(api, NULL, version);
    rv = deployment_result(w, version, false);
    for (int i = 0; rv == 0 && i < n; i++) {
        rv = write_app(w, apps[i], curs[i].n > 0 ? &curs[i].v[0] : NULL, version);
    }
    if (rv != 0) {
        api__write_fail(w, rv, NULL);
    } else {
        api__write_commit(w);
    }
out:
    for (int i = 0; apps != NULL && i < n; i++) {
        cm_app_free(apps[i]);
    }
    for (int i = 0; curs != NULL && i < n; i++) {
        api__apps_done(&curs[i]);
    }
    cm_free(&apps);
    cm_free(&curs);
    cJSON_Delete(arr);
    cm_app_report_done(&rep);
}

/* ------------------------------------------------------------------ DELETE, restart */

/* Load the app named by the route, or answer 404 / 500. */
static bool route_app(struct cm_http_req *req, struct cm_api *api, struct api_apps *out)
{
    const char *raw = cm_http_req_param(req, "id");
    char id[CM_APP_MAX_ID + 1];
    if (!api__app_id(raw, id, sizeof(id))) {
        respond_no_app(req, raw);
        return false;
    }
    int rv = api__apps_load(api, id, out);
    if (rv == CM_ENOTFOUND) {
        respond_no_app(req, id);
        return false;
    }
    if (rv != 0) {
        api__respond_internal(req, rv);
        return false;
    }
    return true;
}

static void h_app_delete(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_apps cur;
    if (!route_app(req, api, &cur)) {
        return;
    }
    struct api_write *w = api__write_new(api, req, 200);
    if (w != NULL) {
        char version[32];
        api__new_version(api, NULL, version);
        struct cm_buf cmd = {0};
        int rv = deployment_result(w, version, true);
        rv = rv ? rv
                : cm_buf_printf(&cmd, "{\"type\":\"app.delete\",\"at\":%lld,\"id\":",
                                (long long)api->ops.now_ms(api->ops.data));
        rv = rv ? rv : api__json_str(&cmd, cur.v[0].id);
        rv = rv ? rv : cm_buf_puts(&cmd, "}");
        if (rv == 0) {
            api__write_propose(w, cmd.data, cmd.len);
            api__write_commit(w);
        } else {
            api__write_fail(w, rv, NULL);
        }
        cm_buf_done(&cmd);
    }
    api__apps_done(&cur);
}

/* A new version of the same spec: the controller replaces every task, rolling
 * as the upgradeStrategy allows. */
static void h_app_restart(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_apps cur;
    if (!route_app(req, api, &cur)) {
        return;
    }
    if (cur.v[0].spec == NULL) {
        cm_http_respond_error(req, 500, "the stored spec of '%s' is unreadable",
                              cur.v[0].id);
        api__apps_done(&cur);
        return;
    }
    struct api_write *w = api__write_new(api, req, 200);
    if (w != NULL) {
        char version[32];
        api__new_version(api, cur.v[0].version, version);
        struct cm_buf cmd = {0};
        int rv = deployment_result(w, version, false);
        rv = rv ? rv : api__app_put_cmd(cur.v[0].spec, version, &cmd);
        if (rv == 0) {
            api__write_propose(w, cmd.data, cmd.len);
            api__write_commit(w);
        } else {
            api__write_fail(w, rv, NULL);
        }
        cm_buf_done(&cmd);
    }
    api__apps_done(&cur);
}

/* ------------------------------------------------------------------ versions */

struct versions_out {
    struct cm_buf *b;
    char **v;
    size_t n;
};

static int collect_version(void *data, const struct cm_app_row *row)
{
    struct versions_out *o = data;
    char **v = cm_reallocarray(o->v, o->n + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    o->v = v;
    o->v[o->n] = cm_strdup(row->version);
    if (o->v[o->n] == NULL) {
        return CM_ENOMEM;
    }
    o->n++;
    return 0;
}

static void h_app_versions(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_apps cur;
    if (!route_app(req, api, &cur)) {
        return;
    }
    struct cm_buf b = {0};
    struct versions_out o = {&b, NULL, 0};
    int rv = cm_state_app_versions(api->ops.state(api->ops.data), cur.v[0].id,
                                   collect_version, &o);
    rv = rv ? rv : cm_buf_puts(&b, "{\"versions\":[");
    for (size_t i = o.n; rv == 0 && i > 0; i--) { /* newest first, as Marathon */
        rv = i == o.n ? 0 : cm_buf_puts(&b, ",");
        rv = rv ? rv : api__json_str(&b, o.v[i - 1]);
    }
    rv = rv ? rv : cm_buf_puts(&b, "]}");
    if (rv == 0) {
        api__respond_json(req, 200, &b);
    } else {
        api__respond_internal(req, rv);
    }
    for (size_t i = 0; i < o.n; i++) {
        cm_free(&o.v[i]);
    }
    cm_free(&o.v);
    cm_buf_done(&b);
    api__apps_done(&cur);
}

static void h_app_version(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_apps cur;
    if (!route_app(req, api, &cur)) {
        return;
    }
    const char *version = cm_http_req_param(req, "version");
    struct cm_app *app = NULL;
    int rv = load_version(api, cur.v[0].id, version, &app);
    if (rv == CM_ENOTFOUND) {
        cm_http_respond_error(req, 404, "App '%s' has no version '%s'", cur.v[0].id,
                              version);
    } else if (rv != 0) {
        api__respond_internal(req, rv);
    } else {
        struct cm_buf b = {0};
        struct cm_app_out_opts o = {.version = version};
        rv = cm_app_to_json(app, &o, &b);
        api__respond_ok_json(req, rv, &b);
    }
    cm_app_free(app);
    api__apps_done(&cur);
}

/* ------------------------------------------------------------------ tasks */

static const struct cm_app *spec_of(const struct api_apps *apps, const char *id)
{
    size_t lo = 0, hi = apps->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(apps->v[mid].id, id);
        if (c == 0) {
            return apps->v[mid].spec;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* `status` filter of GET /v2/tasks: running, staging (repeatable). */
static bool status_wanted(const struct cm_http_request *r, enum cm_task_state st)
{
    bool any = false;
    for (size_t i = 0; i < r->nquery; i++) {
        const struct cm_http_param *p = &r->query_params[i];
        if (strcmp(p->name, "status") != 0 && strcmp(p->name, "status[]") != 0) {
            continue;
        }
        any = true;
        if (strcasecmp(p->value, "running") == 0 && st == CM_TASK_RUNNING) {
            return true;
        }
        if (strcasecmp(p->value, "staging") == 0 &&
            (st == CM_TASK_STAGING || st == CM_TASK_STARTING)) {
            return true;
        }
    }
    return !any;
}

static int tasks_json(const struct cm_http_request *r, const struct api_apps *apps,
                      const struct api_tasks *tasks, struct cm_buf *b)
{
    int rv = cm_buf_puts(b, "{\"tasks\":[");
    bool first = true;
    for (size_t i = 0; rv == 0 && i < tasks->n; i++) {
        const struct api_task *t = &tasks->v[i];
        if (!api__task_listed(t) || !status_wanted(r, t->state)) {
            continue;
        }
        rv = first ? 0 : cm_buf_puts(b, ",");
        first = false;
        rv = rv ? rv : api__task_json(t, spec_of(apps, t->app), b);
    }
    return rv ? rv : cm_buf_puts(b, "]}");
}

static void h_tasks(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_apps apps;
    struct api_tasks tasks;
    int rv = api__apps_load(api, NULL, &apps);
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    rv = api__tasks_load(api, NULL, &tasks);
    struct cm_buf b = {0};
    if (rv == 0) {
        rv = tasks_json(cm_http_req_request(req), &apps, &tasks, &b);
        api__tasks_done(&tasks);
    }
    api__respond_ok_json(req, rv, &b);
    api__apps_done(&apps);
}

static void h_app_tasks(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_apps cur;
    if (!route_app(req, api, &cur)) {
        return;
    }
    struct api_tasks tasks;
    int rv = api__tasks_load(api, cur.v[0].id, &tasks);
    struct cm_buf b = {0};
    if (rv == 0) {
        rv = tasks_json(cm_http_req_request(req), &cur, &tasks, &b);
        api__tasks_done(&tasks);
    }
    api__respond_ok_json(req, rv, &b);
    api__apps_done(&cur);
}

/* Kill @ids (then, with @scale, lower the app's instances by as many, same
 * version): kill first, so that a plan between the two sees the task killing
 * and at worst starts a replacement that the lower count then removes. */
static int propose_kill(struct cm_api *api, struct api_write *w, const struct api_app *a,
                        const char *const *ids, size_t n, bool scale)
{
    struct cm_buf cmd = {0};
    int rv = cm_buf_printf(&cmd, "{\"type\":\"task.kill\",\"at\":%lld,\"ids\":[",
                           (long long)api->ops.now_ms(api->ops.data));
    for (size_t i = 0; rv == 0 && i < n; i++) {
        rv = i ? cm_buf_puts(&cmd, ",") : 0;
        rv = rv ? rv : api__json_str(&cmd, ids[i]);
    }
    rv = rv ? rv : cm_buf_puts(&cmd, "]}");
    if (rv == 0 && n > 0) {
        api__write_propose(w, cmd.data, cmd.len);
    }
    if (rv == 0 && scale && n > 0) {
        if (a->spec == NULL) {
            rv = CM_ECORRUPT;
        } else {
            struct cm_app *copy = NULL;
            rv = cm_app_copy(a->spec, &copy);
            if (rv == 0) {
                copy->instances =
                    copy->instances > (int32_t)n ? copy->instances - (int32_t)n : 0;
                cm_buf_clear(&cmd);
                rv = api__app_put_cmd(copy, a->version, &cmd);
                if (rv == 0) {
                    api__write_propose(w, cmd.data, cmd.len);
                }
                cm_app_free(copy);
            }
        }
    }
    cm_buf_done(&cmd);
    return rv;
}

static void h_app_task_kill(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    struct api_apps cur;
    if (!route_app(req, api, &cur)) {
        return;
    }
    const char *tid = cm_http_req_param(req, "task");
    bool scale = api__query_bool(r, "scale", false);
    struct api_tasks t;
    int rv = api__task_load(api, tid, &t);
    if (rv == CM_ENOTFOUND || (rv == 0 && (strcmp(t.v[0].app, cur.v[0].id) != 0 ||
                                           !api__task_listed(&t.v[0])))) {
        cm_http_respond_error(req, 404, "Task '%s' does not exist", tid);
        if (rv == 0) {
            api__tasks_done(&t);
        }
        api__apps_done(&cur);
        return;
    }
    if (rv != 0) {
        api__respond_internal(req, rv);
        api__apps_done(&cur);
        return;
    }
    struct api_write *w = api__write_new(api, req, 200);
    if (w != NULL) {
        struct cm_buf *b = api__write_body(w);
        if (scale) {
            rv = deployment_result(w, cur.v[0].version, false);
        } else {
            rv = cm_buf_puts(b, "{\"task\":");
            rv = rv ? rv : api__task_json(&t.v[0], cur.v[0].spec, b);
            rv = rv ? rv : cm_buf_puts(b, "}");
        }
        const char *ids[1] = {t.v[0].id};
        rv = rv ? rv : propose_kill(api, w, &cur.v[0], ids, 1, scale);
        if (rv != 0) {
            api__write_fail(w, rv, NULL);
        } else {
            api__write_commit(w);
        }
    }
    api__tasks_done(&t);
    api__apps_done(&cur);
}

/* DELETE /v2/apps/{id}/tasks[?host=..][&scale=true]: kill every listed task. */
static void h_app_tasks_kill(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    struct api_apps cur;
    if (!route_app(req, api, &cur)) {
        return;
    }
    const char *host = cm_http_request_query(r, "host");
    bool scale = api__query_bool(r, "scale", false);
    struct api_tasks t;
    int rv = api__tasks_load(api, cur.v[0].id, &t);
    if (rv != 0) {
        api__respond_internal(req, rv);
        api__apps_done(&cur);
        return;
    }
    const char **ids = cm_calloc(t.n + 1, sizeof(*ids));
    size_t n = 0;
    struct api_write *w = ids != NULL ? api__write_new(api, req, 200) : NULL;
    if (ids == NULL) {
        api__respond_internal(req, CM_ENOMEM);
    }
    if (w != NULL) {
        struct cm_buf *b = api__write_body(w);
        rv = scale ? deployment_result(w, cur.v[0].version, false)
                   : cm_buf_puts(b, "{\"tasks\":[");
        for (size_t i = 0; rv == 0 && i < t.n; i++) {
            if (!api__task_listed(&t.v[i]) || t.v[i].state == CM_TASK_KILLING ||
                (host != NULL &&
                 (t.v[i].host == NULL || strcmp(t.v[i].host, host) != 0))) {
                continue;
            }
            if (!scale) {
                rv = n ? cm_buf_puts(b, ",") : 0;
                rv = rv ? rv : api__task_json(&t.v[i], cur.v[0].spec, b);
            }
            ids[n++] = t.v[i].id;
        }
        if (rv == 0 && !scale) {
            rv = cm_buf_puts(b, "]}");
        }
        rv = rv ? rv : propose_kill(api, w, &cur.v[0], ids, n, scale);
        if (rv != 0) {
            api__write_fail(w, rv, NULL);
        } else {
            api__write_commit(w);
        }
    }
    cm_free(&ids);
    api__tasks_done(&t);
    api__apps_done(&cur);
}

/* ------------------------------------------------------------------ queue */

/* Marathon's launch delay as far as the replica shows it (compat.md §1.11):
 * failures of the app's tasks since its newest task that ran 10 s or more. The
 * leader's controller keeps the exact count in memory; the replica keeps the
 * last few terminal tasks only, so this is a lower bound. */
static void queue_delay(const struct api_app *a, const struct api_tasks *t, size_t begin,
                        size_t end, int64_t now, int64_t *ret_left_ms, int64_t *ret_since)
{
    int64_t good_since = 0, last_fail = 0;
    unsigned failures = 0;
    for (size_t i = begin; i < end; i++) {
        const struct api_task *k = &t->v[i];
        if (k->state == CM_TASK_RUNNING && k->started_at > 0 &&
            now - k->started_at >= 10000) {
            good_since = CM_MAX(good_since, k->started_at);
        }
    }
    for (size_t i = begin; i < end; i++) {
        const struct api_task *k = &t->v[i];
        if ((k->state == CM_TASK_FAILED || k->state == CM_TASK_FINISHED) &&
            k->updated_at > good_since) {
            failures++;
            last_fail = CM_MAX(last_fail, k->updated_at);
        }
    }
    *ret_left_ms = 0;
    *ret_since = last_fail;
    if (failures == 0 || a->spec == NULL) {
        return;
    }
    double d = (double)a->spec->backoff_s;
    for (unsigned i = 1; i < failures && d < (double)a->spec->max_launch_delay_s; i++) {
        d *= a->spec->backoff_factor;
    }
    if (d > (double)a->spec->max_launch_delay_s) {
        d = (double)a->spec->max_launch_delay_s;
    }
    int64_t until = last_fail + (int64_t)(d * 1000.0);
    *ret_left_ms = until > now ? until - now : 0;
}

static void h_queue(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_apps apps;
    struct api_tasks tasks;
    int rv = api__apps_load(api, NULL, &apps);
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    rv = api__tasks_load(api, NULL, &tasks);
    if (rv != 0) {
        api__apps_done(&apps);
        api__respond_internal(req, rv);
        return;
    }
    int64_t now = api->ops.now_ms(api->ops.data);
    struct cm_buf b = {0};
    rv = cm_buf_puts(&b, "{\"queue\":[");
    bool first = true;
    for (size_t i = 0; rv == 0 && i < apps.n; i++) {
        const struct api_app *a = &apps.v[i];
        size_t begin, end;
        api__tasks_of(&tasks, a->id, &begin, &end);
        struct api_counts c;
        api__counts(&tasks, begin, end, a->version, &c);
        if (c.running_current >= a->instances) {
            continue;
        }
        int64_t left_ms, since;
        queue_delay(a, &tasks, begin, end, now, &left_ms, &since);
        rv = first ? 0 : cm_buf_puts(&b, ",");
        first = false;
        rv = rv ? rv : cm_buf_puts(&b, "{\"app\":");
        rv = rv ? rv
                : api__app_info(api, a, &tasks, begin, end,
                                API_EMBED_COUNTS | API_EMBED_LAST_FAILURE, &b);
        rv = rv ? rv
                : cm_buf_printf(&b, ",\"count\":%lld,\"role\":",
                                (long long)(a->instances - c.running_current));
        rv = rv ? rv : api__json_str(&b, a->spec != NULL ? a->spec->role : "*");
        rv =
            rv ? rv
               : cm_buf_printf(&b, ",\"delay\":{\"timeLeftSeconds\":%lld,\"overdue\":%s}",
                               (long long)((left_ms + 999) / 1000),
                               left_ms == 0 ? "true" : "false");
        rv = rv ? rv : cm_buf_puts(&b, ",\"since\":");
        rv = rv ? rv
                : (since > 0 ? api__json_time(&b, since) : api__json_str(&b, a->version));
        /* Not in Marathon (its processedOffersSummary counts Mesos offers): the
         * scheduler's explanation, in words. */
        char why[512];
        if (rv == 0 && api->ops.queue_reason != NULL &&
            api->ops.queue_reason(api->ops.data, a->id, why, sizeof(why))) {
            rv = cm_buf_puts(&b, ",\"reason\":");
            rv = rv ? rv : api__json_str(&b, why);
        }
        rv = rv ? rv : cm_buf_puts(&b, "}");
    }
    rv = rv ? rv : cm_buf_puts(&b, "]}");
    api__respond_ok_json(req, rv, &b);
    api__apps_done(&apps);
    api__tasks_done(&tasks);
}

/* ------------------------------------------------------------------ routes */

int api__routes_apps(struct cm_api *api)
{
    static const struct {
        const char *method;
        const char *pattern;
        size_t limit;
        cm_http_handler_fn fn;
    } routes[] = {
        {"GET", "/v2/apps", API_BODY_LIMIT_NONE, h_apps_list},
        {"POST", "/v2/apps", API_BODY_LIMIT_APP, h_apps_post},
        {"PUT", "/v2/apps", API_BODY_LIMIT_APP, h_apps_put},
        {"GET", "/v2/apps/{id*}", API_BODY_LIMIT_NONE, h_app_get},
        {"PUT", "/v2/apps/{id*}", API_BODY_LIMIT_APP, h_app_put},
        {"PATCH", "/v2/apps/{id*}", API_BODY_LIMIT_APP, h_app_patch},
        {"DELETE", "/v2/apps/{id*}", API_BODY_LIMIT_NONE, h_app_delete},
        {"POST", "/v2/apps/{id*}/restart", API_BODY_LIMIT_NONE, h_app_restart},
        {"GET", "/v2/apps/{id*}/tasks", API_BODY_LIMIT_NONE, h_app_tasks},
        {"DELETE", "/v2/apps/{id*}/tasks", API_BODY_LIMIT_NONE, h_app_tasks_kill},
        {"DELETE", "/v2/apps/{id*}/tasks/{task}", API_BODY_LIMIT_NONE, h_app_task_kill},
        {"GET", "/v2/apps/{id*}/versions", API_BODY_LIMIT_NONE, h_app_versions},
        {"GET", "/v2/apps/{id*}/versions/{version}", API_BODY_LIMIT_NONE, h_app_version},
        {"GET", "/v2/tasks", API_BODY_LIMIT_NONE, h_tasks},
        {"GET", "/v2/queue", API_BODY_LIMIT_NONE, h_queue},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(routes); i++) {
        int rv = api__route(api, routes[i].method, routes[i].pattern, routes[i].limit,
                            routes[i].fn);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}
