/* lib/state events: which Marathon events each applied command records, with
 * their exact JSON; the bounded ring; determinism; allocation failures. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <unistd.h>

#include "state/db.h"
#include "state/state.h"
#include "test.h"

struct fixture {
    char dir[64];
    char path[96];
    struct cm_state *s;
};

static void fx_open(struct fixture *f, bool record)
{
    /* tmpfs when there is one: the allocation walk opens hundreds of databases. */
    snprintf(f->dir, sizeof(f->dir), "%s/events-state-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_open(f->path, &f->s, &eb));
    if (record) {
        ASSERT_OK(cm_state_events_record(f->s, true));
    }
}

static void fx_close(struct fixture *f)
{
    cm_state_close(f->s);
    f->s = NULL;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    ASSERT_INT_EQ(system(cmd), 0);
}

static int apply(struct fixture *f, uint64_t index, const char *cmd)
{
    struct cm_errbuf eb;
    int rv = cm_state_validate(f->s, cmd, strlen(cmd), &eb);
    if (rv != 0) {
        printf("# validate: %s\n", eb.msg);
        return rv;
    }
    return cm_state_apply(f->s, index, cmd, strlen(cmd), &eb);
}

/* Taken events, in order. */
struct taken {
    size_t n;
    char *type[64];
    char *json[64];
    uint64_t index[64];
    size_t more; /* beyond the 64 kept */
};

static void take_cb(void *data, const struct cm_state_event *ev)
{
    struct taken *t = data;
    ASSERT_INT_EQ(strlen(ev->json), ev->len);
    if (t->n == CM_ARRAY_SIZE(t->json)) {
        t->more++;
        return;
    }
    t->type[t->n] = strdup(ev->type);
    t->json[t->n] = strdup(ev->json);
    t->index[t->n] = ev->index;
    t->n++;
}

static void taken_done(struct taken *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->type[i]);
        free(t->json[i]);
    }
    memset(t, 0, sizeof(*t));
}

static void take(struct fixture *f, struct taken *t)
{
    memset(t, 0, sizeof(*t));
    size_t n = cm_state_take_events(f->s, take_cb, t);
    ASSERT_INT_EQ(n, t->n + t->more);
}

#define V1    "2026-11-22T14:00:00.000Z"
#define T(ms) "\"timestamp\":\"2026-11-22T14:00:" ms "Z\""

/* One step of the table: a command and the events it must record, exactly. */
struct step {
    const char *cmd;
    const char *want[6];
};

