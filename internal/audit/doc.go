// Package audit owns the tamper-evident audit log (docs/audit.md): one
// JSON line per key operation, gateway object operation, refusal or
// rate anomaly, each naming the SHA-256 of the line before it and
// carrying an HMAC-SHA256 under a key that ratchets forward with every
// line (K_{n+1} = HKDF-SHA256(K_n)); the writer keeps only the current
// key, so a thief of the writer's state cannot rewrite what came before.
// The verifier holds K_0, sealed under the repository's root key.
// Checkpoints (seq, head hash, time), MACed like any line, are copied to
// a file outside the log's directory and, through a CheckpointSink, to
// the repository's store, so that a log cut at its tail shows too. The
// package does not import the repository: the sink is an interface.
//
// It must never write key material, secrets or passphrases into the log:
// an entry's fields name operations, actors (access key ids, never
// secrets) and subjects. It never rewrites or truncates what an earlier
// append wrote, and it never reports an entry as intact that it has not
// checked.
package audit
