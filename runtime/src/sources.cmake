# SPDX-License-Identifier: MIT
# libshmrpc's sources, a list per folder of runtime/src (docs/architecture.md draws the
# folders and their arrows; layers.txt is the table tests/unit/layers_test.py checks).
# Included by runtime/CMakeLists.txt, and by the fuzz targets that build a folder with
# their own instrumentation (tests/fuzz/CMakeLists.txt).
set(SHMRPC_SRC ${CMAKE_CURRENT_LIST_DIR})

# core/: status and messages, buffers, the arena, the wait, /proc, segments, names, the lock
set(shmrpc_core_sources
  ${SHMRPC_SRC}/core/status.c
  ${SHMRPC_SRC}/core/version.c
  ${SHMRPC_SRC}/core/msg.c
  ${SHMRPC_SRC}/core/buf.c
  ${SHMRPC_SRC}/core/arena.c
  ${SHMRPC_SRC}/core/wait.c
  ${SHMRPC_SRC}/core/proc.c
  ${SHMRPC_SRC}/core/segment.c
  ${SHMRPC_SRC}/core/seg_guard.c
  ${SHMRPC_SRC}/core/names.c
  ${SHMRPC_SRC}/core/lock.c
  ${PROJECT_SOURCE_DIR}/common/utf8.c)

# codec/: the msgpack reader, JSON, the any, the dynamic codec
set(shmrpc_dynamic_sources
  ${SHMRPC_SRC}/codec/dynamic.c
  ${SHMRPC_SRC}/codec/dynamic_values.c
  ${SHMRPC_SRC}/codec/dynamic_any.c
  ${SHMRPC_SRC}/codec/dynamic_json.c
  ${SHMRPC_SRC}/codec/dynamic_info.c)
set(shmrpc_codec_sources
  ${SHMRPC_SRC}/codec/mp_read.c
  ${SHMRPC_SRC}/codec/any.c
  ${SHMRPC_SRC}/codec/json.c
  ${SHMRPC_SRC}/codec/json_any.c
  ${shmrpc_dynamic_sources})

# stats/: a worker's call statistics in shared memory
set(shmrpc_stats_sources
  ${SHMRPC_SRC}/stats/stats.c)

# queue/: named shared-memory queues, a file per role, from the bottom up (queue_int.h)
set(shmrpc_queue_sources
  ${SHMRPC_SRC}/queue/queue_seg.c
  ${SHMRPC_SRC}/queue/queue_wake.c
  ${SHMRPC_SRC}/queue/queue_frontier.c
  ${SHMRPC_SRC}/queue/queue_death.c
  ${SHMRPC_SRC}/queue/queue_check.c
  ${SHMRPC_SRC}/queue/queue_bcast.c
  ${SHMRPC_SRC}/queue/queue_wait.c
  ${SHMRPC_SRC}/queue/queue_single.c
  ${SHMRPC_SRC}/queue/queue_push.c
  ${SHMRPC_SRC}/queue/queue_pop.c
  ${SHMRPC_SRC}/queue/queue_stats.c
  ${SHMRPC_SRC}/queue/queue_batch.c
  ${SHMRPC_SRC}/queue/queue_span.c
  ${SHMRPC_SRC}/queue/queue_repair.c
  ${SHMRPC_SRC}/queue/queue_open.c)

# map/: the shared map (map/map_int.h: its files, each calling only those listed before it)
set(shmrpc_map_sources
  ${SHMRPC_SRC}/map/map_seg.c
  ${SHMRPC_SRC}/map/map_files.c
  ${SHMRPC_SRC}/map/map_generation.c
  ${SHMRPC_SRC}/map/map_read.c
  ${SHMRPC_SRC}/map/map_space.c
  ${SHMRPC_SRC}/map/map_write.c
  ${SHMRPC_SRC}/map/map_iter.c
  ${SHMRPC_SRC}/map/map_info.c
  ${SHMRPC_SRC}/map/map_open.c)

# rpc/: method tables, dispatch, the manager and its workers
set(shmrpc_rpc_sources
  ${SHMRPC_SRC}/rpc/verify.c
  ${SHMRPC_SRC}/rpc/dispatch.c
  ${SHMRPC_SRC}/rpc/crew.c)

# transport/: inproc://, shm:// with its rendezvous, tcp:// with frames, auth and TLS
set(shmrpc_inproc_sources
  ${SHMRPC_SRC}/transport/inproc/inproc.c)
set(shmrpc_shm_sources
  ${SHMRPC_SRC}/transport/shm/shm.c
  ${SHMRPC_SRC}/transport/shm/shm_rdv.c
  ${SHMRPC_SRC}/transport/shm/shm_stop.c
  ${SHMRPC_SRC}/transport/shm/shm_sweep.c
  ${SHMRPC_SRC}/transport/shm/shm_handover.c
  ${SHMRPC_SRC}/transport/shm/shm_worker.c
  ${SHMRPC_SRC}/transport/shm/shm_server.c
  ${SHMRPC_SRC}/transport/shm/shm_client.c
  ${SHMRPC_SRC}/transport/shm/shm_transport.c)
set(shmrpc_tcp_sources
  ${SHMRPC_SRC}/transport/tcp/tcp_transport.c
  ${SHMRPC_SRC}/transport/tcp/tcp.c
  ${SHMRPC_SRC}/transport/tcp/tcp_server.c
  ${SHMRPC_SRC}/transport/tcp/server_worker.c
  ${SHMRPC_SRC}/transport/tcp/server_accept.c
  ${SHMRPC_SRC}/transport/tcp/server_drain.c
  ${SHMRPC_SRC}/transport/tcp/server_conn.c
  ${SHMRPC_SRC}/transport/tcp/server_handshake.c
  ${SHMRPC_SRC}/transport/tcp/server_call.c
  ${SHMRPC_SRC}/transport/tcp/server_pool.c
  ${SHMRPC_SRC}/transport/tcp/server_limits.c
  ${SHMRPC_SRC}/transport/tcp/tcp_client.c
  ${SHMRPC_SRC}/transport/tcp/client_call.c
  ${SHMRPC_SRC}/transport/tcp/client_inflight.c
  ${SHMRPC_SRC}/transport/tcp/client_choose.c
  ${SHMRPC_SRC}/transport/tcp/client_endpoints.c
  ${SHMRPC_SRC}/transport/tcp/client_dial.c
  ${SHMRPC_SRC}/transport/tcp/client_conn.c
  ${SHMRPC_SRC}/transport/tcp/frame.c
  ${SHMRPC_SRC}/transport/tcp/auth.c
  ${SHMRPC_SRC}/transport/tcp/tls.c)

# api/: the client and the server over the transports, the table of transports, and the
# dynamic codec's handle (a client of any service)
set(shmrpc_api_sources
  ${SHMRPC_SRC}/api/client.c
  ${SHMRPC_SRC}/api/server.c
  ${SHMRPC_SRC}/api/transport.c
  ${SHMRPC_SRC}/api/dyn_client.c)

# admin/: what tools see from outside: the admin API over /dev/shm, a server's statistics
set(shmrpc_admin_sources
  ${SHMRPC_SRC}/admin/admin.c
  ${SHMRPC_SRC}/admin/stats_read.c)

set(shmrpc_sources
  ${shmrpc_core_sources} ${shmrpc_codec_sources} ${shmrpc_stats_sources}
  ${shmrpc_queue_sources} ${shmrpc_map_sources} ${shmrpc_rpc_sources}
  ${shmrpc_inproc_sources} ${shmrpc_shm_sources} ${shmrpc_tcp_sources}
  ${shmrpc_api_sources} ${shmrpc_admin_sources})