/* The web.1/web.2 lifecycle through every command that moves a task. */
static const struct step lifecycle[] = {
    {"{\"type\":\"task.assign\",\"at\":1795356001000,\"tasks\":["
     "{\"id\":\"web.1\",\"app\":\"/web\",\"version\":\"" V1 "\",\"node\":\"n1\","
     "\"host\":\"10.0.0.1\",\"ports\":[31000,31001]},"
     "{\"id\":\"web.2\",\"app\":\"/web\",\"version\":\"" V1 "\",\"node\":\"n2\","
     "\"host\":\"10.0.0.2\",\"ports\":[]}]}",
     {"{\"slaveId\":\"n1\",\"taskId\":\"web.1\",\"taskStatus\":\"TASK_STAGING\","
      "\"message\":\"\",\"appId\":\"/web\",\"host\":\"10.0.0.1\",\"ipAddresses\":[{"
      "\"ipAddress\":\"10.0.0.1\",\"protocol\":\"IPv4\"}],\"ports\":[31000,31001],"
      "\"version\":\"" V1 "\",\"eventType\":\"status_update_event\"," T("01.000") "}",
      "{\"instanceId\":\"web.1\",\"condition\":\"Staging\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n1\",\"host\":\"10.0.0.1\",\"runSpecVersion\":\"" V1
      "\"," T("01.000") ",\"eventType\":\"instance_changed_event\"}",
      "{\"slaveId\":\"n2\",\"taskId\":\"web.2\",\"taskStatus\":\"TASK_STAGING\","
      "\"message\":\"\",\"appId\":\"/web\",\"host\":\"10.0.0.2\",\"ipAddresses\":[{"
      "\"ipAddress\":\"10.0.0.2\",\"protocol\":\"IPv4\"}],\"ports\":[],"
      "\"version\":\"" V1 "\",\"eventType\":\"status_update_event\"," T("01.000") "}",
      "{\"instanceId\":\"web.2\",\"condition\":\"Staging\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n2\",\"host\":\"10.0.0.2\",\"runSpecVersion\":\"" V1
      "\"," T("01.000") ",\"eventType\":\"instance_changed_event\"}"}},
    /* Running and healthy at once: the state events, then the health events. */
    {"{\"type\":\"task.status\",\"at\":1795356002000,\"id\":\"web.1\","
     "\"state\":\"running\",\"health\":\"healthy\"}",
     {"{\"slaveId\":\"n1\",\"taskId\":\"web.1\",\"taskStatus\":\"TASK_RUNNING\","
      "\"message\":\"\",\"appId\":\"/web\",\"host\":\"10.0.0.1\",\"ipAddresses\":[{"
      "\"ipAddress\":\"10.0.0.1\",\"protocol\":\"IPv4\"}],\"ports\":[31000,31001],"
      "\"version\":\"" V1 "\",\"eventType\":\"status_update_event\"," T("02.000") "}",
      "{\"instanceId\":\"web.1\",\"condition\":\"Running\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n1\",\"host\":\"10.0.0.1\",\"runSpecVersion\":\"" V1
      "\"," T("02.000") ",\"eventType\":\"instance_changed_event\"}",
      "{\"appId\":\"/web\",\"instanceId\":\"web.1\",\"taskId\":\"web.1\",\"version\":"
      "\"" V1
      "\",\"alive\":true,\"eventType\":\"health_status_changed_event\"," T("02.000") "}",
      "{\"instanceId\":\"web.1\",\"runSpecId\":\"/web\",\"healthy\":true,"
      "\"runSpecVersion\":\"" V1 "\"," T("02.000") ",\"eventType\":"
                                                   "\"instance_health_changed_event\"}"}},
    /* The same report again changes nothing: no event. */
    {"{\"type\":\"task.status\",\"at\":1795356003000,\"id\":\"web.1\","
     "\"state\":\"running\",\"health\":\"healthy\"}",
     {NULL}},
    /* Only the health moved. */
    {"{\"type\":\"task.status\",\"at\":1795356004000,\"id\":\"web.1\","
     "\"state\":\"running\",\"health\":\"unhealthy\"}",
     {"{\"appId\":\"/web\",\"instanceId\":\"web.1\",\"taskId\":\"web.1\",\"version\":"
      "\"" V1
      "\",\"alive\":false,\"eventType\":\"health_status_changed_event\"," T("04.000") "}",
      "{\"instanceId\":\"web.1\",\"runSpecId\":\"/web\",\"healthy\":false,"
      "\"runSpecVersion\":\"" V1 "\"," T("04.000") ",\"eventType\":"
                                                   "\"instance_health_changed_event\"}"}},
    {"{\"type\":\"task.kill\",\"at\":1795356005000,\"ids\":[\"web.1\",\"nope\"]}",
     {"{\"slaveId\":\"n1\",\"taskId\":\"web.1\",\"taskStatus\":\"TASK_KILLING\","
      "\"message\":\"\",\"appId\":\"/web\",\"host\":\"10.0.0.1\",\"ipAddresses\":[{"
      "\"ipAddress\":\"10.0.0.1\",\"protocol\":\"IPv4\"}],\"ports\":[31000,31001],"
      "\"version\":\"" V1 "\",\"eventType\":\"status_update_event\"," T("05.000") "}",
      "{\"instanceId\":\"web.1\",\"condition\":\"Killing\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n1\",\"host\":\"10.0.0.1\",\"runSpecVersion\":\"" V1
      "\"," T("05.000") ",\"eventType\":\"instance_changed_event\"}"}},
    /* A report sent before the kill committed does not revive it: nothing. */
    {"{\"type\":\"task.status\",\"at\":1795356006000,\"id\":\"web.1\","
     "\"state\":\"running\"}",
     {NULL}},
    /* The reason becomes the message. */
    {"{\"type\":\"task.status\",\"at\":1795356007000,\"id\":\"web.1\","
     "\"state\":\"killed\",\"exit\":143,\"reason\":\"killed by the scheduler\"}",
     {"{\"slaveId\":\"n1\",\"taskId\":\"web.1\",\"taskStatus\":\"TASK_KILLED\","
      "\"message\":\"killed by the scheduler\",\"appId\":\"/web\",\"host\":\"10.0.0.1\","
      "\"ipAddresses\":[{\"ipAddress\":\"10.0.0.1\",\"protocol\":\"IPv4\"}],"
      "\"ports\":[31000,31001],\"version\":\"" V1 "\",\"eventType\":"
      "\"status_update_event\"," T("07.000") "}",
      "{\"instanceId\":\"web.1\",\"condition\":\"Killed\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n1\",\"host\":\"10.0.0.1\",\"runSpecVersion\":\"" V1
      "\"," T("07.000") ",\"eventType\":\"instance_changed_event\"}"}},
    /* Node n2 registers (nothing of it changes), stops heartbeating, comes back,
     * then is declared down. */
    {"{\"type\":\"node.up\",\"at\":1795356007500,\"node\":{\"id\":\"n2\","
     "\"address\":\"10.0.0.2\",\"attrs\":{},\"resources\":{}}}",
     {NULL}},
    {"{\"type\":\"node.state\",\"at\":1795356008000,\"id\":\"n2\","
     "\"state\":\"unreachable\"}",
     {"{\"slaveId\":\"n2\",\"taskId\":\"web.2\",\"taskStatus\":\"TASK_UNREACHABLE\","
      "\"message\":\"\",\"appId\":\"/web\",\"host\":\"10.0.0.2\",\"ipAddresses\":[{"
      "\"ipAddress\":\"10.0.0.2\",\"protocol\":\"IPv4\"}],\"ports\":[],"
      "\"version\":\"" V1 "\",\"eventType\":\"status_update_event\"," T("08.000") "}",
      "{\"instanceId\":\"web.2\",\"condition\":\"Unreachable\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n2\",\"host\":\"10.0.0.2\",\"runSpecVersion\":\"" V1
      "\"," T("08.000") ",\"eventType\":\"instance_changed_event\"}"}},
    {"{\"type\":\"node.up\",\"at\":1795356009000,\"node\":{\"id\":\"n2\","
     "\"address\":\"10.0.0.2\",\"attrs\":{},\"resources\":{}}}",
     {"{\"slaveId\":\"n2\",\"taskId\":\"web.2\",\"taskStatus\":\"TASK_RUNNING\","
      "\"message\":\"\",\"appId\":\"/web\",\"host\":\"10.0.0.2\",\"ipAddresses\":[{"
      "\"ipAddress\":\"10.0.0.2\",\"protocol\":\"IPv4\"}],\"ports\":[],"
      "\"version\":\"" V1 "\",\"eventType\":\"status_update_event\"," T("09.000") "}",
      "{\"instanceId\":\"web.2\",\"condition\":\"Running\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n2\",\"host\":\"10.0.0.2\",\"runSpecVersion\":\"" V1
      "\"," T("09.000") ",\"eventType\":\"instance_changed_event\"}"}},
    {"{\"type\":\"node.state\",\"at\":1795356010000,\"id\":\"n2\",\"state\":\"down\"}",
     {"{\"slaveId\":\"n2\",\"taskId\":\"web.2\",\"taskStatus\":\"TASK_LOST\","
      "\"message\":\"\",\"appId\":\"/web\",\"host\":\"10.0.0.2\",\"ipAddresses\":[{"
      "\"ipAddress\":\"10.0.0.2\",\"protocol\":\"IPv4\"}],\"ports\":[],"
      "\"version\":\"" V1 "\",\"eventType\":\"status_update_event\"," T("10.000") "}",
      "{\"instanceId\":\"web.2\",\"condition\":\"Gone\",\"runSpecId\":\"/web\","
      "\"agentId\":\"n2\",\"host\":\"10.0.0.2\",\"runSpecVersion\":\"" V1
      "\"," T("10.000") ",\"eventType\":\"instance_changed_event\"}"}},
    /* Expunging terminal tasks is housekeeping: no event. */
    {"{\"type\":\"task.expunge\",\"ids\":[\"web.1\"]}", {NULL}},
    /* Every task is over already: only the app's end. */
    {"{\"type\":\"app.delete\",\"at\":1795356011000,\"id\":\"/web\"}",
     {"{\"appId\":\"/web\",\"eventType\":\"app_terminated_event\"," T("11.000") "}"}},
};

