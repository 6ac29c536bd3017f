/* clusterctl run FILE: create or update the app(s) of a Marathon app, app
 * array or group file, then follow the deployment (docs/deployments.md) until it
 * finished and the instances run: a live progress line on a terminal, plain
 * lines otherwise; exit 1 when it fails or is rolled back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"
#include "state/state.h"

#define RUN_MAX_APPS     64 /* followed; more are deployed but not followed */
#define RUN_MAX_FAILURES 3  /* failed tasks of the new version before giving up */
#define RUN_POLL_MS      300
#define RUN_MAX_FILE     (CM_APP_MAX_BODY + 1)

struct followed {
    char id[CM_APP_MAX_ID + 1];
    char line[256];
    char seen[RUN_MAX_FAILURES + 1][256]; /* failed task ids already counted */
    unsigned n_seen;
    unsigned failures;
    bool done;
};

static char *read_all(const char *path, size_t *ret_len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    struct cm_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= RUN_MAX_FILE) {
        if (cm_buf_append(&b, chunk, n) != 0) {
            break;
        }
    }
    if (f != stdin) {
        fclose(f);
    }
    *ret_len = b.len;
    if (b.data == NULL) {
        return cm_strdup("");
    }
    return cm_buf_steal(&b);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void print_issues(const char *file, const struct cm_app_report *rep,
                         enum cm_app_issue_kind kind, const char *prefix)
{
    for (size_t i = 0; i < rep->n; i++) {
        if (rep->v[i].kind == kind) {
            fprintf(stderr, "%s%s: %s: %s\n", prefix, file, rep->v[i].path,
                    rep->v[i].msg);
        }
    }
}

/* The app ids a file defines, from the app model itself (every feature allowed:
 * the agent decides what it supports). Warnings (ignored fields) are shown. A
 * file the model refuses is still sent: the agent's answer names the problems. */
static void local_ids(const char *file, const char *text, size_t len, int kind,
                      struct followed *apps, size_t *n)
{
    struct cm_app_parse_opts o = {.base = "/", .features = CM_APP_FEAT_ALL};
    struct cm_app_report rep = {0};
    *n = 0;
    if (kind == 0) {
        struct cm_app *a = NULL;
        if (cm_app_parse(text, len, &o, &a, &rep) == 0) {
            snprintf(apps[(*n)++].id, sizeof(apps[0].id), "%s", a->id);
        }
        cm_app_free(a);
    } else if (kind == 1) {
        struct cm_app_list l = {0};
        if (cm_app_array_parse(text, len, &o, &l, &rep) == 0) {
            for (size_t i = 0; i < l.n && *n < RUN_MAX_APPS; i++) {
                snprintf(apps[(*n)++].id, sizeof(apps[0].id), "%s", l.v[i]->id);
            }
        }
        cm_app_list_done(&l);
    } else {
        struct cm_app_group *g = NULL;
        if (cm_app_group_parse(text, len, &o, &g, &rep) == 0) {
            for (size_t i = 0; i < g->apps.n && *n < RUN_MAX_APPS; i++) {
                snprintf(apps[(*n)++].id, sizeof(apps[0].id), "%s", g->apps.v[i]->id);
            }
        }
        cm_app_group_free(g);
    }
    print_issues(file, &rep, CM_APP_ISSUE_WARNING, "warning: ");
    cm_app_report_done(&rep);
}

/* Remember the app's current lastTaskFailure so that only new ones count. */
static void note_failures(const struct cmd_client *c, struct followed *a)
{
    char path[512], *body = NULL;
    snprintf(path, sizeof(path), "/v2/apps%s", a->id);
    if (cmd_client_call(c, "GET", path, NULL, &body) == 200) {
        cJSON *j = cJSON_Parse(body);
        const char *t = cmd_json_str(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "app"),
                                             "lastTaskFailure"),
            "taskId");
        if (t != NULL) {
            snprintf(a->seen[a->n_seen++], sizeof(a->seen[0]), "%s", t);
        }
        cJSON_Delete(j);
    }
    cm_free(&body);
}

