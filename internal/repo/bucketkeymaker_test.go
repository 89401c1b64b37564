package repo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// bucketKeyServer is dataKeyServer that also makes bucket keys on its own
// side (BucketKeyMaker), as the key server does: it makes the key, wraps
// it with the keyring (not the recorded Wrap) and wipes it. A root-level
// wrap of a bucket key through it — a bucket key made in the repository's
// process — fails the test.
type bucketKeyServer struct {
	*dataKeyServer
	makes int
	// spoil, if set, alters the answer (a source that misbehaves).
	spoil func(w *keys.Wrapped, kc *[]byte)
}

func (s *bucketKeyServer) Wrap(ctx context.Context, ver uint32, ad keys.AD, k secret.Key) (keys.Wrapped, error) {
	if ad.Purpose == keys.PurposeBucketKey {
		s.t.Errorf("the repository made bucket key v%d itself and asked a bucket key maker to wrap it", ad.KeyVersion)
	}
	return s.recordingKeys.Wrap(ctx, ver, ad, k)
}

func (s *bucketKeyServer) MakeBucketKey(ctx context.Context, ad keys.AD) (keys.Wrapped, []byte, error) {
	k, err := secret.New()
	if err != nil {
		return keys.Wrapped{}, nil, err
	}
	defer k.Wipe()
	w, err := s.Keyring.Wrap(ctx, ad.KEKVersion, ad, k)
	if err != nil {
		return keys.Wrapped{}, nil, err
	}
	kc, err := keys.KeyCheck(k)
	if err != nil {
		return keys.Wrapped{}, nil, err
	}
	s.mu.Lock()
	s.makes++
	s.mu.Unlock()
	if s.spoil != nil {
		s.spoil(&w, &kc)
	}
	return w, kc, nil
}

func (s *bucketKeyServer) made() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.makes
}

var _ BucketKeyMaker = (*bucketKeyServer)(nil)

func newBucketKeyServer(t *testing.T, kr *keyring.Keyring) *bucketKeyServer {
	return &bucketKeyServer{dataKeyServer: &dataKeyServer{recordingKeys: &recordingKeys{Keyring: kr, unwraps: map[keys.Purpose]int{}}, t: t}}
}

// TestBucketKeyMakerMakesBucketKeys: with a key source that makes bucket
// keys, creating a bucket and rotating its key ask the source, and no
// bucket key is made, wrapped, opened or kept in the repository's
// process; the catalog records and key journal entries are the usual
// ones: each record opens under the keyring and matches its key check,
// and recovery from the store alone rebuilds the catalog from the journal
// and reads every object. The control, a data-key source that does not
// make bucket keys, shows the recorder seeing the bucket keys made here.
func TestBucketKeyMakerMakesBucketKeys(t *testing.T) {
	t.Run("bucket key maker", func(t *testing.T) {
		ctx := context.Background()
		e := newEnv(t)
		s := openWithKeys(t, e, func(kr *keyring.Keyring) *bucketKeyServer { return newBucketKeyServer(t, kr) })
		dataKeyWorkload(t, e) // makes bucket key v1 of a new bucket, then rotates to v2
		if n := s.made(); n != 2 {
			t.Errorf("the source made %d bucket keys; want 2 (the new bucket's, the rotation's)", n)
		}
		if w, u, h := s.bucketKeyWraps(), s.bucketKeyUnwraps(), e.heldBucketKeys(); w+u+h != 0 {
			t.Errorf("bucket keys in the repository's process: %d wrapped, %d unwrapped, %d held", w, u, h)
		}
		bks, err := e.r.Catalog().BucketKeys(ctx, mustBucketID(t, e, "dkb"))
		if err != nil || len(bks) != 2 {
			t.Fatalf("bucket keys: %v %v", bks, err)
		}
		for _, bk := range bks {
			checkBucketKeyRecord(t, s.Keyring, e.r.id, bk)
		}

		// Recovery reads the bucket keys from the key journal entries.
		e.r.Close()
		for _, f := range []string{CatalogFile, CatalogFile + "-wal", CatalogFile + "-shm"} {
			os.Remove(filepath.Join(e.home, f))
		}
		r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, StorePath: e.store, Passphrase: pass})
		if err != nil {
			t.Fatalf("recovering what a bucket key maker wrote: %v", err)
		}
		e.r = r
		if rep.Objects != 3 {
			t.Fatalf("recover: %+v", rep)
		}
		for _, k := range []string{"small", "big", "parts"} {
			if _, err := e.get("dkb", k); err != nil {
				t.Fatalf("reading %s after recovery: %v", k, err)
			}
		}
		e.mustVerifyClean()
	})
	t.Run("data-key source control", func(t *testing.T) {
		e := newEnv(t)
		s := openWithKeys(t, e, func(kr *keyring.Keyring) *dataKeyServer {
			return &dataKeyServer{recordingKeys: &recordingKeys{Keyring: kr, unwraps: map[keys.Purpose]int{}}, t: t}
		})
		dataKeyWorkload(t, e)
		if n := s.bucketKeyWraps(); n != 2 {
			t.Errorf("control: the recorder saw %d bucket keys made in the process and wrapped; want 2", n)
		}
	})
}

// checkBucketKeyRecord opens bk's wrap with the keyring and checks it
// against the record's key check and journal entry.
func checkBucketKeyRecord(t *testing.T, kr *keyring.Keyring, repo keys.ID, bk catalog.BucketKey) {
	t.Helper()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: repo, Bucket: bk.BucketID, KEKVersion: bk.Wrapped.KEKVersion, KeyVersion: bk.Version}
	k, err := kr.Unwrap(context.Background(), bk.Wrapped, ad)
	if err != nil {
		t.Fatalf("bucket key v%d does not open under the keyring: %v", bk.Version, err)
	}
	defer k.Wipe()
	if kc, err := keys.KeyCheck(k); err != nil || !bytes.Equal(kc, bk.KeyCheck) {
		t.Fatalf("bucket key v%d does not match its key check", bk.Version)
	}
	if bk.JournalID == (keys.ID{}) {
		t.Fatalf("bucket key v%d has no key journal entry", bk.Version)
	}
}

// TestBucketKeyMakerAnswerChecked: an answer that does not fit the
// catalog's record — a short key check, a wrap under another root key
// version — fails the bucket's creation and records no key; the honest
// answer, the control, creates it.
func TestBucketKeyMakerAnswerChecked(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := openWithKeys(t, e, func(kr *keyring.Keyring) *bucketKeyServer { return newBucketKeyServer(t, kr) })
	for _, tc := range []struct {
		name  string
		spoil func(*keys.Wrapped, *[]byte)
	}{
		{"short key check", func(_ *keys.Wrapped, kc *[]byte) { *kc = (*kc)[:16] }},
		{"another root version", func(w *keys.Wrapped, _ *[]byte) { w.KEKVersion++ }},
	} {
		s.spoil = tc.spoil
		_, err := e.r.Put(ctx, "spoilt", "x", strings.NewReader("x"), PutOptions{})
		if err == nil || !strings.Contains(err.Error(), "the key source made bucket key v1") {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := e.r.Catalog().GetBucket(ctx, "spoilt")
		if err != nil {
			t.Fatal(err)
		}
		if bks, err := e.r.Catalog().BucketKeys(ctx, b.ID); err != nil || len(bks) != 0 {
			t.Fatalf("%s: bucket keys recorded: %v %v", tc.name, bks, err)
		}
	}
	s.spoil = nil
	e.put("spoilt", "x", []byte("x"))
	e.mustGet("spoilt", "x", []byte("x"))
}