static const char *web_put =
    "{\"type\":\"app.put\",\"at\":1795356000000,\"version\":\"" V1
    "\","
    "\"origin\":{\"clientIp\":\"192.0.2.7\",\"uri\":\"/v2/apps\"},"
    "\"app\":{\"id\":\"/web\",\"cmd\":\"sleep 1000\",\"instances\":2}}";

static void run_steps(struct fixture *f, uint64_t first, const struct step *steps,
                      size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t index = first + i;
        ASSERT_OK(apply(f, index, steps[i].cmd));
        struct taken t;
        take(f, &t);
        size_t want = 0;
        while (want < CM_ARRAY_SIZE(steps[i].want) && steps[i].want[want] != NULL) {
            want++;
        }
        if (t.n != want) {
            printf("# step %zu: %s\n", i, steps[i].cmd);
            for (size_t k = 0; k < t.n; k++) {
                printf("#   got %s\n", t.json[k]);
            }
        }
        ASSERT_INT_EQ(t.n, want);
        for (size_t k = 0; k < want; k++) {
            ASSERT_STR_EQ(t.json[k], steps[i].want[k]);
            ASSERT_UINT_EQ(t.index[k], index);
            /* The type handed out is the JSON's eventType. */
            char needle[96];
            snprintf(needle, sizeof(needle), "\"eventType\":\"%s\"", t.type[k]);
            ASSERT_NOT_NULL(strstr(t.json[k], needle));
        }
        taken_done(&t);
    }
}

TEST(events_table_command_to_events)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, web_put));
    struct taken t;
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 1);
    ASSERT_STR_EQ(t.type[0], "api_post_event");
    taken_done(&t);
    run_steps(&f, 2, lifecycle, CM_ARRAY_SIZE(lifecycle));
    ASSERT_UINT_EQ(cm_state_events_dropped(f.s), 0);
    fx_close(&f);
}

TEST(events_api_post_event_carries_the_request_and_the_full_app)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, web_put));
    struct taken t;
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 1);
    cJSON *j = cJSON_Parse(t.json[0]);
    ASSERT_NOT_NULL(j);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "eventType")->valuestring, "api_post_event");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "timestamp")->valuestring,
                  "2026-11-22T14:00:00.000Z");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "clientIp")->valuestring, "192.0.2.7");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "uri")->valuestring, "/v2/apps");
    cJSON *app = cJSON_GetObjectItem(j, "appDefinition");
    ASSERT_STR_EQ(cJSON_GetObjectItem(app, "id")->valuestring, "/web");
    ASSERT_STR_EQ(cJSON_GetObjectItem(app, "cmd")->valuestring, "sleep 1000");
    ASSERT_STR_EQ(cJSON_GetObjectItem(app, "version")->valuestring, V1);
    ASSERT_INT_EQ(cJSON_GetObjectItem(app, "instances")->valueint, 2);
    /* Marathon's GET shape: defaults explicit. */
    ASSERT_TRUE(cJSON_IsNumber(cJSON_GetObjectItem(app, "mem")));
    ASSERT_TRUE(cJSON_IsArray(cJSON_GetObjectItem(app, "healthChecks")));
    cJSON_Delete(j);
    taken_done(&t);

    /* Without a stamp (another proposer), the version is the timestamp and the
     * request fields are empty strings, still present. */
    ASSERT_OK(apply(&f, 2,
                    "{\"type\":\"app.put\",\"version\":\"2026-11-22T15:00:00.000Z\","
                    "\"app\":{\"id\":\"/web\",\"cmd\":\"sleep 1000\",\"instances\":3}}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 1);
    j = cJSON_Parse(t.json[0]);
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "timestamp")->valuestring,
                  "2026-11-22T15:00:00.000Z");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "clientIp")->valuestring, "");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "uri")->valuestring, "");
    cJSON_Delete(j);
    taken_done(&t);
    fx_close(&f);
}

