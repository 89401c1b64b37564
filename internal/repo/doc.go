// Package repo is a Holdfast repository: a home (config, keyring, catalog)
// on premises joined to a store. It owns the order of operations that keeps
// data safe — pending record, store write, catalog commit, deletion of the
// old version — the key hierarchy's use (root key → bucket key → data key),
// verification, classification of damage, catalog backups, and recovery of
// a lost catalog from the newest backup the keyring's freshness record
// vouches for plus a scan of the store.
//
// It never writes a logical name, plaintext or key in the clear to the
// store, and never releases plaintext that did not authenticate against
// the catalog's pin.
package repo
