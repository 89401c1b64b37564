// Package store defines where ciphertext goes: the Store interface that the
// local directory store, the S3 store and later the spread store implement,
// and the errors they share.
//
// A store sees only opaque object names and ciphertext. It must never be
// given, and never derive, a logical bucket or key name, a plaintext size or
// any key material. Every store passes the conformance suite in
// internal/store/storetest.
package store
