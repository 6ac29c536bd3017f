/* Fuzz the replicated state's commands (lib/state/db.c): validation and the
 * deterministic apply, node and task state changes included. Input: commands,
 * one JSON text per line, applied in order to a fresh in-memory state.db that
 * holds two nodes, an app and tasks in several states. Each goes through
 * cm_state_validate, then cm_state_apply (which must skip an invalid command and
 * never fail on any input: its errors are storage failures only). A refused
 * command names why; afterwards every task row holds a known state. */
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "state/db.h"

static const char *const seed_cmds[] = {
    "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n1\",\"address\":\"10.0.0.1\","
    "\"attrs\":{\"rack\":\"a\"},\"resources\":{\"cpus\":4,\"mem\":4096}}}",
    "{\"type\":\"node.up\",\"at\":1,\"node\":{\"id\":\"n2\",\"address\":\"10.0.0.2\","
    "\"attrs\":{},\"resources\":{\"cpus\":4}}}",
    "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":\"/a\",\"cmd\":\"true\","
    "\"instances\":3}}",
    "{\"type\":\"task.assign\",\"at\":2,\"tasks\":[{\"id\":\"a.1\",\"app\":\"/a\","
    "\"version\":\"v1\",\"node\":\"n1\",\"host\":\"h\",\"ports\":[]},{\"id\":\"a.2\","
    "\"app\":\"/a\",\"version\":\"v1\",\"node\":\"n2\",\"host\":\"h\",\"ports\":[1]},"
    "{\"id\":\"a.3\",\"app\":\"/a\",\"version\":\"v1\",\"node\":\"n2\",\"host\":\"h\","
    "\"ports\":[]}]}",
    "{\"type\":\"task.status\",\"at\":3,\"id\":\"a.1\",\"state\":\"running\"}",
    "{\"type\":\"task.kill\",\"at\":4,\"ids\":[\"a.3\"]}",
    "{\"type\":\"node.state\",\"at\":5,\"id\":\"n2\",\"state\":\"unreachable\"}",
};

static int check_row(void *data, const struct cm_task_row *row)
{
    (void)data;
    if ((unsigned)row->state >= CM__TASK_STATE_COUNT || row->id == NULL ||
        row->node == NULL) {
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_state *s = NULL;
    struct cm_errbuf eb = {0};
    if (cm_state_open(":memory:", &s, &eb) != 0) {
        return 0;
    }
    uint64_t index = 0;
    for (size_t i = 0; i < CM_ARRAY_SIZE(seed_cmds); i++) {
        if (cm_state_apply(s, ++index, seed_cmds[i], strlen(seed_cmds[i]), &eb) != 0) {
            abort();
        }
    }
    const char *p = (const char *)data;
    const char *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        struct cm_errbuf vb = {0};
        int rv = cm_state_validate(s, p, len, &vb);
        if (rv != 0 &&
            (vb.msg[0] == '\0' || memchr(vb.msg, '\0', sizeof(vb.msg)) == NULL)) {
            abort(); /* a refusal always says why */
        }
        if (rv != 0 && rv != CM_EVALIDATION && rv != CM_ETOOBIG && rv != CM_ENOMEM) {
            abort();
        }
        rv = cm_state_apply(s, ++index, p, len, &eb);
        if (rv != 0 && rv != CM_ENOMEM) {
            abort(); /* apply never fails but for storage */
        }
        p += len + 1;
    }
    if (cm_state_applied_index(s) != index ||
        cm_state_tasks(s, NULL, NULL, check_row, NULL) != 0) {
        abort();
    }
    cm_state_close(s);
    return 0;
}
