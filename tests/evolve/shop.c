/* SPDX-License-Identifier: MIT */
/* One build of Shop (shop_v1.svc, or shop_v2.svc with SHOP_V2): "server ADDR" serves it
 * until SIGTERM; "client ADDR" connects (for up to 5 s), prints what the handshake said and
 * one line per call, and exits 0 (evolve_test.sh runs every pair of builds over shm:// and
 * tcp:// and compares the lines with what compatible evolution promises). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include SHOP_HEADER

/* --- the server ----------------------------------------------------------------------- */

static int h_add(shmrpc_ctx *ctx, int64_t a, int64_t b, int64_t *out)
{
    (void)ctx;
    *out = a + b;
    return 0;
}

static int h_get(shmrpc_ctx *ctx, int64_t id, shop_Item *out)
{
    static char name[32];
    snprintf(name, sizeof name, "item%lld", (long long)id);
    memset(out, 0, sizeof *out);
    out->id = id;
    out->name = shmrpc_str_c(name);
#ifdef SHOP_V2
    out->note.has = true;
    out->note.value = shmrpc_str_c("v2 note");
#endif
    (void)ctx;
    return 0;
}

#ifdef SHOP_V2
static int h_sum(shmrpc_ctx *ctx, shop_list_I64 xs, shop_opt_I64 start, int64_t *out)
{
    *out = start.has ? start.value : 0;
#else
static int h_sum(shmrpc_ctx *ctx, shop_list_I64 xs, int64_t *out)
{
    *out = 0;
#endif
    for (size_t i = 0; i < xs.len; i++)
        *out += xs.items[i];
    (void)ctx;
    return 0;
}

/* green comes back as the newest value this build knows. */
static int h_paint(shmrpc_ctx *ctx, shop_Color c, shop_Color *out)
{
    (void)ctx;
#ifdef SHOP_V2
    *out = c == shop_Color_green ? shop_Color_blue : c;
#else
    *out = c;
#endif
    return 0;
}

/* n items of ids 1..n and empty names (at most 8), notes in v2. */
static int h_list_items(shmrpc_ctx *ctx, int64_t n, shop_list_Item *out)
{
    static shop_Item items[8];
    size_t len = n < 0 ? 0 : n > 8 ? 8 : (size_t)n;
    for (size_t i = 0; i < len; i++) {
        memset(&items[i], 0, sizeof items[i]);
        items[i].id = (int64_t)i + 1;
        items[i].name = shmrpc_str_c("");
#ifdef SHOP_V2
        items[i].note.has = true;
        items[i].note.value = shmrpc_str_c("n");
#endif
    }
    *out = (shop_list_Item){items, len};
    (void)ctx;
    return 0;
}

static const Shop_handlers handlers = {.add = h_add,
                                       .get = h_get,
                                       .get_json = h_get,
                                       .sum = h_sum,
                                       .sum_json = h_sum,
                                       .paint = h_paint,
                                       .list_items = h_list_items};

static shmrpc_server *server;

static void on_term(int sig)
{
    (void)sig;
    shmrpc_server_stop(server);
}

static int serve(const char *addr)
{
    int rc = shmrpc_server_new(&server, NULL);
    if (rc == 0) rc = shmrpc_server_register(server, &Shop_service, &handlers, NULL);
    if (rc == 0) rc = shmrpc_server_listen(server, addr);
    if (rc != 0) {
        fprintf(stderr, "serve %s: %s: %s\n", addr, shmrpc_strerror(rc), shmrpc_errmsg());
        return 1;
    }
    signal(SIGTERM, on_term);
    alarm(60); /* a watchdog: a test that lost this server does not leave it running */
    rc = shmrpc_server_serve(server, 1);
    shmrpc_server_free(server);
    return rc == 0 ? 0 : 1;
}

/* --- the client ----------------------------------------------------------------------- */

static void item_line(const char *what, int rc, const shop_Item *it)
{
    if (rc != 0) {
        printf("%s: %s: %s\n", what, shmrpc_strerror(rc), shmrpc_errmsg());
        return;
    }
    printf("%s %lld %.*s", what, (long long)it->id, (int)it->name.len, it->name.ptr);
#ifdef SHOP_V2
    if (it->note.has)
        printf(" note=%.*s", (int)it->note.value.len, it->note.value.ptr);
    else
        printf(" note=none");
#endif
    printf("\n");
}

static int client(const char *addr)
{
    shmrpc_client *c;
    int rc = shmrpc_client_new(&c, &Shop_service_info, NULL);
    if (rc == 0) rc = shmrpc_client_connect(c, addr);
    for (int i = 0; i < 500 && rc == SHMRPC_EUNAVAIL; i++) { /* the server starting */
        usleep(10000);
        rc = shmrpc_client_connect(c, addr);
    }
    if (rc != 0) {
        printf("connect: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
        shmrpc_client_free(c);
        return 0;
    }
    const char *compat = shmrpc_client_compat(c);
    printf("compat: %s\n", *compat ? compat : "the same");
    int64_t r = 0;
    rc = shop_add(c, 40, 2, &r);
    printf(rc ? "add: %lld %s\n" : "add %lld\n", (long long)r, rc ? shmrpc_errmsg() : "");
    shop_Item it;
    item_line("get", shop_get(c, 7, &it), &it);
    item_line("get_json", shop_get_json(c, 7, &it), &it);
    static const int64_t xs[] = {1, 2, 3};
    shop_list_I64 list = {xs, 3};
#ifdef SHOP_V2
    rc = shop_sum(c, list, (shop_opt_I64){true, 10}, &r);
#else
    rc = shop_sum(c, list, &r);
#endif
    printf(rc ? "sum: %lld %s\n" : "sum %lld\n", (long long)r, rc ? shmrpc_errmsg() : "");
#ifdef SHOP_V2
    rc = shop_sum_json(c, list, (shop_opt_I64){true, 10}, &r);
#else
    rc = shop_sum_json(c, list, &r);
#endif
    printf(rc ? "sum_json: %lld %s\n" : "sum_json %lld\n", (long long)r, rc ? shmrpc_errmsg() : "");
    shop_Color col;
    for (shop_Color in = shop_Color_red; in <= shop_Color_green; in++) {
        rc = shop_paint(c, in, &col);
        if (rc)
            printf("paint %d: %s: %s\n", (int)in, shmrpc_strerror(rc), shmrpc_errmsg());
        else
            printf("paint %d %d\n", (int)in, (int)col);
    }
    shop_list_Item items;
    rc = shop_list_items(c, 3, &items);
    if (rc) {
        printf("list_items: %s: %s\n", shmrpc_strerror(rc), shmrpc_errmsg());
    } else {
        printf("list_items");
        for (size_t i = 0; i < items.len; i++)
            printf(" %lld", (long long)items.items[i].id);
        printf("\n");
    }
    shmrpc_client_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0) return serve(argv[2]);
    if (argc == 3 && strcmp(argv[1], "client") == 0) return client(argv[2]);
    fprintf(stderr, "usage: %s server|client ADDR\n", argv[0]);
    return 2;
}
