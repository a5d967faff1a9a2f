/* SPDX-License-Identifier: MIT */
/* What every runtime unit test includes: cmocka (with the headers it needs first) and
 * the runtime, public and internal. */
#ifndef UNIT_H
#define UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrpc.h>

#include "api/api.h"
#include "codec/codec.h"

#define B(lit) (const uint8_t *)(lit), sizeof(lit) - 1

#endif
