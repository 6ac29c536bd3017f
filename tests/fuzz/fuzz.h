/* Shared by every fuzz target: the libFuzzer entry point. Built against libFuzzer
 * with -Dfuzz=true, or linked with replay.c to run the committed corpus. */
#ifndef CM_FUZZ_H
#define CM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
