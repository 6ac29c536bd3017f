/* App -> JSON: Marathon's GET shape (modern field names only, every default
 * explicit) and the canonical compact form. Both come from one writer that emits
 * fields in a fixed order; maps are already sorted in the struct, so equal apps
 * give equal bytes. Every field written here is read back by app.c to the same
 * value, which the round-trip tests and the fuzz target check. */
#include <string.h>

#include "app_int.h"

static void w_labels(struct app_jw *w, const char *key, const struct cm_app_labels *l)
{
    app__jw_key(w, key);
    app__jw_obj_open(w);
    for (size_t i = 0; i < l->n; i++) {
        app__jw_key(w, l->v[i].key);
        app__jw_str(w, l->v[i].value);
    }
    app__jw_obj_close(w);
}

static void w_str_arr(struct app_jw *w, const char *key, char *const *v, size_t n)
{
    app__jw_key(w, key);
    app__jw_arr_open(w);
    for (size_t i = 0; i < n; i++) {
        app__jw_str(w, v[i]);
    }
    app__jw_arr_close(w);
}

static void w_kstr(struct app_jw *w, const char *key, const char *s)
{
    app__jw_key(w, key);
    app__jw_str(w, s);
}

static void w_kint(struct app_jw *w, const char *key, int64_t v)
{
    app__jw_key(w, key);
    app__jw_int(w, v);
}

static void w_knum(struct app_jw *w, const char *key, double v)
{
    app__jw_key(w, key);
    app__jw_num(w, v);
}

static void w_kbool(struct app_jw *w, const char *key, bool v)
{
    app__jw_key(w, key);
    app__jw_bool(w, v);
}

static void w_port_mapping(struct app_jw *w, const struct cm_app_port_mapping *pm)
{
    app__jw_obj_open(w);
    w_kint(w, "containerPort", pm->container_port);
    if (pm->host_port >= 0) {
        w_kint(w, "hostPort", pm->host_port);
    }
    w_kint(w, "servicePort", pm->service_port);
    w_kstr(w, "protocol", cm_app_proto_name(pm->proto));
    if (pm->name != NULL) {
        w_kstr(w, "name", pm->name);
    }
    w_labels(w, "labels", &pm->labels);
    if (pm->n_network_names > 0) {
        w_str_arr(w, "networkNames", pm->network_names, pm->n_network_names);
    }
    app__jw_obj_close(w);
}

static void w_volume(struct app_jw *w, const struct cm_app_volume *v)
{
    app__jw_obj_open(w);
    w_kstr(w, "containerPath", v->container_path);
    switch (v->kind) {
    case CM_APP_VOLUME_HOST:
        w_kstr(w, "hostPath", v->host_path);
        w_kstr(w, "mode", v->read_only ? "RO" : "RW");
        break;
    case CM_APP_VOLUME_PERSISTENT:
        w_kstr(w, "mode", v->read_only ? "RO" : "RW");
        app__jw_key(w, "persistent");
        app__jw_obj_open(w);
        w_kstr(w, "type", v->persistent_type);
        w_kint(w, "size", v->size);
        if (v->max_size != 0) {
            w_kint(w, "maxSize", v->max_size);
        }
        if (v->profile_name != NULL) {
            w_kstr(w, "profileName", v->profile_name);
        }
        app__jw_obj_close(w);
        break;
    case CM_APP_VOLUME_EXTERNAL:
        w_kstr(w, "mode", v->read_only ? "RO" : "RW");
        app__jw_key(w, "external");
        app__jw_obj_open(w);
        w_kstr(w, "name", v->ext_name);
        w_kstr(w, "provider", v->ext_provider);
        w_labels(w, "options", &v->ext_options);
        if (v->size != 0) {
            w_kint(w, "size", v->size);
        }
        w_kbool(w, "shared", v->ext_shared);
        app__jw_obj_close(w);
        break;
    case CM_APP_VOLUME_SECRET:
        w_kstr(w, "secret", v->secret);
        break;
    }
    app__jw_obj_close(w);
}

