#!/bin/bash
# SPDX-License-Identifier: MIT
# A manual reproduction (not run by ctest; needs gdb): a producer reaping a dead broadcast
# subscriber is held by gdb inside free_sub, with the dead owner already read, while
# another producer frees the slot and a new subscriber takes it; the held producer then
# goes on. The new subscriber must still have its bit in `subs` ("subs word now 0x1"); the
# old free_sub cleared it ("0"). Usage: free_sub_race.sh BUILD_DIR (a Debug build, where
# free_sub is not inlined, e.g. build-asan).
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; rm -f /dev/shm/shmrpc.queue.racedemo.$$' EXIT
cd "$tmp"
cc -g -I "$here/../../../runtime/include" "$here/free_sub_race.c" -o race -L "$build/lib" -lshmrpc \
    -Wl,-rpath,"$build/lib" $(grep -q "^SHMRPC_SANITIZE:BOOL=ON" "$build/CMakeCache.txt" 2>/dev/null && echo -fsanitize=address,undefined)
export ASAN_OPTIONS=detect_leaks=0
Q=racedemo.$$
./race create $Q
./race sub $Q 100 &
V=$!
sleep 0.5
kill -9 $V
wait $V 2>/dev/null || true
echo "subscriber $V killed: slot 0 and bit 0 left to a dead owner"
./race push $Q 2 0
cat >gdbcmds <<G
set pagination off
set breakpoint pending on
break free_sub
commands 1
  silent
  printf "held producer stopped in free_sub(slot %d, owner pid %llu)\n", i, owner & 0xffffffff
  shell ./race push $Q 1 5000
  shell ./race sub $Q 3 > sub.out &
  shell sleep 1
  continue
end
run push $Q 1 5000
G
gdb -q -batch -x gdbcmds --args ./race 2>&1 | grep -E "^held|^push"
sleep 3
cat sub.out
