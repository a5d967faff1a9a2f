/* SPDX-License-Identifier: MIT */
/* Handlers of tests/dynamic/every.svc that hand back what they are given. */
#ifndef EVERY_HANDLERS_H
#define EVERY_HANDLERS_H

#include "every.h"

extern const Every_handlers every_identity;

#endif
