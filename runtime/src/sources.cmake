# SPDX-License-Identifier: MIT
# libshmrpc's sources, a list per folder of runtime/src (docs/architecture.md draws the
# folders and their arrows; layers.txt is the table tests/unit/layers_test.py checks).
# Included by runtime/CMakeLists.txt, and by the fuzz targets that build a folder with
# their own instrumentation (tests/fuzz/CMakeLists.txt).
set(SHMRPC_SRC ${CMAKE_CURRENT_LIST_DIR})

# shmrpc_sources(NAME FOLDER FILE...): shmrpc_NAME_sources, the FILEs of runtime/src/FOLDER.
function(shmrpc_sources name folder)
  list(TRANSFORM ARGN PREPEND ${SHMRPC_SRC}/${folder}/ OUTPUT_VARIABLE files)
  set(shmrpc_${name}_sources ${files} PARENT_SCOPE)
endfunction()

# core/: status and messages, buffers, the arena, the wait, /proc, segments, names, the lock
shmrpc_sources(core core status.c version.c msg.c buf.c arena.c wait.c proc.c membarrier.c
  segment.c seg_guard.c seg_open.c names.c lock.c)
list(APPEND shmrpc_core_sources ${PROJECT_SOURCE_DIR}/common/utf8.c) # the one UTF-8 check

# codec/: the msgpack reader, JSON, the any, the dynamic codec
shmrpc_sources(dynamic codec dynamic.c dynamic_types.c dynamic_values.c dynamic_any.c
  dynamic_json.c dynamic_info.c)
shmrpc_sources(codec codec mp_read.c any.c json.c json_any.c)
list(APPEND shmrpc_codec_sources ${shmrpc_dynamic_sources})

# stats/: a worker's call statistics in shared memory
shmrpc_sources(stats stats stats.c)

# queue/: named shared-memory queues, a file per role, from the bottom up (queue_int.h)
shmrpc_sources(queue queue queue_seg.c queue_wake.c queue_frontier.c queue_death.c
  queue_check.c queue_bcast.c queue_wait.c queue_single.c queue_push.c queue_pop.c
  queue_stats.c queue_batch.c queue_span.c queue_repair.c queue_open.c)

# map/: the shared map (map/map_int.h: its files, each calling only those listed before it)
shmrpc_sources(map map map_seg.c map_files.c map_generation.c map_read.c map_space.c
  map_write.c map_iter.c map_info.c map_open.c)

# rpc/: method tables and their compatibility, interceptors, metadata, dispatch, faults injected on
# purpose, the manager and its workers
shmrpc_sources(rpc rpc compat.c verify.c intercept.c meta.c meta_set.c dispatch.c crew.c faults.c)

# transport/: inproc://, shm:// with its rendezvous, tcp:// with frames, auth and TLS
shmrpc_sources(inproc transport/inproc inproc.c)
shmrpc_sources(shm transport/shm shm.c shm_rdv.c shm_stop.c shm_sweep.c shm_handover.c
  shm_ring.c shm_worker.c shm_server.c shm_client.c shm_transport.c)
shmrpc_sources(tcp transport/tcp tcp_transport.c tcp.c tcp_server.c server_worker.c
  server_accept.c server_drain.c server_conn.c server_handshake.c server_call.c
  server_pool.c server_stream.c server_limits.c tcp_client.c client_stream.c client_call.c
  client_inflight.c client_choose.c client_endpoints.c client_dial.c client_conn.c client_route.c
  frame.c auth.c tls.c)

# api/: the client and the server over the transports, the table of transports, and the
# dynamic codec's handle (a client of any service)
shmrpc_sources(api api client.c retry.c server.c transport.c dyn_client.c)

# admin/: what tools see from outside: the admin API over /dev/shm, a server's statistics
shmrpc_sources(admin admin admin.c stats_read.c)

set(shmrpc_sources
  ${shmrpc_core_sources} ${shmrpc_codec_sources} ${shmrpc_stats_sources}
  ${shmrpc_queue_sources} ${shmrpc_map_sources} ${shmrpc_rpc_sources}
  ${shmrpc_inproc_sources} ${shmrpc_shm_sources} ${shmrpc_tcp_sources}
  ${shmrpc_api_sources} ${shmrpc_admin_sources})
