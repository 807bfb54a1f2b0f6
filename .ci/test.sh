#!/usr/bin/env bash
# Builds mnemo into BUILD_DIR and runs the whole test suite with CTest. This
# is the README's test command.
#
# A BUILD_DIR that is already configured (README command 1 made `build`) is
# reused as it is: only what changed is rebuilt, and its options stay. A new
# BUILD_DIR is configured with warnings as errors (CI's strict build). Extra
# arguments go to CMake in both cases; in a configured BUILD_DIR, options
# that differ from its own rebuild what they touch.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
if [[ -f "$build/CMakeCache.txt" ]]; then
  if (($# > 0)); then
    echo "test.sh: reusing the build in '$build' with the options: $*"
    cmake -S . -B "$build" "$@" >/dev/null
  else
    echo "test.sh: reusing the build in '$build' (only changes are rebuilt)"
  fi
else
  echo "test.sh: configuring a new build in '$build' (warnings are errors)"
  cmake -S . -B "$build" -G Ninja -DMNEMO_WERROR=ON "$@" >/dev/null
fi
cmake --build "$build" -j2
ctest --test-dir "$build" --output-on-failure -j2
