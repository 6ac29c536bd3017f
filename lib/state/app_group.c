/* Bodies holding several apps: the array of PUT /v2/apps and the group tree of
 * /v2/groups (compat.md §2.1), flattened into apps with absolute ids, plus the
 * dependency-cycle check Marathon runs on the root group. */
#include <stdio.h>
#include <string.h>

#include "app_int.h"

void cm_app_list_done(struct cm_app_list *list)
{
    if (list == NULL) {
        return;
    }
    for (size_t i = 0; i < list->n; i++) {
        cm_app_free(list->v[i]);
    }
    cm_free(&list->v);
    list->n = 0;
}

/* The worse of two parse results: OOM, then syntax, validation, unsupported. */
static int worse(int a, int b)
{
    static const int order[] = {CM_ENOMEM, CM_ETOOBIG, CM_EMALFORMED, CM_EVALIDATION,
                                CM_EUNSUPPORTED};
    for (size_t i = 0; i < CM_ARRAY_SIZE(order); i++) {
        if (a == order[i] || b == order[i]) {
            return order[i];
        }
    }
    return a != 0 ? a : b;
}

static int list_push(struct cm_app_list *l, struct cm_app *app)
{
    struct cm_app **v = cm_reallocarray(l->v, l->n + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    l->v = v;
    l->v[l->n++] = app;
    return 0;
}

/* ------------------------------------------------------------------ dependencies */

enum { WHITE = 0, GREY, BLACK };

struct deps {
    struct cm_app *const *apps;
    size_t n_apps;
    const struct cm_app_group_info *groups;
    size_t n_groups;
    unsigned char *state;
    size_t *stack; /* the apps being visited, to name a cycle */
    size_t depth;
    char cycle[512];
};

/* "/a -> /b -> /a": the path on the stack from @t back to @t. */
static void name_cycle(struct deps *d, size_t t)
{
    size_t len = 0, from = 0;
    for (size_t k = 0; k < d->depth; k++) {
        if (d->stack[k] == t) {
            from = k;
        }
    }
    for (size_t k = from; k < d->depth && len < sizeof(d->cycle); k++) {
        int w = snprintf(d->cycle + len, sizeof(d->cycle) - len, "%s -> ",
                         d->apps[d->stack[k]]->id);
        len += w > 0 ? (size_t)w : 0;
    }
    if (len < sizeof(d->cycle)) {
        snprintf(d->cycle + len, sizeof(d->cycle) - len, "%s", d->apps[t]->id);
    }
}

static bool visit_targets(struct deps *d, size_t i, const char *dep);

static bool visit(struct deps *d, size_t i)
{
    const struct cm_app *app = d->apps[i];
    d->state[i] = GREY;
    d->stack[d->depth++] = i;
    for (size_t k = 0; k < app->n_dependencies; k++) {
        if (visit_targets(d, i, app->dependencies[k])) {
            return true;
        }
    }
    /* Group dependencies are inherited by every app under the group. */
    for (size_t g = 0; g < d->n_groups; g++) {
        if (!cm_app_path_within(app->id, d->groups[g].id)) {
            continue;
        }
        for (size_t k = 0; k < d->groups[g].n_dependencies; k++) {
            if (visit_targets(d, i, d->groups[g].dependencies[k])) {
                return true;
            }
        }
    }
    d->state[i] = BLACK;
    d->depth--;
    return false;
}

/* A dependency names an app, or a group and so every app under it. */
static bool visit_targets(struct deps *d, size_t i, const char *dep)
{
    for (size_t t = 0; t < d->n_apps; t++) {
        if (t == i || !cm_app_path_within(d->apps[t]->id, dep)) {
            continue;
        }
        if (d->state[t] == GREY) {
            name_cycle(d, t);
            return true;
        }
        if (d->state[t] == WHITE && visit(d, t)) {
            return true;
        }
    }
    return false;
}

int cm_app_check_dependencies(struct cm_app *const *apps, size_t n_apps,
                              const struct cm_app_group_info *groups, size_t n_groups,
                              struct cm_app_report *rep)
{
    struct deps d = {
        .apps = apps, .n_apps = n_apps, .groups = groups, .n_groups = n_groups};
    if (n_apps == 0) {
        return 0;
    }
    d.state = cm_calloc(n_apps, 1);
    d.stack = cm_calloc(n_apps, sizeof(*d.stack));
    if (d.state == NULL || d.stack == NULL) {
        cm_free(&d.state);
        cm_free(&d.stack);
        return CM_ENOMEM;
    }
    bool cycle = false;
    for (size_t i = 0; i < n_apps && !cycle; i++) {
        if (d.state[i] == WHITE) {
            cycle = visit(&d, i);
        }
    }
    cm_free(&d.state);
    cm_free(&d.stack);
    if (!cycle) {
        return 0;
    }
    /* Marathon's message, then ours naming the cycle. */
    int rv = app__issue(rep, CM_APP_ISSUE_INVALID, "/",
                        "Dependency graph has cyclic dependencies.");
    if (rv == 0) {
        rv = app__issue(rep, CM_APP_ISSUE_INVALID, "/", "cycle: %s", d.cycle);
    }
    return rv ? rv : CM_EVALIDATION;
}

/* ------------------------------------------------------------------ arrays */

static int check_unique_ids(const struct cm_app_list *l, const char *const *prefixes,
                            struct cm_app_report *rep)
{
    int rv = 0;
    for (size_t i = 0; i < l->n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(l->v[i]->id, l->v[j]->id) == 0) {
                char p[1100];
                snprintf(p, sizeof(p), "%s/id", prefixes[i]);
                int r = app__issue(rep, CM_APP_ISSUE_INVALID, p, "duplicate app id %s",
                                   l->v[i]->id);
                rv = worse(rv, r ? r : CM_EVALIDATION);
                break;
            }
        }
    }
    return rv;
}

