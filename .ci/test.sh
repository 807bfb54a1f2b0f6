#!/usr/bin/env bash
# Builds mnemo into BUILD_DIR (extra arguments go to CMake) and runs the whole
# test suite with CTest. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
cmake -S . -B "$build" -G Ninja -DMNEMO_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j2
ctest --test-dir "$build" --output-on-failure -j2
