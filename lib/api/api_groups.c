/* Marathon v2 groups (shared/specs/compat.md §2.1, §2.2).
 *
 * Groups are not stored: they are the paths of the apps. GET builds the tree
 * from the app ids; POST and PUT validate the whole body (every app, every
 * dependency) before proposing anything, then propose one app.put per changed
 * app, all with one version, as one deployment (api_deploy.c); a PUT removes
 * the apps the body leaves out (Marathon's desired-state replace).
 *
 * Sub-resources, matched on the raw path as Marathon does (so a group named
 * `apps` or `versions` is shadowed there too): `<g>/apps` (every app under g),
 * `<g>/versions` and `<g>/versions/<v>`. Group versions are not stored of their
 * own: they are derived from the stored versions of the apps under the group
 * now (every change stamps its apps with one version, so these are the changes
 * that touched the group). A past version shows each of those apps as it was
 * then; apps deleted since then, and changes that only deleted apps, do not
 * appear (their versions went with them). Not yet: group `version` rollback.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

/* The group of the route ("/" without one). False (and answered 404) when it is
 * not a valid path. */
static bool route_group(struct cm_http_req *req, char *out, size_t cap)
{
    const char *raw = cm_http_req_param(req, "id");
    if (raw == NULL) {
        snprintf(out, cap, "/");
        return true;
    }
    if (cm_app_path_normalize(raw, "/", out, cap) != 0) {
        cm_http_respond_error(req, 404, "Group '/%s' does not exist", raw);
        return false;
    }
    return true;
}

/* [*lo, *hi): the apps (sorted by id) under @group. */
static void apps_under(const struct api_apps *apps, size_t from, size_t to,
                       const char *group, size_t *lo, size_t *hi)
{
    size_t i = from;
    while (i < to && !(cm_app_path_within(apps->v[i].id, group) &&
                       strcmp(apps->v[i].id, group) != 0)) {
        i++;
    }
    size_t j = i;
    while (j < to && cm_app_path_within(apps->v[j].id, group) &&
           strcmp(apps->v[j].id, group) != 0) {
        j++;
    }
    *lo = i;
    *hi = j;
}

struct group_ctx {
    struct cm_api *api;
    const struct api_apps *apps;
    const struct api_tasks *tasks;
    unsigned app_embed;
    bool embed_apps;
    bool embed_groups;
};

/* One group of the tree: apps [lo, hi) are all under @g. */
static int render_group(const struct group_ctx *c, const char *g, size_t lo, size_t hi,
                        struct cm_buf *b)
{
    size_t plen = strcmp(g, "/") == 0 ? 1 : strlen(g) + 1;
    const char *newest = NULL;
    for (size_t i = lo; i < hi; i++) {
        if (newest == NULL || strcmp(c->apps->v[i].version, newest) > 0) {
            newest = c->apps->v[i].version;
        }
    }
    int rv = cm_buf_puts(b, "{\"id\":");
    rv = rv ? rv : api__json_str(b, g);
    if (rv == 0 && c->embed_apps) {
        rv = cm_buf_puts(b, ",\"apps\":[");
        bool first = true;
        for (size_t i = lo; rv == 0 && i < hi; i++) {
            const struct api_app *a = &c->apps->v[i];
            if (strchr(a->id + plen, '/') != NULL) {
                continue;
            }
            size_t tb, te;
            api__tasks_of(c->tasks, a->id, &tb, &te);
            rv = first ? 0 : cm_buf_puts(b, ",");
            first = false;
            rv = rv ? rv : api__app_info(c->api, a, c->tasks, tb, te, c->app_embed, b);
        }
        rv = rv ? rv : cm_buf_puts(b, "]");
    }
    if (rv == 0 && c->embed_groups) {
        rv = cm_buf_puts(b, ",\"groups\":[");
        bool first = true;
        size_t i = lo;
        while (rv == 0 && i < hi) {
            const char *id = c->apps->v[i].id;
            const char *slash = strchr(id + plen, '/');
            if (slash == NULL) {
                i++;
                continue;
            }
            char child[CM_APP_MAX_ID + 1];
            snprintf(child, sizeof(child), "%.*s", (int)(slash - id), id);
            size_t clo, chi;
            apps_under(c->apps, i, hi, child, &clo, &chi);
            rv = first ? 0 : cm_buf_puts(b, ",");
            first = false;
            rv = rv ? rv : render_group(c, child, clo, chi, b);
            i = chi > i ? chi : i + 1;
        }
        rv = rv ? rv : cm_buf_puts(b, "]");
    }
    rv = rv ? rv : cm_buf_puts(b, ",\"pods\":[],\"dependencies\":[]");
    if (rv == 0 && newest != NULL) {
        rv = cm_buf_puts(b, ",\"version\":");
        rv = rv ? rv : api__json_str(b, newest);
    }
    return rv ? rv : cm_buf_puts(b, "}");
}

