// Package spread is a store.Store made of member stores (local
// directories or S3 buckets, each with a provider and a jurisdiction)
// over which every object's bytes are spread by Reed-Solomon erasure
// coding: K data and M parity shards, one per member, so that any K
// members rebuild an object and any M may be lost or down.
//
// Each member names its shard differently: the object name is encrypted
// for that member (SIV: HMAC-SHA256 synthetic IV, AES-256-CTR) into an
// opaque token, so no two providers can match their shards by name.
// Every stripe of every shard carries an HMAC-SHA256 tag, under a key
// the provider does not have, binding the object name, the member, the
// stripe, the object's length and generation and the shard bytes: a
// damaged shard is identified, by member and stripe, and skipped.
//
// The layout must pass the jurisdiction policy (CheckPolicy): no single
// jurisdiction or provider holds K shards (one court order cannot
// rebuild even the ciphertext) or more than M (losing one loses
// nothing). A write succeeds when max(K,M)+1 members took their shard;
// the others are queued for Repair. It also keeps a small opaque record
// whole on every member (store.FreshnessKeeper, freshness.go): the
// freshness record of the repository's catalog backups, read as the
// newest generation K members hold. docs/spread.md has the design and
// docs/format.md the byte layout.
//
// The package is key-agnostic: the repository derives the key from its
// keyring and passes it in Config.
package spread
