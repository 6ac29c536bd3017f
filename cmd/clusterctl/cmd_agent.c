/* clusterctl agent: the node daemon (DESIGN.md §3). */
#include <stdio.h>

#include "commands.h"
#include "node/node.h"

int cmd_agent(int argc, char **argv)
{
    struct cm_node_config c;
    struct cm_errbuf eb;
    cm_node_config_default(&c);
    cm_errbuf_clear(&eb);
    int rv = cm_node_config_parse(&c, argc, argv, &eb);
    if (rv == 1) {
        return CMD_EXIT_OK; /* --help */
    }
    if (rv != 0) {
        fprintf(stderr,
                "clusterctl agent: %s\nRun 'clusterctl agent --help' for usage.\n",
                eb.msg);
        return CMD_EXIT_USAGE;
    }
    return cm_node_run(&c) == 0 ? CMD_EXIT_OK : CMD_EXIT_FAIL;
}
