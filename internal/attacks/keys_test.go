package attacks

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
)

// The suite needs the key values Holdfast never shows: A4 greps for them,
// A13 and A14 forge objects under the real bucket key. Test code gets them
// the way an independent decoder would — the keyring file decoded from
// format-keyring.md with the passphrase, bucket keys unwrapped with the
// keyring, data keys unwrapped with the bucket keys — never through a hook
// in the product.

// openRepo opens the world's repository in-process (the gateway and the
// CLI may have it open too: the catalog is shared by design).
func (w *world) openRepo(t *testing.T) *repo.Repo {
	t.Helper()
	r, err := repo.Open(context.Background(), repo.OpenOptions{Home: w.home, Passphrase: bytes.Clone(w.pass)})
	if err != nil {
		t.Fatalf("opening %s in-process: %v", w.name, err)
	}
	return r
}

// rootKeys decodes the keyring file (format-keyring.md) and returns the
// material of every root key version that has it.
func rootKeys(path string, pass []byte) (map[uint32][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 63+16+32 || string(b[:8]) != "HFKEYRNG" {
		return nil, errors.New("not a keyring file")
	}
	hdr := b[:63]
	tcost, mem, threads := binary.BigEndian.Uint32(hdr[10:14]), binary.BigEndian.Uint32(hdr[14:18]), hdr[18]
	kek := argon2.IDKey(pass, hdr[19:51], tcost, mem, threads, 32)
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	p, err := g.Open(nil, hdr[51:63], b[63:len(b)-32], hdr)
	if err != nil {
		return nil, fmt.Errorf("opening the keyring payload: %w", err)
	}
	// version u8, repo 16, primary u32, fresh u8 [seq u64, hash 32, time u64], count u32
	off := 1 + 16 + 4
	if p[off] == 1 {
		off += 1 + 8 + 32 + 8
	} else {
		off++
	}
	n := binary.BigEndian.Uint32(p[off:])
	off += 4
	out := map[uint32][]byte{}
	for i := uint32(0); i < n; i++ {
		ver, state := binary.BigEndian.Uint32(p[off:]), p[off+4]
		off += 4 + 1 + 8
		if state == 1 || state == 2 {
			out[ver] = bytes.Clone(p[off : off+32])
			off += 32
		}
	}
	if off != len(p) {
		return nil, errors.New("keyring payload has trailing bytes")
	}
	return out, nil
}

// bucketKey is one bucket's current key, unwrapped with the keyring.
type bucketKey struct {
	bucketID keys.ID
	version  uint32
	key      secret.Key
}

func (b bucketKey) bytes() []byte {
	var out []byte
	b.key.Use(func(k []byte) error { out = bytes.Clone(k); return nil })
	return out
}

// dataAD is the associated data of a data key wrapped under b for object id.
func (b bucketKey) dataAD(r *repo.Repo, id keys.ID) keys.AD {
	return keys.AD{Purpose: keys.PurposeDataKey, Repo: r.ID(), Bucket: b.bucketID, KEKVersion: b.version, Object: id}
}

// allBucketKeys unwraps every bucket key version in the catalog.
func allBucketKeys(t *testing.T, r *repo.Repo) []bucketKey {
	t.Helper()
	ctx := context.Background()
	bks, err := r.Catalog().AllBucketKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []bucketKey
	for _, bk := range bks {
		ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: r.ID(), Bucket: bk.BucketID, KEKVersion: bk.Wrapped.KEKVersion, KeyVersion: bk.Version}
		k, err := r.KeySource().Unwrap(ctx, bk.Wrapped, ad)
		if err != nil {
			t.Fatalf("unwrapping bucket key %x v%d: %v", bk.BucketID, bk.Version, err)
		}
		out = append(out, bucketKey{bucketID: bk.BucketID, version: bk.Version, key: k})
	}
	return out
}

// bucketKeyOf is the current key of the named bucket.
func bucketKeyOf(t *testing.T, r *repo.Repo, bucket string) bucketKey {
	t.Helper()
	b, err := r.Bucket(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	var best bucketKey
	for _, bk := range allBucketKeys(t, r) {
		if bk.bucketID == b.ID && bk.version >= best.version {
			best = bk
		}
	}
	if best.version == 0 {
		t.Fatalf("no key for bucket %s", bucket)
	}
	return best
}

// headerDEK unwraps the data key in the header of a stored object: with
// the bucket keys for data objects, with the keyring for system objects.
// ok is false if no key opens it.
func headerDEK(ctx context.Context, r *repo.Repo, bks []bucketKey, name string, stored []byte) ([]byte, bool) {
	if len(stored) < format.HeaderLen {
		return nil, false
	}
	h, err := format.ParseHeader(stored[:format.HeaderLen])
	if err != nil {
		return nil, false
	}
	id, ok := format.ParseStoreName(strings.TrimPrefix(name, format.MarkerPrefix))
	if !ok {
		return nil, false
	}
	var k secret.Key
	for _, bk := range bks {
		if k, err = keys.UnwrapSoftware(bk.key, bk.dataAD(r, id), h.Wrapped); err == nil {
			break
		}
	}
	if !k.Valid() {
		for ver := uint32(1); ver <= 4 && !k.Valid(); ver++ {
			ad := keys.AD{Purpose: keys.PurposeSystemKey, Repo: r.ID(), KEKVersion: ver, Object: id}
			k, _ = r.KeySource().Unwrap(ctx, keys.Wrapped{Source: keys.SourceKeyring, Alg: h.Alg, KEKVersion: ver, Data: h.Wrapped}, ad)
		}
	}
	if !k.Valid() {
		return nil, false
	}
	var out []byte
	k.Use(func(b []byte) error { out = bytes.Clone(b); return nil })
	k.Wipe()
	return out, true
}

// harvest collects every key of the world into the secrets A4 looks for:
// its root keys, bucket keys and the data key of every object its store
// holds now. It returns how many data keys it found.
func (w *world) harvest(t *testing.T) int {
	t.Helper()
	roots, err := rootKeys(filepath.Join(w.home, repo.KeyringFile), w.pass)
	if err != nil {
		t.Fatalf("%s: decoding the keyring: %v", w.name, err)
	}
	for v, k := range roots {
		addSecret(fmt.Sprintf("%s root key v%d", w.name, v), k)
	}
	r := w.openRepo(t)
	defer r.Close()
	bks := allBucketKeys(t, r)
	for _, bk := range bks {
		addSecret(fmt.Sprintf("%s bucket key %x v%d", w.name, bk.bucketID[:4], bk.version), bk.bytes())
	}
	n := 0
	for _, name := range w.prov.list(t) {
		if dek, ok := headerDEK(context.Background(), r, bks, name, w.prov.read(t, name)); ok {
			addSecret(fmt.Sprintf("%s data key of %s", w.name, name), dek)
			n++
		}
	}
	return n
}
