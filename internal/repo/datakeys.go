package repo

// Where objects' data keys are wrapped and unwrapped (docs/design.md §1,
// docs/keyserver.md "What a joined gateway holds"): under a bucket key
// this process opened and keeps (the keyring and the PKCS#11 token), or
// by the key source itself, which opens the bucket key where it keeps the
// root keys (the key server), so that the bucket key never reaches this
// process; and where new bucket key versions are made: here, or by a key
// source that makes them itself (BucketKeyMaker). The choices are made here
// and nowhere else.

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// DataKeySource is implemented by key sources that wrap and unwrap
// objects' data keys under a bucket key themselves (internal/keys/remote:
// the key server). The repository finds it by type assertion on its
// RootKeys; with it, every data key goes through the source and the
// repository never unwraps a bucket key.
//
// bk is the catalog's record of the bucket key version (its wrap under a
// root key and its key check), from which the source opens the bucket key
// itself. Wraps are keys.AlgHKDFGCMCommit, as the catalog and the object
// header assume. Errors follow keys.Source: keys.ErrNotMyKey when the
// record does not open, keys.ErrUnavailable when the source cannot answer.
type DataKeySource interface {
	WrapDataKeyUnder(ctx context.Context, bk catalog.BucketKey, ad keys.AD, k secret.Key) (keys.Alg, []byte, error)
	UnwrapDataKeyUnder(ctx context.Context, bk catalog.BucketKey, ad keys.AD, alg keys.Alg, data []byte) (secret.Key, error)
}

// BucketKeyMaker is implemented by key sources that make new bucket key
// versions themselves (internal/keys/remote: the key server), found by
// type assertion on the repository's RootKeys like DataKeySource. With it
// a new bucket or a bucket key rotation never makes or holds the key in
// this process: the source makes it, wraps it under root key version
// ad.KEKVersion with ad (purpose keys.PurposeBucketKey) and returns only
// the wrap and the key check (keys.KeyCheck), which the key journal entry
// and the catalog record keep as for a key made here.
type BucketKeyMaker interface {
	MakeBucketKey(ctx context.Context, ad keys.AD) (w keys.Wrapped, keyCheck []byte, err error)
}

// madeBucketKey is a new bucket key version as the catalog keeps it, and
// the key itself when it was made in this process (zero when the key
// source made it).
type madeBucketKey struct {
	wrapped keys.Wrapped
	check   []byte
	key     secret.Key
}

// makeBucketKey makes a bucket key version with associated data ad: by the
// key source when it is a BucketKeyMaker, else here (secret.New) and
// wrapped by the source. The caller wipes the key it gets.
func (r *Repo) makeBucketKey(ctx context.Context, ad keys.AD) (madeBucketKey, error) {
	r.mu.Lock()
	src := r.src
	r.mu.Unlock()
	if m, ok := src.(BucketKeyMaker); ok {
		return sourceMadeBucketKey(ctx, m, ad)
	}
	k, err := secret.New()
	if err != nil {
		return madeBucketKey{}, err
	}
	w, err := src.Wrap(ctx, ad.KEKVersion, ad, k)
	if err != nil {
		k.Wipe()
		return madeBucketKey{}, fmt.Errorf("wrapping bucket key: %w", err)
	}
	kc, err := keys.KeyCheck(k)
	if err != nil {
		k.Wipe()
		return madeBucketKey{}, err
	}
	return madeBucketKey{wrapped: w, check: kc, key: k}, nil
}

// sourceMadeBucketKey asks m for the key and checks that what it returns
// fits the record the catalog and the journal keep: a key check of the
// right length and a wrap under the root key version asked for.
func sourceMadeBucketKey(ctx context.Context, m BucketKeyMaker, ad keys.AD) (madeBucketKey, error) {
	w, kc, err := m.MakeBucketKey(ctx, ad)
	if err != nil {
		return madeBucketKey{}, fmt.Errorf("making bucket key v%d: %w", ad.KeyVersion, err)
	}
	var rec format.KeyRecord
	if len(kc) != len(rec.KeyCheck) || w.KEKVersion != ad.KEKVersion {
		return madeBucketKey{}, fmt.Errorf("the key source made bucket key v%d under root key version %d with a %d-byte key check; want version %d and %d bytes",
			ad.KeyVersion, w.KEKVersion, len(kc), ad.KEKVersion, len(rec.KeyCheck))
	}
	return madeBucketKey{wrapped: w, check: kc}, nil
}

