/* The task environment, Marathon's names (shared/specs/compat.md §1.4; Marathon's
 * EnvironmentHelper.portsEnv/labelsToEnvVars and TaskBuilder's merge order). Pure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "state/state.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Marathon's EnvironmentHelper limits for label variables. */
#define LABEL_ENV_MAX  512
#define LABEL_PREFIX   "MARATHON_APP_LABEL_"
#define LABEL_KEY_MAX  (LABEL_ENV_MAX - (sizeof(LABEL_PREFIX) - 1))
#define MAX_TASK_PORTS 1024

struct env_var {
    char *name;
    char *value;
};

struct env_list {
    struct env_var *v;
    size_t n;
    size_t cap;
    int err;
};

/* Set @name to @value, replacing an earlier entry of that name in place. Errors
 * are sticky in l->err. */
static void env_set(struct env_list *l, const char *name, const char *value)
{
    if (l->err != 0) {
        return;
    }
    char *val = cm_strdup(value);
    if (val == NULL) {
        l->err = CM_ENOMEM;
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].name, name) == 0) {
            cm_free(&l->v[i].value);
            l->v[i].value = val;
            return;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        struct env_var *v = cm_reallocarray(l->v, cap, sizeof(*v));
        if (v == NULL) {
            cm_free(&val);
            l->err = CM_ENOMEM;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    char *nm = cm_strdup(name);
    if (nm == NULL) {
        cm_free(&val);
        l->err = CM_ENOMEM;
        return;
    }
    l->v[l->n].name = nm;
    l->v[l->n].value = val;
    l->n++;
}

static void env_setf(struct env_list *l, const char *name, const char *fmt, ...)
    CM_PRINTF(3, 4);
static void env_setf(struct env_list *l, const char *name, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    env_set(l, name, buf);
}

static void env_done(struct env_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        cm_free(&l->v[i].name);
        cm_free(&l->v[i].value);
    }
    cm_free(&l->v);
    l->n = l->cap = 0;
}

/* A double as Scala's Double.toString prints it for ordinary values: "1.0",
 * "0.5", "128.0" (the shortest text that reads back the same). */
