# SPDX-License-Identifier: MIT
# shmrpc_generate(TARGET t IDL a.svc [b.svc ...] [CLIENT] [SERVER] [OUT_DIR dir])
#
# Generates C code from each .svc file with shmrpcgen and adds it to target t: the
# header and method table always, the client stubs with CLIENT, the server glue with
# SERVER (neither flag: both). The outputs depend on the .svc and on shmrpcgen itself,
# so a rebuilt generator regenerates. OUT_DIR defaults to a folder of the target's own
# in the current binary directory, which is added to t's include path.
#
# Shipped in-tree and in the installed package (find_package(shmrpc CONFIG)), which enables
# C in a project that did not (the generated code is C; a C++ program calls it).
function(shmrpc_generate)
  cmake_parse_arguments(PARSE_ARGV 0 G "CLIENT;SERVER" "TARGET;OUT_DIR" "IDL")
  if(G_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "shmrpc_generate: unknown arguments: ${G_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT G_TARGET OR NOT TARGET ${G_TARGET})
    message(FATAL_ERROR "shmrpc_generate: TARGET must name an existing target")
  endif()
  if(NOT G_IDL)
    message(FATAL_ERROR "shmrpc_generate: IDL needs at least one .svc file")
  endif()
  # Without C the generated .c files would be left out silently, and the link would fail
  # on an undefined NAME_service_info.
  if(NOT CMAKE_C_COMPILER_LOADED)
    message(FATAL_ERROR "shmrpc_generate: the generated code is C, and C is not enabled in "
                        "this directory: add C to project(... LANGUAGES ...) or call "
                        "enable_language(C) at the top level")
  endif()
  if(NOT G_CLIENT AND NOT G_SERVER)
    set(G_CLIENT ON)
    set(G_SERVER ON)
  endif()
  if(NOT G_OUT_DIR)
    set(G_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/${G_TARGET}_shmrpc)
  endif()
  file(MAKE_DIRECTORY ${G_OUT_DIR})

  foreach(idl IN LISTS G_IDL)
    get_filename_component(idl ${idl} ABSOLUTE)
    # shmrpcgen drops only the last ".svc": "echo.v2.svc" makes echo.v2.h.
    get_filename_component(stem ${idl} NAME_WLE)
    set(outputs ${G_OUT_DIR}/${stem}.h ${G_OUT_DIR}/${stem}.c ${G_OUT_DIR}/${stem}_client.c
                ${G_OUT_DIR}/${stem}_server.c)
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND shmrpc::shmrpcgen -o ${G_OUT_DIR} --depfile ${G_OUT_DIR}/${stem}.d ${idl}
      DEPENDS ${idl} shmrpc::shmrpcgen
      DEPFILE ${G_OUT_DIR}/${stem}.d
      COMMENT "shmrpcgen ${stem}.svc"
      VERBATIM)
    set(sources ${G_OUT_DIR}/${stem}.h ${G_OUT_DIR}/${stem}.c)
    if(G_CLIENT)
      list(APPEND sources ${G_OUT_DIR}/${stem}_client.c)
    endif()
    if(G_SERVER)
      list(APPEND sources ${G_OUT_DIR}/${stem}_server.c)
    endif()
    target_sources(${G_TARGET} PRIVATE ${sources})
  endforeach()
  target_include_directories(${G_TARGET} PUBLIC $<BUILD_INTERFACE:${G_OUT_DIR}>)
  target_link_libraries(${G_TARGET} PUBLIC shmrpc::runtime)
endfunction()
