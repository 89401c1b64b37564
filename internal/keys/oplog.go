package keys

import "time"

// Op is one key operation for the on-prem key-operation log (issue 5,
// point 5; the key server issue anchors that log outside the premises). It
// never holds key material, shares, PINs or passphrases: add no field that
// could (oplog's tests pin these fields).
type Op struct {
	Time     time.Time
	Op       string // "create", "ceremony", "backup", "restore", "passwd", "rotate", "unwrap-counts", later "rewrap", "retire", "shred"
	Repo     ID
	Source   SourceKind
	Versions []uint32 // root key versions concerned
	Detail   string   // e.g. "5 shares, threshold 3, set 1a2b…" or "root-unwraps=12 bucket-key-cache-hits=40"
}

// OpLog records key operations. The log itself, append-only and on
// premises (HOME/keyops.log), is package oplog.
type OpLog interface {
	Record(Op) error
}

// NopLog records nothing (for code that has no home to log in).
type NopLog struct{}

// Record does nothing.
func (NopLog) Record(Op) error { return nil }