static cJSON *event_json(struct taken *t, size_t i, const char *type)
{
    ASSERT_STR_EQ(t->type[i], type);
    cJSON *j = cJSON_Parse(t->json[i]);
    ASSERT_NOT_NULL(j);
    return j;
}

/* An app.put as the API writes it: the app in canonical form. */
static char *put_cmd(int64_t at, const char *version, const char *app_json)
{
    struct cm_app *app = NULL;
    struct cm_app_parse_opts o = {.features = CM_APP_FEAT_ALL};
    ASSERT_OK(cm_app_parse(app_json, strlen(app_json), &o, &app, NULL));
    struct cm_buf b = {0};
    ASSERT_OK(
        cm_buf_printf(&b, "{\"type\":\"app.put\",\"at\":%lld,\"version\":\"%s\",\"app\":",
                      (long long)at, version));
    ASSERT_OK(cm_app_canonical(app, &b));
    ASSERT_OK(cm_buf_puts(&b, "}"));
    cm_app_free(app);
    return cm_buf_steal(&b);
}

static int apply_put(struct fixture *f, uint64_t index, int64_t at, const char *version,
                     const char *app_json)
{
    char *cmd = put_cmd(at, version, app_json);
    int rv = apply(f, index, cmd);
    cm_free(&cmd);
    return rv;
}

TEST(events_health_checks_added_and_removed)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(
        apply_put(&f, 1, 1795356000000, V1,
                  "{\"id\":\"/web\",\"cmd\":\"sleep 1\",\"healthChecks\":["
                  "{\"protocol\":\"TCP\"},{\"protocol\":\"HTTP\",\"path\":\"/h\"}]}"));
    struct taken t;
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 3);
    for (size_t i = 0; i < 2; i++) {
        cJSON *j = event_json(&t, i, "add_health_check_event");
        ASSERT_STR_EQ(cJSON_GetObjectItem(j, "appId")->valuestring, "/web");
        ASSERT_STR_EQ(cJSON_GetObjectItem(j, "version")->valuestring, V1);
        cJSON *hc = cJSON_GetObjectItem(j, "healthCheck");
        ASSERT_STR_EQ(cJSON_GetObjectItem(hc, "protocol")->valuestring,
                      i == 0 ? "TCP" : "HTTP");
        /* Marathon's shape, defaults explicit. */
        ASSERT_NOT_NULL(cJSON_GetObjectItem(hc, "maxConsecutiveFailures"));
        ASSERT_INT_EQ(cJSON_GetObjectItem(hc, "maxConsecutiveFailures")->valueint, 3);
        cJSON_Delete(j);
    }
    ASSERT_STR_EQ(t.type[2], "api_post_event");
    taken_done(&t);

    /* Same checks (a scale): only the post. */
    ASSERT_OK(apply_put(
        &f, 2, 1795356001000, V1,
        "{\"id\":\"/web\",\"cmd\":\"sleep 1\",\"instances\":4,\"healthChecks\":["
        "{\"protocol\":\"TCP\"},{\"protocol\":\"HTTP\",\"path\":\"/h\"}]}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 1);
    ASSERT_STR_EQ(t.type[0], "api_post_event");
    taken_done(&t);

    /* The HTTP check changes its path: one removal, one addition. */
    ASSERT_OK(apply_put(
        &f, 3, 1795356002000, "2026-11-22T14:00:02.000Z",
        "{\"id\":\"/web\",\"cmd\":\"sleep 1\",\"healthChecks\":["
        "{\"protocol\":\"TCP\"},{\"protocol\":\"HTTP\",\"path\":\"/ready\"}]}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 3);
    ASSERT_STR_EQ(t.json[0],
                  "{\"appId\":\"/web\",\"eventType\":\"remove_health_check_event\","
                  "\"timestamp\":\"2026-11-22T14:00:02.000Z\"}");
    cJSON *j = event_json(&t, 1, "add_health_check_event");
    ASSERT_STR_EQ(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "healthCheck"), "path")->valuestring,
        "/ready");
    cJSON_Delete(j);
    ASSERT_STR_EQ(t.type[2], "api_post_event");
    taken_done(&t);

    /* No checks any more: one removal. */
    ASSERT_OK(apply_put(&f, 4, 1795356003000, "2026-11-22T14:00:03.000Z",
                        "{\"id\":\"/web\",\"cmd\":\"sleep 1\"}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 2);
    ASSERT_STR_EQ(t.type[0], "remove_health_check_event");
    ASSERT_STR_EQ(t.type[1], "api_post_event");
    taken_done(&t);
    fx_close(&f);
}

TEST(events_app_delete_kills_live_tasks_first)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, web_put));
    ASSERT_OK(apply(&f, 2, lifecycle[0].cmd)); /* web.1, web.2 staging */
    struct taken t;
    take(&f, &t);
    taken_done(&t);
    ASSERT_OK(
        apply(&f, 3, "{\"type\":\"app.delete\",\"at\":1795356003000,\"id\":\"/web\"}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 5);
    static const char *const types[] = {"status_update_event", "instance_changed_event",
                                        "status_update_event", "instance_changed_event",
                                        "app_terminated_event"};
    for (size_t i = 0; i < 5; i++) {
        ASSERT_STR_EQ(t.type[i], types[i]);
    }
    ASSERT_NOT_NULL(
        strstr(t.json[0], "\"taskId\":\"web.1\",\"taskStatus\":\"TASK_KILLING\""));
    ASSERT_NOT_NULL(
        strstr(t.json[2], "\"taskId\":\"web.2\",\"taskStatus\":\"TASK_KILLING\""));
    taken_done(&t);
    fx_close(&f);
}

TEST(events_off_by_default_and_off_forgets)
{
    struct fixture f;
    fx_open(&f, false);
    ASSERT_FALSE(cm_state_events_recording(f.s));
    ASSERT_OK(apply(&f, 1, web_put));
    struct taken t;
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 0);
    ASSERT_OK(cm_state_events_record(f.s, true));
    ASSERT_TRUE(cm_state_events_recording(f.s));
    ASSERT_OK(apply(&f, 2, lifecycle[0].cmd));
    ASSERT_OK(cm_state_events_record(f.s, false));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 0); /* turning it off forgot them */
    ASSERT_UINT_EQ(cm_state_events_dropped(f.s), 0);
    fx_close(&f);
}

