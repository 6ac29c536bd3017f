/* dns/dns.h: being written. */
#ifndef DNS_H
#define DNS_H
#endif
