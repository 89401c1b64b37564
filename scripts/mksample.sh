#!/usr/bin/env bash
# Makes testdata/sample/vN: a small repository (keyring file and store) of
# this release's format, kept in the repository forever and read by every
# CI run (internal/repo TestSampleRepositories). Run once per format
# version; never regenerate an existing one.
set -euo pipefail
cd "$(dirname "$0")/.."
v=${1:?usage: mksample.sh VERSION}
out=testdata/sample/v$v
[ -e "$out" ] && { echo "$out exists; samples are never regenerated" >&2; exit 1; }
go build -o bin/holdfast ./cmd/holdfast
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export HOLDFAST_HOME=$work/home HOLDFAST_PASSPHRASE="holdfast sample v$v"
bin/holdfast init -q --store "$work/store" >/dev/null
mkdir -p "$work/files/photos/2026"
printf '' >"$work/files/empty"
printf 'x' >"$work/files/one-byte"
head -c 65536 /dev/urandom >"$work/files/chunk"
head -c 200000 /dev/urandom >"$work/files/photos/2026/img.raw"
printf 'Quarterly numbers.\n' >"$work/files/report.txt"
bin/holdfast put -q "$work/files/empty" sample/empty
bin/holdfast put -q "$work/files/one-byte" sample/one-byte
bin/holdfast put -q "$work/files/chunk" sample/chunk
bin/holdfast put -q --content-type text/plain --meta owner=ops "$work/files/report.txt" docs/report.txt
bin/holdfast put -q "$work/files/report.txt" docs/report.txt   # version 2
bin/holdfast put -q -r "$work/files/photos" sample/photos
mkdir -p "$out"
cp "$HOLDFAST_HOME/keyring" "$out/keyring"
cp -r "$work/store" "$out/store"
{
  echo "# passphrase: $HOLDFAST_PASSPHRASE"
  echo "# object  sha256  size"
  for o in sample/empty sample/one-byte sample/chunk docs/report.txt sample/photos/2026/img.raw; do
    bin/holdfast get -q "$o" "$work/x"
    echo "$o $(sha256sum "$work/x" | cut -d' ' -f1) $(stat -c %s "$work/x")"
  done
} >"$out/expected.txt"
echo "made $out"
