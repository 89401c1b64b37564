#!/usr/bin/env bash
# Two gateways sharing one catalog on PostgreSQL against one gateway on the
# embedded catalog (issue 8's performance point). Every gateway is a home
# joined to one key server (root keys there, data keys only in the
# gateways), over one versitygw (HTTPS) as the provider:
#   one:  a home whose catalog is catalog.db in the home (SQLite), one
#         `holdfast serve`, bench/gwload with 16 clients;
#   two:  two homes on one PostgreSQL database (reached over mutual TLS,
#         bench/pgserve), two `holdfast serve` processes, bench/gwload with
#         8 clients against each at once (the rates added).
# 4 KiB PUT and GET, the two set-ups alternated ROUNDS times in one run.
# Everything shares this machine's cores: the point is what the shared
# catalog costs, not what a second host would add.
# Prints the results and writes them to bench/out/twogw.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
OUT=bench/out
W=${TWOGW_BENCH_DIR:-/var/tmp/holdfast-twogw-bench}
mkdir -p "$OUT"
bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
go build -o bin/gwload ./bench/gwload
go build -o bin/pgserve ./bench/pgserve
rm -rf "$W" && mkdir -p "$W/posix"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT

start_provider
prov() { AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET "$@"; }
jget() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [d := d[k] for k in sys.argv[2:]]; print(d)" "$@"; }

bin/pgserve -out "$W/dbs.json" holdfast >"$W/pg.out" 2>"$W/pg.err" &
pids+=("$!")
until grep -q ready "$W/pg.out" 2>/dev/null; do kill -0 "${pids[-1]}" || { cat "$W/pg.err"; exit 1; }; done
CAT=(--catalog-url "$(jget "$W/dbs.json" holdfast URL)" --catalog-ca "$(jget "$W/dbs.json" holdfast CAFile)"
  --catalog-cert "$(jget "$W/dbs.json" holdfast CertFile)" --catalog-key "$(jget "$W/dbs.json" holdfast KeyFile)")

# Two key servers (one serves one repository): "one"'s, and the pair's.
# keyserver DIR CLIENT...: init, enroll, serve; sets KS to its URL.
keyserver() {
  local dir=$1 port c
  shift
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  bin/holdfast keyserver init --dir "$W/$dir" --host 127.0.0.1 >/dev/null
  for c in "$@"; do
    bin/holdfast keyserver enroll "$c" --dir "$W/$dir" --bucket '*' --ops wrap,unwrap,data --out "$W/client-$c" >/dev/null
  done
  bin/holdfast keyserver serve --dir "$W/$dir" --listen "127.0.0.1:$port" --ops-listen "" >"$W/$dir.out" 2>"$W/$dir.err" &
  pids+=("$!")
  until grep -q '^key server https' "$W/$dir.out" 2>/dev/null; do kill -0 "${pids[-1]}" || { cat "$W/$dir.err"; exit 1; }; done
  KS=https://127.0.0.1:$port
}
keyserver ks-one one
prov bin/holdfast --home "$W/home-one" keyserver join --url "$KS" --client-dir "$W/client-one" --store s3://store/one "${S3FLAGS[@]}" >/dev/null
keyserver ks-two gw1 gw2
prov bin/holdfast --home "$W/home-gw1" keyserver join --url "$KS" --client-dir "$W/client-gw1" --store s3://store/two "${S3FLAGS[@]}" "${CAT[@]}" >/dev/null
prov bin/holdfast --home "$W/home-gw2" keyserver join --url "$KS" --client-dir "$W/client-gw2" --store s3://store/two "${S3FLAGS[@]}" "${CAT[@]}" --attach >/dev/null
for h in one gw1; do
  bin/holdfast --home "$W/home-$h" --json access add bench --admin >"$W/key-$h.json"
done
cp "$W/key-gw1.json" "$W/key-gw2.json" # one access table: the shared catalog's

# serve HOME: starts `holdfast serve` on home-HOME; sets GW and GWPID.
serve() {
  prov bin/holdfast --home "$W/home-$1" serve --addr 127.0.0.1:0 --ops-addr "" --sample-interval 0 --log-level error \
    >"$W/serve-$1.out" 2>"$W/serve-$1.err" &
  GWPID=$! GW=
  until [ -n "$GW" ]; do
    kill -0 "$GWPID" || { cat "$W/serve-$1.err"; exit 1; }
    GW=$(sed -n 's/.*S3 endpoint \(https:[^ ]*\) .*/\1/p' "$W/serve-$1.out" 2>/dev/null)
  done
}
# load HOME URL OP CLIENTS: bench/gwload against one gateway; prints rps.
load() {
  AWS_ACCESS_KEY_ID=$(jget "$W/key-$1.json" id) AWS_SECRET_ACCESS_KEY=$(jget "$W/key-$1.json" secret) \
    bin/gwload -endpoint "$2" -ca "$W/home-$1/gateway/cert.pem" -duration "$DURATION" -bucket "b-$1" -op "$3" -clients "$4" -size 4096 |
    sed -n "s/.* rps=\([0-9.]*\).*/\1/p"
}

rm -f "$W/rows"
{
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(go version | cut -d' ' -f3); $(date -u +%F)"
echo "== 4 KiB requests, 16 clients in all, $DURATION per run: one gateway (SQLite catalog) vs two (one PostgreSQL catalog)"
echo "round  op   one-rps  two-rps (gw1+gw2)"
for ((r = 1; r <= ROUNDS; r++)); do
  for op in put get; do
    serve one; p1=$GWPID
    one=$(load one "$GW" "$op" 16)
    kill "$p1"; wait "$p1" || true
    serve gw1; p1=$GWPID g1=$GW
    serve gw2; p2=$GWPID g2=$GW
    load gw1 "$g1" "$op" 8 >"$W/r1" &
    l1=$!
    load gw2 "$g2" "$op" 8 >"$W/r2"
    wait "$l1"
    a=$(cat "$W/r1") b=$(cat "$W/r2")
    kill "$p1" "$p2"; wait "$p1" || true; wait "$p2" || true
    two=$(echo "$a + $b" | bc -l)
    printf '%-6s %-4s %8s %8s (%s+%s)\n' "$r" "$op" "$one" "$two" "$a" "$b"
    echo "$op $one $two" >>"$W/rows"
  done
done
/usr/bin/python3 - "$W/rows" <<'PY'
import sys, statistics
by = {}
for op, one, two in (l.split() for l in open(sys.argv[1])):
    by.setdefault(op, []).append(float(two) / float(one))
for op, q in by.items():
    print(f"{op}: two gateways on PostgreSQL / one on SQLite, median of per-round ratios {statistics.median(q):.3f} (range {min(q):.3f}-{max(q):.3f})")
PY
} | tee "$OUT/twogw.txt"
