/* dns/wire.c: being written. */
#include "dns/dns.h"