/* 5000 tasks assigned at once give 10000 events; with the ring smaller than
 * that, the oldest are dropped, counted, and the newest kept in order. */
TEST(events_ring_drops_the_oldest_and_counts)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, web_put));
    struct taken t;
    take(&f, &t);
    taken_done(&t);
    const unsigned n_tasks = CM_STATE_EVENTS_MAX / 2 + 1000;
    struct cm_buf cmd = {0};
    ASSERT_OK(
        cm_buf_puts(&cmd, "{\"type\":\"task.assign\",\"at\":1795356001000,\"tasks\":["));
    for (unsigned i = 0; i < n_tasks; i++) {
        ASSERT_OK(
            cm_buf_printf(&cmd,
                          "%s{\"id\":\"web.%05u\",\"app\":\"/web\",\"version\":\"" V1
                          "\",\"node\":\"n1\",\"host\":\"h\",\"ports\":[]}",
                          i ? "," : "", i));
    }
    ASSERT_OK(cm_buf_puts(&cmd, "]}"));
    ASSERT_OK(apply(&f, 2, cmd.data));
    cm_buf_done(&cmd);
    take(&f, &t);
    ASSERT_INT_EQ(t.n + t.more, CM_STATE_EVENTS_MAX);
    ASSERT_UINT_EQ(cm_state_events_dropped(f.s), 2 * n_tasks - CM_STATE_EVENTS_MAX);
    /* The first kept is the status update of task 1000 (2000 events dropped). */
    ASSERT_STR_EQ(t.type[0], "status_update_event");
    ASSERT_NOT_NULL(strstr(t.json[0], "\"taskId\":\"web.01000\""));
    taken_done(&t);
    /* Taken means gone. */
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 0);
    fx_close(&f);
}

/* Every node applies the same log: the same events, byte for byte. */
TEST(events_same_log_same_events_on_every_node)
{
    struct fixture a, b;
    fx_open(&a, true);
    fx_open(&b, true);
    struct fixture *nodes[] = {&a, &b};
    struct taken got[2];
    struct cm_buf all[2] = {{0}, {0}};
    for (size_t k = 0; k < 2; k++) {
        ASSERT_OK(apply(nodes[k], 1, web_put));
        for (size_t i = 0; i < CM_ARRAY_SIZE(lifecycle); i++) {
            ASSERT_OK(apply(nodes[k], 2 + i, lifecycle[i].cmd));
        }
        take(nodes[k], &got[k]);
        for (size_t i = 0; i < got[k].n; i++) {
            ASSERT_OK(cm_buf_printf(&all[k], "%llu %s\n",
                                    (unsigned long long)got[k].index[i], got[k].json[i]));
        }
    }
    ASSERT_INT_EQ(got[0].n, 22);
    ASSERT_INT_EQ(all[0].len, all[1].len);
    ASSERT_MEM_EQ(all[0].data, all[1].data, all[0].len);
    for (size_t k = 0; k < 2; k++) {
        taken_done(&got[k]);
        cm_buf_done(&all[k]);
    }
    fx_close(&a);
    fx_close(&b);
}

static int row_state(void *data, const struct cm_task_row *row)
{
    *(int *)data = (int)row->state;
    return 0;
}

/* Allocation failures lose events and count them; they never fail the apply,
 * and what is handed out is whole. (A failure while parsing the command itself
 * makes today's apply skip the command; the walk accounts for that by looking at
 * what the commands did.) */
TEST(events_allocation_failures_are_counted_never_half_sent)
{
    int points = 0;
    for (int i = 0;; i++) {
        struct fixture f;
        fx_open(&f, true);
        ASSERT_OK(apply(&f, 1, web_put));
        struct taken t;
        take(&f, &t);
        taken_done(&t);
        cm_alloc_fault_set(i, 1);
        struct cm_errbuf eb;
        int rv2 = cm_state_apply(f.s, 2, lifecycle[0].cmd, strlen(lifecycle[0].cmd), &eb);
        int rv3 = cm_state_apply(f.s, 3, lifecycle[1].cmd, strlen(lifecycle[1].cmd), &eb);
        bool fired = cm_alloc_fault_fired();
        cm_alloc_fault_reset();
        /* Out of memory parsing the command: apply fails (fatal to a node) and
         * the index is not applied. */
        ASSERT_TRUE(rv2 == 0 || rv2 == CM_ENOMEM);
        ASSERT_TRUE(rv3 == 0 || rv3 == CM_ENOMEM);
        int st = -1;
        (void)cm_state_task(f.s, "web.1", row_state, &st);
        bool assigned = st >= 0;
        bool running = st == CM_TASK_RUNNING;
        size_t want = (assigned ? 4u : 0u) + (running ? 4u : 0u);
        take(&f, &t);
        for (size_t k = 0; k < t.n; k++) {
            cJSON *j = cJSON_Parse(t.json[k]);
            ASSERT_NOT_NULL(j);
            ASSERT_STR_EQ(cJSON_GetObjectItem(j, "eventType")->valuestring, t.type[k]);
            cJSON_Delete(j);
        }
        uint64_t dropped = cm_state_events_dropped(f.s);
        ASSERT_INT_OP(t.n, <=, want);
        /* A loss is always visible (the count is a lower bound: a note that
         * could not be taken loses events of unknown number). */
        if (t.n < want) {
            ASSERT_INT_OP(dropped, >, 0);
        }
        if (fired && assigned && running) {
            ASSERT_INT_OP(dropped, >, 0); /* the fault hit the events */
        }
        size_t got = t.n;
        taken_done(&t);
        fx_close(&f);
        if (!fired) {
            ASSERT_INT_EQ(got, 8);
            break;
        }
        points++;
    }
    ASSERT_INT_OP(points, >, 20);
}

