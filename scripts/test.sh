#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs on a fresh
# Debian machine, then: formatting and vet, the vectors check, unit and
# script tests, the independent Python decoder, and a short run of every
# fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-15s}
need_pkgs=()
/usr/bin/python3 -c 'import cryptography' 2>/dev/null || need_pkgs+=(python3-cryptography)
/usr/bin/python3 -c 'import argon2' 2>/dev/null || need_pkgs+=(python3-argon2)
# The AWS CLI plays the provider's console in the S3 script tests.
[ -x /usr/bin/aws ] || need_pkgs+=(awscli)
# s3cmd and rclone are, with the AWS CLI, real clients of holdfast serve in
# the gateway script tests.
[ -x /usr/bin/s3cmd ] || need_pkgs+=(s3cmd)
[ -x /usr/bin/rclone ] || need_pkgs+=(rclone)
# SoftHSM2 is the PKCS#11 token of the HSM key source tests (cgo on).
[ -x /usr/bin/softhsm2-util ] || need_pkgs+=(softhsm2)
# PostgreSQL runs the catalog's tests on its second engine (pgtest starts
# throwaway clusters; a default one the package may start is not used).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "== installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

echo "== the real S3 server for the S3 store tests (versitygw, a tool dependency in go.mod)"
bash scripts/versitygw.sh

echo "== gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted"; exit 1
fi
go vet ./...
# The build bench/keymem.sh compares against (keys on the Go heap) must
# keep building.
go vet -tags holdfast_unprotected ./internal/secret

echo "== test vectors are what the generator makes"
go run ./internal/vectors/cmd/genvectors -check

echo "== unit, integration and script tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# testreport prints each package's line, every failed test with its own
# output (a subtest's messages included), the skipped tests by name, and
# the counts.
go build -o "$log.report" ./scripts/testreport
set +e
go test -count=1 -json ./... 2>&1 | "$log.report" | tee "$log"
st=("${PIPESTATUS[@]}")
rc=$(( st[0] | st[1] ))
set -e
rm -f "$log.report"
summary=$(grep '^go-test: ' "$log")
[ "$rc" -eq 0 ] || exit "$rc"

echo "== every Go benchmark once, so that none rots unnoticed (numbers: make bench)"
go test -run '^$' -bench . -benchtime 1x ./... >"$log" 2>&1 || { grep -B2 -A20 -E '^--- FAIL|^FAIL|panic:' "$log" | head -80; exit 1; }
grep -cE '^Benchmark' "$log" | sed 's/^/benchmarks run: /'

echo "== independent decoder (Python, from docs/format.md alone)"
/usr/bin/python3 tools/pydecode/pydecode.py testdata/vectors | tail -n 1

# fuzz_one runs one target. A finding always writes a reproducer under
# testdata/fuzz and fails the run. Go's engine also fails, without a
# reproducer, when the -fuzztime deadline lands while a starved worker is
# mid-call ("context deadline exceeded", golang/go#51484, #56238); that case
# is reported and the target is fuzzed once more, and fails if it happens
# again. Any other failure fails the run.
fuzz_one() {
  local pkg=$1 fn=$2 out attempt
  out=$(mktemp)
  for attempt in 1 2; do
    if go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$FUZZTIME" "$pkg" >"$out" 2>&1; then
      if ! grep -q '^fuzz: elapsed' "$out"; then
        cat "$out"; echo "$fn did not fuzz (no such target in $pkg?)"; rm -f "$out"; return 1
      fi
      tail -n 1 "$out"; rm -f "$out"; return 0
    fi
    tail -n 40 "$out"
    if grep -q 'Failing input written to' "$out"; then
      for f in "$pkg"/testdata/fuzz/"$fn"/*; do echo "== $f"; cat "$f"; done
      rm -f "$out"; return 1
    fi
    if [ "$attempt" = 1 ] && grep -qE 'context deadline exceeded|fuzzing process hung or terminated unexpectedly' "$out"; then
      echo "fuzz engine stopped without a finding (no reproducer written); fuzzing $fn again"
      continue
    fi
    rm -f "$out"; return 1
  done
}

echo "== fuzzing each parser for $FUZZTIME"
for target in \
  ./internal/format:FuzzParseHeader \
  ./internal/format:FuzzParseManifest \
  ./internal/format:FuzzParseKeyRecord \
  ./internal/format:FuzzParseMarker \
  ./internal/format:FuzzParseFooter \
  ./internal/format:FuzzParseCatalogBackup \
  ./internal/format:FuzzParseAuditCheckpoint \
  ./internal/vectors:FuzzReadObject \
  ./internal/keyring:FuzzOpen \
  ./internal/keyring:FuzzPayload \
  ./internal/posture:FuzzParse \
  ./internal/access:FuzzDecodeRecord \
  ./internal/access:FuzzParseGrant \
  ./internal/store/spread:FuzzMemberName \
  ./internal/shamir:FuzzSplitCombine \
  ./internal/keys/keyshare:FuzzParseShare \
  ./internal/keys/keyshare:FuzzDecodePayload \
  ./internal/audit:FuzzParse; do
  pkg=${target%%:*}; fn=${target##*:}
  echo "-- $fn ($pkg)"
  fuzz_one "$pkg" "$fn"
done
echo "== all tests passed"
echo "$summary"
