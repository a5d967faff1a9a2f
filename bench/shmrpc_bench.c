/* SPDX-License-Identifier: MIT */
/* shmrpc-bench: every transport against the baselines, measured in the same run in real
 * processes. Each row of the table below is one measurement; harness.h says how to write
 * one, baselines.c has examples. */
#include <shmrpc/tcp.h>

#include "baselines.h"
#include "queue_cases.h"
#include "shm_cases.h"

static const bench_handoff_opts spin = {.wait = BENCH_WAIT_SPIN};
static const bench_handoff_opts spin_one_line = {.wait = BENCH_WAIT_SPIN, .one_line = true};
static const bench_handoff_opts yield = {.wait = BENCH_WAIT_YIELD};
static const bench_handoff_opts futex = {.wait = BENCH_WAIT_FUTEX};
static const bench_stream_opts unix_socket = {.tcp = false};
static const bench_stream_opts tcp = {.tcp = true};
static const bench_shm_opts shm_echo = {.wait = "adaptive", .method = "echo"};
static const bench_shm_opts shm_loan = {.wait = "adaptive", .method = "echo", .loan = true};
static const bench_shm_opts shm_echo_sleep = {.wait = "sleep", .method = "echo"};
static const bench_shm_opts shm_echo_spin = {.wait = "spin", .method = "echo"};
static const bench_shm_opts shm_add = {.wait = "adaptive", .method = "add"};
static const bench_shm_opts shm_work = {.wait = "adaptive", .method = "work"};
static const bench_shm_opts shm_add_traced = {.wait = "adaptive", .method = "add", .traced = true};
static const bench_shm_opts tcp_add_traced = {
    .wait = "adaptive", .method = "add", .tcp = true, .traced = true};
static const bench_shm_opts tcp_echo = {.wait = "adaptive", .method = "echo", .tcp = true};
static const bench_shm_opts tcp_echo_tls = {
    .wait = "adaptive", .method = "echo", .tcp = true, .tls = true};
static const bench_shm_opts tcp_if1 = {
    .wait = "adaptive", .method = "echo", .tcp = true, .in_flight = 1};
static const bench_shm_opts tcp_if16 = {
    .wait = "adaptive", .method = "echo", .tcp = true, .in_flight = 16};
static const bench_shm_opts tcp_if64 = {
    .wait = "adaptive", .method = "echo", .tcp = true, .in_flight = 64};
static const bench_shm_opts shm_if1 = {.wait = "adaptive", .method = "echo", .in_flight = 1};
static const bench_shm_opts shm_if64 = {.wait = "adaptive", .method = "echo", .in_flight = 64};
static const bench_shm_opts shm_work_if64 = {
    .wait = "adaptive", .method = "work", .in_flight = 64};
static const bench_shm_opts tcp_add = {.wait = "adaptive", .method = "add", .tcp = true};
static const bench_shm_opts tcp_text_none = {.wait = "adaptive",
                                             .method = "echo",
                                             .tcp = true,
                                             .text = true,
                                             .compression = SHMRPC_COMPRESS_NONE};
static const bench_shm_opts tcp_text_snappy = {.wait = "adaptive",
                                               .method = "echo",
                                               .tcp = true,
                                               .text = true,
                                               .compression = SHMRPC_COMPRESS_SNAPPY};

/* The ids of the baselines that later rows compare with (see bench_row_id). */
#define LIMIT_16 "spin/limit/16/1x1"
#define SPIN_16 "spin/raw/16/1x1"
#define SPIN_4K "spin/raw/4096/1x1"
#define SPIN_64K "spin/raw/65536/1x1"
#define SPIN_1M "spin/raw/1048576/1x1"
#define FUTEX_16 "futex/raw/16/1x1"
#define UNIX_16 "unix/raw/16/1x1"
#define UNIX_16_C2 "unix/raw/16/2x2"
#define UNIX_16_C4 "unix/raw/16/4x2"
#define UNIX_16_C8 "unix/raw/16/8x2"
#define TCP_16 "tcp-raw/raw/16/1x1"
#define TCP_64K "tcp-raw/raw/65536/1x1"
#define TCP_16_C2 "tcp-raw/raw/16/2x2"

/* A row's name, transport, payload bytes, clients and workers. */
#define ROW(n, t, bytes, c, w)                                                                     \
    .name = n, .transport = t, .payload = bytes, .clients = c, .workers = w

