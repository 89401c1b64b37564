// Package oplog owns the on-premises key-operation log: the file
// HOME/keyops.log in which every key operation (create, ceremony, rotate,
// backup, restore, passwd, unwrap counts, later rewrap, retire, shred) is
// appended as one JSON line, each line naming the SHA-256 of the line
// before it, so that an edit, a deletion or a reordering of earlier lines
// shows (docs/keys.md, "The key-operation log").
//
// It implements keys.OpLog. Appends from any number of processes are
// serialised by an flock on the file; each record is one write, synced
// before Record returns.
//
// This package must never write key material, shares, PINs or
// passphrases: it records only the fields of keys.Op, none of which holds
// a secret. It never rewrites or truncates what an earlier append wrote.
package oplog
