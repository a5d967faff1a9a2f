/* SPDX-License-Identifier: MIT */
/* A stand-in tcp:// server of common/calls.svc, for the tests of what a client does with
 * what a server sends it: a child process that takes one connection on its own port, reads
 * the client's HELLO and plays a script, then reads until the client closes. Needs
 * runtime/src on the include path (frame.h), and procs.c (test_reap). */
#ifndef SHMRPC_TEST_STANDIN_H
#define SHMRPC_TEST_STANDIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "transport/tcp/frame.h"

typedef struct stand_in {
    int port;
    pid_t pid;
    int go; /* the parent's end of a pipe closed by stand_in_end */
} stand_in;

extern int stand_in_case;   /* the script's case: the test sets it, the stand-in inherits it */
extern int stand_in_rcvbuf; /* > 0: the next stand-in socket's SO_RCVBUF (a small window) */
extern int stand_in_go;     /* in the stand-in: the pipe's other end, at EOF once told */
extern shmrpc_buf stand_in_hello; /* in the stand-in: the body of the client's HELLO */

/* Forks a stand-in that plays script(fd) on the connection it takes once it has read a
 * HELLO (else its exit code is 201), or, with script NULL, reads nothing until told (by
 * stand_in_end); alarm(20) is its watchdog. Its exit code is script's result: what it
 * counted, or 200 and above when the client sent what it should not have. */
stand_in stand_in_start(int (*script)(int fd));

/* Tells the stand-in that the test is done with it; its exit code, within 10 s (the test
 * fails when it did not exit). */
int stand_in_end(const stand_in *s);

/* In the stand-in: n bytes of fd into p; false at EOF or an error. */
bool sread(int fd, uint8_t *p, size_t n);

/* In the stand-in: a frame of the client (a body of 1 MiB at most), its header in *h and
 * its body in b; false at EOF, an error or a header refused. */
bool sread_frame(int fd, shmrpc__frame_hdr *h, shmrpc_buf *b);

/* In the stand-in: all of b in one send; false when b holds an error or was not sent whole. */
bool ssend(int fd, const shmrpc_buf *b);

/* Appends a HELLO_ACK with the Calls table, the compression chosen (SHMRPC__FLAG_* bits),
 * max_msg, and a challenge when auth. */
void put_ack(shmrpc_buf *b, uint16_t compression, uint32_t max_msg, bool auth);

/* Appends an ERROR frame of status (negative) and msg for request rid of method. */
void put_error(shmrpc_buf *b, uint32_t method, uint64_t rid, int status, const char *msg);

/* The sum (a fixint) of an add request's body [a, b] of fixints; -1 for another body. */
int add_body_sum(const shmrpc_buf *b);

/* Appends the answer of request h (an add): sum. */
void put_sum(shmrpc_buf *out, const shmrpc__frame_hdr *h, int sum);

#endif
