# SPDX-License-Identifier: MIT
# Run by `cmake --install` (install(SCRIPT), after install(CODE) has set SHMRPC_PC_BUILT, the
# configured shmrpc.pc, and SHMRPC_PC_DIR, where it goes under the prefix): installs shmrpc.pc
# with prefix= the prefix it is being installed to, which --prefix may have changed since
# the build was configured. DESTDIR is not part of it: a staged root is read with
# PKG_CONFIG_SYSROOT_DIR.
# The file written on the way goes to a folder named for where it is installed (DESTDIR and
# prefix), so that two installs from one build at once (two tests, each to a prefix of its
# own) do not write each other's; two to the same place write the same bytes.
file(READ "${SHMRPC_PC_BUILT}" pc)
string(REGEX REPLACE "(^|\n)prefix=[^\n]*" "\\1prefix=${CMAKE_INSTALL_PREFIX}" pc "${pc}")
string(SHA256 tag "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
string(SUBSTRING "${tag}" 0 16 tag)
set(dir "$ENV{TMPDIR}")
if(NOT dir)
  set(dir /tmp)
endif()
set(dir "${dir}/shmrpc-pc-${tag}")
file(WRITE "${dir}/shmrpc.pc" "${pc}")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${SHMRPC_PC_DIR}" TYPE FILE
     FILES "${dir}/shmrpc.pc")
file(REMOVE_RECURSE "${dir}")
