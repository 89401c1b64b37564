#!/usr/bin/env bash
# Builds the real S3 server the tests start on 127.0.0.1 (versitygw,
# Apache-2.0) into .ci/bin. Its version is pinned in Holdfast's go.mod as a
# tool dependency (`tool github.com/versity/versitygw/cmd/versitygw`), with
# checksums in go.sum, so its build shares Go's build cache with ours; none
# of it is linked into the holdfast binary. The stamp skips even the cache
# lookup while go.mod and go.sum are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=$(sha256sum go.mod go.sum | sha256sum | cut -c1-16)
if [ -x .ci/bin/versitygw ] && [ "$(cat .ci/bin/versitygw.stamp 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
mkdir -p .ci/bin
go build -o .ci/bin/versitygw github.com/versity/versitygw/cmd/versitygw
echo "$stamp" >.ci/bin/versitygw.stamp
