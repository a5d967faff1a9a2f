# SPDX-License-Identifier: MIT
# The libraries shmrpc builds on, all from Debian's packages.

# msgpack-c: Debian 12's 4.0 installs its package as `msgpack` (target msgpackc);
# newer releases call it `msgpack-c`. Accept both and expose one name.
find_package(msgpack-c CONFIG QUIET)
if(TARGET msgpack-c)
  set(SHMRPC_MSGPACK_TARGET msgpack-c)
else()
  find_package(msgpack CONFIG REQUIRED)
  set(SHMRPC_MSGPACK_TARGET msgpackc)
endif()

find_package(PkgConfig REQUIRED)
# Where msgpack's headers are, for shmrpc.pc's Cflags (generated code includes <msgpack.h>).
pkg_check_modules(MSGPACK_PC QUIET msgpack)
set(SHMRPC_PC_MSGPACK_CFLAGS "")
foreach(flag IN LISTS MSGPACK_PC_CFLAGS)
  if(NOT flag STREQUAL "-I/usr/include")
    string(APPEND SHMRPC_PC_MSGPACK_CFLAGS " ${flag}")
  endif()
endforeach()
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
# Per-frame compression of the TCP transport: snappy (its C binding, snappy-c.h) and zlib.
pkg_check_modules(SNAPPY REQUIRED IMPORTED_TARGET snappy)
pkg_check_modules(ZLIB REQUIRED IMPORTED_TARGET zlib)
# The shared secret of the TCP transport: HMAC-SHA-256 and random numbers.
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
# TLS 1.3 of the TCP transport (runtime/src/transport/tcp/tls.c): OpenSSL's libssl, 1.1.1 or newer (the
# first with TLS 1.3). It is not optional: every build can serve and call over TLS, so
# one library's options mean the same everywhere (docs/install.md).
pkg_check_modules(OPENSSL QUIET IMPORTED_TARGET libssl>=1.1.1 libcrypto>=1.1.1)
if(NOT OPENSSL_FOUND)
  message(FATAL_ERROR "OpenSSL 1.1.1 or newer was not found (pkg-config libssl libcrypto): "
                      "shmrpc needs it for TLS over tcp://. On Debian: apt-get install libssl-dev "
                      "(or run scripts/deps.sh).")
endif()

find_program(RE2C re2c REQUIRED)
find_program(LEMON lemon REQUIRED)
find_file(LEMON_TEMPLATE lempar.c PATHS /usr/share/lemon /usr/local/share/lemon REQUIRED)