/* One look at @a. Returns -1 to go on, else an exit code. */
static int poll_app(const struct cmd_client *c, struct followed *a, FILE *out)
{
    char path[512], *body = NULL;
    snprintf(path, sizeof(path), "/v2/apps%s", a->id);
    int status = cmd_client_call(c, "GET", path, NULL, &body);
    if (status < 0) {
        return CMD_EXIT_FAIL;
    }
    if (status != 200) {
        cmd_client_api_error(c, status, body);
        cm_free(&body);
        return CMD_EXIT_FAIL;
    }
    cJSON *j = cJSON_Parse(body);
    cm_free(&body);
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(j, "app");
    const char *version = cmd_json_str(app, "version");
    int want = (int)cmd_json_num(app, "instances", 0);
    int running = 0, old = 0;
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(app, "tasks"))
    {
        const char *v = cmd_json_str(k, "version");
        const char *st = cmd_json_str(k, "state");
        bool cur = v != NULL && version != NULL && strcmp(v, version) == 0;
        if (!cur) {
            old += st != NULL && strcmp(st, "TASK_KILLING") != 0;
        } else if (st != NULL && strcmp(st, "TASK_RUNNING") == 0) {
            running++;
        }
    }
    char line[256];
    snprintf(line, sizeof(line), "%s: %d/%d running%s", a->id, running, want,
             old > 0 ? ", replacing old tasks" : "");
    if (strcmp(line, a->line) != 0) {
        fprintf(out, "%s\n", line);
        fflush(out);
        snprintf(a->line, sizeof(a->line), "%s", line);
    }
    const cJSON *fail = cJSON_GetObjectItemCaseSensitive(app, "lastTaskFailure");
    const char *ftask = cmd_json_str(fail, "taskId");
    bool is_new = ftask != NULL;
    for (unsigned i = 0; is_new && i < a->n_seen; i++) {
        is_new = strcmp(a->seen[i], ftask) != 0;
    }
    int rv = -1;
    if (is_new) {
        a->failures++;
        if (a->n_seen < CM_ARRAY_SIZE(a->seen)) {
            snprintf(a->seen[a->n_seen++], sizeof(a->seen[0]), "%s", ftask);
        }
        const char *msg = cmd_json_str(fail, "message");
        fprintf(out, "%s: task %s failed: %s\n", a->id, ftask, msg != NULL ? msg : "?");
        fflush(out);
        if (a->failures >= RUN_MAX_FAILURES) {
            fprintf(stderr,
                    "clusterctl run: %s: tasks fail repeatedly (%u failures; last: %s) — "
                    "see `clusterctl logs %s` and `clusterctl status %s`\n",
                    a->id, a->failures, msg != NULL ? msg : "?", a->id, a->id);
            rv = CMD_EXIT_FAIL;
        }
    }
    a->done = running == want && old == 0;
    cJSON_Delete(j);
    return rv;
}

/* The deployment's progress and outcome. Returns -1 while it runs (or when
 * there is none: nothing changed), 0 when it succeeded, else an exit code. */
struct follow_dep {
    char id[64];
    bool gone; /* no such deployment: the change changed nothing */
    bool tty;
    char line[512];
};

