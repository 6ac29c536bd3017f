/* Fuzz the event bus of state.db (lib/state db section, events): the input is a
 * sequence of commands, one per line; each one that validates is applied to a
 * replica recording events (seeded with an app, two tasks on two nodes and a
 * running deployment), and every event it records is checked: one line of JSON,
 * an object whose eventType is the type handed out, with a string timestamp.
 * Apply never fails on a command that validated. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"
#include "state/db.h"

static struct cm_state *st;
static uint64_t idx;
static char dir[] = "/tmp/events-fuzz-XXXXXX";

static void teardown(void)
{
    cm_state_close(st);
    static const char *const files[] = {"state.db", "state.db-wal", "state.db-shm"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(files); i++) {
        char path[64];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void must(int rv, const char *what, const struct cm_errbuf *eb)
{
    if (rv != 0) {
        fprintf(stderr, "%s: %s (%s)\n", what, cm_strerror(rv), eb->msg);
        abort();
    }
}

static void check_event(void *data, const struct cm_state_event *ev)
{
    (void)data;
    if (ev->len != strlen(ev->json) || memchr(ev->json, '\n', ev->len) != NULL) {
        fprintf(stderr, "event %s is not one line\n", ev->type);
        abort();
    }
    cJSON *j = cJSON_ParseWithLength(ev->json, ev->len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "eventType");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "timestamp");
    if (!cJSON_IsObject(j) || !cJSON_IsString(t) ||
        strcmp(t->valuestring, ev->type) != 0 || !cJSON_IsString(ts)) {
        fprintf(stderr, "bad event %s: %s\n", ev->type, ev->json);
        abort();
    }
    cJSON_Delete(j);
}

static void apply_text(const char *cmd, size_t len, bool seeded)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    int rv = cm_state_validate(st, cmd, len, &eb);
    if (rv != 0 && (seeded || (rv != CM_EVALIDATION && rv != CM_ETOOBIG))) {
        fprintf(stderr, "unexpected validation result %s (%s)\n", cm_strerror(rv),
                eb.msg);
        abort();
    }
    if (rv == 0) {
        must(cm_state_apply(st, ++idx, cmd, len, &eb), "apply", &eb);
        cm_state_take_events(st, check_event, NULL);
    }
}

static void setup(void)
{
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    atexit(teardown);
    char path[64];
    snprintf(path, sizeof(path), "%s/state.db", dir);
    struct cm_errbuf eb;
    must(cm_state_open(path, &st, &eb), "open", &eb);
    if (cm_state_events_record(st, true) != 0) {
        abort();
    }
    static const char *const seed[] = {
        "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":\"/web\",\"cmd\":"
        "\"sleep 1\",\"instances\":2,\"healthChecks\":[{\"protocol\":\"TCP\"}]}}",
        "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n1\",\"address\":\"10.0.0.1\","
        "\"attrs\":{},\"resources\":{}}}",
        "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n2\",\"address\":\"10.0.0.2\","
        "\"attrs\":{},\"resources\":{}}}",
        "{\"type\":\"task.assign\",\"at\":2,\"tasks\":[{\"id\":\"web.1\",\"app\":\"/"
        "web\","
        "\"version\":\"v1\",\"node\":\"n1\",\"host\":\"10.0.0.1\",\"ports\":[31000]},"
        "{\"id\":\"web.2\",\"app\":\"/web\",\"version\":\"v1\",\"node\":\"n2\","
        "\"host\":\"10.0.0.2\",\"ports\":[]}]}",
        "{\"type\":\"deploy.start\",\"at\":3,\"id\":\"d1\",\"version\":\"v2\",\"apps\":"
        "[\"/web\"],\"plan\":{\"steps\":[{\"actions\":[{\"action\":"
        "\"RestartApplication\",\"app\":\"/web\",\"version\":\"v2\"}]}]},\"changes\":["
        "{\"type\":\"app.put\",\"version\":\"v2\",\"app\":{\"id\":\"/web\",\"cmd\":"
        "\"sleep 2\",\"instances\":3}}]}",
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(seed); i++) {
        apply_text(seed[i], strlen(seed[i]), true);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (st == NULL) {
        setup();
    }
    const char *p = (const char *)data;
    const char *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > 0) {
            apply_text(p, len, false);
        }
        p += len + 1;
    }
    return 0;
}
