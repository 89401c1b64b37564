#!/usr/bin/env bash
# The gateway against the S3 server behind it, in the same run (issue 4's
# performance points). Starts versitygw (HTTPS, self-signed) as the
# provider and `holdfast serve` on a repository stored in it, then:
#   - aws s3 cp of SIZE_MIB up and down, directly to versitygw and through
#     the gateway, interleaved, ROUNDS rounds;
#   - 4 KiB PUT and GET from 16 concurrent clients in one Go process
#     (bench/gwload), directly and through the gateway;
#   - 32 concurrent 100 MiB uploads through the gateway, with the peak
#     RSS of the serve process.
# Prints the results and writes them to bench/out/gateway.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
OUT=bench/out
W=${GW_BENCH_DIR:-/var/tmp/holdfast-gw-bench}
mkdir -p "$OUT"
[ -x /usr/bin/aws ] || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends awscli >/dev/null; }
bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
go build -o bin/gwload ./bench/gwload
HF=$PWD/bin/holdfast
AWS=/usr/bin/aws
rm -rf "$W" && mkdir -p "$W/posix"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT

PROV_ID=holdfast-bench PROV_SECRET=holdfast-bench-secret
start_versitygw "$W" "$PROV_ID" "$PROV_SECRET"
pids+=("$VGW_PID")
EP=$VGW_EP
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_CONFIG_FILE=/dev/null
prov() { AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET "$@"; }
prov $AWS s3 mb s3://store --endpoint-url "$EP" --ca-bundle "$W/cert.pem" >/dev/null
prov $AWS s3 mb s3://direct --endpoint-url "$EP" --ca-bundle "$W/cert.pem" >/dev/null

export HOLDFAST_PASSPHRASE="benchmark passphrase" HOLDFAST_HOME="$W/home"
prov $HF init -q --store s3://store/hf --s3-endpoint "$EP" --s3-ca-bundle "$W/cert.pem" --s3-path-style >/dev/null
$HF --json access add bench --admin >"$W/key.json"
GW_ID=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$W/key.json")
GW_SECRET=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['secret'])" "$W/key.json")
rm -f "$W/key.json"
# The gateway reaches the provider with the provider's credentials.
AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
  $HF serve --addr 127.0.0.1:0 --ops-addr "" --sample-interval 0 --log-level error >"$W/serve.out" 2>"$W/serve.err" &
pids+=($!)
SERVE_PID=$!
until grep -q "stop with" "$W/serve.out" 2>/dev/null; do kill -0 "$SERVE_PID" || { cat "$W/serve.err"; exit 1; }; done
GW=$(sed -n 's/.*S3 endpoint \(https:[^ ]*\).*/\1/p' "$W/serve.out")
GWCA=$HOLDFAST_HOME/gateway/cert.pem
gw() { AWS_ACCESS_KEY_ID=$GW_ID AWS_SECRET_ACCESS_KEY=$GW_SECRET "$@"; }
gw $AWS s3 mb s3://viagw --endpoint-url "$GW" --ca-bundle "$GWCA" >/dev/null

head -c "${SIZE_MIB}M" /dev/urandom >"$W/in.bin"
# Each transfer starts with no dirty pages left by the one before (sync,
# outside the timing): a 1 GiB upload leaves a gigabyte for the kernel to
# write back, which would otherwise tax whichever transfer comes next.
t() { local s e; sync; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$s $e" | awk '{printf "%.3f", $2-$1}'; }
{
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(go version | cut -d' ' -f3); $(date -u +%F)"
echo "== aws s3 cp of $SIZE_MIB MiB: directly to versitygw vs through holdfast serve (in front of versitygw), both over TLS"
for ((r = 1; r <= ROUNDS; r++)); do
  # A new key each round on both sides: every upload creates an object
  # (versitygw overwriting a 1 GiB file costs it seconds more than
  # creating one, which would flatter the gateway's later rounds).
  du=$(t prov $AWS s3 cp "$W/in.bin" s3://direct/big$r --endpoint-url "$EP" --ca-bundle "$W/cert.pem" --only-show-errors)
  gu=$(t gw $AWS s3 cp "$W/in.bin" s3://viagw/big$r --endpoint-url "$GW" --ca-bundle "$GWCA" --only-show-errors)
  dd=$(t prov $AWS s3 cp s3://direct/big$r "$W/d.out" --endpoint-url "$EP" --ca-bundle "$W/cert.pem" --only-show-errors)
  gd=$(t gw $AWS s3 cp s3://viagw/big$r "$W/g.out" --endpoint-url "$GW" --ca-bundle "$GWCA" --only-show-errors)
  cmp "$W/in.bin" "$W/g.out"; rm -f "$W/d.out" "$W/g.out"
  echo "round $r: up direct=$du gateway=$gu (throughput $(echo "$du / $gu" | bc -l | cut -c1-4)x)  down direct=$dd gateway=$gd (throughput $(echo "$dd / $gd" | bc -l | cut -c1-4)x)"
done
echo "== 4 KiB objects, 16 concurrent clients (bench/gwload), 5 s each"
prov bin/gwload -endpoint "$EP" -ca "$W/cert.pem" -bucket direct -op put
gw bin/gwload -endpoint "$GW" -ca "$GWCA" -bucket viagw -op put
prov bin/gwload -endpoint "$EP" -ca "$W/cert.pem" -bucket direct -op get
gw bin/gwload -endpoint "$GW" -ca "$GWCA" -bucket viagw -op get
hwm() { awk '/VmHWM/{print $2, $3}' /proc/$SERVE_PID/status; }
echo "serve peak RSS before the concurrent uploads (VmHWM): $(hwm)"
echo "== 32 concurrent 100 MiB uploads through the gateway"
echo 5 >/proc/$SERVE_PID/clear_refs # VmHWM starts again from the current RSS
gw bin/gwload -endpoint "$GW" -ca "$GWCA" -bucket viagw -op big -clients 32 -size $((100 << 20))
echo "serve peak RSS during the concurrent uploads (VmHWM): $(hwm)"
} | tee "$OUT/gateway.txt"
