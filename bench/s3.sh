#!/usr/bin/env bash
# Part of make bench (bench/run.sh calls it; it also runs alone): Holdfast
# through a real S3 server against the AWS CLI on the same server, in the
# same run. Starts versitygw (built by scripts/versitygw.sh) on 127.0.0.1
# over HTTPS with a fresh self-signed certificate, its data on disk (a
# 10 GiB object and its parts do not fit in tmpfs beside everything else),
# and stops it at the end. Results go to bench/out/s3*.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
S3_SIZE_MIB=${S3_SIZE_MIB:-1024}
BIG_GIB=${BIG_GIB:-10}
FILES=${FILES:-10000}
OUT=bench/out
W=${S3_BENCH_DIR:-/var/tmp/holdfast-s3-bench}
mkdir -p "$OUT"

missing=()
[ -x /usr/bin/aws ] || missing+=(awscli)
command -v openssl >/dev/null || missing+=(openssl)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v xxd >/dev/null || missing+=(xxd)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash scripts/versitygw.sh
go build -o bin/holdfast ./cmd/holdfast
HF=$PWD/bin/holdfast
AWS=/usr/bin/aws

rm -rf "$W" && mkdir -p "$W/posix" "$W/tree" "$W/empty"
gw_pid=
cleanup() { [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

# A certificate for 127.0.0.1, and the server.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=holdfast-bench AWS_SECRET_ACCESS_KEY=holdfast-bench-secret AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
.ci/bin/versitygw --port "127.0.0.1:$PORT" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" \
  --region us-east-1 --cert "$W/cert.pem" --key "$W/key.pem" --health /health --quiet posix "$W/posix" \
  >"$W/gw.log" 2>&1 &
gw_pid=$!
EP=https://127.0.0.1:$PORT
until curl -fsS --cacert "$W/cert.pem" "$EP/health" >/dev/null 2>&1; do
  kill -0 "$gw_pid" || { cat "$W/gw.log"; exit 1; }
done
S3="--endpoint-url $EP --ca-bundle $W/cert.pem"
$AWS s3 mb s3://bench $S3 >/dev/null

echo "size_mib=$S3_SIZE_MIB files=$FILES" >"$OUT/s3params"
echo "== data: $S3_SIZE_MIB MiB random file, $FILES files of 4 KiB"
head -c "${S3_SIZE_MIB}M" /dev/urandom >"$W/in.bin"
for ((i = 0; i < FILES; i++)); do
  d="$W/tree/d$((i / 100))"; [ -d "$d" ] || mkdir -p "$d"
  head -c 4096 /dev/urandom >"$d/f$i"
done

export HOLDFAST_PASSPHRASE="benchmark passphrase" HOLDFAST_HOME="$W/home"
$HF init -q --store s3://bench/hf --s3-endpoint "$EP" --s3-ca-bundle "$W/cert.pem" --s3-path-style >/dev/null

echo "== $S3_SIZE_MIB MiB through S3: aws s3 cp vs holdfast put/get, interleaved, $RUNS rounds"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$s $e" | awk '{printf "%.4f", $2-$1}'; }
: >"$OUT/s3big.tsv"
for ((r = 0; r <= RUNS; r++)); do   # round 0 is a warm-up, not recorded
  rm -f "$W/aws.out" "$W/hf.out"
  $HF rm -q bench/big >/dev/null 2>&1 || true
  $AWS s3 rm s3://bench/plain/in.bin $S3 >/dev/null 2>&1 || true
  row="aws_up=$(t $AWS s3 cp --quiet "$W/in.bin" s3://bench/plain/in.bin $S3)"
  row+=" holdfast_ls=$(t $HF ls)"
  row+=" holdfast_put=$(t $HF put -q "$W/in.bin" bench/big)"
  row+=" aws_down=$(t $AWS s3 cp --quiet s3://bench/plain/in.bin "$W/aws.out" $S3)"
  row+=" holdfast_get=$(t $HF get -q bench/big "$W/hf.out")"
  cmp "$W/in.bin" "$W/hf.out"
  cmp "$W/in.bin" "$W/aws.out"
  echo "round $r: $row"
  [ "$r" -gt 0 ] && echo "$row" >>"$OUT/s3big.tsv"
done
rm -f "$W/aws.out" "$W/hf.out" "$W/in.bin"

echo "== peak RSS: a ${BIG_GIB} GiB streaming put (from a pipe) and get (to a pipe)"
{
  head -c "${BIG_GIB}G" /dev/zero | /usr/bin/time -f "s3 put ${BIG_GIB}GiB %M %e" $HF put -q - bench/huge
  /usr/bin/time -f "s3 get ${BIG_GIB}GiB %M %e" $HF get -q bench/huge - | cmp -n $((BIG_GIB << 30)) - /dev/zero
  $HF rm -q bench/huge
} 2>"$OUT/s3rss.txt"
cat "$OUT/s3rss.txt"
xxd -s 10 -l 9 -p "$HOLDFAST_HOME/keyring" >"$OUT/s3kdf.hex"

echo "== $FILES files of 4 KiB: holdfast sync vs aws s3 sync, ls vs aws s3 ls"
hyperfine --runs 3 --export-json "$OUT/s3tree.json" --style basic \
  -n "aws s3 sync up" --prepare "$AWS s3 rm --quiet --recursive s3://bench/tree $S3" \
     "$AWS s3 sync --quiet $W/tree s3://bench/tree $S3" \
  -n "holdfast sync up" --prepare "$HF sync -q --delete $W/empty files/tree" \
     "$HF sync -q $W/tree files/tree" \
  -n "aws s3 ls --recursive" --prepare true "$AWS s3 ls --recursive s3://bench/tree/ $S3" \
  -n "holdfast ls" --prepare true "$HF ls files/tree/"
