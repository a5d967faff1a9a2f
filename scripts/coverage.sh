#!/bin/sh
# SPDX-License-Identifier: MIT
# Line and branch coverage of the suite: builds with gcc and --coverage in build-coverage/
# (SHMRPC_COVERAGE: servers, forked workers and test children write their counts also when
# they end by _exit or SIGTERM; see cmake/coverage_exit.c), runs every test once, and prints
# the figures per folder and per file with gcovr, lowest first. tests/, third_party/, bench/
# and the generated sources of the build tree are left out of the figures. The HTML report,
# each line annotated, is build-coverage/coverage/index.html.
# Not part of scripts/test.sh or CI (a full build and run, slower than the normal one).
#   scripts/coverage.sh [ctest arguments...]   (e.g. -R '^map_' to run some tests only)
# A test that fails is reported, and the figures are printed all the same.
set -eu
cd "$(dirname "$0")/.."
command -v gcovr >/dev/null || sh scripts/deps.sh
dir=build-coverage
jobs=${JOBS:-$(nproc)}
# -O0 (Debug): each line and branch counted is one of the source, not one the optimizer
# made or merged. Without -Werror: gcc warns more (format-truncation) in this build.
CC=gcc cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSHMRPC_COVERAGE=ON \
    -DSHMRPC_WERROR=OFF -DSHMRPC_FUZZ=OFF >/dev/null
cmake --build "$dir" -j "$jobs"
# The counts of one run of the suite, not the sum over every run since the build.
find "$dir" -name '*.gcda' -delete
# The uid tests' processes of other users (nobody, 65533) write their counts too: for the
# run, the tree's folders let anyone make files (sticky: nobody removes another's), and a
# default ACL makes each .gcda file writable by all, whoever made it first (an ACL, not a
# umask of 0, which would change the modes of what the tests themselves create).
command -v setfacl >/dev/null || sh scripts/deps.sh
open_tree() {
    find "$dir" -type d -exec chmod "$1" {} +
    if [ "$1" = 1777 ]; then
        find "$dir" -type d -exec setfacl -m d:u::rw,d:g::rw,d:o::rw {} +
    else
        setfacl -R -k "$dir"
        find "$dir" -name '*.gcda' -exec chmod 644 {} +
    fi
}
open_tree 1777
trap 'open_tree 755' EXIT
failed=0
ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" || failed=1

out=$dir/coverage
rm -rf "$out"
mkdir -p "$out"
# gcovr reads the counts of each object (-r .: names are relative to the source tree);
# --exclude-unreachable-branches drops the branches gcc makes on lines with no code;
# --gcov-ignore-parse-errors: a count gcov cannot print (one a race left negative, which
# -fprofile-update=atomic should prevent) costs its line, not the whole report.
gcovr -r . --object-directory "$dir" -j "$jobs" \
    --exclude '(.*/)?tests/' --exclude 'third_party/' --exclude 'bench/' \
    --exclude "$dir/" --exclude 'build[^/]*/' \
    --exclude-unreachable-branches --gcov-ignore-parse-errors \
    --json-summary "$out/summary.json" --json "$out/coverage.json" \
    --html-details "$out/index.html" --html-title "shmrpc coverage" \
    --txt "$out/files.txt" --sort-percentage >/dev/null
python3 scripts/coverage_table.py "$out/summary.json" "$out/coverage.json"
echo "per file: $out/files.txt; annotated: $out/index.html"
if [ "$failed" -ne 0 ]; then
    echo "coverage.sh: some tests failed (above); the figures count what ran" >&2
    exit 1
fi
