#!/usr/bin/env bash
# The PKCS#11 key source's cost (issue 5's performance points):
#   1. HSM operations per second with and without the data-key cache:
#      go test -bench BenchmarkUnwrap|BenchmarkWrap ./internal/hsm
#      (SoftHSM2; unwrap from the token, unwrap answered by the cache, wrap);
#   2. the gateway's 4 KiB GET rate (16 clients, bench/gwload -op get) on a
#      repository whose root key is in a SoftHSM2 token against one whose
#      root key is in the keyring file, same build, same versitygw, the two
#      alternated ROUNDS times in one run.
# Prints the results and writes them to bench/out/hsm.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
OUT=bench/out
W=${HSM_BENCH_DIR:-/var/tmp/holdfast-hsm-bench}
mkdir -p "$OUT"
[ -x /usr/bin/softhsm2-util ] || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends softhsm2 >/dev/null; }
bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
go build -o bin/gwload ./bench/gwload
rm -rf "$W" && mkdir -p "$W/posix" "$W/softhsm/tokens"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT

# A SoftHSM2 token in the bench directory.
cat >"$W/softhsm/softhsm2.conf" <<CONF
directories.tokendir = $W/softhsm/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$W/softhsm/softhsm2.conf" HOLDFAST_PKCS11_PIN=1234
softhsm2-util --init-token --free --label hf-bench --so-pin 12345678 --pin "$HOLDFAST_PKCS11_PIN" >/dev/null
URI="pkcs11:token=hf-bench;object=holdfast-root?module-path=/usr/lib/softhsm/libsofthsm2.so"

{
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(go version | cut -d' ' -f3); $(date -u +%F)"
echo "== HSM operations per second (SoftHSM2, go test -bench)"
go test -run '^$' -bench 'BenchmarkUnwrap|BenchmarkWrap' -benchtime 3000x ./internal/hsm | awk '/^Benchmark/{print $1, $(NF-1), $NF}'
} | tee "$OUT/hsm.txt"

start_provider

# Two repositories in the same S3 bucket: the keyring file's and the token's.
AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
  bin/holdfast --home "$W/home-keyring" init -q --store s3://store/keyring "${S3FLAGS[@]}" >/dev/null
AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
  bin/holdfast --home "$W/home-pkcs11" keys ceremony --key-source "$URI" --shares 3 --threshold 2 --out "$W/shares" \
  --store s3://store/pkcs11 "${S3FLAGS[@]}" >/dev/null
compare_get_rate keyring pkcs11 | tee -a "$OUT/hsm.txt"