// errBucketKeyStaysAtSource: an operation needs a bucket key opened in
// this process, which a data-key source never gives out.
var errBucketKeyStaysAtSource = errors.New("the key source keeps bucket keys to itself (it wraps and unwraps data keys for this process)")

// dataKeys wraps and unwraps the data keys of one bucket key version.
type dataKeys interface {
	// wrap seals dek under the bucket key with ad (an alg 1 wrap); rnd is
	// the salt's source where the wrap is made in this process (nil:
	// crypto/rand).
	wrap(ctx context.Context, ad keys.AD, dek secret.Key, rnd io.Reader) ([]byte, error)
	unwrap(ctx context.Context, ad keys.AD, wrapped []byte) (secret.Key, error)
}

// dataKeysFor returns how data keys under bucket key version bk are
// wrapped and unwrapped: by the key source when it is a DataKeySource,
// else under the bucket key opened here (bucketKey: cached for the
// process, as before).
func (r *Repo) dataKeysFor(ctx context.Context, bk catalog.BucketKey) (dataKeys, error) {
	if dks, ok := r.dataKeySource(); ok {
		return r.sourceDataKeys(dks, bk)
	}
	kek, err := r.bucketKey(ctx, bk)
	if err != nil {
		return nil, err
	}
	return localDataKeys{kek}, nil
}

// dataKeySource returns the key source as a DataKeySource, if it is one.
// It is read under r.mu: UnsealKeys may put another source in place.
func (r *Repo) dataKeySource() (DataKeySource, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dks, ok := r.src.(DataKeySource)
	return dks, ok
}

// holdsBucketKeys reports whether this process opens and keeps bucket
// keys (false with a DataKeySource).
func (r *Repo) holdsBucketKeys() bool {
	_, ok := r.dataKeySource()
	return !ok
}

// localDataKeys: the bucket key is in this process.
type localDataKeys struct{ kek secret.Key }

func (l localDataKeys) wrap(_ context.Context, ad keys.AD, dek secret.Key, rnd io.Reader) ([]byte, error) {
	return keys.WrapSoftware(l.kek, ad, dek, randReader(rnd))
}

func (l localDataKeys) unwrap(_ context.Context, ad keys.AD, wrapped []byte) (secret.Key, error) {
	return keys.UnwrapSoftware(l.kek, ad, wrapped)
}

// sourceDataKeys: the key source opens the bucket key itself.
type sourceDataKeys struct {
	src DataKeySource
	bk  catalog.BucketKey
}

// sourceDataKeys checks what bucketKey checks before the source is asked:
// a retired version is refused, and nothing is released while the keys
// are sealed.
func (r *Repo) sourceDataKeys(src DataKeySource, bk catalog.BucketKey) (dataKeys, error) {
	if bk.State == catalog.KeyDestroyed {
		return nil, fmt.Errorf("bucket key v%d: %w", bk.Version, ErrKeyRetired)
	}
	if r.KeysSealed() {
		return nil, ErrKeysSealed
	}
	return sourceDataKeys{src: src, bk: bk}, nil
}

func (s sourceDataKeys) wrap(ctx context.Context, ad keys.AD, dek secret.Key, _ io.Reader) ([]byte, error) {
	alg, w, err := s.src.WrapDataKeyUnder(ctx, s.bk, ad, dek)
	if err != nil {
		return nil, fmt.Errorf("wrapping a data key under bucket key v%d: %w", s.bk.Version, err)
	}
	// The catalog keeps a data key's wrap without its algorithm, and
	// readers open it as alg 1.
	if alg != keys.AlgHKDFGCMCommit || len(w) != keys.WrappedLenHKDFGCMCommit {
		return nil, fmt.Errorf("the key source wrapped a data key with algorithm %d in %d bytes; want algorithm %d", alg, len(w), keys.AlgHKDFGCMCommit)
	}
	return w, nil
}

func (s sourceDataKeys) unwrap(ctx context.Context, ad keys.AD, wrapped []byte) (secret.Key, error) {
	k, err := s.src.UnwrapDataKeyUnder(ctx, s.bk, ad, keys.AlgHKDFGCMCommit, wrapped)
	if err != nil {
		return secret.Key{}, fmt.Errorf("unwrapping a data key under bucket key v%d: %w", s.bk.Version, err)
	}
	return k, nil
}
