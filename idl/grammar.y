/* SPDX-License-Identifier: MIT */
/* The .svc grammar (lemon). Actions are one call each into tree.c, which builds the tree:
 * members are appended to the service, struct, enum or method being read. */

%name svc_parser
%token_prefix SVC_TK_
%token_type {svc_ltok}
%extra_argument {svc_pstate *ps}
%start_symbol file
/* Deep nesting (list<list<...>>) overflows this on purpose: the checks recurse on types. */
%stack_size 100

%include {
#include <assert.h>
#include "parse_int.h"
}

/* Whether ';' would have been taken where this token was not ("expected ';'" rather than
 * "unexpected 'name'" on the line after): the parser's own steps (the action for the
 * look-ahead, a reduction's pop and goto) run with ';' on a copy of the states on its
 * stack, until it would shift it or fail. */
%syntax_error {
    YYACTIONTYPE st[YYSTACKDEPTH];
    int n = (int)(yypParser->yytos - yypParser->yystack) + 1;
    bool semi = false;
    for (int i = 0; i < n && n <= YYSTACKDEPTH; i++)
        st[i] = yypParser->yystack[i].stateno;
    for (int steps = 0; n >= 1 && n <= YYSTACKDEPTH && steps < YYSTACKDEPTH; steps++) {
        YYACTIONTYPE act = yy_find_shift_action(SVC_TK_SEMI, st[n - 1]);
        if (act <= YY_MAX_SHIFTREDUCE) {
            semi = true;
            break;
        }
        if (act < YY_MIN_REDUCE || act > YY_MAX_REDUCE) break;
        unsigned rule = act - YY_MIN_REDUCE;
        n += yyRuleInfoNRhs[rule];
        if (n < 1 || n >= YYSTACKDEPTH) break; /* the goto below takes st[n] */
        st[n] = yy_find_reduce_action(st[n - 1], yyRuleInfoLhs[rule]);
        n++;
    }
    svc_p_syntax_error(ps, yymajor, &TOKEN, semi);
}
%stack_overflow { svc_p_overflow(ps); }
%parse_failure { svc_p_parse_failed(ps); }

/* Declared so that the header lemon writes numbers every token the lexer returns. */
%token SERVICE STRUCT ENUM IDENT ANNOT NUMBER STRING
       LBRACE RBRACE LPAREN RPAREN LT GT COMMA SEMI QUESTION EQ.

file ::= services.
services ::= service.
services ::= services service.

/* Error recovery: a member, field or enum body that does not parse is skipped up to the
 * next ';' or to the '}' that closes the body, and parsing goes on from there; a '{'
 * met while skipping a member opens a body that is read as fields, so that its '}' does
 * not end the service. Lemon reports no new syntax error until three tokens have been
 * shifted after one, so one mistake makes one message. */
service ::= service_head LBRACE members RBRACE.
service ::= service_head LBRACE members error RBRACE.
service_head ::= SERVICE(K) IDENT(N). { svc_p_service(ps, K, N); }

members ::= .
members ::= members member.
member ::= IDENT(O) NUMBER(V) SEMI. { svc_p_option(ps, O, V, false); }
member ::= IDENT(O) STRING(V) SEMI. { svc_p_option(ps, O, V, true); }
member ::= struct_decl.
member ::= enum_decl.
member ::= method.
member ::= type(T) IDENT(N) SEMI. { svc_p_queue(ps, NULL, T, N); }
member ::= annots(A) type(T) IDENT(N) SEMI. { svc_p_queue(ps, &A, T, N); }
member ::= error SEMI.
member ::= skipped_head fields RBRACE.
member ::= skipped_head fields error RBRACE.
skipped_head ::= error LBRACE. { ps->decl = NULL; }

struct_decl ::= struct_head LBRACE fields RBRACE.
struct_decl ::= struct_head LBRACE fields error RBRACE.
struct_head ::= STRUCT(K) IDENT(N). { svc_p_struct(ps, K, N); }
fields ::= .
fields ::= fields field.
field ::= type(T) IDENT(N) SEMI. { svc_p_field(ps, T, N); }
field ::= error SEMI.

enum_decl ::= enum_head LBRACE enumvals RBRACE.
enum_decl ::= enum_head LBRACE error RBRACE.
enum_head ::= ENUM(K) IDENT(N). { svc_p_enum(ps, K, N); }
enumvals ::= .
enumvals ::= enumval_list.
enumvals ::= enumval_list COMMA.
enumval_list ::= enumval.
enumval_list ::= enumval_list COMMA enumval.
enumval ::= IDENT(N). { svc_p_enumval(ps, N, NULL); }
enumval ::= IDENT(N) EQ NUMBER(V). { svc_p_enumval(ps, N, &V); }

method ::= method_head LPAREN params RPAREN SEMI.
method_head ::= type(T) IDENT(N). { svc_p_method(ps, NULL, T, N); }
method_head ::= annots(A) type(T) IDENT(N). { svc_p_method(ps, &A, T, N); }
%type annots {svc_annots}
annots(A) ::= ANNOT(X). { svc_annots none = {0}; A = svc_p_annot(ps, none, X); }
annots(A) ::= annots(B) ANNOT(X). { A = svc_p_annot(ps, B, X); }
params ::= .
params ::= param_list.
param_list ::= param.
param_list ::= param_list COMMA param.
param ::= type(T) IDENT(N). { svc_p_param(ps, T, N); }

%type type {svc_ltype}
type(A) ::= IDENT(N). { A = svc_p_type_name(ps, N); }
type(A) ::= IDENT(N) LT type(E) GT. { A = svc_p_type_args(ps, N, E, NULL); }
type(A) ::= IDENT(N) LT type(K) COMMA type(V) GT. { A = svc_p_type_args(ps, N, K, &V); }
type(A) ::= type(E) QUESTION(Q). { A = svc_p_type_opt(ps, E, Q); }
