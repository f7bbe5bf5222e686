#!/usr/bin/env bash
# Installs the build into a temp prefix, then builds a C consumer with find_package(Tandem)
# and again with pkg-config, and runs both.
set -euo pipefail
# usage: run.sh BUILD_DIR [CFLAGS]   (CFLAGS: the sanitizer flags when the SDK was built with them)
build=$1; cflags=${2:-}; src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" --component Unspecified >/dev/null
cmake -S "$src" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_FLAGS="$cflags" \
  -DCMAKE_EXE_LINKER_FLAGS="$cflags" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/consumer/consumer"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc $cflags "$src/consumer.c" $(pkg-config --cflags --libs tandem) -o "$tmp/pc-consumer"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/pc-consumer"
