/* lib/state/app.c: being written. */
#include "state/state.h"