static int poll_deployment(const struct cmd_client *c, struct follow_dep *d, FILE *out)
{
    if (d->id[0] == '\0' || d->gone) {
        return 0;
    }
    char path[128], *body = NULL;
    snprintf(path, sizeof(path), "/v1/deployments/%s", d->id);
    int status = cmd_client_call(c, "GET", path, NULL, &body);
    if (status < 0) {
        return CMD_EXIT_FAIL;
    }
    if (status == 404) {
        d->gone = true;
        cm_free(&body);
        return 0;
    }
    cJSON *j = cJSON_Parse(body);
    cm_free(&body);
    const char *st = cmd_json_str(j, "status");
    int rv = -1;
    char line[512];
    cmd_deploy_progress(j, line, sizeof(line));
    if (st != NULL && strcmp(st, "running") == 0 && strcmp(line, d->line) != 0) {
        if (d->tty) {
            fprintf(out, "\r\033[K%s", line); /* one live line */
        } else {
            fprintf(out, "%s\n", line);
        }
        fflush(out);
        snprintf(d->line, sizeof(d->line), "%s", line);
    }
    if (st != NULL && strcmp(st, "success") == 0) {
        rv = 0;
    } else if (st != NULL && strcmp(st, "running") != 0) {
        const char *why = cmd_json_str(j, "reason");
        fprintf(stderr, "%sclusterctl run: deployment %s %s%s%s\n", d->tty ? "\n" : "",
                d->id, strcmp(st, "failed") == 0 ? "failed" : "was stopped",
                why != NULL ? ": " : "", why != NULL ? why : "");
        rv = CMD_EXIT_FAIL;
    }
    if (rv >= 0 && d->tty && d->line[0] != '\0') {
        fprintf(out, "\n");
        d->line[0] = '\0';
    }
    cJSON_Delete(j);
    return rv;
}