/* ------------------------------------------------------------------ sub-resources */

/* What a GET on /v2/groups/<raw> asks for. */
enum group_sub { SUB_GROUP, SUB_APPS, SUB_VERSIONS, SUB_VERSION };

/* Split @raw ("prod/web/versions/2026-...Z", NULL for the root) into the group
 * path (normalized into @g; false when invalid) and the sub-resource. */
static bool parse_group_sub(const char *raw, char *g, size_t cap, enum group_sub *sub,
                            const char **version)
{
    char path[CM_APP_MAX_ID + 1];
    snprintf(path, sizeof(path), "%s", raw != NULL ? raw : "");
    *sub = SUB_GROUP;
    *version = NULL;
    size_t n = strlen(path);
    const char *v = strstr(path, "versions/");
    while (v != NULL && v != path && v[-1] != '/') {
        v = strstr(v + 1, "versions/");
    }
    if (v != NULL && strchr(v + 9, '/') == NULL && v[9] != '\0') {
        *sub = SUB_VERSION;
        *version = raw + (v - path) + 9;
        path[v - path] = '\0';
    } else if (strcmp(path, "versions") == 0 ||
               (n > 9 && strcmp(path + n - 9, "/versions") == 0)) {
        *sub = SUB_VERSIONS;
        path[n - 8] = '\0';
    } else if (strcmp(path, "apps") == 0 ||
               (n > 5 && strcmp(path + n - 5, "/apps") == 0)) {
        *sub = SUB_APPS;
        path[n - 4] = '\0';
    }
    n = strlen(path);
    while (n > 0 && path[n - 1] == '/') {
        path[--n] = '\0';
    }
    if (n == 0) {
        snprintf(g, cap, "/");
        return true;
    }
    return cm_app_path_normalize(path, "/", g, cap) == 0;
}

/* The stored versions of one app: all of them, or the newest at or before @at. */
struct app_versions {
    const char *at; /* NULL: collect every version */
    char **v;
    size_t n;
    char *best;      /* with @at: the version, */
    char *best_spec; /* and its spec */
};

static int on_app_version(void *data, const struct cm_app_row *row)
{
    struct app_versions *av = data;
    if (av->at == NULL) {
        char **v = cm_reallocarray(av->v, av->n + 1, sizeof(*v));
        if (v == NULL) {
            return CM_ENOMEM;
        }
        av->v = v;
        av->v[av->n] = cm_strdup(row->version);
        return av->v[av->n++] == NULL ? CM_ENOMEM : 0;
    }
    if (strcmp(row->version, av->at) > 0 ||
        (av->best != NULL && strcmp(row->version, av->best) <= 0)) {
        return 0;
    }
    cm_free(&av->best);
    cm_free(&av->best_spec);
    av->best = cm_strdup(row->version);
    av->best_spec = cm_strdup(row->spec);
    return av->best == NULL || av->best_spec == NULL ? CM_ENOMEM : 0;
}

static int cmp_version_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

