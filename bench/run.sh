#!/usr/bin/env bash
# make bench: measures Holdfast against the tools users would pick instead,
# on this machine, in one run, and writes docs/performance.md from the
# results. Installs what it needs (Debian: age, rclone, restic, openssl, hyperfine; awscli
# and versitygw for the S3 rows in bench/s3.sh). SKIP_S3=1 leaves those out.
# Everything happens on /dev/shm (tmpfs) so the disk is not the bottleneck.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
SIZE_MIB=${SIZE_MIB:-1024}
FILES=${FILES:-10000}
W=${BENCH_DIR:-/dev/shm/holdfast-bench}
OUT=bench/out
mkdir -p "$OUT"

missing=()
for t in age rclone hyperfine xxd restic openssl; do command -v $t >/dev/null || missing+=($t); done
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

go build -o bin/holdfast ./cmd/holdfast
go build -o bin/floor ./bench/floor
HF=$PWD/bin/holdfast
rm -rf "$W" && mkdir -p "$W"
# Sessions (holdfast unlock) end with the run, not 10 minutes later.
trap 'for h in home home2; do HOLDFAST_HOME="$W/$h" "$HF" lock -q >/dev/null 2>&1; done; rm -rf "$W"' EXIT

echo "== data: $SIZE_MIB MiB random file, $FILES files of 4 KiB"
head -c "${SIZE_MIB}M" /dev/urandom >"$W/in.bin"
mkdir -p "$W/tree"
for ((i = 0; i < FILES; i++)); do
  d="$W/tree/d$((i / 100))"; [ -d "$d" ] || mkdir -p "$d"
  head -c 4096 /dev/urandom >"$d/f$i"
done
# Touch fresh memory once, so the first measured run does not pay for the
# VM's first use of tmpfs pages.
head -c "$((SIZE_MIB * 3))M" /dev/zero >"$W/warm" && rm "$W/warm"

# Holdfast with production key-derivation parameters (calibrated at init).
export HOLDFAST_PASSPHRASE="benchmark passphrase"
export HOLDFAST_HOME="$W/home"
$HF init -q >/dev/null
# age with a native X25519 recipient (no KDF), rclone crypt over a local dir.
age-keygen -o "$W/age.key" 2>/dev/null
AGE_PUB=$(age-keygen -y "$W/age.key")
age -r "$AGE_PUB" -o "$W/in.age" "$W/in.bin"
# Two crypt remotes: "hfc" holds what is read back, "hfu" receives uploads
# and is emptied before each run (crypt encrypts names, so only whole
# remotes can be cleared from outside).
export RCLONE_CONFIG=/dev/null
RCLONE_PW=$(rclone obscure "benchmark passphrase")
export RCLONE_CONFIG_HFC_TYPE=crypt RCLONE_CONFIG_HFC_REMOTE="$W/rclone-crypt" RCLONE_CONFIG_HFC_PASSWORD="$RCLONE_PW"
export RCLONE_CONFIG_HFU_TYPE=crypt RCLONE_CONFIG_HFU_REMOTE="$W/rclone-up" RCLONE_CONFIG_HFU_PASSWORD="$RCLONE_PW"
unset AWS_CA_BUNDLE || true
rclone copy "$W/in.bin" hfc:down/
$HF put -q "$W/in.bin" bench/big
# restic with its own repository password (scrypt KDF on every command,
# as Holdfast derives its keyring key on every command).
export RESTIC_PASSWORD="benchmark passphrase" RESTIC_CACHE_DIR="$W/restic-cache"
restic -r "$W/restic-read" init -q >/dev/null
restic -r "$W/restic-read" backup -q "$W/in.bin" >/dev/null

