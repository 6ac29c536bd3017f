/* lib/net/stream.c: being written. */
#include "net/net.h"
