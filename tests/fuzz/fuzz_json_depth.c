/* SPDX-License-Identifier: MIT */
/* libFuzzer target: shmrpc_json_check_depth against jansson. For every text jansson
 * accepts, the scanner's count is exactly the parsed value's depth, so the bound it
 * checks before parsing is the depth jansson would recurse to; a finding is a text where
 * the two disagree (or a crash in either). */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include <shmrpc/codec.h>

/* The nesting of v: 0 for a scalar, 1 for an empty array or object. */
static unsigned depth_of(const json_t *v)
{
    unsigned d = 0, k;
    size_t i;
    const char *key;
    json_t *e;
    if (json_is_array(v)) {
        json_array_foreach(v, i, e) if ((k = depth_of(e)) > d) d = k;
        return d + 1;
    }
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, e) if ((k = depth_of(e)) > d) d = k;
        return d + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Duplicate keys refused: jansson keeps the last, whose depth may be less. */
    json_t *v = json_loadb((const char *)data, size,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, NULL);
    if (!v) return 0;
    unsigned d = depth_of(v);
    json_decref(v);
    if (shmrpc_json_check_depth(data, size, d) != 0) abort();              /* counted too deep */
    if (d > 0 && shmrpc_json_check_depth(data, size, d - 1) == 0) abort(); /* too shallow */
    return 0;
}
