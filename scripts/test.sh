#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds everything and runs every test twice: a gcc build, and a clang build with
# AddressSanitizer and UndefinedBehaviorSanitizer that also runs the fuzz targets
# briefly; between the two, the mutant kit (tests/mutants). Then prints the benchmarks'
# figures (they are not pass/fail).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
# playwright-core for the browser test, which both builds run from tests/browser; again
# only when package-lock.json changed since the last install.
lock=tests/browser/package-lock.json
if [ ! -f tests/browser/node_modules/.package-lock.json ] ||
    [ "$lock" -nt tests/browser/node_modules/.package-lock.json ]; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
jobs=$(nproc)

# run_ctest DIR: runs DIR's tests, keeping ctest's output in DIR/ctest.log. A test that
# cannot run here exits 77 and ctest counts it as skipped, not passed (tests/common/skips.h).
# Under CI=true, as root, every test must run: a skip fails the run unless the README's
# line "Tests that may skip in CI:" names it.
run_ctest() {
    { rc=0; ctest --test-dir "$1" --output-on-failure -j "$jobs" || rc=$?; echo $rc >"$1/ctest.rc"; } \
        2>&1 | tee "$1/ctest.log"
    rc=$(cat "$1/ctest.rc")
    [ "$rc" = 0 ] || return "$rc"
    skipped=$(sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (Skipped)$/\1/p' "$1/ctest.log")
    [ -n "$skipped" ] || return 0
    echo "skipped in $1: $(echo $skipped)"
    [ "${CI:-}" = true ] || return 0
    allowed=$(sed -n 's/^Tests that may skip in CI: *//p' README.md | tr -d '`.,')
    for t in $skipped; do
        case " $allowed " in
        *" $t "*) ;;
        *) echo "$t skipped under CI=true; the README names no such skip"; return 1 ;;
        esac
    done
}

echo "== gcc, -Wall -Wextra -Werror"
# The tests, the benchmarks and Python again on: scripts/demo.sh configures build/ without.
CC=gcc cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMRPC_WERROR=ON \
    -DSHMRPC_TESTS=ON -DSHMRPC_BENCH=ON -DCMAKE_DISABLE_FIND_PACKAGE_Python3=OFF \
    -DSHMRPC_REQUIRE_PYTHON=ON >/dev/null
cmake --build build -j "$jobs"
run_ctest build

# One-line bugs planted one at a time in a copy of the tree (build-mutants/, the same gcc
# configuration), each of which must fail a test (tests/mutants/README.md). The tests just
# passed on the tree as it is, so no baseline run.
echo "== mutants"
sh scripts/mutants.sh --no-baseline

echo "== clang, ASan + UBSan, fuzz targets"
CC=clang cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSHMRPC_SANITIZE=ON \
    -DSHMRPC_FUZZ=ON -DSHMRPC_BENCH=OFF -DSHMRPC_WERROR=ON -DSHMRPC_REQUIRE_PYTHON=ON >/dev/null
cmake --build build-asan -j "$jobs"
(
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_ctest build-asan
)

echo "== benchmarks (figures, not tests; a short run: see the README for a full one)"
build/bin/shmrpc-bench-codec
build/bin/shmrpc-bench --quick || echo "shmrpc-bench: a row failed (the bench_smoke test judges that)"
if [ -f build/python/shmrpc/__init__.py ]; then
    PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py --duration 0.5 \
        --echo-server build/bin/echo-server --c-client build/bin/shmrpc-bench-echo ||
        echo "python_bench.py: failed (the bench_python test judges that)"
fi