/* ["newest", ..., "oldest"]: the distinct versions of the apps [lo, hi). */
static int group_versions_json(struct cm_api *api, const struct api_apps *apps, size_t lo,
                               size_t hi, struct cm_buf *b)
{
    struct app_versions av = {0};
    int rv = 0;
    for (size_t i = lo; rv == 0 && i < hi; i++) {
        rv = cm_state_app_versions(api->ops.state(api->ops.data), apps->v[i].id,
                                   on_app_version, &av);
    }
    if (rv == 0 && av.n > 1) {
        qsort(av.v, av.n, sizeof(*av.v), cmp_version_desc);
    }
    rv = rv ? rv : cm_buf_puts(b, "[");
    for (size_t i = 0; rv == 0 && i < av.n; i++) {
        if (i > 0 && strcmp(av.v[i], av.v[i - 1]) == 0) {
            continue;
        }
        rv = i == 0 ? 0 : cm_buf_puts(b, ",");
        rv = rv ? rv : api__json_str(b, av.v[i]);
    }
    rv = rv ? rv : cm_buf_puts(b, "]");
    for (size_t i = 0; i < av.n; i++) {
        cm_free(&av.v[i]);
    }
    cm_free(&av.v);
    return rv;
}

/* @out: the apps [lo, hi) as they were at @at (those that existed then).
 * Errors: CM_ENOMEM, storage errors; a spec that cannot be read is kept
 * without it (api__app_info then shows id and version). */
static int group_as_of(struct cm_api *api, const struct api_apps *apps, size_t lo,
                       size_t hi, const char *at, struct api_apps *out)
{
    *out = (struct api_apps){0};
    if (hi > lo) {
        out->v = cm_calloc(hi - lo, sizeof(*out->v));
        if (out->v == NULL) {
            return CM_ENOMEM;
        }
    }
    int rv = 0;
    for (size_t i = lo; rv == 0 && i < hi; i++) {
        struct app_versions av = {.at = at};
        rv = cm_state_app_versions(api->ops.state(api->ops.data), apps->v[i].id,
                                   on_app_version, &av);
        if (rv == 0 && av.best != NULL) {
            struct api_app *a = &out->v[out->n++];
            a->id = cm_strdup(apps->v[i].id);
            a->version = av.best;
            a->spec_json = av.best_spec;
            av.best = av.best_spec = NULL;
            if (a->id == NULL) {
                rv = CM_ENOMEM;
            } else if (cm_app_from_canonical(a->spec_json, strlen(a->spec_json),
                                             &a->spec) == 0) {
                a->instances = a->spec->instances;
            }
        }
        cm_free(&av.best);
        cm_free(&av.best_spec);
    }
    return rv;
}

/* GET <g>/apps, <g>/versions, <g>/versions/<v>. */
static void group_sub(struct cm_http_req *req, const struct group_ctx *c, const char *g,
                      enum group_sub sub, const char *version)
{
    size_t lo, hi;
    apps_under(c->apps, 0, c->apps->n, g, &lo, &hi);
    if (lo == hi && strcmp(g, "/") != 0) {
        cm_http_respond_error(req, 404, "Group '%s' does not exist", g);
        return;
    }
    struct cm_buf b = {0};
    int rv = 0;
    if (sub == SUB_APPS) {
        rv = cm_buf_puts(&b, "[");
        for (size_t i = lo; rv == 0 && i < hi; i++) {
            size_t tb, te;
            api__tasks_of(c->tasks, c->apps->v[i].id, &tb, &te);
            rv = i == lo ? 0 : cm_buf_puts(&b, ",");
            rv = rv ? rv
                    : api__app_info(c->api, &c->apps->v[i], c->tasks, tb, te,
                                    c->app_embed, &b);
        }
        rv = rv ? rv : cm_buf_puts(&b, "]");
    } else if (sub == SUB_VERSIONS) {
        rv = group_versions_json(c->api, c->apps, lo, hi, &b);
    } else {
        struct api_apps then = {0};
        struct api_tasks none = {0};
        /* "As of" compares stamps as text: anything else (e.g. "nope", after
         * every digit) would show the group as it is now. */
        bool stamp = api__parse_time(version) >= 0;
        rv = stamp ? group_as_of(c->api, c->apps, lo, hi, version, &then) : 0;
        if (rv == 0 && then.n == 0) {
            api__apps_done(&then);
            cm_buf_done(&b);
            cm_http_respond_error(req, 404, "Group '%s' has no version '%s'", g, version);
            return;
        }
        /* A past group shows its apps without tasks, as Marathon does. */
        struct group_ctx past = {c->api, &then, &none, 0, true, true};
        rv = rv ? rv : render_group(&past, g, 0, then.n, &b);
        api__apps_done(&then);
    }
    if (rv == 0) {
        api__respond_json(req, 200, &b);
    } else {
        api__respond_internal(req, rv);
    }
    cm_buf_done(&b);
}