/* ------------------------------------------------------------------ deployments */

#define PLAN2                                                                      \
    "\"plan\":{\"steps\":[{\"actions\":[{\"action\":\"StartApplication\",\"app\":" \
    "\"/web\",\"version\":\"" V1                                                   \
    "\"}]},{\"actions\":[{\"action\":\"ScaleApplication\","                        \
    "\"app\":\"/web\",\"version\":\"" V1 "\"}]}]}"
#define STEP0  "{\"actions\":[{\"action\":\"StartApplication\",\"app\":\"/web\"}]}"
#define STEP1  "{\"actions\":[{\"action\":\"ScaleApplication\",\"app\":\"/web\"}]}"
#define PLAN_M "{\"id\":\"d1\",\"steps\":[" STEP0 "," STEP1 "],\"version\":\"" V1 "\"}"

static const char *dep_start =
    "{\"origin\":{\"clientIp\":\"192.0.2.7\",\"uri\":\"/v2/apps\"},"
    "\"type\":\"deploy.start\",\"at\":1795356000000,\"id\":\"d1\",\"version\":\"" V1
    "\","
    "\"apps\":[\"/web\"]," PLAN2 ",\"changes\":[{\"type\":\"app.put\",\"version\":\"" V1
    "\",\"app\":{\"id\":\"/web\",\"cmd\":\"sleep 1000\",\"instances\":2}}]}";

/* A deployment's life: the request and deployment_info at its start, a step's
 * success and the next deployment_info, the last step's success and
 * deployment_success; Marathon's plan shape (id, steps of actions, version). */
static const struct step deployment_ok[] = {
    {"{\"type\":\"deploy.step\",\"at\":1795356001000,\"id\":\"d1\",\"step\":1}",
     {"{\"plan\":" PLAN_M ",\"currentStep\":" STEP0 ",\"eventType\":"
      "\"deployment_step_success\",\"timestamp\":\"2026-11-22T14:00:01.000Z\"}",
      "{\"plan\":" PLAN_M ",\"currentStep\":" STEP1 ",\"eventType\":\"deployment_info\","
      "\"timestamp\":\"2026-11-22T14:00:01.000Z\"}"}},
    /* Promotion (canaries) is ours, not Marathon's: no event. */
    {"{\"type\":\"deploy.promote\",\"at\":1795356002000,\"id\":\"d1\"}", {NULL}},
    {"{\"type\":\"deploy.done\",\"at\":1795356003000,\"id\":\"d1\"}",
     {"{\"plan\":" PLAN_M ",\"currentStep\":" STEP1 ",\"eventType\":"
      "\"deployment_step_success\",\"timestamp\":\"2026-11-22T14:00:03.000Z\"}",
      "{\"id\":\"d1\",\"plan\":" PLAN_M ",\"eventType\":\"deployment_success\","
      "\"timestamp\":\"2026-11-22T14:00:03.000Z\"}"}},
    /* Over already: a late command moves nothing. */
    {"{\"type\":\"deploy.cancel\",\"at\":1795356004000,\"id\":\"d1\"}", {NULL}},
};

TEST(events_deployment_start_steps_success)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, dep_start));
    struct taken t;
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 2);
    cJSON *j = event_json(&t, 0, "api_post_event");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "clientIp")->valuestring, "192.0.2.7");
    ASSERT_STR_EQ(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "appDefinition"), "id")->valuestring,
        "/web");
    cJSON_Delete(j);
    ASSERT_STR_EQ(t.json[1], "{\"plan\":" PLAN_M ",\"currentStep\":" STEP0
                             ",\"eventType\":\"deployment_info\","
                             "\"timestamp\":\"2026-11-22T14:00:00.000Z\"}");
    taken_done(&t);
    run_steps(&f, 2, deployment_ok, CM_ARRAY_SIZE(deployment_ok));
    fx_close(&f);
}

