#!/usr/bin/env bash
# tandem-cloud's OpenAI API through the official `openai` npm client (client.mjs).
#   tests/openai/run.sh CLOUD_BIN SHARED_DIR WORK_DIR
# Installs the client pinned in package.json into WORK_DIR (a build directory, ignored by git;
# reused while the version matches), then runs client.mjs, which starts tandem-cloud itself.
# Exits 77 (CTest: skipped), saying why, when Node.js or npm is missing (tests/e2e/setup
# installs them) or the package cannot be installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cloud=$1 shared=$2 work=$3
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "skipped: node or npm not found; run tests/e2e/setup (apt-get install nodejs npm)"
  exit 77
fi
node_major=$(node -e 'process.stdout.write(process.versions.node.split(".")[0])')
if [ "$node_major" -lt 18 ]; then
  echo "skipped: node $node_major is too old (the openai package needs 18+)"
  exit 77
fi
want=$(node -e 'process.stdout.write(require(process.argv[1]).dependencies.openai)' "$here/package.json")
have=$(node -e 'try { process.stdout.write(require(process.argv[1]).version) } catch (e) {}' \
  "$work/node_modules/openai/package.json" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  mkdir -p "$work"
  cp "$here/package.json" "$work/package.json"
  if ! log=$(cd "$work" && npm install --no-audit --no-fund --loglevel=error 2>&1); then
    echo "skipped: npm could not install openai@$want into $work: $(echo "$log" | tail -3)"
    exit 77
  fi
fi
exec node "$here/client.mjs" --cloud "$cloud" --model "$shared/models/stories260K.gguf" --packages "$work"
