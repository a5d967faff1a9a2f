# SPDX-License-Identifier: MIT
# Run by `cmake --install` (install(SCRIPT), after install(CODE) has set SHMRPC_PC_BUILT, the
# configured shmrpc.pc, and SHMRPC_PC_DIR, where it goes under the prefix): installs shmrpc.pc
# with prefix= the prefix it is being installed to, which --prefix may have changed since
# the build was configured. DESTDIR is not part of it: a staged root is read with
# PKG_CONFIG_SYSROOT_DIR.
file(READ "${SHMRPC_PC_BUILT}" pc)
string(REGEX REPLACE "(^|\n)prefix=[^\n]*" "\\1prefix=${CMAKE_INSTALL_PREFIX}" pc "${pc}")
get_filename_component(dir "${SHMRPC_PC_BUILT}" DIRECTORY)
file(WRITE "${dir}/pc-install/shmrpc.pc" "${pc}")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${SHMRPC_PC_DIR}" TYPE FILE
     FILES "${dir}/pc-install/shmrpc.pc")
