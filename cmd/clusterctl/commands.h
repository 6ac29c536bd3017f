/* The subcommands of clusterctl: one file each, listed in main.c's table. */
#ifndef CLUSTERCTL_COMMANDS_H
#define CLUSTERCTL_COMMANDS_H

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

/* Print the top-level usage to @out. */
void cmd_usage(FILE *out);

/* The version string: "0.1.0 (git v0.1.0-3-gabcdef)". */
const char *cmd_version_string(void);

#endif
