/* Stands in for the clusterctl binary in the re-exec'd init test: `<this> __init
 * ...` runs iso_init_main, as `clusterctl __init` does. */
#include <stdio.h>
#include <string.h>

#include "isolation/isolation.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "__init") == 0) {
        return iso_init_main(argc, argv);
    }
    fprintf(stderr, "usage: %s __init --sync-fd N (--cmd CMD | -- ARGV...)\n", argv[0]);
    return 2;
}
