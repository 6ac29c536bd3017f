/* lib/agent internals shared by agent.c and health.c. Not an API. */
#ifndef CM_AGENT_INT_H
#define CM_AGENT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/agent.h"

struct cJSON;
struct ev_loop;
struct iso_cgroup;

/* The health and readiness checks of one running task (health.c). */
struct agent_health;

/* What the checks need to know about their task. Strings copied. */
struct agent_health_task {
    const char *id;
    const char *version;
    const char *host;       /* the task row's host (the node's address) */
    const char *ports_json; /* the task row's host ports */
    const char *sandbox;    /* its working directory */
    int64_t started_at;     /* wall-clock ms; the grace periods run from it */
    int pidfd;              /* the task's init, for COMMAND checks (borrowed) */
    pid_t pid;              /* its host pid (its working directory is the sandbox) */
    struct iso_cgroup *cg;  /* its cgroup, for COMMAND checks (borrowed; may be NULL) */
};

struct agent_health_cbs {
    void *data;
    /* The verdict or readiness changed: report it. May not free the checks. */
    void (*changed)(void *data);
    /* A check reached its failure limit: kill the task, @reason ("health check
     * failed: HTTP 500 on /health") is the reason to report. May not free the
     * checks (agent__health_stop is fine). */
    void (*kill)(void *data, const char *reason);
    /* One trace line (may be NULL). */
    void (*trace)(void *data, const char *line);
};

/* Start checking @t with the checks of @app (ownership of @app transfers on
 * success). A task without health checks has no verdict; one without readiness
 * checks is ready at once. Errors: CM_ENOMEM. */
int agent__health_new(struct ev_loop *loop, struct cm_clock *clock, struct cm_app *app,
                      const struct agent_health_task *t,
                      const struct agent_health_cbs *cbs, struct agent_health **ret);
/* Stop every check (in flight ones are cancelled, command processes killed). No
 * callback runs afterwards. Safe from inside the callbacks. */
void agent__health_stop(struct agent_health *h);
/* Stop and free. Not from inside the callbacks. Accepts NULL. */
void agent__health_free(struct agent_health *h);

/* "healthy", "unhealthy", or NULL (no health checks, or no verdict yet). */
const char *agent__health_verdict(const struct agent_health *h);
/* Whether the task is ready (every readiness check passed once). */
bool agent__health_ready(const struct agent_health *h);
/* The per-check results as the `checks` object of task.status (state/db.h), or
 * NULL on OOM. The caller owns it (cJSON_Delete). */
struct cJSON *agent__health_checks_json(const struct agent_health *h);

#endif /* CM_AGENT_INT_H */