int cm_app_array_parse(const char *json, size_t len, const struct cm_app_parse_opts *opts,
                       struct cm_app_list *ret_list, struct cm_app_report *rep)
{
    cJSON *root = NULL;
    int rv = app__json_parse(json, len, &root, rep);
    if (rv != 0) {
        return rv;
    }
    struct cm_app_list l = {0};
    const char **prefixes = NULL;
    if (!cJSON_IsArray(root)) {
        rv = app__issue(rep, CM_APP_ISSUE_SYNTAX, "/", "error.expected.jsarray");
        rv = rv ? rv : CM_EMALFORMED;
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(root), i = 0;
    prefixes = cm_calloc(n ? n : 1, sizeof(*prefixes));
    char(*pfx)[24] = cm_calloc(n ? n : 1, sizeof(*pfx));
    if (prefixes == NULL || pfx == NULL) {
        cm_free_raw(pfx);
        rv = CM_ENOMEM;
        goto out;
    }
    for (const cJSON *e = root->child; e != NULL; e = e->next, i++) {
        snprintf(pfx[i], sizeof(pfx[i]), "(%zu)", i);
        struct cm_app *app = NULL;
        int r = app__parse_obj(e, pfx[i], opts, &app, rep);
        if (r == 0) {
            prefixes[l.n] = pfx[i];
            r = list_push(&l, app);
            if (r != 0) {
                cm_app_free(app);
            }
        }
        rv = worse(rv, r);
    }
    if (rv == 0) {
        rv = check_unique_ids(&l, prefixes, rep);
    }
    if (rv == 0) {
        rv = cm_app_check_dependencies(l.v, l.n, NULL, 0, rep);
    }
    cm_free_raw(pfx);
out:
    cm_free(&prefixes);
    cJSON_Delete(root);
    if (rv != 0) {
        cm_app_list_done(&l);
        return rv;
    }
    *ret_list = l;
    return 0;
}

/* ------------------------------------------------------------------ groups */

void cm_app_group_free(struct cm_app_group *group)
{
    if (group == NULL) {
        return;
    }
    cm_free(&group->id);
    cm_app_list_done(&group->apps);
    for (size_t i = 0; i < group->n_groups; i++) {
        cm_free(&group->groups[i].id);
        for (size_t j = 0; j < group->groups[i].n_dependencies; j++) {
            cm_free(&group->groups[i].dependencies[j]);
        }
        cm_free(&group->groups[i].dependencies);
    }
    cm_free(&group->groups);
    cm_free(&group->version);
    cm_free_raw(group);
}

struct gctx {
    const struct cm_app_parse_opts *opts;
    struct cm_app_report *rep;
    struct cm_app_group *g;
    int rv;
};

static void g_issue(struct gctx *c, enum cm_app_issue_kind kind, const char *path,
                    const char *suffix, const char *msg)
{
    char p[1100];
    int n = snprintf(p, sizeof(p), "%s%s", path, suffix);
    if (n < 0 || (size_t)n >= sizeof(p)) {
        p[sizeof(p) - 4] = '\0'; /* a cut path still points the user to the field */
        strcat(p, "...");
    }
    int r = app__issue(c->rep, kind, p, "%s", msg);
    static const int code[] = {0, CM_EMALFORMED, CM_EVALIDATION, CM_EUNSUPPORTED};
    c->rv = worse(c->rv, r ? r : code[kind]);
}

static int push_group(struct cm_app_group *g, const char *id)
{
    struct cm_app_group_info *v = cm_reallocarray(g->groups, g->n_groups + 1, sizeof(*v));
    if (v == NULL) {
        return CM_ENOMEM;
    }
    g->groups = v;
    memset(&v[g->n_groups], 0, sizeof(v[0]));
    v[g->n_groups].id = cm_strdup(id);
    if (v[g->n_groups].id == NULL) {
        return CM_ENOMEM;
    }
    g->n_groups++;
    return 0;
}

/* Resolve @raw against @base into @out; reports at path+"/id" on failure. */
static bool resolve_child_id(struct gctx *c, const char *raw, const char *parent,
                             const char *path, char *out, size_t cap)
{
    int code;
    const char *why = app__path_norm(raw, parent, out, cap, &code);
    if (why != NULL) {
        g_issue(c, CM_APP_ISSUE_INVALID, path, "/id", why);
        return false;
    }
    char up[CM_APP_MAX_ID + 1];
    if (cm_app_path_parent(out, up, sizeof(up)) != 0 || strcmp(up, parent) != 0 ||
        strcmp(out, "/") == 0) {
        char msg[CM_APP_MAX_ID * 2 + 64];
        snprintf(msg, sizeof(msg),
                 "identifier %s is not child of %s. Hint: use relative paths.", out,
                 parent);
        g_issue(c, CM_APP_ISSUE_INVALID, path, "/id", msg);
        return false;
    }
    return true;
}

static void parse_group(struct gctx *c, const cJSON *obj, const char *gid,
                        const char *path, int depth);

static void parse_group_members(struct gctx *c, const cJSON *obj, const char *gid,
                                const char *path, int depth)
{
    static const char *const known[] = {"id",           "apps",    "groups",
                                        "dependencies", "scaleBy", "version",
                                        "enforceRole",  "pods",    NULL};
    for (const cJSON *m = obj->child; m != NULL; m = m->next) {
        bool hit = false;
        for (const char *const *k = known; *k && !hit; k++) {
            hit = strcmp(*k, m->string) == 0;
        }
        if (!hit) {
            char p[1100];
            snprintf(p, sizeof(p), "%s/%s", path, m->string);
            if (app__issue(c->rep, CM_APP_ISSUE_WARNING, p, "unknown field ignored") !=
                0) {
                c->rv = CM_ENOMEM;
            }
        }
    }
    size_t gi = c->g->n_groups;
    if (push_group(c->g, gid) != 0) {
        c->rv = CM_ENOMEM;
        return;
    }
    const cJSON *deps = cJSON_GetObjectItemCaseSensitive(obj, "dependencies");
    if (deps != NULL && !cJSON_IsNull(deps)) {
        if (!cJSON_IsArray(deps)) {
            g_issue(c, CM_APP_ISSUE_SYNTAX, path, "/dependencies",
                    "error.expected.jsarray");
        } else {
            size_t n = (size_t)cJSON_GetArraySize(deps), i = 0;
            struct cm_app_group_info *gi_p = &c->g->groups[gi];
            gi_p->dependencies = n ? cm_calloc(n, sizeof(char *)) : NULL;
            if (n > 0 && gi_p->dependencies == NULL) {
                c->rv = CM_ENOMEM;
                return;
            }
            /* Relative group dependencies resolve against the group itself, so that
             * "../db" names a sibling (Marathon's canonicalPath(group id)). */
            for (const cJSON *e = deps->child; e != NULL; e = e->next, i++) {
                char sfx[32], abs[CM_APP_MAX_ID + 1];
                int code;
                snprintf(sfx, sizeof(sfx), "/dependencies(%zu)", i);
                if (!cJSON_IsString(e)) {
                    g_issue(c, CM_APP_ISSUE_SYNTAX, path, sfx, "error.expected.jsstring");
                    continue;
                }
                const char *why =
                    app__path_norm(e->valuestring, gid, abs, sizeof(abs), &code);
                if (why != NULL) {
                    g_issue(c, CM_APP_ISSUE_INVALID, path, sfx, why);
                    continue;
                }
                char *d = cm_strdup(abs);
                if (d == NULL) {
                    c->rv = CM_ENOMEM;
                    return;
                }
                gi_p->dependencies[gi_p->n_dependencies++] = d;
            }
        }
    }
    const cJSON *pods = cJSON_GetObjectItemCaseSensitive(obj, "pods");
    if (cJSON_IsArray(pods) && cJSON_GetArraySize(pods) > 0) {
        g_issue(c, CM_APP_ISSUE_UNSUPPORTED, path, "/pods",
                "unsupported feature: pods (only apps are supported)");
    }

    const cJSON *apps = cJSON_GetObjectItemCaseSensitive(obj, "apps");
    if (apps != NULL && !cJSON_IsNull(apps) && !cJSON_IsArray(apps)) {
        g_issue(c, CM_APP_ISSUE_SYNTAX, path, "/apps", "error.expected.jsarray");
    } else if (apps != NULL) {
        size_t i = 0;
        for (const cJSON *e = apps->child; e != NULL; e = e->next, i++) {
            char p[1100];
            snprintf(p, sizeof(p), "%s/apps(%zu)", path, i);
            if (c->g->apps.n >= CM_APP_MAX_GROUP_APPS) {
                g_issue(c, CM_APP_ISSUE_INVALID, p, "",
                        "too many apps in one group body");
                break;
            }
            /* The id must name a direct child of this group (compat.md §1.1). */
            const cJSON *idj =
                cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "id") : NULL;
            char abs[CM_APP_MAX_ID + 1];
            if (cJSON_IsString(idj) &&
                !resolve_child_id(c, idj->valuestring, gid, p, abs, sizeof(abs))) {
                continue;
            }
            struct cm_app_parse_opts o = *c->opts;
            o.base = gid;
            struct cm_app *app = NULL;
            int r = app__parse_obj(e, p, &o, &app, c->rep);
            if (r == 0 && list_push(&c->g->apps, app) != 0) {
                cm_app_free(app);
                r = CM_ENOMEM;
            }
            c->rv = worse(c->rv, r);
        }
    }

    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(obj, "groups");
    if (groups != NULL && !cJSON_IsNull(groups) && !cJSON_IsArray(groups)) {
        g_issue(c, CM_APP_ISSUE_SYNTAX, path, "/groups", "error.expected.jsarray");
    } else if (groups != NULL) {
        size_t i = 0;
        for (const cJSON *e = groups->child; e != NULL; e = e->next, i++) {
            char p[1100];
            snprintf(p, sizeof(p), "%s/groups(%zu)", path, i);
            if (!cJSON_IsObject(e)) {
                g_issue(c, CM_APP_ISSUE_SYNTAX, p, "", "error.expected.jsobject");
                continue;
            }
            const cJSON *idj = cJSON_GetObjectItemCaseSensitive(e, "id");
            if (!cJSON_IsString(idj)) {
                g_issue(c, CM_APP_ISSUE_SYNTAX, p, "/id",
                        idj == NULL ? "error.path.missing" : "error.expected.jsstring");
                continue;
            }
            char abs[CM_APP_MAX_ID + 1];
            if (resolve_child_id(c, idj->valuestring, gid, p, abs, sizeof(abs))) {
                parse_group(c, e, abs, p, depth + 1);
            }
        }
    }
}

