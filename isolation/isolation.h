/* isolation/isolation.h: being written. */
#ifndef ISO_H
#define ISO_H
#endif
