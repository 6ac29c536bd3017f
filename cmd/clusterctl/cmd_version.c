/* clusterctl version */
#include "commands.h"

#include <stdio.h>
#include <string.h>

#include "lb/lb.h"
#include "version.h"

const char *cmd_version_string(void)
{
    static char buf[128];
    if (buf[0] == '\0') {
        if (strcmp(CLUSTERCTL_GIT_DESCRIBE, "unknown") == 0) {
            snprintf(buf, sizeof(buf), "%s", CLUSTERCTL_VERSION);
        } else {
            snprintf(buf, sizeof(buf), "%s (git %s)", CLUSTERCTL_VERSION,
                     CLUSTERCTL_GIT_DESCRIBE);
        }
    }
    return buf;
}

int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            printf(
                "usage: clusterctl version\n\n"
                "Print the version of this binary and whether it has VIP mode nat\n"
                "(kernel DNAT through nf_tables netlink; every build has it).\n");
            return CMD_EXIT_OK;
        }
        fprintf(stderr, "usage: clusterctl version\n");
        return CMD_EXIT_USAGE;
    }
    printf("clusterctl %s\n", cmd_version_string());
    /* packaging/build-static and bug reports read this. Mode nat needs no library
     * (lb/nft.c speaks nf_tables netlink), so every build says yes; whether the
     * kernel allows it shows at start-up (--vip-mode auto falls back to proxy). */
    printf("vip nat: %s\n", lb_nat_built() ? "yes" : "no");
    return CMD_EXIT_OK;
}
