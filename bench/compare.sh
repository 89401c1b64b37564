#!/usr/bin/env bash
# bench/compare.sh OLD NEW [REGEX] [PACKAGES...]: runs the Go benchmarks
# matching REGEX (default: all) at two revisions, interleaved, 10 times
# each, and compares them with benchstat — for any change that claims a
# speed-up. Example:
#   bench/compare.sh HEAD~1 HEAD 'Stream|Parse' ./internal/stream ./internal/format
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/compare.sh OLD NEW [REGEX] [PACKAGES...]" >&2; exit 2; }
old=$1 new=$2 re=${3:-.}
shift $(( $# < 3 ? $# : 3 ))
pkgs=("$@"); [ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
w=$(mktemp -d)
trap 'git worktree remove --force "$w/old" 2>/dev/null; git worktree remove --force "$w/new" 2>/dev/null; rm -rf "$w"' EXIT
git worktree add -q --detach "$w/old" "$old"
git worktree add -q --detach "$w/new" "$new"
# Interleave the revisions, one run each at a time, so that both see the
# same machine conditions.
for i in $(seq 10); do
  for rev in old new; do
    (cd "$w/$rev" && go test -run '^$' -bench "$re" -count 1 "${pkgs[@]}") >>"$w/$rev.txt"
  done
done
for rev in old new; do
  grep -q '^Benchmark' "$w/$rev.txt" || { echo "no benchmark matches '$re' at $rev (${!rev})" >&2; exit 1; }
done
go run "$BENCHSTAT" old="$w/old.txt" new="$w/new.txt"
