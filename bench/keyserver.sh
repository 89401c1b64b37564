#!/usr/bin/env bash
# The key server's cost (issue 8's performance points):
#   1. data-key unwraps per second over mutual TLS 1.3 on loopback, with
#      and without the client's cache:
#      go test -bench BenchmarkDataKeyUnwrap ./internal/keyserver
#      (each uncached unwrap is a request the server authorizes, logs with
#      an fsync, and answers);
#   2. the gateway's 4 KiB GET rate (16 clients, bench/gwload -op get) on a
#      repository whose root keys are on a key server (the gateway holds
#      data keys only, cached 30 s) against one whose root keys are in the
#      keyring file, same build, same versitygw, the two alternated ROUNDS
#      times in one run. Target: >= 0.8x with the cache.
# Prints the results and writes them to bench/out/keyserver.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
OUT=bench/out
W=${KEYSERVER_BENCH_DIR:-/var/tmp/holdfast-keyserver-bench}
mkdir -p "$OUT"
bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
go build -o bin/gwload ./bench/gwload
rm -rf "$W" && mkdir -p "$W/posix"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT

{
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(go version | cut -d' ' -f3); $(date -u +%F)"
echo "== data-key unwraps per second over mutual TLS on loopback (go test -bench)"
go test -run '^$' -bench 'BenchmarkDataKeyUnwrap' -benchtime 3s ./internal/keyserver | awk '/^Benchmark/{print $1, $(NF-1), $NF}'
} | tee "$OUT/keyserver.txt"

start_provider

# Two repositories in the same S3 bucket: the keyring file's, and the key
# server's (its state directory holds the root keys; the gateway's home
# holds a client certificate granted wrap, unwrap and data).
AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
  bin/holdfast --home "$W/home-keyring" init -q --store s3://store/keyring "${S3FLAGS[@]}" >/dev/null
KS_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bin/holdfast keyserver init --dir "$W/ks" --host 127.0.0.1 >/dev/null
bin/holdfast keyserver enroll gateway --dir "$W/ks" --bucket '*' --ops wrap,unwrap,data --out "$W/client" >/dev/null
bin/holdfast keyserver serve --dir "$W/ks" --listen "127.0.0.1:$KS_PORT" --ops-listen "" >"$W/ks.out" 2>"$W/ks.err" &
pids+=("$!")
# Wait for its banner (printed once it listens).
until grep -q '^key server https' "$W/ks.out" 2>/dev/null; do
  kill -0 "${pids[-1]}" || { cat "$W/ks.err"; exit 1; }
done
AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
  bin/holdfast --home "$W/home-keyserver" keyserver join --url "https://127.0.0.1:$KS_PORT" --client-dir "$W/client" \
  --store s3://store/keyserver "${S3FLAGS[@]}" >/dev/null
compare_get_rate keyring keyserver | tee -a "$OUT/keyserver.txt"
