package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// recordingKeys is the home's keyring as a key source that records every
// root-level unwrap and wrap by purpose: a bucket key unwrap here is a
// bucket key opened in the repository's process, a bucket key wrap one
// made there.
type recordingKeys struct {
	*keyring.Keyring
	mu      sync.Mutex
	unwraps map[keys.Purpose]int
	wraps   map[keys.Purpose]int
}

func (k *recordingKeys) Wrap(ctx context.Context, ver uint32, ad keys.AD, key secret.Key) (keys.Wrapped, error) {
	k.mu.Lock()
	if k.wraps == nil {
		k.wraps = map[keys.Purpose]int{}
	}
	k.wraps[ad.Purpose]++
	k.mu.Unlock()
	return k.Keyring.Wrap(ctx, ver, ad, key)
}

func (k *recordingKeys) bucketKeyWraps() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.wraps[keys.PurposeBucketKey]
}

func (k *recordingKeys) Unwrap(ctx context.Context, w keys.Wrapped, ad keys.AD) (secret.Key, error) {
	k.mu.Lock()
	k.unwraps[ad.Purpose]++
	k.mu.Unlock()
	return k.Keyring.Unwrap(ctx, w, ad)
}

func (k *recordingKeys) bucketKeyUnwraps() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.unwraps[keys.PurposeBucketKey]
}

// dataKeyServer is recordingKeys that also offers the data-key operations
// (DataKeySource), as the key server does: it opens the bucket key on its
// own side (the keyring, not the recorded Unwrap), uses it and wipes it.
// A root-level unwrap of a bucket key through it fails the test.
type dataKeyServer struct {
	*recordingKeys
	t              *testing.T
	wraps, unwraps int
}

func (s *dataKeyServer) Unwrap(ctx context.Context, w keys.Wrapped, ad keys.AD) (secret.Key, error) {
	if ad.Purpose == keys.PurposeBucketKey {
		s.t.Errorf("the repository asked a data-key source to unwrap bucket key v%d", ad.KeyVersion)
	}
	return s.recordingKeys.Unwrap(ctx, w, ad)
}

// openBucketKey is the server's side: the bucket key, checked as
// repo.bucketKey checks it.
func (s *dataKeyServer) openBucketKey(ctx context.Context, bk catalog.BucketKey, ad keys.AD) (secret.Key, error) {
	if ad.Purpose != keys.PurposeDataKey || ad.Bucket != bk.BucketID || ad.KEKVersion != bk.Version {
		return secret.Key{}, fmt.Errorf("associated data is not a data key's of bucket key v%d: %w", bk.Version, keys.ErrNotMyKey)
	}
	bad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: ad.Repo, Bucket: bk.BucketID, KEKVersion: bk.Wrapped.KEKVersion, KeyVersion: bk.Version}
	k, err := s.Keyring.Unwrap(ctx, bk.Wrapped, bad)
	if err != nil {
		return secret.Key{}, err
	}
	if kc, err := keys.KeyCheck(k); err != nil || !bytes.Equal(kc, bk.KeyCheck) {
		k.Wipe()
		return secret.Key{}, fmt.Errorf("key check: %w", keys.ErrNotMyKey)
	}
	return k, nil
}

func (s *dataKeyServer) WrapDataKeyUnder(ctx context.Context, bk catalog.BucketKey, ad keys.AD, dek secret.Key) (keys.Alg, []byte, error) {
	kek, err := s.openBucketKey(ctx, bk, ad)
	if err != nil {
		return 0, nil, err
	}
	defer kek.Wipe()
	s.mu.Lock()
	s.wraps++
	s.mu.Unlock()
	w, err := keys.WrapSoftware(kek, ad, dek, randReader(nil))
	return keys.AlgHKDFGCMCommit, w, err
}

func (s *dataKeyServer) UnwrapDataKeyUnder(ctx context.Context, bk catalog.BucketKey, ad keys.AD, alg keys.Alg, data []byte) (secret.Key, error) {
	if alg != keys.AlgHKDFGCMCommit {
		return secret.Key{}, fmt.Errorf("algorithm %d: %w", alg, keys.ErrNotMyKey)
	}
	kek, err := s.openBucketKey(ctx, bk, ad)
	if err != nil {
		return secret.Key{}, err
	}
	defer kek.Wipe()
	s.mu.Lock()
	s.unwraps++
	s.mu.Unlock()
	return keys.UnwrapSoftware(kek, ad, data)
}