TEST(events_deployment_failed_and_replaced)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, dep_start));
    struct taken t;
    take(&f, &t);
    taken_done(&t);
    ASSERT_OK(apply(&f, 2,
                    "{\"type\":\"deploy.failed\",\"at\":1795356001000,\"id\":\"d1\","
                    "\"reason\":\"tasks failed\"}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 2);
    ASSERT_STR_EQ(t.json[0], "{\"plan\":" PLAN_M ",\"currentStep\":" STEP0
                             ",\"eventType\":\"deployment_step_failure\","
                             "\"timestamp\":\"2026-11-22T14:00:01.000Z\"}");
    ASSERT_STR_EQ(t.json[1], "{\"id\":\"d1\",\"plan\":" PLAN_M
                             ",\"eventType\":\"deployment_failed\",\"timestamp\":"
                             "\"2026-11-22T14:00:01.000Z\",\"reason\":\"tasks failed\"}");
    taken_done(&t);

    /* d2 starts; d3 (same app, forced) replaces it: d2 fails, d3 starts. A
     * deploy.start from the controller (no origin) posts nothing. */
    ASSERT_OK(apply(&f, 3,
                    "{\"type\":\"deploy.start\",\"at\":1795356002000,\"id\":\"d2\","
                    "\"version\":\"v2\",\"apps\":[\"/web\"],\"plan\":{\"steps\":[]},"
                    "\"changes\":[]}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 1);
    ASSERT_STR_EQ(t.json[0],
                  "{\"plan\":{\"id\":\"d2\",\"steps\":[],\"version\":\"v2\"},"
                  "\"currentStep\":{\"actions\":[]},\"eventType\":"
                  "\"deployment_info\",\"timestamp\":\"2026-11-22T14:00:02.000Z\"}");
    taken_done(&t);
    ASSERT_OK(apply(&f, 4,
                    "{\"type\":\"deploy.start\",\"at\":1795356003000,\"id\":\"d3\","
                    "\"version\":\"v3\",\"apps\":[\"/web\"],\"plan\":{\"steps\":[]},"
                    "\"changes\":[{\"type\":\"app.put\",\"version\":\"v3\",\"app\":"
                    "{\"id\":\"/web\",\"cmd\":\"sleep 1000\",\"instances\":3}}]}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 2);
    ASSERT_STR_EQ(t.json[0],
                  "{\"id\":\"d2\",\"plan\":{\"id\":\"d2\",\"steps\":[],\"version\":"
                  "\"v2\"},\"eventType\":\"deployment_failed\",\"timestamp\":"
                  "\"2026-11-22T14:00:03.000Z\",\"reason\":\"replaced by d3\"}");
    ASSERT_STR_EQ(t.type[1], "deployment_info");
    ASSERT_NOT_NULL(strstr(t.json[1], "\"id\":\"d3\""));
    taken_done(&t);
    fx_close(&f);
}

/* Stopping an app is a deployment too: deployment_info, its tasks killing,
 * then app_terminated_event. */
TEST(events_deployment_stop_app)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, dep_start));
    ASSERT_OK(apply(&f, 2, lifecycle[0].cmd)); /* web.1, web.2 staging */
    struct taken t;
    take(&f, &t);
    taken_done(&t);
    ASSERT_OK(apply(&f, 3,
                    "{\"origin\":{\"clientIp\":\"192.0.2.7\",\"uri\":\"/v2/apps/web\"},"
                    "\"type\":\"deploy.start\",\"at\":1795356003000,\"id\":\"d9\","
                    "\"version\":\"v9\",\"apps\":[\"/web\"],\"plan\":{\"steps\":[{"
                    "\"actions\":[{\"action\":\"StopApplication\",\"app\":\"/web\"}]}]},"
                    "\"changes\":[{\"type\":\"app.delete\",\"at\":1795356003000,"
                    "\"id\":\"/web\"},{\"type\":\"task.kill\",\"at\":1795356003000,"
                    "\"ids\":[\"web.1\"]}]}"));
    take(&f, &t);
    static const char *const types[] = {
        "deployment_step_failure", /* d1, replaced */
        "deployment_failed",       /* */
        "deployment_info",         /* d9 */
        "status_update_event",     /* web.1 killing, once though noted twice */
        "instance_changed_event",  /* */
        "status_update_event",     /* web.2 killing */
        "instance_changed_event",  /* */
        "app_terminated_event",
    };
    ASSERT_INT_EQ(t.n, CM_ARRAY_SIZE(types));
    for (size_t i = 0; i < t.n; i++) {
        ASSERT_STR_EQ(t.type[i], types[i]);
    }
    ASSERT_NOT_NULL(strstr(t.json[2], "\"action\":\"StopApplication\",\"app\":\"/web\""));
    ASSERT_NOT_NULL(
        strstr(t.json[3], "\"taskId\":\"web.1\",\"taskStatus\":\"TASK_KILLING\""));
    ASSERT_NOT_NULL(
        strstr(t.json[5], "\"taskId\":\"web.2\",\"taskStatus\":\"TASK_KILLING\""));
    taken_done(&t);
    fx_close(&f);
}

/* A task its health checks condemned: Marathon's unhealthy_instance_kill_event
 * before the status update. */
TEST(events_unhealthy_kill)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, web_put));
    ASSERT_OK(apply(&f, 2, lifecycle[0].cmd));
    struct taken t;
    take(&f, &t);
    taken_done(&t);
    ASSERT_OK(
        apply(&f, 3,
              "{\"type\":\"task.status\",\"at\":1795356003000,\"id\":\"web.1\","
              "\"state\":\"failed\",\"reason\":\"health check failed: HTTP 500\"}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 3);
    ASSERT_STR_EQ(
        t.json[0],
        "{\"appId\":\"/web\",\"taskId\":\"web.1\",\"instanceId\":\"web.1\","
        "\"version\":\"" V1
        "\",\"reason\":\"health check failed: HTTP 500\","
        "\"host\":\"10.0.0.1\",\"slaveId\":\"n1\",\"eventType\":"
        "\"unhealthy_instance_kill_event\",\"timestamp\":\"2026-11-22T14:00:03.000Z\"}");
    ASSERT_STR_EQ(t.type[1], "status_update_event");
    ASSERT_NOT_NULL(strstr(t.json[1],
                           "\"taskStatus\":\"TASK_FAILED\",\"message\":"
                           "\"health check failed: HTTP 500\""));
    ASSERT_STR_EQ(t.type[2], "instance_changed_event");
    taken_done(&t);
    /* Another failure is not a health kill. */
    ASSERT_OK(apply(&f, 4,
                    "{\"type\":\"task.status\",\"at\":1795356004000,\"id\":\"web.2\","
                    "\"state\":\"failed\",\"reason\":\"Command exited with status 1\"}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 2);
    ASSERT_STR_EQ(t.type[0], "status_update_event");
    taken_done(&t);
    fx_close(&f);
}

/* A task turning unhealthy: failed_health_check_event for each failing check
 * (its definition from the app at the task's version), then the health events. */
TEST(events_failed_health_checks_named)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(
        apply_put(&f, 1, 1795356000000, V1,
                  "{\"id\":\"/web\",\"cmd\":\"sleep 1\",\"healthChecks\":["
                  "{\"protocol\":\"TCP\"},{\"protocol\":\"HTTP\",\"path\":\"/h\"}]}"));
    ASSERT_OK(apply(&f, 2, lifecycle[0].cmd));
    struct taken t;
    take(&f, &t);
    taken_done(&t);
    ASSERT_OK(
        apply(&f, 3,
              "{\"type\":\"task.status\",\"at\":1795356003000,\"id\":\"web.1\","
              "\"state\":\"running\",\"health\":\"healthy\",\"checks\":{\"health\":["
              "{\"alive\":true},{\"alive\":true}]}}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 4); /* running, healthy: no failed check */
    taken_done(&t);
    ASSERT_OK(
        apply(&f, 4,
              "{\"type\":\"task.status\",\"at\":1795356004000,\"id\":\"web.1\","
              "\"state\":\"running\",\"health\":\"unhealthy\",\"checks\":{\"health\":["
              "{\"alive\":true},{\"alive\":false,\"lastFailureCause\":\"HTTP 500\"}]}}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 3);
    cJSON *j = event_json(&t, 0, "failed_health_check_event");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "appId")->valuestring, "/web");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "taskId")->valuestring, "web.1");
    ASSERT_STR_EQ(cJSON_GetObjectItem(j, "timestamp")->valuestring,
                  "2026-11-22T14:00:04.000Z");
    cJSON *hc = cJSON_GetObjectItem(j, "healthCheck");
    ASSERT_STR_EQ(cJSON_GetObjectItem(hc, "protocol")->valuestring, "HTTP");
    ASSERT_STR_EQ(cJSON_GetObjectItem(hc, "path")->valuestring, "/h");
    cJSON_Delete(j);
    ASSERT_STR_EQ(t.type[1], "health_status_changed_event");
    ASSERT_STR_EQ(t.type[2], "instance_health_changed_event");
    taken_done(&t);
    /* Unhealthy without per-check results: only the health events. */
    ASSERT_OK(apply(&f, 5,
                    "{\"type\":\"task.status\",\"at\":1795356005000,\"id\":\"web.2\","
                    "\"state\":\"running\",\"health\":\"unhealthy\"}"));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 4);
    ASSERT_STR_EQ(t.type[2], "health_status_changed_event");
    taken_done(&t);
    ASSERT_UINT_EQ(cm_state_events_dropped(f.s), 0);
    fx_close(&f);
}

/* cm_state_task keeps its statement prepared (the event bus calls it for every
 * task a command touches): a call from inside its own callback, and calls after
 * a snapshot was restored, still work. */
struct nested {
    struct cm_state *s;
    int depth;
    int seen;
};

static int nested_cb(void *data, const struct cm_task_row *row)
{
    struct nested *n = data;
    n->seen++;
    if (n->depth++ == 0) {
        ASSERT_OK(cm_state_task(n->s, strcmp(row->id, "web.1") == 0 ? "web.2" : "web.1",
                                nested_cb, n));
    }
    return 0;
}

TEST(events_task_lookup_nested_and_after_restore)
{
    struct fixture f;
    fx_open(&f, true);
    ASSERT_OK(apply(&f, 1, web_put));
    ASSERT_OK(apply(&f, 2, lifecycle[0].cmd));
    struct nested n = {f.s, 0, 0};
    ASSERT_OK(cm_state_task(f.s, "web.1", nested_cb, &n));
    ASSERT_INT_EQ(n.seen, 2);
    ASSERT_ERR(cm_state_task(f.s, "nope", nested_cb, &n), CM_ENOTFOUND);
    char snap[128];
    snprintf(snap, sizeof(snap), "%s/snap.db", f.dir);
    struct cm_errbuf eb;
    ASSERT_OK(cm_state_snapshot(f.s, snap, &eb));
    ASSERT_OK(apply(&f, 3, "{\"type\":\"task.expunge\",\"ids\":[\"web.1\"]}"));
    ASSERT_OK(cm_state_restore(f.s, snap, &eb));
    n = (struct nested){f.s, 0, 0};
    ASSERT_OK(cm_state_task(f.s, "web.2", nested_cb, &n));
    ASSERT_INT_EQ(n.seen, 2);
    /* Events still flow after the restore. */
    struct taken t;
    take(&f, &t);
    taken_done(&t);
    ASSERT_OK(apply(&f, 4, lifecycle[1].cmd));
    take(&f, &t);
    ASSERT_INT_EQ(t.n, 4);
    taken_done(&t);
    fx_close(&f);
}
