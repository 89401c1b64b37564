package keys

import (
	"context"
	"errors"

	"github.com/holdfast/holdfast/internal/secret"
)

var (
	// ErrNotMyKey: the source does not hold the key the record was wrapped
	// under (or the record was wrapped under a different key). A caller may
	// try the next source or key. A tampered record also yields this error:
	// from outside, every authentication failure looks the same.
	ErrNotMyKey = errors.New("key was not wrapped by this key source")
	// ErrUnavailable: the source could not be reached or is locked (HSM
	// absent, key server down). Trying again later may succeed; trying
	// another source for the same record is pointless.
	ErrUnavailable = errors.New("key source unavailable")
)

// SourceKind names where a root key lives. It is recorded in every key
// record so that a reader knows which source to ask.
type SourceKind uint8

const (
	SourceKeyring   SourceKind = 1 // passphrase-sealed keyring file
	SourcePKCS11    SourceKind = 2 // PKCS#11 HSM
	SourceKeyServer SourceKind = 3 // on-prem key server
)

// Source holds versioned root keys and wraps and unwraps 256-bit keys under
// them. It is the only interface the rest of Holdfast uses to reach a root
// key; the root key itself never leaves the source.
type Source interface {
	// Kind says which kind of source this is.
	Kind() SourceKind
	// Primary returns the root key version used for new wraps.
	Primary() uint32
	// Wrap seals k under root key version ver, binding ad.
	Wrap(ctx context.Context, ver uint32, ad AD, k secret.Key) (Wrapped, error)
	// Unwrap opens w, which names its root key version, binding ad. It
	// returns ErrNotMyKey when the record does not open under this source
	// and ErrUnavailable when the source cannot answer now.
	Unwrap(ctx context.Context, w Wrapped, ad AD) (secret.Key, error)
}

// BatchUnwrapper is implemented by sources that can open many records in
// one round trip (the key server). Callers find it by type assertion.
type BatchUnwrapper interface {
	UnwrapBatch(ctx context.Context, ws []Wrapped, ads []AD) ([]secret.Key, []error)
}
