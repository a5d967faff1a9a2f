/* SPDX-License-Identifier: MIT */
/* What every public header puts around its declarations: C linkage for C++ callers, and the
 * default visibility that exports them from libshmrpc.so, which hides everything else. */
#ifndef SHMRPC_DECLS_H
#define SHMRPC_DECLS_H

#ifdef __cplusplus
#define SHMRPC_BEGIN_DECLS                                                                         \
    extern "C" {                                                                                   \
    _Pragma("GCC visibility push(default)")
#define SHMRPC_END_DECLS                                                                           \
    _Pragma("GCC visibility pop")                                                                  \
    }
#else
#define SHMRPC_BEGIN_DECLS _Pragma("GCC visibility push(default)")
#define SHMRPC_END_DECLS _Pragma("GCC visibility pop")
#endif

#endif