static void h_group_get(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    const struct cm_http_request *r = cm_http_req_request(req);
    char g[CM_APP_MAX_ID + 1];
    enum group_sub sub;
    const char *version;
    const char *raw = cm_http_req_param(req, "id");
    if (!parse_group_sub(raw, g, sizeof(g), &sub, &version)) {
        cm_http_respond_error(req, 404, "Group '/%s' does not exist", raw);
        return;
    }
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
    struct group_ctx c = {api, &apps, &tasks, api__embed(r, "group.apps."), true, true};
    bool any_embed = false;
    for (size_t i = 0; i < r->nquery; i++) {
        if (strcmp(r->query_params[i].name, "embed") == 0) {
            any_embed = true;
        }
    }
    if (any_embed) {
        /* Marathon: an explicit embed list replaces the defaults. */
        c.embed_apps = c.embed_groups = false;
        for (size_t i = 0; i < r->nquery; i++) {
            const struct cm_http_param *p = &r->query_params[i];
            if (strcmp(p->name, "embed") != 0) {
                continue;
            }
            c.embed_groups |= strcmp(p->value, "group.groups") == 0;
            c.embed_apps |= strncmp(p->value, "group.apps", 10) == 0;
        }
    }
    if (sub != SUB_GROUP) {
        group_sub(req, &c, g, sub, version);
        api__apps_done(&apps);
        api__tasks_done(&tasks);
        return;
    }
    size_t lo, hi;
    apps_under(&apps, 0, apps.n, g, &lo, &hi);
    struct cm_buf b = {0};
    if (lo == hi && strcmp(g, "/") != 0) {
        cm_http_respond_error(req, 404, "Group '%s' does not exist", g);
    } else {
        rv = render_group(&c, g, lo, hi, &b);
        if (rv == 0) {
            api__respond_json(req, 200, &b);
        } else {
            api__respond_internal(req, rv);
        }
    }
    cm_buf_done(&b);
    api__apps_done(&apps);
    api__tasks_done(&tasks);
}

/* ------------------------------------------------------------------ writes */

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

static const char *action_of(const struct cm_app *next, const struct api_app *cur)
{
    if (cur == NULL || cur->spec == NULL) {
        return "StartApplication";
    }
    if (cm_app_equal(next, cur->spec)) {
        return NULL;
    }
    struct cm_app *copy = NULL;
    if (cm_app_copy(next, &copy) != 0) {
        return "RestartApplication";
    }
    copy->instances = cur->spec->instances;
    bool scale = cm_app_equal(copy, cur->spec);
    cm_app_free(copy);
    return scale ? "ScaleApplication" : "RestartApplication";
}

/* Groups are not stored, so a group's dependencies are inherited by every app
 * under it (compat.md §2.1) by adding them to the apps' own: the deployment
 * orders by them and GET shows them on the apps. */
