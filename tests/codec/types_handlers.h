/* SPDX-License-Identifier: MIT */
/* Handlers of tests/codec/types.svc that hand back what they are given, for the round
 * trip test and the decoder fuzz target. */
#ifndef TYPES_HANDLERS_H
#define TYPES_HANDLERS_H

#include "types.h"

extern const Types_handlers types_identity_handlers;
/* How many times nothing() and nothing_json() ran; how many times any handler ran. */
extern int types_nothing_calls;
extern int types_handler_calls;

#endif
