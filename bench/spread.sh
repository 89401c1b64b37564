#!/usr/bin/env bash
# The spread store against a single S3 store, in the same run: put and get
# throughput of one SPREAD_SIZE_MIB file through a 3-of-5 spread store over
# five versitygw servers, and through one S3 store on a sixth; the storage
# each uses; the CPU time of each put and get; and the CPU cost of the
# erasure coding itself (Reed-Solomon and the shard tags, one core) from
# the Go benchmark. All servers run on 127.0.0.1 over plain HTTP (the same
# for both, so the comparison is of the stores, not of TLS), their data on
# disk. Results go to bench/out/spread*.
#
#   SPREAD_SIZE_MIB (default 256)  RUNS (default 3)  SPREAD_BENCH_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SIZE_MIB=${SPREAD_SIZE_MIB:-256}
OUT=bench/out
W=${SPREAD_BENCH_DIR:-/var/tmp/holdfast-spread-bench}
mkdir -p "$OUT"
[ -x /usr/bin/time ] || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq time >/dev/null; }

bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
HF=$PWD/bin/holdfast

rm -rf "$W" && mkdir -p "$W"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=holdfast-bench AWS_SECRET_ACCESS_KEY=holdfast-bench-secret AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export HOLDFAST_PASSPHRASE="benchmark passphrase"
eps=()
for i in 0 1 2 3 4 5; do
  mkdir -p "$W/gw$i/posix/bench"   # the posix backend's bucket is a directory
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  .ci/bin/versitygw --port "127.0.0.1:$port" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" \
    --region us-east-1 --health /health --quiet posix "$W/gw$i/posix" >"$W/gw$i.log" 2>&1 &
  pids+=($!)
  eps+=("http://127.0.0.1:$port")
  until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do kill -0 "${pids[-1]}" || { cat "$W/gw$i.log"; exit 1; }; done
done

# The single store on server 5; the spread store over servers 0-4.
HOLDFAST_HOME="$W/single" $HF init -q --store s3://bench/hf --s3-endpoint "${eps[5]}" --s3-path-style --s3-allow-http >/dev/null
/usr/bin/python3 - "$W/layout.json" "${eps[@]:0:5}" <<'EOF'
import json, sys
out, eps = sys.argv[1], sys.argv[2:]
places = [("eu-1", "alpha", "EU"), ("eu-2", "beta", "EU"), ("ch-1", "gamma", "CH"), ("us-1", "delta", "US"), ("jp-1", "epsilon", "JP")]
members = [{"label": l, "provider": p, "jurisdiction": j,
            "s3": {"bucket": "bench", "prefix": "hf/", "endpoint": ep, "path_style": True, "allow_http": True}}
           for (l, p, j), ep in zip(places, eps)]
json.dump({"k": 3, "m": 2, "members": members}, open(out, "w"), indent=1)
EOF
HOLDFAST_HOME="$W/spread" $HF init -q --store "spread:$W/layout.json" >/dev/null

head -c "${SIZE_MIB}M" /dev/urandom >"$W/in.bin"
echo "size_mib=$SIZE_MIB runs=$RUNS" >"$OUT/spreadparams"
# t HOME CMD...: wall, user and system seconds of one command.
t() {
  local home=$1; shift
  HOLDFAST_HOME=$home /usr/bin/time -f "%e %U %S" -o "$W/time" "$@" >/dev/null
  cat "$W/time"
}
echo "== $SIZE_MIB MiB: single S3 store vs 3-of-5 spread, interleaved, $RUNS rounds (+1 warm-up)"
: >"$OUT/spread.tsv"
for ((r = 0; r <= RUNS; r++)); do
  for store in single spread; do
    rm -f "$W/out.bin"
    HOLDFAST_HOME="$W/$store" $HF rm -q bench/big >/dev/null 2>&1 || true
    put=$(t "$W/$store" $HF put -q "$W/in.bin" bench/big)
    get=$(t "$W/$store" $HF get -q bench/big "$W/out.bin")
    cmp "$W/in.bin" "$W/out.bin"
    row="store=$store put=${put// /,} get=${get// /,}"
    echo "round $r: $row"
    [ "$r" -gt 0 ] && echo "$row" >>"$OUT/spread.tsv"
  done
done

echo "== storage used (the object, its catalog backups and the marker)"
single=$(du -sb "$W/gw5/posix/bench" | cut -f1)
spread=0
for i in 0 1 2 3 4; do spread=$((spread + $(du -sb "$W/gw$i/posix/bench" | cut -f1))); done
echo "input=$((SIZE_MIB << 20)) single=$single spread=$spread" | tee "$OUT/spreadstorage.txt"

echo "== CPU cost of the coding (Go benchmark, one core)"
go test -run XXX -bench 'Encode|DecodeDegraded' -benchtime 10x ./internal/store/spread/ | tee "$OUT/spreadgobench.txt"

/usr/bin/python3 - "$OUT" "$SIZE_MIB" <<'EOF'
import re, statistics, sys
out, mib = sys.argv[1], int(sys.argv[2])
rows = [dict(kv.split("=") for kv in l.split()) for l in open(f"{out}/spread.tsv")]
print(f"\n{mib} MiB, median of {len(rows)//2} rounds:")
print(f"{'store':8} {'put MiB/s':>10} {'get MiB/s':>10} {'put CPU s/GiB':>14} {'get CPU s/GiB':>14}")
for store in ("single", "spread"):
    rs = [r for r in rows if r["store"] == store]
    def med(op, i): return statistics.median(float(r[op].split(",")[i]) for r in rs)
    def cpu(op): return statistics.median(sum(float(x) for x in r[op].split(",")[1:]) for r in rs) * 1024 / mib
    print(f"{store:8} {mib/med('put',0):10.1f} {mib/med('get',0):10.1f} {cpu('put'):14.2f} {cpu('get'):14.2f}")
st = dict(kv.split("=") for kv in open(f"{out}/spreadstorage.txt").read().split())
i, s1, s5 = int(st["input"]), int(st["single"]), int(st["spread"])
print(f"storage: single {s1/i:.3f}x the input, spread {s5/i:.3f}x (3-of-5 ideal 1.667x); spread/single {s5/s1:.3f}")
for l in open(f"{out}/spreadgobench.txt"):
    m = re.match(r"Benchmark(\w+)-\d+\s+\d+\s+[\d.]+ ns/op\s+([\d.]+) MB/s", l)
    if m:
        print(f"{m.group(1)}: {float(m.group(2)):.0f} MB/s on one core = {1024**3/1e6/float(m.group(2)):.2f} CPU s per GiB")
EOF