static int inherit_group_deps(struct cm_app_group *grp)
{
    for (size_t i = 0; i < grp->apps.n; i++) {
        struct cm_app *a = grp->apps.v[i];
        for (size_t g = 0; g < grp->n_groups; g++) {
            if (!cm_app_path_within(a->id, grp->groups[g].id)) {
                continue;
            }
            for (size_t k = 0; k < grp->groups[g].n_dependencies; k++) {
                const char *d = grp->groups[g].dependencies[k];
                bool have = false;
                for (size_t j = 0; j < a->n_dependencies; j++) {
                    have |= strcmp(a->dependencies[j], d) == 0;
                }
                if (have || cm_app_path_within(a->id, d)) {
                    continue;
                }
                char **v =
                    cm_reallocarray(a->dependencies, a->n_dependencies + 1, sizeof(*v));
                if (v == NULL) {
                    return CM_ENOMEM;
                }
                a->dependencies = v;
                a->dependencies[a->n_dependencies] = cm_strdup(d);
                if (a->dependencies[a->n_dependencies] == NULL) {
                    return CM_ENOMEM;
                }
                a->n_dependencies++;
            }
        }
    }
    return 0;
}

/* Whether @id is one of the body's apps. */
static bool in_body(const struct cm_app_group *grp, const char *id)
{
    for (size_t i = 0; i < grp->apps.n; i++) {
        if (strcmp(grp->apps.v[i]->id, id) == 0) {
            return true;
        }
    }
    return false;
}

/* @spec with its instances multiplied by @by (rounded up, at most
 * CM_APP_MAX_INSTANCES), into *@ret. The result is checked like any app (the
 * stored spec must read back): on CM_EVALIDATION @bad (may be NULL) gets the
 * issues, their paths under the app's id. A NULL @spec (unreadable when
 * stored) is CM_ENOMEM, as before. Errors: CM_EVALIDATION, CM_ENOMEM. */
static int scaled_app(const struct cm_app *spec, double by, struct cm_app **ret,
                      struct cm_app_report *bad)
{
    if (spec == NULL) {
        return CM_ENOMEM;
    }
    /* Clamped before the conversion: a double past INT32_MAX does not convert
     * (undefined; it gave negative counts), and 0 * a scaleBy that overflowed
     * to inf is NaN (then 0). */
    double n = (double)spec->instances * by;
    int32_t want = 0;
    if (n >= CM_APP_MAX_INSTANCES) {
        want = CM_APP_MAX_INSTANCES;
    } else if (n > 0) {
        want = (int32_t)n;
        want += (double)want < n;
    }
    struct cm_app *copy = NULL;
    int rv = cm_app_copy(spec, &copy);
    if (rv != 0) {
        return rv;
    }
    copy->instances = want;
    struct cm_buf b = {0};
    rv = cm_app_canonical(copy, &b);
    cm_app_free(copy);
    copy = NULL;
    struct cm_app_report one = {0};
    if (rv == 0) {
        struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
        rv = cm_app_parse(b.data, b.len, &o, &copy, &one);
    }
    cm_buf_done(&b);
    if (rv != 0 && rv != CM_ENOMEM) {
        rv = CM_EVALIDATION;
        for (size_t i = 0; bad != NULL && i < one.n; i++) {
            const char *p = one.v[i].path;
            char *path = cm_asprintf("%s%s", spec->id, strcmp(p, "/") == 0 ? "" : p);
            if (path == NULL) {
                rv = CM_ENOMEM;
                break;
            }
            cm_free(&one.v[i].path);
            one.v[i].path = path;
        }
        if (bad != NULL && rv == CM_EVALIDATION) {
            *bad = one;
            one = (struct cm_app_report){0};
        }
    }
    cm_app_report_done(&one);
    if (rv == 0) {
        *ret = copy;
    }
    return rv;
}

/* POST (create only) and PUT (create or update) of a group body. A PUT is a
 * desired-state replace (compat.md §2.1, §7.17): apps under the group that the
 * body leaves out are removed. */