func (s *dataKeyServer) uses() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wraps, s.unwraps
}

var _ DataKeySource = (*dataKeyServer)(nil)

// openWithKeys reopens e's repository with the key source src makes of
// the home's keyring.
func openWithKeys[K RootKeys](t *testing.T, e *env, src func(*keyring.Keyring) K) K {
	t.Helper()
	e.r.Close()
	kr, err := keyring.Open(KeyringPath(e.home), pass)
	if err != nil {
		t.Fatal(err)
	}
	s := src(kr)
	r, err := Open(context.Background(), OpenOptions{Home: e.home, Keys: s})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	return s
}

func (e *env) heldBucketKeys() int {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	return len(e.r.bkeys)
}

// dataKeyWorkload puts, gets, uploads in parts, rotates the bucket key
// and rewraps, then reads everything back: every data-key wrap and unwrap
// the repository does.
func dataKeyWorkload(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	small, big := random(1000), random(3<<20)
	e.put("dkb", "small", small)
	e.put("dkb", "big", big)
	e.mustGet("dkb", "small", small)

	id, err := e.r.CreateUpload(ctx, "dkb", "parts", PutOptions{})
	if err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	p1, p2 := random(MinPartSize), random(12345)
	var list []CompletedPart
	for n, p := range [][]byte{p1, p2} {
		pi, err := e.r.PutPart(ctx, "dkb", "parts", id, n+1, bytes.NewReader(p), int64(len(p)))
		if err != nil {
			t.Fatalf("PutPart %d: %v", n+1, err)
		}
		list = append(list, CompletedPart{Number: pi.Number, ETag: pi.ETag})
	}
	if _, err := e.r.CompleteUpload(ctx, "dkb", "parts", id, list, CompleteOptions{}); err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}

	v, err := e.r.RotateBucketKey(ctx, "dkb")
	if err != nil {
		t.Fatalf("RotateBucketKey: %v", err)
	}
	rep, err := e.r.RewrapBucket(ctx, "dkb", nil)
	if err != nil || rep.Objects < 3 || rep.Skipped != 0 {
		t.Fatalf("RewrapBucket: %+v, %v", rep, err)
	}
	for _, k := range []string{"small", "big", "parts"} {
		if ent, err := e.r.Stat(ctx, "dkb", k); err != nil || ent.KeyVersion != v {
			t.Fatalf("%s after the rewrap: key version %d (%v), want %d", k, ent.KeyVersion, err, v)
		}
	}
	e.mustGet("dkb", "small", small)
	e.mustGet("dkb", "big", big)
	e.mustGet("dkb", "parts", append(append([]byte(nil), p1...), p2...))
	e.mustVerifyClean()
}

