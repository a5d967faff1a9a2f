/* SPDX-License-Identifier: MIT */
/* The transport table's required entries: every transport of the library has them, and
 * a transport, connection or listener missing one is refused with a message naming it,
 * before anything is called through it. */
#include <string.h>

#include "unit.h"

static int stub_connect(const char *where, const shmrpc_service_info *info,
                        const shmrpc__client_cfg *cfg, uint32_t *map, shmrpc__table *table,
                        shmrpc__conn **out, shmrpc_buf *err)
{
    (void)where, (void)info, (void)cfg, (void)map, (void)table, (void)out, (void)err;
    return SHMRPC_EUNAVAIL;
}

static int stub_listen(shmrpc_server *s, const char *where, shmrpc__listener **out, shmrpc_buf *err)
{
    (void)s, (void)where, (void)out, (void)err;
    return SHMRPC_EUNAVAIL;
}

static int stub_call(shmrpc__conn *c, uint32_t sid, shmrpc_bytes req, shmrpc_buf *resp,
                     int64_t timeout_ms, shmrpc_buf *err)
{
    (void)c, (void)sid, (void)req, (void)resp, (void)timeout_ms, (void)err;
    return 0;
}

static void stub_conn_close(shmrpc__conn *c)
{
    (void)c;
}

static void stub_listener_close(shmrpc__listener *l)
{
    (void)l;
}

static int stub_serve(shmrpc__listener *l, int workers)
{
    (void)l, (void)workers;
    return 0;
}

static void stub_stop(shmrpc__listener *l)
{
    (void)l;
}

/* rc is SHMRPC_EINVAL and err says want. */
static void refused(int rc, shmrpc_buf *err, const char *want)
{
    assert_int_equal(rc, SHMRPC_EINVAL);
    assert_string_equal(shmrpc__msg_get(err), want);
    shmrpc__msg_clear(err);
}

/* The library's transports have every required entry. What they make is checked at every
 * listen and connect of the other tests (shmrpc__transport_listen, _connect). */
static void library_transports_are_whole(void **state)
{
    (void)state;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    const shmrpc__transport *all[] = {&shmrpc__inproc_transport, &shmrpc__shm_transport,
                                      &shmrpc__tcp_transport};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        assert_int_equal(shmrpc__transport_check(all[i], &err), 0);
    shmrpc_buf_destroy(&err);
}

static void a_table_without_an_entry_is_refused(void **state)
{
    (void)state;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    shmrpc__transport t = {.scheme = "fake", .connect = stub_connect, .listen = stub_listen};
    assert_int_equal(shmrpc__transport_check(&t, &err), 0);
    t.connect = NULL;
    refused(shmrpc__transport_check(&t, &err), &err,
            "the fake transport is broken: its table has no 'connect' entry");
    t.connect = stub_connect;
    t.listen = NULL;
    refused(shmrpc__transport_check(&t, &err), &err,
            "the fake transport is broken: its table has no 'listen' entry");
    t.scheme = "";
    refused(shmrpc__transport_check(&t, &err), &err,
            "the unnamed transport is broken: its table has no 'scheme' entry");
    shmrpc_buf_destroy(&err);
}

static void stub_cancel(shmrpc__conn *c, shmrpc__pending *p)
{
    (void)c, (void)p;
}

static void ops_without_an_entry_are_refused(void **state)
{
    (void)state;
    shmrpc_buf err;
    shmrpc_buf_init(&err);
    shmrpc__conn_ops c = {.call = stub_call, .close = stub_conn_close};
    assert_int_equal(shmrpc__conn_ops_check("fake", &c, &err), 0);
    c.call = NULL;
    refused(shmrpc__conn_ops_check("fake", &c, &err), &err,
            "the fake transport is broken: a connection has no 'call' entry");
    c = (shmrpc__conn_ops){.call = stub_call};
    refused(shmrpc__conn_ops_check("fake", &c, &err), &err,
            "the fake transport is broken: a connection has no 'close' entry");
    /* Cancelling is telling the server about a started call: none without start. */
    c = (shmrpc__conn_ops){.call = stub_call, .close = stub_conn_close, .cancel = stub_cancel};
    refused(shmrpc__conn_ops_check("fake", &c, &err), &err,
            "the fake transport is broken: a connection that cancels calls has no 'start' "
            "entry");

    /* A listener whose calls run on their callers' threads has only close. */
    shmrpc__listener_ops l = {.close = stub_listener_close};
    assert_int_equal(shmrpc__listener_ops_check("fake", &l, &err), 0);
    l.serve = stub_serve;
    refused(shmrpc__listener_ops_check("fake", &l, &err), &err,
            "the fake transport is broken: a listener that serves has no 'stop' entry");
    l.stop = stub_stop;
    assert_int_equal(shmrpc__listener_ops_check("fake", &l, &err), 0);
    l.serve = NULL;
    refused(shmrpc__listener_ops_check("fake", &l, &err), &err,
            "the fake transport is broken: a listener that stops has no 'serve' entry");
    l = (shmrpc__listener_ops){.serve = stub_serve, .stop = stub_stop};
    refused(shmrpc__listener_ops_check("fake", &l, &err), &err,
            "the fake transport is broken: a listener has no 'close' entry");
    shmrpc_buf_destroy(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(library_transports_are_whole),
        cmocka_unit_test(a_table_without_an_entry_is_refused),
        cmocka_unit_test(ops_without_an_entry_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