int cmd_run(int argc, char **argv)
{
    bool detach = false;
    const char *timeout = NULL;
    const struct cmd_opt opts[] = {
        {"--detach", 'd', NULL, "return once the agent accepted the change", &detach,
         NULL},
        {"--timeout", 0, "SECONDS", " give up waiting after this long (default 120)",
         NULL, &timeout},
    };
    struct cmd_client c = {
        .usage = "run FILE [--detach] [--timeout SECONDS] [--addr HOST:PORT] [--json]",
        .about =
            "Create or update the apps of FILE ('-': stdin): a Marathon app, an array\n"
            "of apps or a group, as JSON. Then wait until every instance runs,\n"
            "showing progress; fail when tasks fail repeatedly or on the timeout.",
    };
    int rv = cmd_client_parse(&c, argc, argv, opts, CM_ARRAY_SIZE(opts), 1, 1);
    if (rv >= 0) {
        return rv;
    }
    int64_t timeout_s = 120;
    if (timeout != NULL && cm_parse_i64(timeout, 1, 86400 * 7, &timeout_s) != 0) {
        fprintf(stderr, "clusterctl run: --timeout needs seconds (1 or more), not '%s'\n",
                timeout);
        return CMD_EXIT_USAGE;
    }
    const char *file = c.pos[0];
    size_t len = 0;
    char *text = read_all(file, &len);
    if (text == NULL) {
        fprintf(stderr, "clusterctl run: cannot read %s: %s\n", file,
                cm_strerror(cm_errno()));
        return CMD_EXIT_FAIL;
    }
    if (len > CM_APP_MAX_BODY) {
        fprintf(stderr, "clusterctl run: %s is larger than %u bytes\n", file,
                CM_APP_MAX_BODY);
        cm_free(&text);
        return CMD_EXIT_FAIL;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (j == NULL || (!cJSON_IsObject(j) && !cJSON_IsArray(j))) {
        /* Let the app model say where and why. */
        struct cm_app_report rep = {0};
        struct cm_app *a = NULL;
        int prv = cm_app_parse(text, len, NULL, &a, &rep);
        fprintf(stderr, "clusterctl run: %s is not a JSON app, app array or group\n",
                file);
        print_issues(file, &rep, CM_APP_ISSUE_SYNTAX, "  ");
        (void)prv;
        cm_app_free(a);
        cm_app_report_done(&rep);
        cJSON_Delete(j);
        cm_free(&text);
        return CMD_EXIT_FAIL;
    }
    int kind = cJSON_IsArray(j) ? 1 : 0;
    if (kind == 0 &&
        (cJSON_HasObjectItem(j, "apps") || cJSON_HasObjectItem(j, "groups")) &&
        !cJSON_HasObjectItem(j, "cmd") && !cJSON_HasObjectItem(j, "args") &&
        !cJSON_HasObjectItem(j, "container")) {
        kind = 2;
    }
    char path[512];
    if (kind == 0) {
        const char *id = cmd_json_str(j, "id");
        if (id == NULL || cmd_client_app_path("/v2/apps", id, "?partialUpdate=false",
                                              path, sizeof(path)) != 0) {
            fprintf(stderr, "clusterctl run: %s: /id: %s\n", file,
                    id == NULL ? "the app needs an \"id\"" : "not a valid app id");
            cJSON_Delete(j);
            cm_free(&text);
            return CMD_EXIT_FAIL;
        }
    } else {
        snprintf(path, sizeof(path), "%s",
                 kind == 1 ? "/v2/apps?partialUpdate=false" : "/v2/groups");
    }
    cJSON_Delete(j);
    struct followed *apps = cm_calloc(RUN_MAX_APPS, sizeof(*apps));
    if (apps == NULL) {
        cm_free(&text);
        return CMD_EXIT_FAIL;
    }
    size_t n = 0;
    local_ids(file, text, len, kind, apps, &n);
    for (size_t i = 0; i < n; i++) {
        note_failures(&c, &apps[i]);
    }
    char *body = NULL;
    int status = cmd_client_call(&c, "PUT", path, text, &body);
    cm_free(&text);
    if (status < 0) {
        cm_free(&apps);
        return CMD_EXIT_FAIL;
    }
    if (status != 200 && status != 201) {
        cmd_client_api_error(&c, status, body);
        cm_free(&body);
        cm_free(&apps);
        return CMD_EXIT_FAIL;
    }
    FILE *out = c.json ? stderr : stdout;
    struct follow_dep dep = {.tty = isatty(fileno(out)) == 1};
    {
        cJSON *r = cJSON_Parse(body);
        const char *id = cmd_json_str(r, "deploymentId");
        const cJSON *ds = cJSON_GetObjectItemCaseSensitive(r, "deployments");
        if (id == NULL) { /* POST's AppInfo form */
            id = cmd_json_str(cJSON_GetArrayItem(ds, 0), "id");
        }
        snprintf(dep.id, sizeof(dep.id), "%s", id != NULL ? id : "");
        cJSON_Delete(r);
    }
    if (c.json) {
        printf("%s\n", body);
        fflush(stdout);
    } else {
        cJSON *r = cJSON_Parse(body);
        printf("%s: %s version %s (deployment %s)\n", file,
               status == 201 ? "created" : "updated",
               cmd_json_str(r, "version") ? cmd_json_str(r, "version") : "?",
               cmd_json_str(r, "deploymentId") ? cmd_json_str(r, "deploymentId") : "?");
        fflush(stdout);
        cJSON_Delete(r);
    }
    cm_free(&body);
    rv = CMD_EXIT_OK;
    if (!detach) {
        uint64_t deadline = now_ms() + (uint64_t)timeout_s * 1000u;
        bool dep_done = false;
        for (;;) {
            bool all = true;
            if (!dep_done) {
                int drv = poll_deployment(&c, &dep, out);
                dep_done = drv == 0;
                rv = drv > 0 ? drv : rv;
                all = dep_done;
            }
            for (size_t i = 0; i < n && rv == CMD_EXIT_OK; i++) {
                int prv = poll_app(&c, &apps[i], out);
                if (prv >= 0) {
                    rv = prv;
                }
                all &= apps[i].done;
            }
            if (rv != CMD_EXIT_OK || all) {
                break;
            }
            if (now_ms() >= deadline) {
                fprintf(stderr,
                        "clusterctl run: timed out after %lld s:", (long long)timeout_s);
                for (size_t i = 0; i < n; i++) {
                    if (!apps[i].done) {
                        fprintf(stderr, " %s;", apps[i].line);
                    }
                }
                fprintf(stderr, " see `clusterctl status %s`\n",
                        n > 0 ? apps[0].id : "APP");
                rv = CMD_EXIT_FAIL;
                break;
            }
            usleep(RUN_POLL_MS * 1000);
        }
        if (rv == CMD_EXIT_OK) {
            fprintf(out, "done: every instance runs\n");
        } else if (dep.tty && dep.line[0] != '\0') {
            fprintf(out, "\n");
        }
    }
    cm_free(&apps);
    return rv;
}