// TestDataKeySourceHoldsBucketKeys: with a key source that offers the
// data-key operations, puts, gets, multipart uploads, a bucket key
// rotation and a rewrap never unwrap a bucket key in the repository's
// process — the source is never asked for one, none is cached — and every
// data key goes through the source; the data written reads back after a
// reopen on the keyring alone. The control runs the same workload on the
// keyring, through the same recorder: it sees the bucket keys unwrapped
// and cached.
func TestDataKeySourceHoldsBucketKeys(t *testing.T) {
	t.Run("data-key source", func(t *testing.T) {
		e := newEnv(t)
		s := openWithKeys(t, e, func(kr *keyring.Keyring) *dataKeyServer {
			return &dataKeyServer{recordingKeys: &recordingKeys{Keyring: kr, unwraps: map[keys.Purpose]int{}}, t: t}
		})
		dataKeyWorkload(t, e)
		wraps, unwraps := s.uses()
		if n := s.bucketKeyUnwraps(); n != 0 {
			t.Errorf("%d bucket key unwraps through the root-level interface", n)
		}
		if n := e.heldBucketKeys(); n != 0 {
			t.Errorf("the repository holds %d bucket keys", n)
		}
		// 2 puts, the upload's key, 3 rewraps; reads of 3 keys before and
		// after the rewrap, the parts, the rewrap's unwraps, verify.
		if wraps < 6 || unwraps < 9 {
			t.Errorf("the source wrapped %d and unwrapped %d data keys; want at least 6 and 9", wraps, unwraps)
		}
		if u := e.r.KeyUseCounts(); u.BucketKeyCacheHits != 0 {
			t.Errorf("key use %+v: bucket key cache hits with a data-key source", u)
		}
		// What it wrote is ordinary: the keyring reads it.
		e.reopen()
		if _, err := e.get("dkb", "parts"); err != nil {
			t.Fatalf("reading on the keyring after the data-key source: %v", err)
		}
	})
	t.Run("keyring control", func(t *testing.T) {
		e := newEnv(t)
		e.put("dkb", "first", random(10)) // bucket key v1 exists before the reopen
		s := openWithKeys(t, e, func(kr *keyring.Keyring) *recordingKeys {
			return &recordingKeys{Keyring: kr, unwraps: map[keys.Purpose]int{}}
		})
		dataKeyWorkload(t, e)
		if n := s.bucketKeyUnwraps(); n == 0 {
			t.Error("control: the recorder saw no bucket key unwrap on the keyring")
		}
		if n := e.heldBucketKeys(); n == 0 {
			t.Error("control: the keyring repository holds no bucket key")
		}
	})
}

// TestDataKeySourceRefusesBucketKeyUse: what needs a bucket key in the
// process — recovery, which tries every bucket key record it finds, and
// rewrapping a bucket key under another root key — fails with an error
// that says why, rather than opening the key or misreading the store.
func TestDataKeySourceRefusesBucketKeyUse(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	x := random(100)
	e.put("dkb", "x", x)
	s := openWithKeys(t, e, func(kr *keyring.Keyring) *dataKeyServer {
		return &dataKeyServer{recordingKeys: &recordingKeys{Keyring: kr, unwraps: map[keys.Purpose]int{}}, t: t}
	})
	bks, err := e.r.Catalog().BucketKeys(ctx, mustBucketID(t, e, "dkb"))
	if err != nil || len(bks) != 1 {
		t.Fatalf("bucket keys: %v %v", bks, err)
	}
	if _, err := e.r.bucketKey(ctx, bks[0]); !errors.Is(err, errBucketKeyStaysAtSource) {
		t.Fatalf("bucketKey with a data-key source: %v", err)
	}
	if err := e.r.rewrapBucketKey(ctx, bks[0], bks[0].Wrapped.KEKVersion, "dkb"); !errors.Is(err, errBucketKeyStaysAtSource) {
		t.Fatalf("rewrapBucketKey with a data-key source: %v", err)
	}

	// Recovery: the home has lost its catalog.
	e.r.Close()
	for _, f := range []string{CatalogFile, CatalogFile + "-wal", CatalogFile + "-shm"} {
		os.Remove(filepath.Join(e.home, f))
	}
	kr, err := keyring.Open(KeyringPath(e.home), pass)
	if err != nil {
		t.Fatal(err)
	}
	rs := &dataKeyServer{recordingKeys: &recordingKeys{Keyring: kr, unwraps: map[keys.Purpose]int{}}, t: t}
	_, _, err = Recover(ctx, RecoverOptions{Home: e.home, StorePath: e.store, Keys: rs})
	if !errors.Is(err, errBucketKeyStaysAtSource) || !strings.Contains(err.Error(), "recover") {
		t.Fatalf("recover with a data-key source: %v", err)
	}
	if n := rs.bucketKeyUnwraps() + s.bucketKeyUnwraps(); n != 0 {
		t.Fatalf("%d bucket key unwraps", n)
	}
	// Control: the same recovery on the keyring rebuilds the catalog.
	r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, StorePath: e.store, Passphrase: pass})
	if err != nil {
		t.Fatalf("control recover on the keyring: %v", err)
	}
	e.r = r
	if rep.Objects != 1 {
		t.Fatalf("control recover: %+v", rep)
	}
	e.mustGet("dkb", "x", x)
}

func mustBucketID(t *testing.T, e *env, name string) keys.ID {
	t.Helper()
	b, err := e.r.Catalog().GetBucket(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return b.ID
}