static void w_container(struct app_jw *w, const struct cm_app *app)
{
    const struct cm_app_container *ct = &app->container;
    if (ct->type == CM_APP_CONTAINER_NONE) {
        return;
    }
    app__jw_key(w, "container");
    app__jw_obj_open(w);
    w_kstr(w, "type", ct->type == CM_APP_CONTAINER_MESOS ? "MESOS" : "DOCKER");
    if (ct->has_docker) {
        app__jw_key(w, "docker");
        app__jw_obj_open(w);
        if (ct->image != NULL) {
            w_kstr(w, "image", ct->image);
        }
        w_kbool(w, "forcePullImage", ct->force_pull_image);
        w_kbool(w, "privileged", ct->privileged);
        app__jw_key(w, "parameters");
        app__jw_arr_open(w);
        for (size_t i = 0; i < ct->n_params; i++) {
            app__jw_obj_open(w);
            w_kstr(w, "key", ct->params[i].key);
            w_kstr(w, "value", ct->params[i].value);
            app__jw_obj_close(w);
        }
        app__jw_arr_close(w);
        if (ct->pull_config_secret != NULL) {
            app__jw_key(w, "pullConfig");
            app__jw_obj_open(w);
            w_kstr(w, "secret", ct->pull_config_secret);
            app__jw_obj_close(w);
        }
        app__jw_obj_close(w);
    }
    /* Host networking has no port mappings; writing none keeps the body valid. */
    if (app->networks[0].mode != CM_APP_NET_HOST) {
        app__jw_key(w, "portMappings");
        app__jw_arr_open(w);
        for (size_t i = 0; i < ct->n_port_mappings; i++) {
            w_port_mapping(w, &ct->port_mappings[i]);
        }
        app__jw_arr_close(w);
    }
    app__jw_key(w, "volumes");
    app__jw_arr_open(w);
    for (size_t i = 0; i < ct->n_volumes; i++) {
        w_volume(w, &ct->volumes[i]);
    }
    app__jw_arr_close(w);
    app__jw_obj_close(w);
}

static bool hc_http(enum cm_app_hc_proto p)
{
    return p == CM_APP_HC_HTTP || p == CM_APP_HC_HTTPS || p == CM_APP_HC_MESOS_HTTP ||
           p == CM_APP_HC_MESOS_HTTPS;
}

static void w_health_check(struct app_jw *w, const struct cm_app_health_check *hc)
{
    app__jw_obj_open(w);
    w_kint(w, "gracePeriodSeconds", hc->grace_period_s);
    w_kint(w, "intervalSeconds", hc->interval_s);
    w_kint(w, "maxConsecutiveFailures", hc->max_consecutive_failures);
    w_kint(w, "timeoutSeconds", hc->timeout_s);
    w_kint(w, "delaySeconds", hc->delay_s);
    w_kstr(w, "protocol", cm_app_hc_proto_name(hc->proto));
    if (hc->port_index >= 0) {
        w_kint(w, "portIndex", hc->port_index);
    }
    if (hc->port >= 0) {
        w_kint(w, "port", hc->port);
    }
    if (hc->port_name != NULL) {
        w_kstr(w, "portName", hc->port_name);
    }
    if (hc_http(hc->proto)) {
        w_kstr(w, "path", hc->path);
        w_kbool(w, "ignoreHttp1xx", hc->ignore_http1xx);
    }
    if (hc->proto != CM_APP_HC_COMMAND) {
        w_kstr(w, "ipProtocol", hc->ipv6 ? "IPv6" : "IPv4");
    }
    if (hc->command != NULL) {
        app__jw_key(w, "command");
        app__jw_obj_open(w);
        w_kstr(w, "value", hc->command);
        app__jw_obj_close(w);
    }
    app__jw_obj_close(w);
}