static void java_double(double d, char *out, size_t cap)
{
    if (d == (double)(int64_t)d && d > -1e15 && d < 1e15) {
        snprintf(out, cap, "%.1f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, d);
        if (strtod(out, NULL) == d) {
            break;
        }
    }
    if (strpbrk(out, ".eEn") == NULL && strlen(out) + 2 < cap) {
        strcat(out, ".0");
    }
}

/* Marathon's label escape: runs of characters outside [a-zA-Z0-9_] become one
 * '_', then upper case. */
static void label_escape(const char *key, char *out)
{
    size_t k = 0;
    bool in_run = false;
    for (const char *p = key; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_';
        if (!ok) {
            if (!in_run) {
                out[k++] = '_';
            }
            in_run = true;
            continue;
        }
        in_run = false;
        out[k++] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    out[k] = '\0';
}

static void context_env(struct env_list *l, const struct cm_app *app,
                        const struct cm_agent_env_task *t)
{
    char num[64];
    env_set(l, "PATH", DEFAULT_PATH);
    env_set(l, "MESOS_TASK_ID", t->id);
    if (t->sandbox != NULL) {
        env_set(l, "MESOS_SANDBOX", t->sandbox);
    }
    env_set(l, "MARATHON_APP_ID", app->id);
    env_set(l, "MARATHON_APP_VERSION", t->version ? t->version : "");
    java_double(app->cpus, num, sizeof(num));
    env_set(l, "MARATHON_APP_RESOURCE_CPUS", num);
    java_double(app->mem, num, sizeof(num));
    env_set(l, "MARATHON_APP_RESOURCE_MEM", num);
    java_double(app->disk, num, sizeof(num));
    env_set(l, "MARATHON_APP_RESOURCE_DISK", num);
    env_setf(l, "MARATHON_APP_RESOURCE_GPUS", "%d", (int)app->gpus);
    if (app->container.image != NULL) {
        env_set(l, "MARATHON_APP_DOCKER_IMAGE", app->container.image);
    }
    struct cm_buf names = {0};
    for (size_t i = 0; i < app->labels.n && l->err == 0; i++) {
        const struct cm_app_kv *kv = &app->labels.v[i];
        if (strlen(kv->key) >= LABEL_KEY_MAX || strlen(kv->value) >= LABEL_ENV_MAX) {
            continue;
        }
        char esc[LABEL_ENV_MAX + sizeof(LABEL_PREFIX)];
        memcpy(esc, LABEL_PREFIX, sizeof(LABEL_PREFIX) - 1);
        label_escape(kv->key, esc + sizeof(LABEL_PREFIX) - 1);
        if ((names.len > 0 && cm_buf_puts(&names, " ") != 0) ||
            cm_buf_puts(&names, esc + sizeof(LABEL_PREFIX) - 1) != 0) {
            l->err = CM_ENOMEM;
            break;
        }
        env_set(l, esc, kv->value);
    }
    env_set(l, "MARATHON_APP_LABELS", names.data ? names.data : "");
    cm_buf_done(&names);
}

/* A requested port and its name, from portDefinitions (host networking) or the
 * container's port mappings. */
struct port_req {
    int32_t port; /* 0: any */
    const char *name;
    bool has_host; /* a host port is allocated for it */
};

static void set_port_name(struct env_list *l, const char *name, int value)
{
    char var[320];
    size_t n = strlen(name);
    if (n > 250) {
        return; /* cannot happen: validation bounds port names */
    }
    /* Marathon: "PORT_" + name.toUpperCase. */
    snprintf(var, sizeof(var), "PORT_%s", name);
    bool shell_safe = true;
    for (char *p = var + 5; *p; p++) {
        if (*p >= 'a' && *p <= 'z') {
            *p = (char)(*p - 'a' + 'A');
        }
        shell_safe &= (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_';
    }
    env_setf(l, var, "%d", value);
    if (!shell_safe) {
        /* `PORT_MY-PORT` cannot be read by a shell; add `PORT_MY_PORT` too. */
        for (char *p = var + 5; *p; p++) {
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) {
                *p = '_';
            }
        }
        env_setf(l, var, "%d", value);
    }
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    return p;
}

/* The task row's ports: a JSON array of integers 0-65535. Parsed by hand, without
 * allocating, so that an allocation failure is never mistaken for bad data. */
static int parse_ports(const char *s, int *out, size_t *ret_n)
{
    const char *p = skip_ws(s);
    size_t n = 0;
    if (*p++ != '[') {
        return CM_EMALFORMED;
    }
    p = skip_ws(p);
    if (*p == ']') {
        p++;
    } else {
        for (;;) {
            long v = 0;
            const char *start = p;
            while (*p >= '0' && *p <= '9' && p - start < 6) {
                v = v * 10 + (*p++ - '0');
            }
            if (p == start || v > 65535 || n == MAX_TASK_PORTS ||
                (*p >= '0' && *p <= '9')) {
                return CM_EMALFORMED;
            }
            out[n++] = (int)v;
            p = skip_ws(p);
            if (*p == ']') {
                p++;
                break;
            }
            if (*p++ != ',') {
                return CM_EMALFORMED;
            }
            p = skip_ws(p);
        }
    }
    if (*skip_ws(p) != '\0') {
        return CM_EMALFORMED;
    }
    *ret_n = n;
    return 0;
}

static int ports_env(struct env_list *l, const struct cm_app *app, const char *ports_json)
{
    int host_ports[MAX_TASK_PORTS];
    size_t n_host = 0;
    if (ports_json != NULL) {
        int rv = parse_ports(ports_json, host_ports, &n_host);
        if (rv != 0) {
            return rv;
        }
    }
    struct port_req reqs[MAX_TASK_PORTS];
    size_t n_req = 0;
    if (app->n_port_defs > 0) {
        for (size_t i = 0; i < app->n_port_defs && n_req < MAX_TASK_PORTS; i++) {
            reqs[n_req++] =
                (struct port_req){app->port_defs[i].port, app->port_defs[i].name, true};
        }
    } else {
        for (size_t i = 0; i < app->container.n_port_mappings && n_req < MAX_TASK_PORTS;
             i++) {
            const struct cm_app_port_mapping *m = &app->container.port_mappings[i];
            reqs[n_req++] =
                (struct port_req){m->container_port, m->name, m->host_port >= 0};
        }
    }
    /* Host ports go, in order, to the requests that have one; extra host ports
     * (no request) still count as PORTn. effective[i] < 0: none. */
    int effective[MAX_TASK_PORTS];
    size_t n = 0, next_host = 0;
    for (size_t i = 0; i < n_req; i++) {
        effective[n++] =
            reqs[i].has_host && next_host < n_host ? host_ports[next_host++] : -1;
    }
    while (next_host < n_host && n < MAX_TASK_PORTS) {
        effective[n++] = host_ports[next_host++];
    }
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        any |= effective[i] >= 0;
    }
    if (!any && n_req == 0) {
        return 0; /* Marathon: no ports, no PORT variables at all */
    }
    char var[32];
    struct cm_buf all = {0};
    int first = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t req = i < n_req ? reqs[i].port : 0;
        const char *name = i < n_req ? reqs[i].name : NULL;
        int eff = effective[i];
        snprintf(var, sizeof(var), "PORT%zu", i);
        if (eff >= 0) {
            env_setf(l, var, "%d", eff);
        } else if (req != 0) {
            env_setf(l, var, "%d", (int)req); /* container port without a host port */
        }
        if (req != 0) {
            snprintf(var, sizeof(var), "PORT_%d", (int)req);
            env_setf(l, var, "%d", eff >= 0 ? eff : (int)req);
        } else if (eff >= 0) {
            snprintf(var, sizeof(var), "PORT_%d", eff);
            env_setf(l, var, "%d", eff);
        }
        if (name != NULL && (eff >= 0 || req != 0)) {
            set_port_name(l, name, eff >= 0 ? eff : (int)req);
        }
        if (eff >= 0) {
            if (first < 0) {
                first = eff;
            }
            if (cm_buf_printf(&all, all.len ? ",%d" : "%d", eff) != 0) {
                l->err = CM_ENOMEM;
            }
        }
    }
    if (first >= 0) {
        env_setf(l, "PORT", "%d", first);
    }
    env_set(l, "PORTS", all.data ? all.data : "");
    cm_buf_done(&all);
    return 0;
}