static void group_write(struct cm_http_req *req, struct cm_api *api, bool create)
{
    const struct cm_http_request *r = cm_http_req_request(req);
    char base[CM_APP_MAX_ID + 1];
    const char *raw = cm_http_req_param(req, "id");
    int prv = raw != NULL ? cm_app_path_normalize(raw, "/", base, sizeof(base)) : 0;
    if (raw == NULL) {
        snprintf(base, sizeof(base), "/");
    } else if (prv != 0) {
        /* A group to write, not one to find: name what is wrong with its id. */
        if (prv == CM_ETOOBIG) {
            cm_http_respond_error(req, 422, "id: '/%s' is longer than %d bytes", raw,
                                  CM_APP_MAX_ID);
        } else {
            cm_http_respond_error(req, 422,
                                  "id: '/%s' is not a valid group id: each segment is "
                                  "lowercase letters, digits, '-' and '.'",
                                  raw);
        }
        return;
    }
    struct cm_app_report rep = {0};
    struct cm_app_group *grp = NULL;
    struct cm_app_parse_opts o = {.base = base, .features = api->ops.features};
    struct api_apps all = {0};
    struct api_apps *curs = NULL;
    struct cm_buf cmd = {0};
    int rv = cm_app_group_parse(r->body, r->body_len, &o, &grp, &rep);
    if (rv != 0) {
        respond_report(req, rv, &rep);
        goto out;
    }
    if (grp->version != NULL) {
        cm_http_respond_error(
            req, 422,
            "version: rolling a group back to a version is not supported "
            "yet; PUT the apps of that version instead");
        goto out;
    }
    rv = inherit_group_deps(grp);
    rv = rv ? rv : api__apps_load(api, NULL, &all);
    if (rv != 0) {
        api__respond_internal(req, rv);
        goto out;
    }
    size_t lo, hi;
    apps_under(&all, 0, all.n, grp->id, &lo, &hi);
    if (create && lo < hi) {
        cm_http_respond_error(
            req, 409, "Group %s is already created. Use PUT to change this group.",
            grp->id);
        goto out;
    }
    bool dry = api__query_bool(r, "dryRun", false);
    char version[32];
    api__new_version(api, NULL, version);

    /* scaleBy: every app under the group, nothing else (compat.md §2.1). */
    if (grp->has_scale_by && !create) {
        /* Every app must stay valid (a single-instance app cannot go past 1):
         * checked before anything is proposed. */
        for (size_t i = lo; i < hi; i++) {
            struct cm_app *copy = NULL;
            struct cm_app_report bad = {0};
            rv = scaled_app(all.v[i].spec, grp->scale_by, &copy, &bad);
            cm_app_free(copy);
            if (rv != 0) {
                if (rv == CM_ENOMEM) {
                    api__respond_internal(req, rv);
                } else {
                    respond_report(req, rv, &bad);
                }
                cm_app_report_done(&bad);
                goto out;
            }
        }
        struct api_write *w = dry ? NULL : api__write_new(api, req, 200);
        if (!dry && w == NULL) {
            goto out;
        }
        char dep[37];
        rv = cm_uuid4(dep);
        if (!dry) {
            api__write_deploy(w, dep, version, false);
        }
        struct cm_buf steps = {0};
        rv = rv ? rv : cm_buf_puts(&steps, "{\"steps\":[{\"actions\":[");
        for (size_t i = lo; rv == 0 && i < hi; i++) {
            struct cm_app *copy = NULL;
            rv = scaled_app(all.v[i].spec, grp->scale_by, &copy, NULL);
            if (rv != 0) {
                break;
            }
            cm_buf_clear(&cmd);
            rv = i > lo ? cm_buf_puts(&steps, ",") : 0;
            rv = rv ? rv
                    : cm_buf_puts(&steps, "{\"action\":\"ScaleApplication\",\"app\":");
            rv = rv ? rv : api__json_str(&steps, copy->id);
            rv = rv ? rv : cm_buf_puts(&steps, "}");
            rv = rv ? rv : api__app_put_cmd(copy, all.v[i].version, &cmd);
            if (rv == 0 && !dry) {
                api__write_propose(w, cmd.data, cmd.len);
            }
            cm_app_free(copy);
        }
        rv = rv ? rv : cm_buf_puts(&steps, "]}]}");
        if (dry) {
            if (rv == 0) {
                api__respond_json(req, 200, &steps);
            } else {
                api__respond_internal(req, rv);
            }
        } else {
            rv = rv ? rv
                    : cm_buf_printf(api__write_body(w),
                                    "{\"version\":\"%s\",\"deploymentId\":\"%s\"}",
                                    version, dep);
            rv = rv ? rv : api__write_header(w, "Marathon-Deployment-Id", dep);
            if (rv != 0) {
                api__write_fail(w, rv, NULL);
            } else {
                api__write_commit(w);
            }
        }
        cm_buf_done(&steps);
        goto out;
    }

    curs = cm_calloc(grp->apps.n + 1, sizeof(*curs));
    if (curs == NULL) {
        api__respond_internal(req, CM_ENOMEM);
        goto out;
    }
    for (size_t i = 0; i < grp->apps.n; i++) {
        rv = api__apps_load(api, grp->apps.v[i]->id, &curs[i]);
        if (rv != 0 && rv != CM_ENOTFOUND) {
            api__respond_internal(req, rv);
            goto out;
        }
    }
    if (dry) {
        struct cm_buf b = {0};
        rv = cm_buf_puts(&b, "{\"steps\":[{\"actions\":[");
        bool first = true;
        for (size_t i = 0; rv == 0 && i < grp->apps.n; i++) {
            const char *action =
                action_of(grp->apps.v[i], curs[i].n > 0 ? &curs[i].v[0] : NULL);
            if (action == NULL) {
                continue;
            }
            rv = first ? 0 : cm_buf_puts(&b, ",");
            first = false;
            rv = rv ? rv : cm_buf_printf(&b, "{\"action\":\"%s\",\"app\":", action);
            rv = rv ? rv : api__json_str(&b, grp->apps.v[i]->id);
            rv = rv ? rv : cm_buf_puts(&b, "}");
        }
        for (size_t i = lo; rv == 0 && !create && i < hi; i++) {
            if (in_body(grp, all.v[i].id)) {
                continue;
            }
            rv = first ? 0 : cm_buf_puts(&b, ",");
            first = false;
            rv = rv ? rv : cm_buf_puts(&b, "{\"action\":\"StopApplication\",\"app\":");
            rv = rv ? rv : api__json_str(&b, all.v[i].id);
            rv = rv ? rv : cm_buf_puts(&b, "}");
        }
        rv = rv ? rv : cm_buf_puts(&b, "]}]}");
        api__respond_ok_json(req, rv, &b);
        goto out;
    }
    struct api_write *w = api__write_new(api, req, create ? 201 : 200);
    if (w == NULL) {
        goto out;
    }
    char dep[37];
    rv = cm_uuid4(dep);
    api__write_deploy(w, dep, version, false);
    rv = rv ? rv
            : cm_buf_printf(api__write_body(w),
                            "{\"version\":\"%s\",\"deploymentId\":\"%s\"}", version, dep);
    rv = rv ? rv : api__write_header(w, "Marathon-Deployment-Id", dep);
    if (rv == 0 && create) {
        rv = api__write_header(w, "Location", grp->id);
    }
    for (size_t i = 0; rv == 0 && i < grp->apps.n; i++) {
        const struct api_app *cur = curs[i].n > 0 ? &curs[i].v[0] : NULL;
        const char *action = action_of(grp->apps.v[i], cur);
        if (action == NULL) {
            continue;
        }
        bool scale = strcmp(action, "ScaleApplication") == 0;
        cm_buf_clear(&cmd);
        rv = api__app_put_cmd(grp->apps.v[i], scale ? cur->version : version, &cmd);
        if (rv == 0) {
            api__write_propose(w, cmd.data, cmd.len);
        }
    }
    for (size_t i = lo; rv == 0 && !create && i < hi; i++) {
        if (in_body(grp, all.v[i].id)) {
            continue;
        }
        cm_buf_clear(&cmd);
        rv = cm_buf_printf(&cmd, "{\"type\":\"app.delete\",\"at\":%lld,\"id\":",
                           (long long)api->ops.now_ms(api->ops.data));
        rv = rv ? rv : api__json_str(&cmd, all.v[i].id);
        rv = rv ? rv : cm_buf_puts(&cmd, "}");
        if (rv == 0) {
            api__write_propose(w, cmd.data, cmd.len);
        }
    }
    if (rv != 0) {
        api__write_fail(w, rv, NULL);
    } else {
        api__write_commit(w);
    }
out:
    for (size_t i = 0; curs != NULL && grp != NULL && i < grp->apps.n; i++) {
        api__apps_done(&curs[i]);
    }
    cm_free(&curs);
    cm_buf_done(&cmd);
    api__apps_done(&all);
    cm_app_group_free(grp);
    cm_app_report_done(&rep);
}

