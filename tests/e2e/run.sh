#!/usr/bin/env bash
# Runs the composition assistant's end-to-end test (compose.mjs) in headless Chromium.
#   tests/e2e/run.sh COMPOSE_BIN CLOUD_BIN SHARED_DIR OUT_DIR
# Exits 77 (CTest: skipped) with a message saying what to install when chromium or node is
# missing; chromium is not one of Tandem's build dependencies (tests/e2e/setup installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
compose=$1 cloud=$2 shared=$3 out=$4
chromium=${TANDEM_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "SKIP: $chromium not found; run tests/e2e/setup (apt-get install chromium) or set TANDEM_CHROMIUM"
  exit 77
fi
if ! command -v node >/dev/null; then
  echo "SKIP: node not found; run tests/e2e/setup (apt-get install nodejs)"
  exit 77
fi
node_major=$(node -e 'process.stdout.write(process.versions.node.split(".")[0])')
if [ "$node_major" -lt 18 ]; then
  echo "SKIP: node $node_major is too old (fetch needs 18+)"
  exit 77
fi
exec node "$here/compose.mjs" --compose "$compose" --cloud "$cloud" --shared "$shared" --out "$out" --chromium "$chromium"
