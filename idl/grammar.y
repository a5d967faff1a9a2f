/* The .svc grammar (lemon). Actions are one call each into parse.c, which builds the tree:
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

%syntax_error { svc_p_syntax_error(ps, yymajor, &TOKEN); }
%stack_overflow { svc_p_overflow(ps); }

/* Declared so that the header lemon writes numbers every token the lexer returns. */
%token SERVICE STRUCT ENUM IDENT ANNOT NUMBER STRING
       LBRACE RBRACE LPAREN RPAREN LT GT COMMA SEMI QUESTION EQ.

file ::= services.
services ::= service.
services ::= services service.

service ::= service_head LBRACE members RBRACE.
service_head ::= SERVICE(K) IDENT(N). { svc_p_service(ps, K, N); }

members ::= .
members ::= members member.
member ::= IDENT(O) NUMBER(V) SEMI. { svc_p_option(ps, O, V, false); }
member ::= IDENT(O) STRING(V) SEMI. { svc_p_option(ps, O, V, true); }
member ::= struct_decl.
member ::= enum_decl.
member ::= method.

struct_decl ::= struct_head LBRACE fields RBRACE.
struct_head ::= STRUCT(K) IDENT(N). { svc_p_struct(ps, K, N); }
fields ::= .
fields ::= fields field.
field ::= type(T) IDENT(N) SEMI. { svc_p_field(ps, T, N); }

enum_decl ::= enum_head LBRACE enumvals RBRACE.
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
