/* lib/net: being written (stream layer, TCP helpers). */
#ifndef CM_NET_H
#define CM_NET_H
#endif
