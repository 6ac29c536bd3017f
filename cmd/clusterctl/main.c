/* clusterctl: one binary, every verb. The table below is the whole command line. */
#include "commands.h"

#include <stdio.h>
#include <string.h>

#include "base/base.h"

static const struct cmd commands[] = {
    {"__init", "task init (internal)", cmd_init, 1},
    {"agent", "run the node daemon", cmd_agent, 0},
    {"help", "show help for clusterctl or one verb", cmd_help, 0},
    {"version", "print the version", cmd_version, 0},
    {"run", "create or update apps from a Marathon JSON file and wait for them", cmd_run,
     0},
    {"apps", "list the apps", cmd_apps, 0},
    {"ps", "list the tasks (of every app, or of one)", cmd_ps, 0},
    {"status", "show an app, its tasks and why instances wait", cmd_status, 0},
    {"scale", "set the instances of an app", cmd_scale, 0},
    {"restart", "restart every task of an app", cmd_restart, 0},
    {"stop", "remove an app and stop its tasks", cmd_stop, 0},
    {"logs", "print (or follow) the output of a task or an app", cmd_logs, 0},
    {"leader", "print the leader's API address", cmd_leader, 0},
    {"members", "list the raft members: voters, learners, the leader", cmd_members, 0},
    {"nodes", "list the nodes: state, resources, attributes", cmd_nodes, 0},
    {"drain", "move a node's tasks away and place nothing new there", cmd_drain, 0},
    {"undrain", "make a drained node schedulable again", cmd_undrain, 0},
    {"vips", "list this node's VIPs: backends, mode, connections", cmd_vips, 0},
    {"deployments", "list the deployments in progress", cmd_deployments, 0},
    {"promote", "promote the canaries of an app's deployment", cmd_promote, 0},
    {"rollback", "roll an app back (its deployment, or to a version)", cmd_rollback, 0},
    {"events", "print the event stream (Marathon's /v2/events) as it comes", cmd_events,
     0},
};

static const struct cmd *find_command(const char *name)
{
    for (size_t i = 0; i < CM_ARRAY_SIZE(commands); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

void cmd_usage(FILE *out)
{
    fprintf(out,
            "usage: clusterctl [--help] [--version] <verb> [args...]\n"
            "\n"
            "One binary per machine: a Raft-replicated cluster that runs services and\n"
            "jobs, isolates them, and makes them findable by DNS.\n"
            "\n"
            "verbs:\n");
    for (size_t i = 0; i < CM_ARRAY_SIZE(commands); i++) {
        if (!commands[i].hidden) {
            fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
        }
    }
    fprintf(out, "\nRun 'clusterctl <verb> --help' for the options of one verb.\n");
}

int cmd_help(int argc, char **argv)
{
    if (argc >= 2) {
        const struct cmd *c = find_command(argv[1]);
        if (c == NULL) {
            fprintf(stderr, "clusterctl: unknown verb '%s'\n\n", argv[1]);
            cmd_usage(stderr);
            return CMD_EXIT_USAGE;
        }
        char help[] = "--help";
        char *sub_argv[] = {argv[1], help, NULL};
        return c->run(2, sub_argv);
    }
    cmd_usage(stdout);
    return CMD_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cmd_usage(stderr);
        return CMD_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
        cmd_usage(stdout);
        return CMD_EXIT_OK;
    }
    if (strcmp(verb, "--version") == 0) {
        verb = "version";
    }
    const struct cmd *c = find_command(verb);
    if (c == NULL) {
        fprintf(stderr, "clusterctl: unknown verb '%s'\n\n", verb);
        cmd_usage(stderr);
        return CMD_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