static void parse_group(struct gctx *c, const cJSON *obj, const char *gid,
                        const char *path, int depth)
{
    if (c->rv == CM_ENOMEM) {
        return;
    }
    (void)depth; /* bounded by CM_APP_MAX_DEPTH of the JSON itself */
    parse_group_members(c, obj, gid, path, depth);
}

/* Ids must not collide: two apps, or an app and a group. */
static void check_ids(struct gctx *c)
{
    const struct cm_app_list *l = &c->g->apps;
    for (size_t i = 0; i < l->n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(l->v[i]->id, l->v[j]->id) == 0) {
                char msg[CM_APP_MAX_ID + 32];
                snprintf(msg, sizeof(msg), "duplicate app id %s", l->v[i]->id);
                g_issue(c, CM_APP_ISSUE_INVALID, "/", "", msg);
            }
        }
        for (size_t g = 0; g < c->g->n_groups; g++) {
            if (strcmp(l->v[i]->id, c->g->groups[g].id) == 0) {
                char msg[CM_APP_MAX_ID + 64];
                snprintf(msg, sizeof(msg), "id %s is used by both an app and a group",
                         l->v[i]->id);
                g_issue(c, CM_APP_ISSUE_INVALID, "/", "", msg);
            }
        }
    }
    for (size_t g = 0; g < c->g->n_groups; g++) {
        for (size_t h = 0; h < g; h++) {
            if (strcmp(c->g->groups[g].id, c->g->groups[h].id) == 0) {
                char msg[CM_APP_MAX_ID + 32];
                snprintf(msg, sizeof(msg), "duplicate group id %s", c->g->groups[g].id);
                g_issue(c, CM_APP_ISSUE_INVALID, "/", "", msg);
            }
        }
    }
}

