#!/usr/bin/env bash
# Installs the build into a temp prefix, checks the installed programs (tandem, tandem-cloud,
# tandem-compose) run from there, then builds a C consumer with find_package(Tandem) and again
# with pkg-config, and the quick starts of docs/sdk.md (C and C++, taken from the page) both
# ways, and runs them all without LD_LIBRARY_PATH: the run paths must find libtandem.
set -euo pipefail
# usage: run.sh BUILD_DIR [CFLAGS] [MODEL] [SDK_DOC]
#   CFLAGS: the sanitizer flags when the SDK was built with them; MODEL: a GGUF the quick starts
#   run on (stories260K); SDK_DOC: docs/sdk.md. Without MODEL the quick starts are not run.
build=$1; cflags=${2:-}; model=${3:-}; src=$(cd "$(dirname "$0")" && pwd)
doc=${4:-$src/../../docs/sdk.md}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
unset LD_LIBRARY_PATH
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
"$tmp/consumer/consumer"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc $cflags "$src/consumer.c" $(pkg-config --cflags --libs tandem) -o "$tmp/pc-consumer"
"$tmp/pc-consumer"

# The quick starts: the blocks after <!-- quickstart.c -->, <!-- quickstart.cpp --> and
# <!-- CMakeLists.txt --> in docs/sdk.md.
qs="$tmp/quickstart"; mkdir -p "$qs"
for name in quickstart.c quickstart.cpp CMakeLists.txt; do
  awk -v marker="<!-- $name -->" '
    $0 == marker { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$doc" > "$qs/$name"
  [ -s "$qs/$name" ] || { echo "docs/sdk.md has no block after <!-- $name -->" >&2; exit 1; }
done
cmake -S "$qs" -B "$qs/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_CXX_FLAGS="$cflags" \
  -DCMAKE_EXE_LINKER_FLAGS="$cflags" >/dev/null
cmake --build "$qs/build" >/dev/null
cc $cflags "$qs/quickstart.c" $(pkg-config --cflags --libs tandem) -o "$qs/pc-quickstart"
c++ -std=c++17 $cflags "$qs/quickstart.cpp" $(pkg-config --cflags --libs tandem) -o "$qs/pc-quickstart-cpp"
for prog in "$qs/build/quickstart" "$qs/build/quickstart-cpp" "$qs/pc-quickstart" "$qs/pc-quickstart-cpp"; do
  readelf -d "$prog" | grep -q "$tmp/prefix/lib" || { echo "$prog: no run path to $tmp/prefix/lib" >&2; exit 1; }
  if [ -n "$model" ]; then
    out=$("$prog" "$model" 2>/dev/null)
    # The suggestion ends with its sentence (docs/sdk.md shows this line).
    grep -qx "Once upon a time, there was a little girl named Lily." <<<"$out" ||
      { echo "$prog printed: $out" >&2; exit 1; }
  fi
done
echo "install test: consumers and the docs/sdk.md quick starts ran without LD_LIBRARY_PATH"
