/* clusterctl __init: hidden. The daemon re-executes its own binary
 * (`/proc/self/exe __init --sync-fd N [--status-file F] (--cmd CMD | -- ARGV...)`)
 * as PID 1 of each task's PID namespace (isolation/isolation.h, iso_spawn's
 * init_path): a fresh image, not a copy of the multi-threaded daemon. */
#include "commands.h"

#include "isolation/isolation.h"

int cmd_init(int argc, char **argv)
{
    /* argv[0] is "__init" and the options follow, as iso_init_main accepts.
     * Returns only on bad arguments (exit code 2); otherwise it exits with the
     * task's status. */
    return iso_init_main(argc, argv);
}
