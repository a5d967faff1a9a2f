/* A small logic-less template renderer in the manner of mustache: {{name}} inserts a
 * value, {{#name}}...{{/name}} repeats for each item of a list (or once for a
 * non-empty value), {{^name}}...{{/name}} renders when it is empty or absent, and
 * {{! ...}} is a comment. A line holding only a section or comment tag leaves no line
 * behind. Values are inserted as they are: templates produce C, not HTML. */
#ifndef SHMRPCGEN_TMPL_H
#define SHMRPCGEN_TMPL_H

#include <stdbool.h>

#include "sbuf.h"
#include "svc.h"

typedef struct tmpl_dict tmpl_dict;

tmpl_dict *tmpl_new(svc_arena *a);
/* Sets key to a copy of val. */
void tmpl_set(tmpl_dict *d, const char *key, const char *val);
void tmpl_setf(tmpl_dict *d, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends a new item to the list under key and returns it. */
tmpl_dict *tmpl_push(tmpl_dict *d, const char *key);
/* A section that renders once when on, and not at all when off. */
void tmpl_flag(tmpl_dict *d, const char *key, bool on);

/* Renders template text (named name in messages) with d into out. A tag that names
 * nothing, or an unbalanced section, is an error: a message on stderr and false. */
bool tmpl_render(const char *name, const char *text, const tmpl_dict *d, sbuf *out);

#endif