static void w_readiness(struct app_jw *w, const struct cm_app_readiness_check *rc)
{
    app__jw_obj_open(w);
    w_kstr(w, "name", rc->name);
    w_kstr(w, "protocol", rc->https ? "HTTPS" : "HTTP");
    w_kstr(w, "path", rc->path);
    w_kstr(w, "portName", rc->port_name);
    w_kint(w, "intervalSeconds", rc->interval_s);
    w_kint(w, "timeoutSeconds", rc->timeout_s);
    app__jw_key(w, "httpStatusCodesForReady");
    app__jw_arr_open(w);
    for (size_t i = 0; i < rc->n_ready_codes; i++) {
        app__jw_int(w, rc->ready_codes[i]);
    }
    app__jw_arr_close(w);
    w_kbool(w, "preserveLastResponse", rc->preserve_last_response);
    app__jw_obj_close(w);
}

static void w_check(struct app_jw *w, const struct cm_app_check *ck)
{
    if (ck->kind == CM_APP_CHECK_NONE) {
        return;
    }
    app__jw_key(w, "check");
    app__jw_obj_open(w);
    if (ck->kind == CM_APP_CHECK_EXEC) {
        app__jw_key(w, "exec");
        app__jw_obj_open(w);
        app__jw_key(w, "command");
        app__jw_obj_open(w);
        w_kstr(w, "shell", ck->command);
        app__jw_obj_close(w);
        app__jw_obj_close(w);
    } else {
        app__jw_key(w, ck->kind == CM_APP_CHECK_HTTP ? "http" : "tcp");
        app__jw_obj_open(w);
        if (ck->port_index >= 0) {
            w_kint(w, "portIndex", ck->port_index);
        }
        if (ck->port >= 0) {
            w_kint(w, "port", ck->port);
        }
        if (ck->kind == CM_APP_CHECK_HTTP) {
            w_kstr(w, "path", ck->path);
            w_kstr(w, "scheme", ck->https ? "HTTPS" : "HTTP");
        }
        app__jw_obj_close(w);
    }
    w_kint(w, "intervalSeconds", ck->interval_s);
    w_kint(w, "timeoutSeconds", ck->timeout_s);
    w_kint(w, "delaySeconds", ck->delay_s);
    app__jw_obj_close(w);
}

static void w_limit(struct app_jw *w, const char *key,
                    const struct cm_app_resource_limit *l)
{
    if (!l->set) {
        return;
    }
    app__jw_key(w, key);
    if (l->unlimited) {
        app__jw_str(w, "unlimited");
    } else {
        app__jw_num(w, l->value);
    }
}

