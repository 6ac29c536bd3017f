/* clusterctl events [--type T,...] [--count N] [--json]: print the event stream
 * (GET /v2/events, Marathon's server-sent events) as it comes, one line each. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"
#include "net/http.h"

struct events {
    bool json;
    int64_t count; /* stop after this many events; 0: never */
    int64_t seen;
    bool nomem;
    struct cm_buf in; /* a partial frame */
};

/* The few fields that say what happened, by event type. */
static void summary(const char *type, const cJSON *d, FILE *out)
{
    const cJSON *plan = cJSON_GetObjectItemCaseSensitive(d, "plan");
    if (strcmp(type, "status_update_event") == 0) {
        fprintf(out, " %s %s %s on %s", cmd_json_str(d, "appId"),
                cmd_json_str(d, "taskId"), cmd_task_state(cmd_json_str(d, "taskStatus")),
                cmd_json_str(d, "host"));
        const char *msg = cmd_json_str(d, "message");
        if (msg != NULL && msg[0] != '\0') {
            fprintf(out, " (%s)", msg);
        }
    } else if (strcmp(type, "instance_changed_event") == 0) {
        fprintf(out, " %s %s %s", cmd_json_str(d, "runSpecId"),
                cmd_json_str(d, "instanceId"), cmd_json_str(d, "condition"));
    } else if (strcmp(type, "health_status_changed_event") == 0) {
        fprintf(out, " %s %s %s", cmd_json_str(d, "appId"), cmd_json_str(d, "instanceId"),
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "alive")) ? "healthy"
                                                                           : "unhealthy");
    } else if (strcmp(type, "api_post_event") == 0) {
        fprintf(out, " %s from %s (%s)",
                cmd_json_str(cJSON_GetObjectItemCaseSensitive(d, "appDefinition"), "id"),
                cmd_json_str(d, "clientIp"), cmd_json_str(d, "uri"));
    } else if (strncmp(type, "deployment_", 11) == 0) {
        fprintf(out, " %s", cmd_json_str(plan != NULL ? plan : d, "id"));
        const cJSON *a;
        cJSON_ArrayForEach(
            a, cJSON_GetObjectItemCaseSensitive(
                   cJSON_GetObjectItemCaseSensitive(d, "currentStep"), "actions"))
        {
            fprintf(out, " %s %s", cmd_json_str(a, "action"), cmd_json_str(a, "app"));
        }
        const char *reason = cmd_json_str(d, "reason");
        if (reason != NULL) {
            fprintf(out, " (%s)", reason);
        }
    } else if (strcmp(type, "event_stream_attached") == 0 ||
               strcmp(type, "event_stream_detached") == 0) {
        fprintf(out, " %s", cmd_json_str(d, "remoteAddress"));
    } else if (cmd_json_str(d, "appId") != NULL) {
        fprintf(out, " %s", cmd_json_str(d, "appId"));
    }
}

/* One "event: T\ndata: J" frame. Returns false once --count events are out. */
static bool print_frame(struct events *e, const char *frame)
{
    if (frame[0] == ':' || frame[0] == '\0') {
        return true; /* a heartbeat */
    }
    const char *nl = strchr(frame, '\n');
    if (strncmp(frame, "event: ", 7) != 0 || nl == NULL ||
        strncmp(nl + 1, "data: ", 6) != 0) {
        fprintf(stderr, "clusterctl events: not a server-sent event: %.80s\n", frame);
        return true;
    }
    const char *data = nl + 7;
    if (e->json) {
        printf("%s\n", data);
    } else {
        char type[64];
        snprintf(type, sizeof(type), "%.*s", (int)(nl - frame - 7), frame + 7);
        cJSON *d = cJSON_Parse(data);
        const char *ts = cmd_json_str(d, "timestamp");
        printf("%s %s", ts != NULL ? ts : "-", type);
        summary(type, d, stdout);
        printf("\n");
        cJSON_Delete(d);
    }
    fflush(stdout);
    e->seen++;
    return e->count == 0 || e->seen < e->count;
}

/* Split the stream into frames; false stops it (--count reached, or no memory). */
static bool on_data(void *user, const char *data, size_t len)
{
    struct events *e = user;
    if (cm_buf_append(&e->in, data, len) != 0) {
        e->nomem = true;
        return false;
    }
    char *p = e->in.data;
    char *end;
    while ((end = strstr(p, "\n\n")) != NULL) {
        *end = '\0';
        if (!print_frame(e, p)) {
            return false;
        }
        p = end + 2;
    }
    cm_buf_consume(&e->in, (size_t)(p - e->in.data));
    return true;
}

int cmd_events(int argc, char **argv)
{
    const char *types = NULL, *count = NULL;
    bool plain_json = false;
    const struct cmd_opt opts[] = {
        {"--type", 't', "T[,T...]", "only these event types (eventType names)", NULL,
         &types},
        {"--count", 0, "N", "exit after N events", NULL, &count},
        {"--raw", 0, NULL, "print each event's JSON as sent", &plain_json, NULL},
    };
    struct cmd_client c = {
        .usage = "events [--type T[,T...]] [--count N] [--raw] [--addr HOST:PORT]",
        .about =
            "Print the cluster's events as they happen (GET /v2/events, Marathon's\n"
            "event stream): task status changes, deployments, API posts, health.\n"
            "Any node serves it, from its own replica.",
    };
    int rv = cmd_client_parse(&c, argc, argv, opts, CM_ARRAY_SIZE(opts), 0, 0);
    if (rv >= 0) {
        return rv;
    }
    struct events e = {.json = plain_json || c.json};
    if (count != NULL && cm_parse_i64(count, 1, INT64_MAX / 2, &e.count) != 0) {
        fprintf(stderr, "clusterctl events: --count needs a positive number, not '%s'\n",
                count);
        return CMD_EXIT_USAGE;
    }
    char path[2048] = "/v2/events";
    if (types != NULL) {
        char list[1024];
        snprintf(list, sizeof(list), "%s", types);
        char *save = NULL;
        char sep = '?';
        for (char *t = strtok_r(list, ",", &save); t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            char esc[256];
            cmd_client_escape(t, esc, sizeof(esc));
            size_t n = strlen(path);
            snprintf(path + n, sizeof(path) - n, "%cevent_type=%s", sep, esc);
            sep = '&';
        }
    }
    static const struct cm_http_header accept[] = {{"Accept", "text/event-stream"}};
    rv = cmd_client_stream(&c, path, accept, 1, on_data, &e);
    cm_buf_done(&e.in);
    if (e.nomem) {
        fprintf(stderr, "clusterctl events: out of memory\n");
        return CMD_EXIT_FAIL;
    }
    if (rv != CMD_STREAM_ENDED) {
        return rv;
    }
    /* The agent ended the stream (it stopped, or dropped a reader too slow). */
    fprintf(stderr, "clusterctl events: the stream ended\n");
    return CMD_EXIT_FAIL;
}
