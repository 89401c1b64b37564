// Package remote is the key source of a home whose root keys are held by
// an on-prem key server (internal/keyserver, docs/keyserver.md): it
// implements repo.RootKeys and keys.Source (Kind() == keys.SourceKeyServer)
// over the key server's API with the client certificate the server's
// `keyserver enroll` issued, and the operations of a client that may hold
// data keys only: data keys wrapped and unwrapped under bucket keys the
// server opens, and bucket keys the server makes.
//
// It keeps the key server's audit checkpoints that answers carry in a
// file of the home (checkpoints.go), for the server's verifier.
//
// It keeps unwrapped keys for a short time (CacheTTL) in protected memory
// and never writes a key anywhere. When the server cannot be reached every
// operation fails with keys.ErrUnavailable (after retries): a write that
// needs a key fails before anything is committed, and a cached key expires
// on time whether or not the server is back.
package remote
