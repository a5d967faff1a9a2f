/* SPDX-License-Identifier: MIT */
/* The generated code's text has one home: the generator's C, written a line at a time
 * through this emitter. There are no templates. Nearly every generated line depends on a
 * type (its scalar kind, container, nesting, encoding), so a logic-less template would
 * hold dozens of fragments that the C picks and fills anyway, and one generated
 * function's text would be split between two files. Written here, each function's text
 * sits next to the logic that shapes it, and the emitter keeps every line within 100
 * columns, as the project's own code is (protobuf-c and nanopb write their output from
 * code, too). */
#ifndef SHMRPCGEN_EMIT_H
#define SHMRPCGEN_EMIT_H

#include "sbuf.h"

/* The width every generated line fits in, as .clang-format's ColumnLimit. */
enum { EMIT_COLUMNS = 100 };

typedef struct emitter {
    sbuf *o;
    int depth;     /* indentation, in steps of four spaces */
    char *pending; /* an "if (...)" without a brace, not yet written: see em_last */
    int pending_depth;
} emitter;

/* An empty line. */
void em_blank(emitter *e);
/* One line at the current indentation. A line wider than
 * EMIT_COLUMNS is wrapped as clang-format would: after the commas of its outermost
 * argument list that has any, aligned with the list's parenthesis, and a string literal
 * too long for what is left is split at a space into adjacent literals. */
void em(emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* em, then one step deeper: "{" and the like. */
void em_open(emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One step shallower, then em: "}" and the like. */
void em_close(emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* em, then one step shallower: the one statement under an if or for without braces. An
 * if's statement joins the if's line when both fit, as .clang-format's
 * AllowShortIfStatementsOnASingleLine: WithoutElse does (so an if with an else is written
 * with em and the depth by hand). */
void em_last(emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes what is pending; call when the text is complete. */
void em_flush(emitter *e);
/* A guard clause: "if (COND) {", then stmt when not NULL, "return RET;" and "}". */
void em_guard(emitter *e, const char *cond, const char *stmt, const char *ret);

#endif