/* The batch-timed limit, compared by time per call in a batch (no clock read inside). */
#define VS_LIMIT                                                                                   \
    {                                                                                              \
        "ratio_to_limit", LIMIT_16, BENCH_BATCH                                                    \
    }
/* The same, measured in turns with the row in its own processes (.pair = bench_line_pair):
 * for rows whose server sleeps while the limit's turn runs, so that the two are timed on
 * the same cores at nearly the same moment. A server that spins all the time (the spin
 * handoff, SHMRPC_WAIT=spin) would take a CPU from the limit's turn. */
#define VS_LIMIT_TURNS                                                                             \
    {                                                                                              \
        "ratio_to_limit", LIMIT_16, BENCH_TURNS                                                    \
    }

/* Rows run in this order; a row may only compare with rows above it. */
static const bench_case table[] = {
    /* The floor of a cross-process call: one cache line handed back and forth. */
    {ROW("limit", "spin", 16, 1, 1), .run = bench_line,
     .note = "one 64-byte line back and forth, nothing else: its batch column is the limit"},
    /* Two processes spinning: the floor that a cross-process call can reach. */
    {ROW("raw", "spin", 16, 1, 1), .run = bench_handoff, .arg = &spin, .vs = {VS_LIMIT},
     .note = "spin on a word's cache line, the payload in its own buffer"},
    {ROW("raw-1line", "spin", 16, 1, 1), .run = bench_handoff, .arg = &spin_one_line,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}, VS_LIMIT},
     .note = "spin, the payload in the same cache line as the word"},
    {ROW("raw", "spin", 4096, 1, 1), .run = bench_handoff, .arg = &spin,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}, VS_LIMIT}},
    {ROW("raw", "spin", 65536, 1, 1), .run = bench_handoff, .arg = &spin,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}, VS_LIMIT}},
    {ROW("raw", "spin", 1048576, 1, 1), .run = bench_handoff, .arg = &spin,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}, VS_LIMIT}},
    /* Both sides sleep every time: the other vCPU goes idle and has to be woken. */
    {ROW("raw", "futex", 16, 1, 1), .run = bench_handoff, .arg = &futex,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}},
     .note = "FUTEX_WAIT / FUTEX_WAKE (shared) on every handoff"},
    {ROW("raw", "unix", 16, 1, 1), .run = bench_stream, .arg = &unix_socket,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}},
     .note = "length-prefixed echo over a Unix stream socket, blocking read()"},
    {ROW("raw", "tcp-raw", 16, 1, 1), .run = bench_stream, .arg = &tcp,
     .vs = {{"ratio_to_unix", UNIX_16, BENCH_P50}},
     .note = "the same over TCP loopback, TCP_NODELAY"},
    {ROW("raw", "tcp-raw", 65536, 1, 1), .run = bench_stream, .arg = &tcp,
     .vs = {{"ratio_to_tcp_raw", TCP_16, BENCH_P50}}},
    {ROW("raw", "tcp-raw", 16, 2, 2), .run = bench_stream, .arg = &tcp,
     .vs = {{"ratio_to_tcp_raw", TCP_16, BENCH_CALLS}}, .note = "calls/s ratio to one client"},
    /* Many clients on 2 workers (epoll): what the shm rows with the same clients must
     * beat in calls/s, without starving anyone. */
    {ROW("raw", "unix", 16, 2, 2), .run = bench_stream, .arg = &unix_socket,
     .vs = {{"ratio_to_unix", UNIX_16, BENCH_CALLS}}, .note = "calls/s ratio to one client"},
    {ROW("raw", "unix", 16, 4, 2), .run = bench_stream, .arg = &unix_socket,
     .vs = {{"ratio_to_unix", UNIX_16, BENCH_CALLS}}, .note = "2 workers, epoll each"},
    {ROW("raw", "unix", 16, 8, 2), .run = bench_stream, .arg = &unix_socket,
     .vs = {{"ratio_to_unix", UNIX_16, BENCH_CALLS}}, .note = "2 workers, epoll each"},
    /* A client and its server forced onto CPU 0: spinning only delays the peer there. */
    {ROW("raw-pinned", "yield", 16, 1, 1), .pinned = true, .run = bench_handoff, .arg = &yield,
     .vs = {{"ratio_to_futex", FUTEX_16, BENCH_P50}},
     .note = "sched_yield() until the word changes, both on CPU 0"},
    {ROW("raw-pinned", "futex", 16, 1, 1), .pinned = true, .run = bench_handoff, .arg = &futex,
     .vs = {{"ratio_to_futex", FUTEX_16, BENCH_P50}}, .note = "futex handoff, both on CPU 0"},
    {ROW("raw-pinned", "spin", 16, 1, 1), .pinned = true, .run = bench_handoff, .arg = &spin,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}},
     .note = "pure spin on CPU 0: each handoff waits for the scheduler to preempt"},

    /* Shared-memory queues (docs/queue.md): an echo over a request queue and a reply
     * queue per client; its p50 is two one-way handoffs. */
    {ROW("echo", "queue", 16, 1, 1), .run = bench_queue_echo, .pair = bench_line_pair,
     .vs = {{"ratio_to_spin", SPIN_16, BENCH_P50}, VS_LIMIT_TURNS},
     .note = "push to a request queue, pop from a reply queue: goal p50 within 2x spin's"},
    {ROW("echo", "queue", 4096, 1, 1), .run = bench_queue_echo,
     .vs = {{"ratio_to_spin", SPIN_4K, BENCH_P50}}},
    {ROW("echo", "queue", 16, 2, 2), .run = bench_queue_echo,
     .vs = {{"ratio_to_unix", UNIX_16_C2, BENCH_CALLS}}},

    /* shm://: the generated bench service, a server with forked workers, real clients. */
    {ROW("raw", "shm", 16, 1, 1), .run = bench_shm, .pair = bench_line_pair, .arg = &shm_echo,
     .vs = {VS_LIMIT_TURNS,
            {"ratio_to_spin", SPIN_16, BENCH_P50},
            {"ratio_to_unix", UNIX_16, BENCH_P50}},
     .note = "goal (issue 18): batch within 2x the limit's"},
    {ROW("add", "shm", 16, 1, 1), .run = bench_shm, .pair = bench_line_pair, .arg = &shm_add,
     .vs = {VS_LIMIT_TURNS, {"ratio_to_spin", SPIN_16, BENCH_P50}},
     .note = "typed msgpack add(i64, i64): goal batch within 3x the limit's"},
    /* A traceparent on every call and one interceptor each side (issue 36, docs/metadata.md),
     * against the bare add: in turns with a bare add server of its own (the limit then
     * by p50, not in turns). */
    {ROW("add-traced", "shm", 16, 1, 1), .run = bench_shm, .pair = bench_bare_add_pair,
     .arg = &shm_add_traced,
     .vs = {{"ratio_to_add", "shm/add/16/1x1", BENCH_TURNS}, {"ratio_to_limit", LIMIT_16, BENCH_P50}},
     .note = "add with a traceparent and an interceptor each side: goal within 1.3x add's"},
    {ROW("raw", "shm", 1024, 1, 1), .run = bench_shm, .pair = bench_line_pair, .arg = &shm_echo,
     .vs = {VS_LIMIT_TURNS}, .note = "the size from which a @raw request is read in place"},
    {ROW("raw", "shm", 4096, 1, 1), .run = bench_shm, .pair = bench_line_pair, .arg = &shm_echo,
     .vs = {VS_LIMIT_TURNS, {"ratio_to_spin_batch", SPIN_4K, BENCH_BATCH}}},
    /* The plain generated stub and handler (issue 37): the request is written into the
     * channel from the caller's bytes, read there by the handler (a large @raw request, as
     * it is for every @raw method left as it is), answered there, and copied out. */
    {ROW("raw", "shm", 65536, 1, 1), .run = bench_shm, .pair = bench_line_pair, .arg = &shm_echo,
     .vs = {VS_LIMIT_TURNS, {"ratio_to_spin_batch", SPIN_64K, BENCH_BATCH}},
     .note = "goal (issue 37): batch within 0.25x the 3-copy spin handoff's"},
    {ROW("raw", "shm", 1048576, 1, 1), .run = bench_shm, .pair = bench_line_pair,
     .arg = &shm_echo, .vs = {VS_LIMIT_TURNS, {"ratio_to_spin_batch", SPIN_1M, BENCH_BATCH}},
     .note = "goal (issue 37): batch within 0.5x the 3-copy spin handoff's"},
    /* Loaned buffers: the client writes its request into the channel, the handler reads it
     * there and answers in place, the client reads the answer there: one copy (the client's
     * writing of its request) against the handoff's three. */
    {ROW("raw-loan", "shm", 4096, 1, 1), .run = bench_shm, .pair = bench_line_pair,
     .arg = &shm_loan,
     .vs = {{"ratio_to_spin_batch", SPIN_4K, BENCH_BATCH},
            {"ratio_to_shm_batch", "shm/raw/4096/1x1", BENCH_BATCH},
            VS_LIMIT_TURNS},
     .note = "loaned buffers, answered in place"},
    {ROW("raw-loan", "shm", 65536, 1, 1), .run = bench_shm, .pair = bench_line_pair,
     .arg = &shm_loan,
     .vs = {{"ratio_to_spin_batch", SPIN_64K, BENCH_BATCH},
            {"ratio_to_shm_batch", "shm/raw/65536/1x1", BENCH_BATCH},
            VS_LIMIT_TURNS},
     .note = "goal (issue 18): batch within 0.6x the 3-copy spin handoff's"},
    {ROW("raw-sleep", "shm", 16, 1, 1), .run = bench_shm, .arg = &shm_echo_sleep,
     .vs = {{"ratio_to_futex", FUTEX_16, BENCH_P50}}, .note = "SHMRPC_WAIT=sleep"},
    {ROW("raw-spin", "shm", 16, 1, 1), .run = bench_shm, .arg = &shm_echo_spin,
     .vs = {VS_LIMIT, {"ratio_to_spin", SPIN_16, BENCH_P50}}, .note = "SHMRPC_WAIT=spin"},
    {ROW("raw-sleep", "shm", 16, 4, 2), .run = bench_shm, .arg = &shm_echo_sleep,
     .note = "SHMRPC_WAIT=sleep"},
    {ROW("raw-sleep", "shm", 16, 8, 2), .run = bench_shm, .arg = &shm_echo_sleep,
     .note = "SHMRPC_WAIT=sleep"},
    {ROW("raw", "shm", 16, 1, 2), .run = bench_shm, .arg = &shm_echo,
     .vs = {VS_LIMIT, {"ratio_to_1_worker", "shm/raw/16/1x1", BENCH_CALLS}},
     .note = "goal (issue 37): at least 1 worker's calls/s"},
    {ROW("raw", "shm", 16, 2, 2), .run = bench_shm, .arg = &shm_echo,
     .vs = {{"ratio_to_unix", UNIX_16_C2, BENCH_CALLS}}},
    /* Many calls in flight from one client thread (shmrpc_client_start), each on a lane of
     * its own (docs/shm-transport.md, "Calls in flight"). */
    {ROW("raw-if1", "shm", 16, 1, 1), .run = bench_shm, .arg = &shm_if1,
     .vs = {VS_LIMIT, {"ratio_to_blocking", "shm/raw/16/1x1", BENCH_CALLS}},
     .note = "one call in flight through start/finish"},
    {ROW("raw-if64", "shm", 16, 1, 1), .run = bench_shm, .arg = &shm_if64,
     .vs = {VS_LIMIT, {"ratio_to_blocking", "shm/raw/16/1x1", BENCH_CALLS}},
     .note = "64 in flight, one worker"},
    {ROW("raw-if64", "shm", 16, 1, 2), .run = bench_shm, .arg = &shm_if64,
     .vs = {VS_LIMIT, {"ratio_to_blocking", "shm/raw/16/1x1", BENCH_CALLS}},
     .note = "goal (issue 37): >= 5 M calls/s and >= 2x one at a time"},
    {ROW("raw", "shm", 16, 4, 2), .run = bench_shm, .arg = &shm_echo,
     .vs = {{"ratio_to_unix", UNIX_16_C4, BENCH_CALLS},
            {"ratio_to_sleep", "shm/raw-sleep/16/4x2", BENCH_CALLS}}},
    {ROW("raw", "shm", 16, 8, 2), .run = bench_shm, .arg = &shm_echo,
     .vs = {{"ratio_to_unix", UNIX_16_C8, BENCH_CALLS},
            {"ratio_to_sleep", "shm/raw-sleep/16/8x2", BENCH_CALLS}}},
    {ROW("raw-spin", "shm", 16, 4, 2), .run = bench_shm, .arg = &shm_echo_spin,
     .vs = {{"ratio_to_unix", UNIX_16_C4, BENCH_CALLS}},
     .note = "SHMRPC_WAIT=spin: waiters outnumber CPUs"},
    {ROW("raw-pinned", "shm", 16, 1, 1), .pinned = true, .run = bench_shm, .arg = &shm_echo,
     .vs = {{"ratio_to_futex", "futex/raw-pinned/16/1x1", BENCH_P50}},
     .note = "client and worker on CPU 0"},
    /* tcp://: the same service over loopback TCP, against the raw TCP echo. */
    {ROW("raw", "tcp", 16, 1, 1), .run = bench_shm, .arg = &tcp_echo,
     .vs = {{"ratio_to_tcp_raw", TCP_16, BENCH_P50}}, .note = "goal: p50 within 1.15x"},
    /* The same over TLS 1.3 (AES-GCM, the certificate checked), against plain tcp://. */
    {ROW("raw-tls", "tcp", 16, 1, 1), .run = bench_shm, .arg = &tcp_echo_tls,
     .vs = {{"ratio_to_tcp", "tcp/raw/16/1x1", BENCH_P50}}, .note = "goal: p50 within 1.3x"},
    {ROW("add", "tcp", 16, 1, 1), .run = bench_shm, .arg = &tcp_add,
     .vs = {{"ratio_to_tcp_raw", TCP_16, BENCH_P50}}, .note = "typed msgpack add(i64, i64)"},
    {ROW("add-traced", "tcp", 16, 1, 1), .run = bench_shm, .arg = &tcp_add_traced,
     .vs = {{"ratio_to_add", "tcp/add/16/1x1", BENCH_P50}},
     .note = "add with a traceparent and an interceptor each side: goal within 1.3x add's"},
    {ROW("raw", "tcp", 65536, 1, 1), .run = bench_shm, .arg = &tcp_echo,
     .vs = {{"ratio_to_tcp_raw", TCP_64K, BENCH_P50}}},
    {ROW("raw-tls", "tcp", 65536, 1, 1), .run = bench_shm, .arg = &tcp_echo_tls,
     .vs = {{"ratio_to_tcp", "tcp/raw/65536/1x1", BENCH_P50}}},
    {ROW("text-none", "tcp", 65536, 1, 1), .run = bench_shm, .arg = &tcp_text_none,
     .vs = {{"ratio_to_tcp_raw", TCP_64K, BENCH_P50}},
     .note = "64 KiB of compressible text, compression off"},
    {ROW("text-snappy", "tcp", 65536, 1, 1), .run = bench_shm, .arg = &tcp_text_snappy,
     .vs = {{"ratio_to_none", "tcp/text-none/65536/1x1", BENCH_P50}},
     .note = "the same text with snappy: goal faster than without (ratio below 1)"},
    {ROW("raw", "tcp", 16, 2, 2), .run = bench_shm, .arg = &tcp_echo,
     .vs = {{"ratio_to_tcp_raw", TCP_16_C2, BENCH_CALLS}}, .note = "goal: calls/s at least 0.9x"},
    /* Many calls in flight on one connection (shmrpc_client_start): calls/s against one in
     * flight. Over loopback the round trip is short, so the gain is in syscalls saved; the
     * issue's goal (64 in flight >= 40x) is for a 1 ms link (tests/hosts). */
    {ROW("raw-if1", "tcp", 16, 1, 1), .run = bench_shm, .arg = &tcp_if1,
     .vs = {{"ratio_to_tcp", "tcp/raw/16/1x1", BENCH_CALLS}},
     .note = "one call in flight through start/finish"},
    {ROW("raw-if16", "tcp", 16, 1, 1), .run = bench_shm, .arg = &tcp_if16,
     .vs = {{"ratio_to_if1", "tcp/raw-if1/16/1x1", BENCH_CALLS}},
     .note = "16 in flight on one connection; p50 is between answers"},
    {ROW("raw-if64", "tcp", 16, 1, 1), .run = bench_shm, .arg = &tcp_if64,
     .vs = {{"ratio_to_if1", "tcp/raw-if1/16/1x1", BENCH_CALLS}},
     .note = "64 in flight on one connection; p50 is between answers"},
    {ROW("work20", "shm", 16, 1, 1), .run = bench_shm, .pair = bench_line_pair, .arg = &shm_work,
     .vs = {VS_LIMIT_TURNS, {"ratio_to_spin", SPIN_16, BENCH_P50}},
     .note = "a 20 us handler: goal calls/s near 1/(20 us + spin p50)"},
    {ROW("work20-if64", "shm", 16, 1, 2), .run = bench_shm, .arg = &shm_work_if64,
     .vs = {VS_LIMIT, {"ratio_to_blocking", "shm/work20/16/1x1", BENCH_CALLS}},
     .note = "a 20 us handler, 64 in flight on 2 workers: both busy, near 2x"},
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, table, sizeof table / sizeof table[0]);
}
