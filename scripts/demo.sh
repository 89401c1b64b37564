#!/usr/bin/env bash
# Holdfast on its embedded defaults: a passphrase-sealed keyring and a
# local-directory store, in a throwaway home under ./demo/. Builds the
# binary, then stores, lists, reads back and verifies a file, and shows
# that the store holds only opaque, padded ciphertext.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/holdfast ./cmd/holdfast
HF=$PWD/bin/holdfast
rm -rf demo && mkdir -p demo
export HOLDFAST_HOME=$PWD/demo/home
# The demo passphrase comes from the environment so the demo needs no
# terminal; use the prompt (or --passphrase-file) for real keyrings.
export HOLDFAST_PASSPHRASE=${HOLDFAST_PASSPHRASE:-demo passphrase, not for real data}

say() { printf '\n$ %s\n' "$*"; }
say holdfast init;                       $HF init
printf 'Quarterly numbers: confidential.\n' > demo/report.txt
head -c 3000000 /dev/urandom > demo/photo.raw
say holdfast put demo/report.txt finance/2026/q3-report.txt
$HF put demo/report.txt finance/2026/q3-report.txt
say holdfast put demo/photo.raw photos/holiday.raw
$HF put demo/photo.raw photos/holiday.raw
say holdfast ls finance;                 $HF ls finance
say holdfast cat finance/2026/q3-report.txt; $HF cat finance/2026/q3-report.txt
say holdfast get photos/holiday.raw demo/photo.back
$HF get photos/holiday.raw demo/photo.back && cmp demo/photo.raw demo/photo.back && echo "(byte-exact)"
say holdfast verify;                     $HF verify
say "what the provider sees (the store directory):"
find "$HOLDFAST_HOME/store" -type f -printf '%s\t%P\n' | sort -k2
if grep -rq 'confidential' "$HOLDFAST_HOME/store"; then echo "plaintext found in the store!"; exit 1; fi
echo "no plaintext, no names: only opaque objects of padded sizes."
