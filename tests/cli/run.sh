#!/usr/bin/env bash
# The `tandem` command line as people type it (llama.cpp's flag names): --version, --help on
# every subcommand (exit 0, options with defaults), a bad flag exits 2 with the usage, the
# -n/-c/-t/-ngl/-s flags are accepted, statistics start a line of their own on stderr, and the
# GPU asked for but not used is said in capitals.
# usage: run.sh TANDEM_BINARY SHARED_DIR
set -uo pipefail
tandem=$1; shared=$2
model=$shared/models/stories260K.gguf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
passed=0; failed=0

# check NAME WANT_RC REGEX_STDOUT REGEX_STDERR -- COMMAND...   (an empty regex matches anything)
check() {
  local name=$1 want_rc=$2 out_re=$3 err_re=$4; shift 5
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$? why=""
  [ "$rc" = "$want_rc" ] || why="exit $rc, wanted $want_rc"
  [ -z "$why" ] && [ -n "$out_re" ] && ! grep -Eq -- "$out_re" "$tmp/out" && why="stdout lacks /$out_re/"
  [ -z "$why" ] && [ -n "$err_re" ] && ! grep -Eq -- "$err_re" "$tmp/err" && why="stderr lacks /$err_re/"
  if [ -z "$why" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $name: $why"
    echo "  command: $*"
    sed 's/^/  stdout: /' "$tmp/out" | head -5
    sed 's/^/  stderr: /' "$tmp/err" | head -5
  fi
}

check version 0 '^tandem [0-9]+\.[0-9]+\.[0-9]+$' '' -- "$tandem" --version
check top-help 0 'usage:' '' -- "$tandem" --help
check no-args 2 '' 'usage:' -- "$tandem"
check unknown-command 2 '' "unknown command 'frobnicate'" -- "$tandem" frobnicate

for cmd in info tokenize run perplexity bench router calibrate-heads sync pull; do
  check "$cmd --help" 0 "usage: +tandem $cmd|tandem $cmd " '' -- "$tandem" "$cmd" --help
  check "$cmd -h" 0 'usage:' '' -- "$tandem" "$cmd" -h
  check "$cmd --help lists defaults" 0 'default' '' -- "$tandem" "$cmd" --help
  check "$cmd bad flag" 2 '' "unknown option --no-such-flag.*|usage: tandem $cmd" -- "$tandem" "$cmd" --no-such-flag
  check "$cmd bad flag usage" 2 '' "^usage: tandem $cmd" -- "$tandem" "$cmd" --no-such-flag
done
check "router train --help" 0 'usage:' '' -- "$tandem" router train --help
check "run --help after flags" 0 'n-predict' '' -- "$tandem" run -m "$model" --help
check "run -p --help is a prompt" 2 '' 'unknown option --bogus' -- "$tandem" run -p --help --bogus

# llama.cpp's flags, short and long.
check "run short flags" 0 'there was a little' '^tandem: [0-9]+ prompt tokens' -- \
  "$tandem" run -m "$model" -p "Once upon a time" -n 6 -c 64 -t 1 -ngl 0 -s 7 --temp 0
check "run long flags" 0 'there was a little' '' -- \
  "$tandem" run --model "$model" --prompt "Once upon a time" --n-predict 6 --ctx-size 64 --threads 1 \
  --n-gpu-layers 0 --seed 7 --temp 0
check "run -n not a number" 2 '' "option -n needs an integer, got 'x'" -- "$tandem" run -m "$model" -p a -n x
check "run -c negative" 2 '' 'usage: tandem run' -- "$tandem" run -m "$model" -p a -c -5
check "run -c sets the context" 0 '' 'finish: context_full' -- "$tandem" run -m "$model" -p "Once upon a time" -n 20 -c 8 --temp 0
check "perplexity -c -t" 0 '^perplexity: [0-9.]+ \+/- ' '' -- \
  "$tandem" perplexity -m "$model" -f "$(dirname "$0")/../../bench/data/stories-tandem.txt" -c 128 -t 1 --max-chunks 1
check "bench llama-bench flags" 0 '"decode_tokens": 4' '' -- "$tandem" bench -m "$model" -p 16 -n 4 -r 1 -t 1 --json
check "tokenize --parse-special" 0 '^1 ' '' -- "$tandem" tokenize -m "$shared/vocab/ggml-vocab-llama-spm.gguf" -p "<s>Hi" --parse-special --ids

# Statistics start their own line even when stdout and stderr share one pipe.
"$tandem" run -m "$model" -p "Once upon a time" -n 6 --temp 0 -t 1 >"$tmp/both" 2>&1
if grep -Eq '^tandem: [0-9]+ prompt tokens' "$tmp/both"; then passed=$((passed + 1)); else
  failed=$((failed + 1)); echo "FAIL statistics line: not at the start of a line"; sed 's/^/  /' "$tmp/both"; fi

# -ngl 99: the GPU when there is one, else a WARNING saying why not.
"$tandem" run -m "$model" -p "Once upon a time" -n 2 --temp 0 -ngl 99 >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc = 0 ] && { grep -q '(CUDA)' "$tmp/err" || grep -q '^tandem: WARNING: GPU not used: ' "$tmp/err"; }; then
  passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL -ngl 99 (exit $rc):"; sed 's/^/  /' "$tmp/err"; fi
check "bench -ngl 99 warns" 0 '' 'WARNING: -ngl 99: GPU not used' -- "$tandem" bench -m "$model" -p 8 -n 2 -r 1 -ngl 99

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
