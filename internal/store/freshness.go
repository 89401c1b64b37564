package store

import "context"

// MaxFreshnessRecord bounds the record a FreshnessKeeper keeps.
const MaxFreshnessRecord = 4096

// FreshnessKeeper is implemented by stores made of independent members
// (the spread store) that can keep a small record — the freshness record
// of the repository's catalog backups — whole on every member, so that
// losing the copy at home does not lose it, and so that rolling it back
// takes more members than a read trusts. Callers find it by type
// assertion; a single store does not offer it (its one provider is the
// party the record guards against).
//
// The record is opaque to the store: the caller encodes it and must
// authenticate it itself (the store authenticates it too, under its own
// key, but a caller that trusts no store checks its own seal).
type FreshnessKeeper interface {
	// PutFreshness replaces the record with rec (1 to
	// MaxFreshnessRecord bytes) under a new, higher generation. It
	// succeeds when as many members took it as any write needs; members
	// that missed it are named in the store's warnings and left for
	// repair. Below that it fails (ErrUnavailable) and the previous
	// record stays current.
	PutFreshness(ctx context.Context, rec []byte) error

	// Freshness returns the newest record that enough members hold
	// authentically to be trusted (a spread store: K members, so that
	// fewer than K members acting together cannot put a record forward),
	// with how many members hold that record (agreed) out of how many
	// members the store has (of). It fails with ErrNotExist when no
	// record is held by enough members (none was ever written, or the
	// members disagree), and with ErrUnavailable when too few members
	// answered to tell.
	Freshness(ctx context.Context) (rec []byte, agreed, of int, err error)
}
