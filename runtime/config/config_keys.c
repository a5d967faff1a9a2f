/* SPDX-License-Identifier: MIT */
/* service.ini's keys, one row each: type, where it may be written, range, unit, built-in
 * default and field of cfg_settings, for the parser, the checks and the writer
 * alike. docs/service-ini.md says what each key means; keep the two together. */
#include <stdio.h>

#include "config_internal.h"

/* The offset and C type of a setting's field, both from the member itself: a member of
 * any other type does not compile. (clang-format misaligns the backslashes after
 * _Generic's "char *:".) */
// clang-format off
#define F(member)                                                                           \
    offsetof(cfg_settings, member),                                              \
        _Generic(((cfg_settings *)0)->member, char *: C_STR, int: C_INT,         \
                 int64_t: C_I64, uint64_t: C_U64, bool: C_BOOL)
// clang-format on
/* A key that is no field of cfg_settings. */
#define NO_FIELD 0, C_NONE

const key_def cfg_keys[K_COUNT] = {
    [K_LOG_DIR] = {"log_dir", T_DIR, SETTING, true, 0, 0, 0, NULL, F(log_dir)},
    [K_TCP_BIND] = {"tcp_bind", T_BIND, SETTING, false, 0, 0, 0, "127.0.0.1", F(tcp_bind)},
    [K_SECRET_FILE] = {"secret_file", T_SECRET, SETTING, false, 0, 0, 0, "none", F(secret_file)},
    [K_TLS_CERT] = {"tls_cert_file", T_FILE, SETTING, false, 0, 0, 0, "none", F(tls_cert_file)},
    [K_TLS_KEY] = {"tls_key_file", T_FILE, SETTING, false, 0, 0, 0, "none", F(tls_key_file)},
    [K_TLS_CA] = {"tls_ca_file", T_FILE, SETTING, false, 0, 0, 0, "none", F(tls_ca_file)},
    /* shmrpc_tcp_opts.max_running: 1 to its bound of 256, default its 16. */
    [K_TCP_MAX_RUNNING] = {"tcp_max_running", T_INT, SETTING, false, 1, 256, 0, "16",
                           F(tcp_max_running)},
    [K_MIN_PROC] = {"min_proc_num", T_INT, SETTING, true, 1, MAX_PROCS, 0, "1", F(min_proc_num)},
    [K_MAX_PROC] = {"max_proc_num", T_INT, SETTING, true, 1, MAX_PROCS, 0, NULL, F(max_proc_num)},
    [K_MAX_MEM] = {"max_proc_mem_bytes", T_SIZE, SETTING, true, 1 << 20, INT64_MAX, 0, "none",
                   F(max_proc_mem_bytes)},
    [K_WAIT] = {"wait_until_completed", T_BOOL, SETTING, true, 0, 0, 0, "true",
                F(wait_until_completed)},
    [K_UP_CPU] = {"scale_up_cpu_percent", T_INT, SETTING, true, 1, 100, 0, "30",
                  F(scale_up_cpu_percent)},
    [K_UP_WINDOW] = {"scale_up_window_s", T_INT, SETTING, true, 1, 86400, 1000, "20",
                     F(scale_up_window_ms)},
    [K_DOWN_CPU] = {"scale_down_cpu_percent", T_INT, SETTING, true, 0, 100, 0, "30",
                    F(scale_down_cpu_percent)},
    [K_DOWN_WINDOW] = {"scale_down_window_s", T_INT, SETTING, true, 1, 86400, 1000, "240",
                       F(scale_down_window_ms)},
    [K_BACKOFF] = {"restart_backoff_ms", T_INT, SETTING, true, 1, 3600000, 1, "500",
                   F(restart_backoff_ms)},
    [K_BACKOFF_MAX] = {"restart_backoff_max_ms", T_INT, SETTING, true, 1, 3600000, 1, "30000",
                       F(restart_backoff_max_ms)},
    [K_CRASH_RESTARTS] = {"crash_loop_restarts", T_INT, SETTING, true, 1, 1000, 0, "5",
                          F(crash_loop_restarts)},
    [K_CRASH_WINDOW] = {"crash_loop_window_s", T_INT, SETTING, true, 1, 86400, 1000, "60",
                        F(crash_loop_window_ms)},
    [K_LOG_MAX] = {"log_max_bytes", T_SIZE, SETTING, true, 4096, INT64_MAX, 0, "10M",
                   F(log_max_bytes)},
    [K_LOG_KEEP] = {"log_keep", T_INT, SETTING, true, 0, 1000, 0, "5", F(log_keep)},
    [K_STOP_TIMEOUT] = {"stop_timeout_s", T_INT, SETTING, true, 0, 3600, 1000, "10",
                        F(stop_timeout_ms)},
    [K_STARTUP_TIMEOUT] = {"startup_timeout_s", T_INT, SETTING, true, 1, 3600, 1000, "30",
                           F(startup_timeout_ms)},
    [K_SERIES_INTERVAL] = {"series_interval_s", T_INT, SETTING, true, 1, 3600, 1000, "1",
                           F(series_interval_ms)},
    [K_PICKLE_ALLOW] = {"tcp_allow_insecure_serialisation", T_PICKLE, SETTING, true, 0, 0, 0,
                        "false", NO_FIELD},
    [K_PICKLE_FORCE] = {"force_insecure_serialisation", T_PICKLE, SETTING, true, 0, 0, 0, "false",
                        NO_FIELD},
    [K_MODULE] = {"module", T_MODULE, IN_SERVICE, false, 0, 0, 0, NULL, NO_FIELD},
    [K_MODULE_ARGS] = {"module_args", T_ARGS, IN_SERVICE, false, 0, 0, 0, NULL, NO_FIELD},
    [K_EXEC] = {"exec", T_EXEC, IN_SERVICE, true, 0, 0, 0, NULL, NO_FIELD},
    [K_SHM_NAME] = {"shm_name", T_SHM_NAME, IN_SERVICE, true, 0, 0, 0, NULL, NO_FIELD},
    [K_TCP_PORT] = {"tcp_port", T_PORT, IN_SERVICE, true, 1, 65535, 0, NULL, NO_FIELD},
    [K_WEB_HOST] = {"host", T_WEB_HOST, IN_WEB, false, 0, 0, 0, "127.0.0.1", NO_FIELD},
    [K_WEB_PORT] = {"port", T_PORT, IN_WEB, false, 1, 65535, 0, "5155", NO_FIELD},
    /* No default: [defaults]' secret_file (check_web). */
    [K_WEB_SECRET] = {"secret_file", T_SECRET, IN_WEB, false, 0, 0, 0, NULL, NO_FIELD},
};

