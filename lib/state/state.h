/* lib/state/state.h: being written. */
#ifndef CM_STATE_H
#define CM_STATE_H
#endif