echo "== $SIZE_MIB MiB: cp, holdfast put/get, age -e/-d, rclone crypt up/down, interleaved, $RUNS rounds"
# Each round runs every command once, back to back, so that each ratio to
# cp compares runs made under the same conditions; the report takes the
# median of the per-round ratios.
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$s $e" | awk '{printf "%.4f", $2-$1}'; }
: >"$OUT/big.tsv"
for ((r = 0; r <= RUNS; r++)); do   # round 0 is a warm-up, not recorded
  # Every command starts without its previous output, Holdfast included
  # (so no run pays for deleting the last run's copy).
  rm -f "$W/cp.out" "$W/hf.out" "$W/age.out" "$W/age.dec"; rm -rf "$W/rclone-up" "$W/rdown" "$W/restic-up" "$W/rrestore"
  $HF rm -q bench/big >/dev/null 2>&1 || true
  restic -r "$W/restic-up" init -q >/dev/null # a fresh repository: no deduplication against the last round
  # Each output is removed right after it is measured (outside the
  # timing), so tmpfs never holds more than one spare copy: a VM short of
  # free memory slows whoever allocates pages next.
  row="cp=$(t cp "$W/in.bin" "$W/cp.out")"; rm -f "$W/cp.out"
  # The least an encrypting copy costs here (bench/floor): map, AES-GCM
  # on both cores, write in order; nothing of Holdfast's format.
  row+=" floor=$(t bin/floor "$W/in.bin" "$W/floor.out")"; rm -f "$W/floor.out"
  # Holdfast twice: in an unlocked session (holdfast unlock: the keyring
  # key derived once, outside the timing), then with the passphrase, so
  # that each command pays one Argon2id derivation.
  $HF unlock -q --for 10m
  row+=" holdfast_ls_s=$(t $HF ls)"
  row+=" holdfast_put_s=$(t $HF put -q "$W/in.bin" bench/big)"
  row+=" holdfast_get_s=$(t $HF get -q bench/big "$W/hf.out")"
  cmp "$W/in.bin" "$W/hf.out"; rm -f "$W/hf.out"
  $HF lock -q; $HF rm -q bench/big >/dev/null
  row+=" holdfast_ls=$(t $HF ls)"
  row+=" holdfast_put=$(t $HF put -q "$W/in.bin" bench/big)"
  row+=" holdfast_get=$(t $HF get -q bench/big "$W/hf.out")"
  cmp "$W/in.bin" "$W/hf.out"; rm -f "$W/hf.out"
  row+=" age_e=$(t age -r "$AGE_PUB" -o "$W/age.out" "$W/in.bin")"; rm -f "$W/age.out"
  row+=" age_d=$(t age -d -i "$W/age.key" -o "$W/age.dec" "$W/in.age")"; rm -f "$W/age.dec"
  row+=" rclone_crypt_up=$(t rclone copy "$W/in.bin" hfu:)"; rm -rf "$W/rclone-up"
  row+=" rclone_crypt_down=$(t rclone copy hfc:down/in.bin "$W/rdown/")"; rm -rf "$W/rdown"
  row+=" restic_backup=$(t restic -r "$W/restic-up" backup -q "$W/in.bin")"; rm -rf "$W/restic-up"
  row+=" restic_restore=$(t restic -r "$W/restic-read" restore -q latest --target "$W/rrestore")"
  cmp "$W/in.bin" "$W/rrestore$W/in.bin"; rm -rf "$W/rrestore"
  echo "round $r: $row"
  [ "$r" -gt 0 ] && echo "$row" >>"$OUT/big.tsv"
done

