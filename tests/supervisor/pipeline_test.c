/* SPDX-License-Identifier: MIT */
/* examples/pipeline end to end under shmrpc-service: its service.ini (with fewer messages)
 * runs a source, two transformers and a sink joined by the typed queues of pipeline.svc;
 * the sink must report every sequence number once and in order, and a SIGTERM must stop
 * every stage and leave no queue behind. Every wait is bounded; teardown kills the
 * supervisor and the stages' process groups and removes the queues whatever happened. */
#define _GNU_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sup_helpers.h"

#define QUEUES "shmrpc.queue.pipeline."
static const char *const stages[] = {"source", "transform1", "transform2", "sink"};

typedef struct fixture {
    char dir[64];
    pid_t sup;
    sup_groups groups;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/shmrpc-pipeline-test-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    f->groups.cap = 16;
    sup_remove_segments(QUEUES); /* a run killed before its teardown */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sup_end(&f->sup);
    sup_groups_kill(&f->groups);
    sup_remove_segments(QUEUES);
    sup_rm_tree(f->dir);
    free(f);
    return 0;
}

/* The example's service.ini with count messages instead of its million. */
static char *example_ini(const char *count)
{
    const char *text = sup_slurp(PIPELINE_DIR, "service.ini");
    assert_true(strlen(text) > 0);
    size_t n = strlen(text) + 64;
    char *out = malloc(n), *w = out;
    assert_non_null(out);
    const char *from = "--count 1000000";
    for (const char *p = text; *p;) {
        if (strncmp(p, from, strlen(from)) == 0) {
            w += sprintf(w, "--count %s", count);
            p += strlen(from);
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    assert_true(strstr(out, "--count 1000000") == NULL);
    return out;
}

/* Remembers the stages' process groups (each is its group's leader) from status.json. */
static void note_groups(fixture *f)
{
    char p[160];
    snprintf(p, sizeof p, "%s/logs/status.json", f->dir);
    json_t *st = json_load_file(p, 0, NULL);
    json_t *services = json_object_get(st, "services");
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        json_int_t pid =
            json_integer_value(json_object_get(json_object_get(services, stages[i]), "pid"));
        if (pid > 0) sup_groups_add(&f->groups, (pid_t)pid);
    }
    json_decref(st);
}

static void pipeline_end_to_end(void **state)
{
    fixture *f = *state;
    char *ini = example_ini("50000");
    char path[4096];
    snprintf(path, sizeof path, "%s:%s", PIPELINE_BIN_DIR, getenv("PATH") ? getenv("PATH") : "");
    const char *env[] = {"PATH", path, NULL};
    f->sup = sup_start_in(f->dir, ini, true, 120, env);
    free(ini);

    const char *ok = "every sequence number arrived once and in order";
    const char *log = "";
    int64_t end = sup_now_ms() + 60000;
    while (sup_now_ms() < end) {
        note_groups(f);
        log = sup_slurp(f->dir, "logs/sink.log");
        if (strstr(log, ok) || strstr(log, "FAILED") || strstr(log, "pipeline-node:")) break;
        int st;
        if (waitpid(f->sup, &st, WNOHANG) == f->sup) {
            f->sup = 0; /* it gave up: the logs below say why */
            break;
        }
        sup_nap_ms(50);
    }
    note_groups(f);
    printf("sink.log:\n%s", log);
    if (!strstr(log, ok)) {
        for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "logs/%s.log", stages[i]);
            printf("%s:\n%s", name, sup_slurp(f->dir, name));
        }
        printf("supervisor.err:\n%s", sup_slurp(f->dir, "supervisor.err"));
        fail_msg("the sink did not report every message in order within 60 s");
    }
    assert_non_null(strstr(log, "sink: 50000 messages from 1 source in"));
    assert_non_null(strstr(sup_slurp(f->dir, "logs/source.log"), "source 0: pushed 50000"));
    assert_true(sup_segment_left(QUEUES)); /* the three queues exist while it runs */

    assert_true(f->sup > 0);
    int status = sup_stop(&f->sup, 30000);
    assert_true(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sup_groups_assert_gone(&f->groups);
    assert_false(sup_segment_left(QUEUES)); /* each stage removed the queue it created */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pipeline_end_to_end, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
