/* SPDX-License-Identifier: MIT */
/* How near a typo is to a name, for the "did you mean" of an error: the ini checker's keys
 * and sections, the .svc language's types. Depends on nothing but the C library. */
#ifndef SHMRPC_COMMON_NEAR_H
#define SHMRPC_COMMON_NEAR_H

#include <stdbool.h>

/* Edit distance with transpositions, ignoring case (names of 64 bytes at most; longer
 * ones are 99 apart). */
int shmrpc__distance(const char *a, const char *b);

/* Whether a typo is near enough to name to suggest it: one edit from a name of 5 bytes or
 * less, two from a longer one. */
bool shmrpc__near(const char *typo, const char *name);

#endif
