#!/usr/bin/env bash
# holdfast verify at scale on a real S3 server: puts FILES small objects
# (default 100,000; FILES=10000 for a quick run) into a repository on
# versitygw (127.0.0.1, HTTPS, posix backend on disk), then times verify
# --quick and a full verify, with the peak RSS of each, and a --sample 1%
# run. Results go to bench/out/verify.txt. Runs alone:
#
#   FILES=100000 bash bench/verify.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
FILES=${FILES:-100000}
JOBS=${JOBS:-}           # verify --jobs; empty: verify's default
OUT=bench/out
W=${VERIFY_BENCH_DIR:-/var/tmp/holdfast-verify-bench}
mkdir -p "$OUT"
for tool in openssl curl /usr/bin/time /usr/bin/aws; do
  command -v "$tool" >/dev/null || { echo "verify.sh needs $tool" >&2; exit 1; }
done
bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
HF=$PWD/bin/holdfast

rm -rf "$W" && mkdir -p "$W/posix" "$W/tree"
gw_pid=
cleanup() { [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=holdfast-bench AWS_SECRET_ACCESS_KEY=holdfast-bench-secret AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
start_versitygw "$W" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
gw_pid=$VGW_PID
EP=$VGW_EP
/usr/bin/aws s3 mb s3://bench --endpoint-url "$EP" --ca-bundle "$W/cert.pem" >/dev/null

echo "== data: $FILES files of 1 to 2048 bytes in $((FILES / 1000 + 1)) directories"
/usr/bin/python3 - "$W/tree" "$FILES" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(2026)
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(1, 2048)))
PY

export HOLDFAST_PASSPHRASE="benchmark passphrase" HOLDFAST_HOME="$W/home"
$HF init -q --store s3://bench/hf --s3-endpoint "$EP" --s3-ca-bundle "$W/cert.pem" --s3-path-style >/dev/null
s=$(date +%s.%N)
$HF put -q -r "$W/tree" bench/t >/dev/null
e=$(date +%s.%N)
put_s=$(echo "$s $e" | awk '{printf "%.1f", $2-$1}')
echo "put -r: ${put_s}s"

# run NAME ARGS...: time one verify, keep its summary line and peak RSS.
: >"$OUT/verify.txt"
echo "files=$FILES put_seconds=$put_s jobs=${JOBS:-default}" >>"$OUT/verify.txt"
run() {
  local name=$1; shift
  local jobs=()
  [ -n "$JOBS" ] && jobs=(--jobs "$JOBS")
  /usr/bin/time -f "%e %M" -o "$W/time" $HF -q verify "${jobs[@]}" "$@" >"$W/out" || true
  read -r secs kib <"$W/time"
  line=$(grep '^holdfast-verify:' "$W/out")
  echo "$name: ${secs}s, peak RSS $((kib / 1024)) MiB; $line" | tee -a "$OUT/verify.txt"
  grep -q 'status=clean' <<<"$line" || { echo "verify $name was not clean" >&2; exit 1; }
}
run quick --quick
run full
run sample1pct --sample 1%
