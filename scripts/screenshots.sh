#!/bin/sh
# SPDX-License-Identifier: MIT
# Regenerates docs/img/overview.png and docs/img/service.png, the README's pictures of the
# management page: the browser test's --screenshots mode runs the echo module and
# echo-server under shmrpc-service, calls echo for 15 s, then photographs both pages.
#   scripts/screenshots.sh [BUILD_DIR]     (default: build, configured as scripts/test.sh does)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
sh scripts/deps.sh
[ -d tests/browser/node_modules/playwright-core ] ||
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
[ -f "$build/build.ninja" ] ||
    CC=gcc cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target shmrpc-service echo-module echo-server
node tests/browser/browser_test.mjs --service "$build/bin/shmrpc-service" \
    --module "$build/lib/echo-module.so" --echo-server "$build/bin/echo-server" --screenshots docs/img
