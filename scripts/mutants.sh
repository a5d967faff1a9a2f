#!/bin/sh
# SPDX-License-Identifier: MIT
# The mutant kit (tests/mutants/README.md): applies each one-line bug of tests/mutants/*.mut
# to a scratch copy of the tree, rebuilds the programs of the tests named to catch it, runs
# them, and prints which test caught it. Exits non-zero when a mutant survived, could not be
# applied or did not build.
#   sh scripts/mutants.sh [-k] [--no-baseline] [--list] [GLOB...]
set -eu
exec python3 "$(dirname "$0")/mutants.py" "$@"
