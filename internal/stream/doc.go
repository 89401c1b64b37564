// Package stream owns the chunked AEAD stream of one segment: AES-256-GCM
// over 64 KiB chunks under a per-segment key, with the chunk counter and the
// final flag in the nonce (docs/format.md, "Segments").
//
// It knows nothing of objects, manifests or stores, and must never release
// plaintext of a chunk whose tag did not verify.
package stream
