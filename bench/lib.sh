# Shared by the bench scripts (source it from the repository's top).

# start_versitygw DIR ACCESS SECRET starts the real S3 server the
# benchmarks use as the provider: versitygw over HTTPS on a free 127.0.0.1
# port, with a self-signed certificate for it (DIR/cert.pem, DIR/key.pem)
# and its data on disk in DIR/posix. It waits until the server answers and
# sets VGW_EP (the endpoint URL) and VGW_PID; the caller stops it.
start_versitygw() {
  local dir=$1 access=$2 secret=$3 port
  mkdir -p "$dir/posix"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  .ci/bin/versitygw --port "127.0.0.1:$port" --access "$access" --secret "$secret" \
    --region us-east-1 --cert "$dir/cert.pem" --key "$dir/key.pem" --health /health --keep-alive --quiet posix "$dir/posix" \
    >"$dir/vgw.log" 2>&1 &
  VGW_PID=$!
  VGW_EP=https://127.0.0.1:$port
  until curl -fsS --cacert "$dir/cert.pem" "$VGW_EP/health" >/dev/null 2>&1; do
    kill -0 "$VGW_PID" || { cat "$dir/vgw.log"; return 1; }
  done
}

# start_provider starts the benchmarks' provider in $W (start_versitygw,
# its pid added to the caller's pids array for cleanup) with the
# credentials PROV_ID and PROV_SECRET, makes its bucket "store", installs
# the AWS CLI if missing, and sets EP (the endpoint), the AWS variables
# that keep the CLI off this machine's configuration, HOLDFAST_PASSPHRASE
# and S3FLAGS (holdfast's flags for the endpoint).
start_provider() {
  PROV_ID=holdfast-bench PROV_SECRET=holdfast-bench-secret
  start_versitygw "$W" "$PROV_ID" "$PROV_SECRET"
  pids+=("$VGW_PID")
  EP=$VGW_EP
  export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_CONFIG_FILE=/dev/null
  [ -x /usr/bin/aws ] || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends awscli >/dev/null; }
  AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET /usr/bin/aws s3 mb s3://store --endpoint-url "$EP" --ca-bundle "$W/cert.pem" >/dev/null
  export HOLDFAST_PASSPHRASE="benchmark passphrase"
  S3FLAGS=(--s3-endpoint "$EP" --s3-ca-bundle "$W/cert.pem" --s3-path-style)
}

# compare_get_rate BASE OTHER: the gateway's 4 KiB GET rate (16 clients,
# bench/gwload) on the repository in $W/home-OTHER against the one in
# $W/home-BASE, same build and provider, the two alternated $ROUNDS times
# for $DURATION each; prints each run and the median of the per-round
# ratios OTHER / BASE. Needs bin/holdfast, bin/gwload, and PROV_ID and
# PROV_SECRET (the provider's credentials the gateways use).
compare_get_rate() {
  local base=$1 other=$2 s r rps
  declare -A gw_id gw_secret
  for s in "$base" "$other"; do
    bin/holdfast --home "$W/home-$s" --json access add bench --admin >"$W/key.json"
    gw_id[$s]=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['id'])" "$W/key.json")
    gw_secret[$s]=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['secret'])" "$W/key.json")
    rm -f "$W/key.json"
  done
  rm -f "$W/rows"
  echo "== gateway 4 KiB GET rate, 16 clients, $DURATION per run"
  echo "round  source    4KiB-GET-rps"
  for ((r = 1; r <= ROUNDS; r++)); do
    for s in "$base" "$other"; do
      AWS_ACCESS_KEY_ID=$PROV_ID AWS_SECRET_ACCESS_KEY=$PROV_SECRET \
        bin/holdfast --home "$W/home-$s" serve --addr 127.0.0.1:0 --ops-addr "" --sample-interval 0 --log-level error \
        >"$W/serve.out" 2>"$W/serve.err" &
      local pid=$! gw=
      # Wait for the whole endpoint line (it may be read half-written).
      until [ -n "$gw" ]; do
        kill -0 "$pid" || { cat "$W/serve.err"; return 1; }
        gw=$(sed -n 's/.*S3 endpoint \(https:[^ ]*\) .*/\1/p' "$W/serve.out" 2>/dev/null)
      done
      rps=$(AWS_ACCESS_KEY_ID=${gw_id[$s]} AWS_SECRET_ACCESS_KEY=${gw_secret[$s]} bin/gwload -endpoint "$gw" \
        -ca "$W/home-$s/gateway/cert.pem" -duration "$DURATION" -bucket small -op get -clients 16 -size 4096 |
        sed -n "s/.* rps=\([0-9.]*\).*/\1/p")
      kill "$pid"; wait "$pid" || true
      printf '%-6s %-9s %12s\n' "$r" "$s" "$rps"
      echo "$r $s $rps" >>"$W/rows"
    done
  done
  /usr/bin/python3 - "$W/rows" "$base" "$other" <<'PY'
import sys, statistics
rows, base, other = sys.argv[1:]
by = {}
for r, s, rps in (l.split() for l in open(rows)):
    by.setdefault(r, {})[s] = float(rps)
q = [v[other] / v[base] for v in by.values()]
print(f"{other} / {base} 4 KiB GET rate, median of per-round ratios: {statistics.median(q):.3f} (range {min(q):.3f}-{max(q):.3f})")
PY
}