int cm_agent_env_build(const struct cm_app *app, const struct cm_agent_env_task *t,
                       char ***ret_envp)
{
    cm_state_json_init();
    struct env_list l = {0};
    context_env(&l, app, t);
    int rv = ports_env(&l, app, t->ports_json);
    if (rv != 0) {
        env_done(&l);
        return rv;
    }
    env_set(&l, "HOST", t->host ? t->host : "localhost");
    for (size_t i = 0; i < app->n_env; i++) {
        if (app->env[i].value != NULL) {
            env_set(&l, app->env[i].name, app->env[i].value);
        }
    }
    if (l.err != 0) {
        rv = l.err;
        env_done(&l);
        return rv;
    }
    /* One block: the pointer array, then the "K=V" strings. */
    size_t bytes = (l.n + 1) * sizeof(char *);
    for (size_t i = 0; i < l.n; i++) {
        bytes += strlen(l.v[i].name) + strlen(l.v[i].value) + 2;
    }
    char **envp = cm_malloc(bytes);
    if (envp == NULL) {
        env_done(&l);
        return CM_ENOMEM;
    }
    char *p = (char *)(envp + l.n + 1);
    for (size_t i = 0; i < l.n; i++) {
        envp[i] = p;
        size_t nl = strlen(l.v[i].name), vl = strlen(l.v[i].value);
        memcpy(p, l.v[i].name, nl);
        p[nl] = '=';
        memcpy(p + nl + 1, l.v[i].value, vl + 1);
        p += nl + vl + 2;
    }
    envp[l.n] = NULL;
    env_done(&l);
    *ret_envp = envp;
    return 0;
}
