/* isolation/cgroup.c: being written. */
#include "isolation/isolation.h"
