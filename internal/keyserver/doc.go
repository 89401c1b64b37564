// Package keyserver owns the on-prem key server (docs/keyserver.md): its
// state directory (a CA, the server's certificate, the enrolled clients
// and their grants, the root keys in a keyring file, the key-operation
// log), and the server that answers wrap and unwrap requests over mutual
// TLS 1.3, authorizing each by the client's certificate and logging every
// release and every refusal (refused handshakes as bounded per-peer
// summaries written off the handshake path, limit.go), in its key-operation
// log and in its tamper-evident audit log (audit.go: internal/audit's log,
// whose newest checkpoint every answer carries to the client, and a
// per-client rate watch on releases). Its release policy
// (release.go) gates key releases on the posture a client reports and on
// attestation evidence internal/attest verifies.
//
// It must never send a root key or a bucket key to a client: root keys
// wrap and unwrap inside it, bucket keys are opened here to wrap and
// unwrap data keys (the "data" operation), and a bucket key it makes for
// a client leaves only wrapped, with its key check. It must never write
// key material to its log, its metrics, or an error.
package keyserver
