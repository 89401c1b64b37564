#!/usr/bin/env bash
# Builds the real S3 server the tests start on 127.0.0.1 (versitygw,
# Apache-2.0) into .ci/bin. Its version is pinned, with checksums, in the
# separate module tools/versitygw, so its ~75 dependencies stay out of
# Holdfast's own module graph; the Go build cache makes a rebuild cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=$(sha256sum tools/versitygw/go.mod tools/versitygw/go.sum | sha256sum | cut -c1-16)
if [ -x .ci/bin/versitygw ] && [ "$(cat .ci/bin/versitygw.stamp 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
mkdir -p .ci/bin
(cd tools/versitygw && go build -o ../../.ci/bin/versitygw github.com/versity/versitygw/cmd/versitygw)
echo "$stamp" >.ci/bin/versitygw.stamp