/* Whether key k is a field of cfg_settings (key(k)->field). */
bool cfg_is_field(int k)
{
    return (key(k)->in & IN_DEFAULTS) && key(k)->type != T_PICKLE;
}

/* The C type key k's value calls for: char * for T_DIR, T_BIND, T_SECRET and T_FILE; int64_t for
 * a T_INT duration (in ms, so it may pass INT_MAX), int for another T_INT; uint64_t for
 * T_SIZE; bool for T_BOOL. */
static ctype field_ctype(int k)
{
    switch (key(k)->type) {
    case T_DIR:
    case T_BIND:
    case T_SECRET:
    case T_FILE:
        return C_STR;
    case T_INT:
        return key(k)->unit_ms ? C_I64 : C_INT;
    case T_SIZE:
        return C_U64;
    case T_BOOL:
        return C_BOOL;
    /* GCOVR_EXCL_START: unreachable: asked for fields only, and every field key of the
     * constant table has one of the types above */
    default:
        return C_NONE;
        /* GCOVR_EXCL_STOP */
    }
}

int cfg_check_keys(char *msg, size_t cap)
{
    static const char *const names[] = {"none", "char *", "int", "int64_t", "uint64_t", "bool"};
    for (int k = 0; k < K_COUNT; k++) {
        ctype want = cfg_is_field(k) ? field_ctype(k) : C_NONE;
        if (key(k)->ctype == want && (want != C_NONE || key(k)->field == 0)) continue;
        /* GCOVR_EXCL_START: unreachable: the table is a constant that agrees with
         * cfg_settings; this says which key a wrong edit of it broke */
        snprintf(msg, cap,
                 "config_keys.c: key %s: its field in cfg_settings is %s, its type "
                 "calls for %s",
                 key(k)->name, names[key(k)->ctype], names[want]);
        return -1;
        /* GCOVR_EXCL_STOP */
    }
    return 0;
}
