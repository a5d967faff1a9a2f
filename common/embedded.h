/* SPDX-License-Identifier: MIT */
/* Files built into a program by cmake/embed.cmake (shmrpc_embed): the generator's
 * templates, the management page's assets. A table ends with a row whose name is NULL. */
#ifndef SHMRPC_COMMON_EMBEDDED_H
#define SHMRPC_COMMON_EMBEDDED_H

#include <stddef.h>
#include <string.h>

typedef struct shmrpc__embedded_file {
    const char *name; /* the file's name, without its folder */
    const char *text; /* its bytes, NUL-terminated */
} shmrpc__embedded_file;

/* The text of the file called name in table, or NULL. */
static inline const char *shmrpc__embedded_text(const shmrpc__embedded_file *table,
                                                const char *name)
{
    for (; table->name; table++)
        if (strcmp(table->name, name) == 0) return table->text;
    return NULL;
}

#endif
