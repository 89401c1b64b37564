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
    --region us-east-1 --cert "$dir/cert.pem" --key "$dir/key.pem" --health /health --quiet posix "$dir/posix" \
    >"$dir/vgw.log" 2>&1 &
  VGW_PID=$!
  VGW_EP=https://127.0.0.1:$port
  until curl -fsS --cacert "$dir/cert.pem" "$VGW_EP/health" >/dev/null 2>&1; do
    kill -0 "$VGW_PID" || { cat "$dir/vgw.log"; return 1; }
  done
}
