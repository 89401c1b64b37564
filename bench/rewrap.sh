#!/usr/bin/env bash
# keys rewrap at scale: REWRAP_OBJECTS small objects (default 100,000) in
# one bucket, on the local store and on versitygw (127.0.0.1, plain HTTP,
# posix backend on disk); the bucket key is rotated and every object's
# data key rewrapped under the new version. Reports, for each store, the
# time of the rewrap, the bytes it wrote to the store (counted at the
# store boundary) and per object, and the bytes it read (none: no body is
# touched). CI runs the same test at 10,000 objects (TestRewrapScale).
# Results go to bench/out/rewrap.txt.
#
#   REWRAP_OBJECTS=100000 bash bench/rewrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${REWRAP_OBJECTS:-100000}
OUT=bench/out
mkdir -p "$OUT"
bash scripts/versitygw.sh
echo "== rewrap of $N objects, local store and versitygw ($(nproc) cores, $(go env GOVERSION))"
HOLDFAST_REWRAP_OBJECTS=$N go test -count=1 -timeout 2h -run '^TestRewrapScale$' -v ./internal/repo \
  | grep -E 'rewrap_scale_test.go|^(ok|FAIL|---)' | tee "$OUT/rewrap.txt"
