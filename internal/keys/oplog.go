package keys

import "time"

// Op is one key operation for the on-prem key-operation log (issue 5,
// point 5; the key server issue makes that log tamper-evident). It never
// holds key material, shares, PINs or passphrases.
type Op struct {
	Time     time.Time
	Op       string // "ceremony", "backup", "restore", "passwd", later "rotate", "rewrap", "retire", "shred", "unwrap-counts"
	Repo     ID
	Source   SourceKind
	Versions []uint32 // root key versions concerned
	Detail   string   // e.g. "5 shares, threshold 3, set 1a2b…" or "unwraps=12 cache-hits=40"
}

// OpLog records key operations. The log itself (append-only, on
// premises) is built with the key-version lifecycle; until then commands
// record into NopLog.
type OpLog interface {
	Record(Op) error
}

// NopLog records nothing.
type NopLog struct{}

// Record does nothing.
func (NopLog) Record(Op) error { return nil }
