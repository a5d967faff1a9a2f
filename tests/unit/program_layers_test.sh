#!/bin/sh
# SPDX-License-Identifier: MIT
# The programs' folders depend one way (runtime/observe/CMakeLists.txt has the picture):
#   supervisor/ -> web/ -> observe/ -> config/ -> the library, and ctl/ -> config/.
# Fails naming each file that includes a header of a folder it must not depend on: the
# page including the supervisor's headers again (which made them a cycle), or a library
# below including one of the programs above it.
# Usage: program_layers_test.sh RUNTIME_DIR (the source tree's runtime/)
set -u
rt=${1:?usage: program_layers_test.sh RUNTIME_DIR}
[ -d "$rt/web" ] && [ -d "$rt/supervisor" ] || { echo "program_layers_test: no $rt/web or $rt/supervisor"; exit 2; }
# What each folder must not include from: the folders above it, and those beside it.
forbidden() {
    case "$1" in
    config) echo observe web supervisor ctl ;;
    observe) echo web supervisor ctl ;;
    web) echo supervisor ctl ;;
    ctl) echo web supervisor ;;
    supervisor) echo ctl ;;
    esac
}
status=0
for dir in config observe web ctl supervisor; do
    [ -d "$rt/$dir" ] || continue
    for f in "$rt/$dir"/*.c "$rt/$dir"/*.h; do
        [ -f "$f" ] || continue
        for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
            [ -f "$rt/$dir/$h" ] && continue # its own folder's
            for other in $(forbidden "$dir"); do
                if [ -f "$rt/$other/$h" ]; then
                    echo "$dir/$(basename "$f") includes $other/$h"
                    status=1
                fi
            done
        done
    done
done
[ $status -eq 0 ] && echo "the programs' folders depend one way: supervisor -> web -> observe -> config"
exit $status