int cm_app_group_parse(const char *json, size_t len, const struct cm_app_parse_opts *opts,
                       struct cm_app_group **ret_group, struct cm_app_report *rep)
{
    static const struct cm_app_parse_opts defaults = {.base = "/", .features = 0};
    cJSON *root = NULL;
    int rv = app__json_parse(json, len, &root, rep);
    if (rv != 0) {
        return rv;
    }
    if (opts == NULL) {
        opts = &defaults;
    }
    struct gctx c = {.opts = opts, .rep = rep};
    c.g = cm_calloc(1, sizeof(*c.g));
    if (c.g == NULL) {
        cJSON_Delete(root);
        return CM_ENOMEM;
    }
    c.g->enforce_role = -1;
    if (!cJSON_IsObject(root)) {
        g_issue(&c, CM_APP_ISSUE_SYNTAX, "/", "", "error.expected.jsobject");
        goto out;
    }
    char base[CM_APP_MAX_ID + 1], gid[CM_APP_MAX_ID + 1];
    int code;
    const char *why = app__path_norm(opts->base != NULL ? opts->base : "/", "/", base,
                                     sizeof(base), &code);
    if (why != NULL) {
        g_issue(&c, CM_APP_ISSUE_INVALID, "/id", "", why);
        goto out;
    }
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (idj != NULL && !cJSON_IsNull(idj) && !cJSON_IsString(idj)) {
        g_issue(&c, CM_APP_ISSUE_SYNTAX, "/id", "", "error.expected.jsstring");
        goto out;
    }
    why = app__path_norm(cJSON_IsString(idj) ? idj->valuestring : ".", base, gid,
                         sizeof(gid), &code);
    if (why != NULL) {
        g_issue(&c, CM_APP_ISSUE_INVALID, "/id", "", why);
        goto out;
    }
    c.g->id = cm_strdup(gid);
    if (c.g->id == NULL) {
        c.rv = CM_ENOMEM;
        goto out;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (cJSON_IsString(ver)) {
        c.g->version = cm_strdup(ver->valuestring);
        if (c.g->version == NULL) {
            c.rv = CM_ENOMEM;
            goto out;
        }
    } else if (ver != NULL && !cJSON_IsNull(ver)) {
        g_issue(&c, CM_APP_ISSUE_SYNTAX, "/version", "", "error.expected.jsstring");
    }
    const cJSON *sb = cJSON_GetObjectItemCaseSensitive(root, "scaleBy");
    if (cJSON_IsNumber(sb)) {
        c.g->has_scale_by = true;
        c.g->scale_by = sb->valuedouble;
        if (!(sb->valuedouble >= 0)) {
            g_issue(&c, CM_APP_ISSUE_INVALID, "/scaleBy", "", "error.min");
        }
    } else if (sb != NULL && !cJSON_IsNull(sb)) {
        g_issue(&c, CM_APP_ISSUE_SYNTAX, "/scaleBy", "", "error.expected.jsnumber");
    }
    const cJSON *er = cJSON_GetObjectItemCaseSensitive(root, "enforceRole");
    if (cJSON_IsBool(er)) {
        c.g->enforce_role = cJSON_IsTrue(er);
    } else if (er != NULL && !cJSON_IsNull(er)) {
        g_issue(&c, CM_APP_ISSUE_SYNTAX, "/enforceRole", "", "error.expected.jsboolean");
    }
    parse_group(&c, root, gid, "", 0);
    if (c.rv == 0) {
        check_ids(&c);
    }
    if (c.rv == 0) {
        c.rv = cm_app_check_dependencies(c.g->apps.v, c.g->apps.n, c.g->groups,
                                         c.g->n_groups, rep);
    }
out:
    cJSON_Delete(root);
    rv = c.rv;
    if (rv != 0) {
        cm_app_group_free(c.g);
        return rv;
    }
    *ret_group = c.g;
    return 0;
}
