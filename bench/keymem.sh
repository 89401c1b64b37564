#!/usr/bin/env bash
# What protected key memory costs the gateway (issue 7's performance
# point): the same holdfast serve built twice — as shipped (keys in
# memfd_secret or mlocked pages) and with -tags holdfast_unprotected (keys
# on the Go heap) — in front of the same versitygw and repository,
# alternated ROUNDS times in one run:
#   - 4 KiB GET rate, 16 concurrent clients (bench/gwload -op get);
#   - streaming GET throughput: 2 clients reading 64 MiB objects.
# Prints the results and the median ratio (unprotected = 1.00) and writes
# them to bench/out/keymem.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
OUT=bench/out
W=${KEYMEM_BENCH_DIR:-/var/tmp/holdfast-keymem-bench}
mkdir -p "$OUT"
bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
go build -tags holdfast_unprotected -o bin/holdfast-unprotected ./cmd/holdfast
go build -o bin/gwload ./bench/gwload
rm -rf "$W" && mkdir -p "$W/posix"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT

start_provider

export HOLDFAST_PASSPHRASE="benchmark passphrase" HOLDFAST_HOME="$W/home"
AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
  bin/holdfast init -q --store s3://store/hf --s3-endpoint "$EP" --s3-ca-bundle "$W/cert.pem" --s3-path-style >/dev/null
bin/holdfast --json access add bench --admin >"$W/key.json"
GW_ID=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$W/key.json")
GW_SECRET=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['secret'])" "$W/key.json")
rm -f "$W/key.json"

# serve BIN: starts holdfast serve from BIN, sets GW and SERVE_PID.
serve() {
  AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
    "$1" serve --addr 127.0.0.1:0 --ops-addr "" --sample-interval 0 --log-level error >"$W/serve.out" 2>"$W/serve.err" &
  SERVE_PID=$!
  until grep -q "stop with" "$W/serve.out" 2>/dev/null; do kill -0 "$SERVE_PID" || { cat "$W/serve.err"; exit 1; }; done
  GW=$(sed -n 's/.*S3 endpoint \(https:[^ ]*\).*/\1/p' "$W/serve.out")
}
stop() { kill "$SERVE_PID"; wait "$SERVE_PID" || true; }
load() { AWS_ACCESS_KEY_ID=$GW_ID AWS_SECRET_ACCESS_KEY=$GW_SECRET bin/gwload -endpoint "$GW" -ca "$HOLDFAST_HOME/gateway/cert.pem" -duration "$DURATION" "$@"; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }

{
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(go version | cut -d' ' -f3); $(date -u +%F)"
echo "key memory: protected build: $(HOLDFAST_HOME=$W/none bin/holdfast posture 2>/dev/null | awk '/process.keymemory/{$1=$2=$3=""; print}' | sed 's/^ *//'); unprotected build: $(HOLDFAST_HOME=$W/none bin/holdfast-unprotected posture 2>/dev/null | awk '/process.keymemory/{$1=$2=$3=""; print}' | sed 's/^ *//')"
echo "round  build        4KiB-GET-rps  64MiB-GET-MBps"
for ((r = 1; r <= ROUNDS; r++)); do
  for b in protected unprotected; do
    bin=bin/holdfast; [ $b = unprotected ] && bin=bin/holdfast-unprotected
    serve "$bin"
    small=$(load -bucket small -op get -clients 16 -size 4096 | field rps)
    big=$(load -bucket big -op get -clients 2 -objects 2 -size $((64 << 20)) | field MBps)
    stop
    printf '%-6s %-12s %12s %15s\n' "$r" "$b" "$small" "$big"
    echo "$r $b $small $big" >>"$W/rows"
  done
done
/usr/bin/python3 - "$W/rows" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, b, small, big in rows:
    by.setdefault(r, {})[b] = (float(small), float(big))
rs = [v["protected"][0] / v["unprotected"][0] for v in by.values()]
rb = [v["protected"][1] / v["unprotected"][1] for v in by.values()]
print(f"protected / unprotected, median of per-round ratios: 4 KiB GET rate {statistics.median(rs):.3f} "
      f"(range {min(rs):.3f}-{max(rs):.3f}); 64 MiB GET throughput {statistics.median(rb):.3f} (range {min(rb):.3f}-{max(rb):.3f})")
PY
} | tee "$OUT/keymem.txt"