int app__write(const struct cm_app *app, const struct cm_app_out_opts *opts,
               bool canonical, struct cm_buf *out)
{
    struct app_jw w;
    app__jw_init(&w, out, !canonical && opts != NULL && opts->pretty);
    app__jw_obj_open(&w);
    w_kstr(&w, "id", app->id);
    if (app->n_accepted_roles > 0) {
        w_str_arr(&w, "acceptedResourceRoles", app->accepted_roles,
                  app->n_accepted_roles);
    }
    if (app->n_args > 0) {
        w_str_arr(&w, "args", app->args, app->n_args);
    }
    w_knum(&w, "backoffFactor", app->backoff_factor);
    w_kint(&w, "backoffSeconds", app->backoff_s);
    w_check(&w, &app->check);
    if (app->cmd != NULL) {
        w_kstr(&w, "cmd", app->cmd);
    }
    app__jw_key(&w, "constraints");
    app__jw_arr_open(&w);
    for (size_t i = 0; i < app->n_constraints; i++) {
        const struct cm_app_constraint *c = &app->constraints[i];
        app__jw_arr_open(&w);
        app__jw_str(&w, c->field);
        app__jw_str(&w, cm_app_constraint_op_name(c->op));
        if (c->value != NULL) {
            app__jw_str(&w, c->value);
        }
        app__jw_arr_close(&w);
    }
    app__jw_arr_close(&w);
    w_container(&w, app);
    w_knum(&w, "cpus", app->cpus);
    w_str_arr(&w, "dependencies", app->dependencies, app->n_dependencies);
    w_knum(&w, "disk", app->disk);
    app__jw_key(&w, "env");
    app__jw_obj_open(&w);
    for (size_t i = 0; i < app->n_env; i++) {
        app__jw_key(&w, app->env[i].name);
        if (app->env[i].secret != NULL) {
            app__jw_obj_open(&w);
            w_kstr(&w, "secret", app->env[i].secret);
            app__jw_obj_close(&w);
        } else {
            app__jw_str(&w, app->env[i].value);
        }
    }
    app__jw_obj_close(&w);
    w_kstr(&w, "executor", app->executor);
    app__jw_key(&w, "fetch");
    app__jw_arr_open(&w);
    for (size_t i = 0; i < app->n_fetch; i++) {
        const struct cm_app_fetch *f = &app->fetch[i];
        app__jw_obj_open(&w);
        w_kstr(&w, "uri", f->uri);
        w_kbool(&w, "extract", f->extract);
        w_kbool(&w, "executable", f->executable);
        w_kbool(&w, "cache", f->cache);
        if (f->dest_path != NULL) {
            w_kstr(&w, "destPath", f->dest_path);
        }
        app__jw_obj_close(&w);
    }
    app__jw_arr_close(&w);
    w_kint(&w, "gpus", app->gpus);
    app__jw_key(&w, "healthChecks");
    app__jw_arr_open(&w);
    for (size_t i = 0; i < app->n_health_checks; i++) {
        w_health_check(&w, &app->health_checks[i]);
    }
    app__jw_arr_close(&w);
    w_kint(&w, "instances", app->instances);
    w_kstr(&w, "killSelection",
           app->kill_selection == CM_APP_KILL_OLDEST_FIRST ? "OLDEST_FIRST"
                                                           : "YOUNGEST_FIRST");
    w_labels(&w, "labels", &app->labels);
    w_kint(&w, "maxLaunchDelaySeconds", app->max_launch_delay_s);
    w_knum(&w, "mem", app->mem);
    app__jw_key(&w, "networks");
    app__jw_arr_open(&w);
    for (size_t i = 0; i < app->n_networks; i++) {
        const struct cm_app_network *nw = &app->networks[i];
        app__jw_obj_open(&w);
        w_kstr(&w, "mode", cm_app_net_mode_name(nw->mode));
        if (nw->name != NULL) {
            w_kstr(&w, "name", nw->name);
        }
        if (nw->labels.n > 0) {
            w_labels(&w, "labels", &nw->labels);
        }
        app__jw_obj_close(&w);
    }
    app__jw_arr_close(&w);
    app__jw_key(&w, "portDefinitions");
    app__jw_arr_open(&w);
    for (size_t i = 0; i < app->n_port_defs; i++) {
        const struct cm_app_port_def *pd = &app->port_defs[i];
        app__jw_obj_open(&w);
        w_kint(&w, "port", pd->port);
        w_kstr(&w, "protocol", cm_app_proto_name(pd->proto));
        if (pd->name != NULL) {
            w_kstr(&w, "name", pd->name);
        }
        w_labels(&w, "labels", &pd->labels);
        app__jw_obj_close(&w);
    }
    app__jw_arr_close(&w);
    app__jw_key(&w, "readinessChecks");
    app__jw_arr_open(&w);
    for (size_t i = 0; i < app->n_readiness_checks; i++) {
        w_readiness(&w, &app->readiness_checks[i]);
    }
    app__jw_arr_close(&w);
    w_kbool(&w, "requirePorts", app->require_ports);
    if (app->has_residency) {
        app__jw_key(&w, "residency");
        app__jw_obj_open(&w);
        w_kint(&w, "relaunchEscalationTimeoutSeconds",
               app->relaunch_escalation_timeout_s);
        w_kstr(&w, "taskLostBehavior",
               app->task_lost_relaunch ? "RELAUNCH_AFTER_TIMEOUT" : "WAIT_FOREVER");
        app__jw_obj_close(&w);
    }
    if (app->limit_cpus.set || app->limit_mem.set) {
        app__jw_key(&w, "resourceLimits");
        app__jw_obj_open(&w);
        w_limit(&w, "cpus", &app->limit_cpus);
        w_limit(&w, "mem", &app->limit_mem);
        app__jw_obj_close(&w);
    }
    w_kstr(&w, "role", app->role);
    app__jw_key(&w, "secrets");
    app__jw_obj_open(&w);
    for (size_t i = 0; i < app->n_secrets; i++) {
        app__jw_key(&w, app->secrets[i].name);
        app__jw_obj_open(&w);
        w_kstr(&w, "source", app->secrets[i].source);
        app__jw_obj_close(&w);
    }
    app__jw_obj_close(&w);
    if (app->task_kill_grace_period_s >= 0) {
        w_kint(&w, "taskKillGracePeriodSeconds", app->task_kill_grace_period_s);
    }
    if (app->tty >= 0) {
        w_kbool(&w, "tty", app->tty == 1);
    }
    app__jw_key(&w, "unreachableStrategy");
    if (app->unreachable.disabled) {
        app__jw_str(&w, "disabled");
    } else {
        app__jw_obj_open(&w);
        w_kint(&w, "inactiveAfterSeconds", app->unreachable.inactive_after_s);
        w_kint(&w, "expungeAfterSeconds", app->unreachable.expunge_after_s);
        app__jw_obj_close(&w);
    }
    app__jw_key(&w, "upgradeStrategy");
    app__jw_obj_open(&w);
    w_knum(&w, "minimumHealthCapacity", app->min_health_capacity);
    w_knum(&w, "maximumOverCapacity", app->max_over_capacity);
    /* Our extensions appear only when set, so Marathon's apps keep their shape. */
    if (app->canaries > 0) {
        w_kint(&w, "canaries", app->canaries);
    }
    if (app->canary_promote_after_s > 0) {
        w_kint(&w, "canaryPromoteAfterSeconds", app->canary_promote_after_s);
    }
    if (app->auto_rollback) {
        w_kbool(&w, "autoRollback", true);
    }
    if (app->progress_deadline_s > 0) {
        w_kint(&w, "progressDeadlineSeconds", app->progress_deadline_s);
    }
    app__jw_obj_close(&w);
    if (app->user != NULL) {
        w_kstr(&w, "user", app->user);
    }
    if (!canonical && opts != NULL && opts->version != NULL) {
        w_kstr(&w, "version", opts->version);
        app__jw_key(&w, "versionInfo");
        app__jw_obj_open(&w);
        w_kstr(&w, "lastScalingAt",
               opts->last_scaling_at != NULL ? opts->last_scaling_at : opts->version);
        w_kstr(&w, "lastConfigChangeAt",
               opts->last_config_change_at != NULL ? opts->last_config_change_at
                                                   : opts->version);
        app__jw_obj_close(&w);
    }
    app__jw_obj_close(&w);
    return w.err;
}

int cm_app_to_json(const struct cm_app *app, const struct cm_app_out_opts *opts,
                   struct cm_buf *out)
{
    return app__write(app, opts, false, out);
}

int cm_app_canonical(const struct cm_app *app, struct cm_buf *out)
{
    return app__write(app, NULL, true, out);
}

bool cm_app_equal(const struct cm_app *a, const struct cm_app *b)
{
    struct cm_buf ba = {0}, bb = {0};
    bool eq = cm_app_canonical(a, &ba) == 0 && cm_app_canonical(b, &bb) == 0 &&
              ba.len == bb.len && memcmp(ba.data, bb.data, ba.len) == 0;
    cm_buf_done(&ba);
    cm_buf_done(&bb);
    return eq;
}