static void h_group_post(struct cm_http_req *req, void *data)
{
    group_write(req, data, true);
}

static void h_group_put(struct cm_http_req *req, void *data)
{
    group_write(req, data, false);
}

/* DELETE a group: every app under it (the root: every app). */
static void h_group_delete(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    char g[CM_APP_MAX_ID + 1];
    if (!route_group(req, g, sizeof(g))) {
        return;
    }
    struct api_apps all;
    int rv = api__apps_load(api, NULL, &all);
    if (rv != 0) {
        api__respond_internal(req, rv);
        return;
    }
    size_t lo, hi;
    apps_under(&all, 0, all.n, g, &lo, &hi);
    if (lo == hi && strcmp(g, "/") != 0) {
        cm_http_respond_error(req, 404, "Group '%s' does not exist", g);
        api__apps_done(&all);
        return;
    }
    struct api_write *w = api__write_new(api, req, 200);
    if (w != NULL) {
        char version[32], dep[37];
        api__new_version(api, NULL, version);
        rv = cm_uuid4(dep);
        api__write_deploy(w, dep, version, false);
        rv = rv ? rv
                : cm_buf_printf(api__write_body(w),
                                "{\"version\":\"%s\",\"deploymentId\":\"%s\"}", version,
                                dep);
        rv = rv ? rv : api__write_header(w, "Marathon-Deployment-Id", dep);
        struct cm_buf cmd = {0};
        for (size_t i = lo; rv == 0 && i < hi; i++) {
            cm_buf_clear(&cmd);
            rv = cm_buf_printf(&cmd, "{\"type\":\"app.delete\",\"at\":%lld,\"id\":",
                               (long long)api->ops.now_ms(api->ops.data));
            rv = rv ? rv : api__json_str(&cmd, all.v[i].id);
            rv = rv ? rv : cm_buf_puts(&cmd, "}");
            if (rv == 0) {
                api__write_propose(w, cmd.data, cmd.len);
            }
        }
        cm_buf_done(&cmd);
        if (rv != 0) {
            api__write_fail(w, rv, NULL);
        } else {
            api__write_commit(w);
        }
    }
    api__apps_done(&all);
}

int api__routes_groups(struct cm_api *api)
{
    static const struct {
        const char *method;
        const char *pattern;
        size_t limit;
        cm_http_handler_fn fn;
    } routes[] = {
        {"GET", "/v2/groups", API_BODY_LIMIT_NONE, h_group_get},
        {"GET", "/v2/groups/{id*}", API_BODY_LIMIT_NONE, h_group_get},
        {"POST", "/v2/groups", API_BODY_LIMIT_APP, h_group_post},
        {"POST", "/v2/groups/{id*}", API_BODY_LIMIT_APP, h_group_post},
        {"PUT", "/v2/groups", API_BODY_LIMIT_APP, h_group_put},
        {"PUT", "/v2/groups/{id*}", API_BODY_LIMIT_APP, h_group_put},
        {"DELETE", "/v2/groups", API_BODY_LIMIT_NONE, h_group_delete},
        {"DELETE", "/v2/groups/{id*}", API_BODY_LIMIT_NONE, h_group_delete},
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
