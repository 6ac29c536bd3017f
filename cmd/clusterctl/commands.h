/* The subcommands of clusterctl: one file each, listed in main.c's table. */
#ifndef CLUSTERCTL_COMMANDS_H
#define CLUSTERCTL_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit codes shared by every verb (DESIGN.md §10). */
enum cmd_exit {
    CMD_EXIT_OK = 0,    /* success */
    CMD_EXIT_FAIL = 1,  /* the operation failed */
    CMD_EXIT_USAGE = 2, /* bad command line */
};

struct cmd {
    const char *name;
    const char *summary;
    /* argv[0] is the verb's name. Returns an enum cmd_exit. */
    int (*run)(int argc, char **argv);
    /* Hidden verbs (internal re-exec entry points) are not listed in --help. */
    int hidden;
};

int cmd_agent(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);

/* Verbs that talk to the agent's API (DESIGN.md §10), one file each. */
int cmd_run(int argc, char **argv);
int cmd_apps(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_scale(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_leader(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_members(int argc, char **argv);
int cmd_nodes(int argc, char **argv);
int cmd_drain(int argc, char **argv);
int cmd_undrain(int argc, char **argv);
int cmd_deployments(int argc, char **argv);
int cmd_promote(int argc, char **argv);
int cmd_rollback(int argc, char **argv);

/* ---- shared by the API verbs (cmd_client.c) */

struct cJSON;
struct cm_http_header;

/* A verb's own option: a flag (@arg_name NULL, sets *flag) or one with a value
 * (sets *value, borrowed from argv). */
struct cmd_opt {
    const char *long_name; /* "--detach" */
    char short_name;       /* 'f', or 0 */
    const char *arg_name;  /* "SECONDS", or NULL for a flag */
    const char *help;
    bool *flag;
    const char **value;
};

struct cmd_client {
    const char *usage; /* "run FILE [--detach] [--timeout SECONDS]" (set by the verb) */
    const char *about; /* a paragraph for --help (set by the verb) */
    const char *verb;
    char addr[256]; /* --addr, $CLUSTERCTL_ADDR or 127.0.0.1:7070 */
    bool json;      /* --json */
    const char *pos[4];
    size_t n_pos;
};

/* Parse --help, --addr, --json, @opts and [@min_pos, @max_pos] positional
 * arguments. Returns -1 when the verb goes on, else its exit code (help
 * printed: 0; usage error printed: 2). */
int cmd_client_parse(struct cmd_client *c, int argc, char **argv,
                     const struct cmd_opt *opts, size_t n_opts, size_t min_pos,
                     size_t max_pos);
/* One request: the HTTP status and *ret_body (free with cm_free), or -1 after
 * printing why the agent cannot be reached and what to do. */
int cmd_client_call(const struct cmd_client *c, const char *method, const char *path,
                    const char *body, char **ret_body);
/* Print an API error answer: its message, each field error, a hint. */
void cmd_client_api_error(const struct cmd_client *c, int status, const char *body);
void cmd_client_unreachable(const struct cmd_client *c, int code, const char *why);
/* A request whose answer must be @ok_status (200 also takes 201) with JSON:
 * *ret parsed (cJSON_Delete), *ret_text (may be NULL) the raw body. Returns an
 * exit code; errors are printed. */
int cmd_client_get_json(const struct cmd_client *c, const char *method, const char *path,
                        const char *body, int ok_status, char **ret_text,
                        struct cJSON **ret);
/* "<prefix><absolute app id><suffix>" for an app id as users type it.
 * Errors: CM_EINVAL (not an app id), CM_ETOOBIG. */
int cmd_client_app_path(const char *prefix, const char *id, const char *suffix, char *out,
                        size_t cap);
/* Percent-encode one path segment. */
void cmd_client_escape(const char *s, char *out, size_t cap);
/* A streaming GET (logs -f, events): each piece of a 200 answer goes to @on_data
 * as it arrives, until @on_data returns false (returns CMD_EXIT_OK) or the node
 * ends the stream (returns CMD_STREAM_ENDED). An unreachable node or an error
 * answer is printed and gives CMD_EXIT_FAIL. */
#define CMD_STREAM_ENDED 100
int cmd_client_stream(const struct cmd_client *c, const char *path,
                      const struct cm_http_header *headers, size_t nheaders,
                      bool (*on_data)(void *user, const char *data, size_t len),
                      void *user);

/* A text table: columns sized to their widest cell. */
struct cmd_table {
    const char *const *head;
    size_t ncols;
    char ***rows;
    size_t nrows;
};
int cmd_table_add(struct cmd_table *t, const char *const *cells);
void cmd_table_print(struct cmd_table *t, FILE *out);
void cmd_table_done(struct cmd_table *t);

const char *cmd_json_str(const struct cJSON *obj, const char *key);
double cmd_json_num(const struct cJSON *obj, const char *key, double dflt);
/* "TASK_RUNNING" -> "running" (static buffer). */
const char *cmd_task_state(const char *marathon);
/* A task's health from its healthCheckResults: "-" (no checks or no result
 * yet), "healthy", or "unhealthy" (with @cause: ": <the failing check's last
 * cause>"), the latter written into @buf. */
const char *cmd_task_health(const struct cJSON *task, bool cause, char *buf, size_t cap);

/* One line of a deployment's progress (GET /v1/deployments/ID): "step 1/2:
 * /web 2/3 new healthy, 1 old left". */
int cmd_deploy_progress(const struct cJSON *dep, char *line, size_t cap);

/* Print the top-level usage to @out. */
void cmd_usage(FILE *out);

/* The version string: "0.1.0 (git v0.1.0-3-gabcdef)". */
const char *cmd_version_string(void);

#endif
