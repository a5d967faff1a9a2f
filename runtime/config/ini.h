/* SPDX-License-Identifier: MIT */
/* The .ini reader under service.ini: sections, keys and values with their positions, and
 * the errors of the file, written like a compiler's. Not part of any public API. */
#ifndef SHMRPC_SUPERVISOR_INI_H
#define SHMRPC_SUPERVISOR_INI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <shmrpc/arena.h>
#include <shmrpc/buf.h>

#define INI_FMT(a, b) __attribute__((format(printf, a, b)))

/* Files larger than this are refused: a service.ini is a page of text. */
#define INI_MAX_BYTES ((size_t)1 << 20)

/* `key = value` (or `key: value`). Positions are 1-based; columns count bytes. */
typedef struct ini_entry {
    const char *key;   /* lowercased, as configparser does */
    const char *value; /* trimmed; continuation lines joined with '\n' */
    int line, col;     /* of the key */
    int vcol;          /* of the value's first byte on the key's line (just past the
                        * delimiter when the value is empty or starts on the next line) */
    bool multiline;    /* continued on indented lines */
    struct ini_entry *next;
} ini_entry;

typedef struct ini_section {
    const char *name; /* as written, without the brackets and surrounding blanks */
    int line, col;    /* of the name */
    bool duplicate;   /* a second [name]: reported, and its keys are not to be used */
    int n_entries;
    ini_entry *entries, *last;
    struct ini_section *next;
} ini_section;

typedef struct ini_diag ini_diag;

/* A file read and parsed, and the errors found in it so far, by the reader and by
 * whoever interprets it. Everything lives in one arena freed by ini_destroy. */
typedef struct ini_file {
    const char *path; /* as given: every message names it */
    const char *src;  /* the text, for the source line shown under each error */
    size_t len;
    ini_section *sections, *last; /* in file order */
    shmrpc_arena *arena;
    size_t n_errors;  /* reported, including those not kept */
    ini_diag *errors; /* the first ones, malloc'd; sorted when written */
    size_t n_kept, cap_errors;
    int n_sections;
    int bad_headers; /* [section] lines refused */
    bool gave_up;    /* too many sections: the rest was not read */
    bool oom;        /* memory ran out: the result is incomplete */
} ini_file;

/* Reads path (at most INI_MAX_BYTES) and parses it. A file that cannot be read is
 * an error of the file like any other. Returns SHMRPC_ENOMEM when memory runs out, else 0;
 * count the errors with ini->n_errors. Destroy the ini in both cases. */
int ini_load(ini_file *ini, const char *path);

/* The same over text in memory; path only names it in messages. */
int ini_parse(ini_file *ini, const char *path, const char *src, size_t len);

void ini_destroy(ini_file *ini);

/* Records an error at line:col (line 0: of the whole file, no position). */
void ini_error(ini_file *ini, int line, int col, const char *fmt, ...) INI_FMT(4, 5);
void ini_verror(ini_file *ini, int line, int col, const char *fmt, va_list ap) INI_FMT(4, 0);

/* Appends the errors to out sorted by position, those of the whole file last, each as
 * "path:line:col: error: message", the source line and a caret under col. */
void ini_write_errors(const ini_file *ini, shmrpc_buf *out);

/* s fit to quote in a message: control bytes and bytes of no valid UTF-8 sequence as
 * \xNN, cut after max bytes with "..." (SIZE_MAX: never; a path is never cut, as the
 * user must read all of it). The text lives in the ini's arena; "" when memory runs out. */
const char *ini_quote(ini_file *ini, const char *s, size_t max);

#endif
