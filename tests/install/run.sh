#!/usr/bin/env bash
# Installs the build into a temp prefix, checks the installed programs (tandem, tandem-cloud,
# tandem-compose) run from there, then builds a C consumer with find_package(Tandem) and again
# with pkg-config, and runs both.
set -euo pipefail
# usage: run.sh BUILD_DIR [CFLAGS]   (CFLAGS: the sanitizer flags when the SDK was built with them)
build=$1; cflags=${2:-}; src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" --component Unspecified >/dev/null
for prog in tandem tandem-cloud tandem-compose; do
  [ -x "$tmp/prefix/bin/$prog" ] || { echo "not installed: bin/$prog" >&2; exit 1; }
  "$tmp/prefix/bin/$prog" --help >/dev/null || { echo "bin/$prog --help failed" >&2; exit 1; }
done
version=$("$tmp/prefix/bin/tandem" --version)
[[ $version =~ ^tandem\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "tandem --version printed '$version'" >&2; exit 1; }
cmake -S "$src" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_FLAGS="$cflags" \
  -DCMAKE_EXE_LINKER_FLAGS="$cflags" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/consumer/consumer"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc $cflags "$src/consumer.c" $(pkg-config --cflags --libs tandem) -o "$tmp/pc-consumer"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/pc-consumer"