echo "== peak RSS (KiB)"
{
  $HF rm -q bench/big >/dev/null 2>&1 || true
  /usr/bin/time -f "holdfast put %M" $HF put -q "$W/in.bin" bench/big
  rm -f "$W/hf.out"; /usr/bin/time -f "holdfast get %M" $HF get -q bench/big "$W/hf.out"
  /usr/bin/time -f "holdfast ls %M" $HF ls >/dev/null
  $HF unlock -q --for 10m; $HF rm -q bench/big >/dev/null
  /usr/bin/time -f "holdfast put (session) %M" $HF put -q "$W/in.bin" bench/big
  rm -f "$W/hf.out"; /usr/bin/time -f "holdfast get (session) %M" $HF get -q bench/big "$W/hf.out"
  $HF lock -q
  rm -f "$W/cp.out"; /usr/bin/time -f "cp %M" cp "$W/in.bin" "$W/cp.out"
  rm -f "$W/age.out"; /usr/bin/time -f "age -e %M" age -r "$AGE_PUB" -o "$W/age.out" "$W/in.bin"
  rm -f "$W/age.dec"; /usr/bin/time -f "age -d %M" age -d -i "$W/age.key" -o "$W/age.dec" "$W/in.age"
  rm -rf "$W/rclone-up"; /usr/bin/time -f "rclone crypt up %M" rclone copy "$W/in.bin" hfu:
  rm -rf "$W/rdown"; /usr/bin/time -f "rclone crypt down %M" rclone copy hfc:down/in.bin "$W/rdown/"
  rm -rf "$W/restic-up"; restic -r "$W/restic-up" init -q >/dev/null
  /usr/bin/time -f "restic backup %M" restic -r "$W/restic-up" backup -q "$W/in.bin" >/dev/null
  rm -rf "$W/rrestore"; /usr/bin/time -f "restic restore %M" restic -r "$W/restic-read" restore -q latest --target "$W/rrestore" >/dev/null
} 2>"$OUT/rss.txt"
cat "$OUT/rss.txt"
xxd -s 10 -l 9 -p "$HOLDFAST_HOME/keyring" >"$OUT/kdf.hex"

echo "== $FILES files of 4 KiB"
hyperfine --runs "$RUNS" --export-json "$OUT/tree.json" --style basic \
  -n "cp -r" --prepare "rm -rf $W/tree.cp" "cp -r $W/tree $W/tree.cp" \
  -n "holdfast put -r" --prepare "rm -rf $W/home2 && HOLDFAST_HOME=$W/home2 $HF init -q >/dev/null" \
     "env HOLDFAST_HOME=$W/home2 $HF put -r -q $W/tree files/tree" \
  -n "holdfast put -r (session)" \
     --prepare "rm -rf $W/home2 && HOLDFAST_HOME=$W/home2 $HF init -q >/dev/null && HOLDFAST_HOME=$W/home2 $HF unlock -q" \
     "env HOLDFAST_HOME=$W/home2 $HF put -r -q $W/tree files/tree" \
  -n "holdfast ls (10,000)" --prepare "true" "env HOLDFAST_HOME=$W/home2 $HF ls files/tree/ >/dev/null" \
  -n "rclone crypt up" --prepare "rm -rf $W/rclone-up" "rclone copy $W/tree hfu:" \
  -n "rclone crypt ls (10,000)" --prepare "true" "rclone ls hfu: >/dev/null"

echo "== the physical limit: openssl speed, AES-256-GCM on 64 KiB blocks, one core"
openssl speed -evp aes-256-gcm -bytes 65536 -seconds 3 2>/dev/null | tail -n 1 | tee "$OUT/openssl.txt"

echo "== Go benchmarks: raw AES-256-GCM vs the chunk stream (one core), object pipeline"
# Five rounds of one run each, rather than -count 5: the stream and the raw
# cipher they are compared with then run minutes apart no more than once
# per round, on a machine whose speed drifts.
: >"$OUT/gobench.txt"
for ((i = 0; i < 5; i++)); do
  go test -run '^$' -bench 'Raw|Stream' -benchtime 1s -count 1 ./internal/stream ./internal/object >>"$OUT/gobench.txt"
done
grep -E '^Benchmark' "$OUT/gobench.txt"

echo "== Go benchmarks: format parsing, catalog operations, name handling"
go test -run '^$' -bench 'Parse|Marshal|StoreName|SplitPath|ValidateKey|CommitPut|Put|Get|List' -benchtime 1s -count 5 \
  ./internal/format ./internal/catalog ./internal/repo | tee "$OUT/gohot.txt" | grep -E '^Benchmark'

if [ "${SKIP_S3:-}" != 1 ]; then
  echo "== through S3 (bench/s3.sh)"
  RUNS=$(( RUNS < 5 ? RUNS : 5 )) FILES=$FILES bash bench/s3.sh
else
  rm -f "$OUT"/s3*
fi

echo "== writing docs/performance.md"
/usr/bin/python3 bench/report.py "$OUT" docs/performance.md >"$OUT/performance.md"
mv "$OUT/performance.md" docs/performance.md
echo "done: docs/performance.md"
