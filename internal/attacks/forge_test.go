package attacks

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
	"github.com/holdfast/holdfast/internal/stream"
)

// A13 and A14 forge objects no provider could make without the bucket
// key: the suite plays an attacker who holds it, to show that the format's
// own checks (key commitment, the all-zero key check) stop the forgery,
// not secrecy alone. Forgeries are built with the product's sealer and a
// chosen data key, so everything but the attacked property is valid.

// forgeCtx is what a forger needs of one genuine object.
type forgeCtx struct {
	r    *repo.Repo
	bk   bucketKey
	name string
	id   keys.ID
	ad   keys.AD
	m    *format.Manifest // the genuine manifest
	dek  []byte           // the genuine data key
}

// newForgeCtx opens the genuine object stored under name with the real
// bucket key, through the product's reader (no catalog pin, as recovery
// reads).
func newForgeCtx(t *testing.T, w *world, bucket, name string) *forgeCtx {
	t.Helper()
	r := w.openRepo(t)
	t.Cleanup(func() { r.Close() })
	f := &forgeCtx{r: r, bk: bucketKeyOf(t, r, bucket), name: name}
	f.id, _ = format.ParseStoreName(name)
	f.ad = f.bk.dataAD(r, f.id)
	genuine := w.prov.read(t, name)
	h, err := format.ParseHeader(genuine[:hdr])
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.UnwrapSoftware(f.bk.key, f.ad, h.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	k.Use(func(b []byte) error { f.dek = bytes.Clone(b); return nil })
	k.Wipe()
	addSecret(w.name+" data key of "+name+" (forge)", f.dek)
	o, err := f.open(t, genuine)
	if err != nil {
		t.Fatalf("the genuine object does not open in-process: %v", err)
	}
	f.m = o.Manifest
	o.Wipe()
	return f
}

// open reads stored bytes with the product's object reader as a reader
// without a catalog does: the header's key slot unwrapped with the bucket
// key, no pin.
func (f *forgeCtx) open(t *testing.T, stored []byte) (*object.Object, error) {
	t.Helper()
	st := scratchStore(t)
	if err := st.Put(context.Background(), f.name, bytes.NewReader(stored), int64(len(stored))); err != nil {
		t.Fatal(err)
	}
	exp := object.Expect{Identity: object.Identity{Repo: f.r.ID(), Object: f.id}}
	return object.Open(context.Background(), st, f.name, exp, func(h format.Header) (secret.Key, keys.AD, error) {
		k, err := keys.UnwrapSoftware(f.bk.key, f.ad, h.Wrapped)
		return k, f.ad, err
	})
}

// readAll opens stored bytes and returns the plaintext, or the error.
func (f *forgeCtx) readAll(t *testing.T, stored []byte) ([]byte, error) {
	t.Helper()
	o, err := f.open(t, stored)
	if err != nil {
		return nil, err
	}
	defer o.Wipe()
	var buf bytes.Buffer
	_, err = o.WriteTo(context.Background(), &buf)
	return buf.Bytes(), err
}

func scratchStore(t *testing.T) store.Store {
	t.Helper()
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// sealed is a forged object and what its sealer reported.
type sealed struct {
	bytes []byte
	res   *object.Result
}

// seal makes a complete object with the genuine identity and metadata
// under data key dek, first segment salt salt, and plaintext pt; its key
// slot is dek wrapped under the real bucket key with the genuine AD.
func (f *forgeCtx) seal(t *testing.T, dek []byte, salt [format.SaltLen]byte, pt []byte) sealed {
	t.Helper()
	m := f.m
	id := object.Identity{Kind: m.Kind, Repo: m.Repo, Object: m.Object, Bucket: m.Bucket, KeyVersion: m.KeyVersion,
		BucketName: m.BucketName, Key: m.Key, ObjectVersion: m.ObjectVersion}
	attrs := object.Attrs{Modified: time.Unix(0, int64(m.Modified)), ContentType: m.ContentType, Meta: m.Meta}
	wrap := func(k secret.Key) (keys.Alg, []byte, error) {
		b, err := keys.WrapSoftware(f.bk.key, f.ad, k, rand.Reader)
		return keys.AlgHKDFGCMCommit, b, err
	}
	rnd := io.MultiReader(bytes.NewReader(dek), bytes.NewReader(salt[:]), rand.Reader)
	s, err := object.NewSealer(bytes.NewReader(pt), id, attrs, wrap, object.SealOptions{Rand: rnd})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	s.Close()
	res := s.Result()
	if res == nil || res.Manifest.Segments[0].Salt != salt {
		t.Fatal("the sealer did not take the chosen data key and salt")
	}
	return sealed{bytes: buf.Bytes(), res: res}
}

// segmentKey is K_i = HKDF(DEK, s_i, "holdfast/v1/segment", 32) (format.md).
func segmentKey(t *testing.T, dek []byte, salt [format.SaltLen]byte) []byte {
	t.Helper()
	k, err := hkdf.Key(sha256.New, dek, salt[:], "holdfast/v1/segment", 32)
	if err != nil {
		t.Fatal(err)
	}
	// The test's derivation agrees with the product's segment AEAD.
	dk, _ := secret.FromBytes(bytes.Clone(dek))
	defer dk.Wipe()
	prod, err := stream.SegmentAEAD(dk, salt[:])
	if err != nil {
		t.Fatal(err)
	}
	n, pt := make([]byte, 12), []byte("agree")
	if ct, err := gcmSeal(k, n, pt); err != nil || !bytes.Equal(ct, prod.Seal(nil, n, pt, nil)) {
		t.Fatal("the test's segment key derivation disagrees with the product's")
	}
	return k
}

func gcmSeal(key, nonce, pt []byte) ([]byte, error) {
	// gcmOpen's twin; the salamander file holds the GCM helpers.
	k, err := secret.FromBytes(bytes.Clone(key))
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	var out []byte
	err = k.Use(func(b []byte) error {
		g, err := keys.NewGCM(b)
		if err == nil {
			out = g.Seal(nil, nonce, pt, nil)
		}
		return err
	})
	return out, err
}

// layerIs requires err to be a format failure at layer l.
func layerIs(t *testing.T, what string, err error, l format.Layer) {
	t.Helper()
	if err == nil || !errors.Is(err, format.ErrCorrupt) || format.LayerOf(err) != l {
		t.Fatalf("%s: %v (layer %q), want a failure at layer %q", what, err, format.LayerOf(err), l)
	}
}

// A13: a chunk ciphertext valid under two data keys. The genuine object
// "row-a13/tiny" is one chunk of two AES blocks under data key DEK1 and
// segment salt s. The test picks DEK2, derives both segment keys
// K1 = HKDF(DEK1, s), K2 = HKDF(DEK2, s), and solves GHASH for one block
// so that one chunk c (nonce: chunk 0, final) authenticates under K1 and
// K2 to different plaintexts P1, P2 — checked with crypto/cipher. It then
// seals a complete object under DEK2 whose only chunk is exactly c, with
// the genuine identity, wrapped under the real bucket key: a reader that
// trusted GCM alone would release P2. The forgery's header carries the
// genuine commitment C1 (the salamander's point: one ciphertext, the
// reader's choice of key); Holdfast's reader recomputes C from the
// unwrapped DEK2 and refuses at "key commitment" before any byte. The
// same object with C(DEK2) in its header — the control, differing only in
// the commitment — opens and yields P2. Then the forgery goes into the
// store in place of the genuine object, read through every surface.
// A second forgery, at the key-wrap layer, is in a13Wrap.
func a13(t *testing.T, w *world) {
	tiny := newObj("row-a13", "tiny", 32)
	n := setup(t, w, tiny)
	f := newForgeCtx(t, w, "row-a13", n["tiny"])
	salt := f.m.Segments[0].Salt
	dek2 := randBytes(32)
	addSecret(w.name+" A13 forged data key", dek2)
	k1, k2 := segmentKey(t, f.dek, salt), segmentKey(t, dek2, salt)
	nonce := make([]byte, 12)
	nonce[11] = 1 // chunk 0, the last of its segment
	c, err := salamander(k1, k2, nonce, nil, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	p1, err1 := gcmOpen(k1, nonce, c, nil)
	p2, err2 := gcmOpen(k2, nonce, c, nil)
	if err1 != nil || err2 != nil || bytes.Equal(p1, p2) {
		t.Fatalf("the chunk does not open under both keys to different plaintexts: %v, %v", err1, err2)
	}
	forged := f.seal(t, dek2, salt, p2)
	if !bytes.Equal(forged.bytes[hdr:hdr+len(c)], c) {
		t.Fatal("the forged object's chunk is not the two-key ciphertext")
	}
	// Control: with its own commitment the forged object is valid in
	// every other respect and releases P2.
	if got, err := f.readAll(t, forged.bytes); err != nil || !bytes.Equal(got, p2) {
		t.Fatalf("control: the forged object with C(DEK2) does not open to P2: %v", err)
	}
	attack := withCommitment(t, forged, [32]byte(f.genuineHeader(t, w)[124:156]), dek2)
	got, err := f.readAll(t, attack)
	layerIs(t, "in-process read of the two-key object", err, format.LayerCommit)
	if len(got) != 0 {
		t.Fatalf("the two-key object released %d bytes", len(got))
	}
	variant(t, w, "two-key chunk in place", func(t *testing.T, tp *tamper) {
		tp.write(t, n["tiny"], attack)
		w.expectRefused(t, allReaders, *tiny, 4, 0)
		w.expectVerify(t, map[string]string{tiny.path(): "altered"})
	})
	t.Run("two-key key wrap", func(t *testing.T) { a13Wrap(t, f) })
	done(t, w)
}

func (f *forgeCtx) genuineHeader(t *testing.T, w *world) []byte {
	return w.prov.read(t, f.name)[:hdr]
}

// withCommitment replaces a sealed object's header commitment and reseals
// its manifest and footer (whose associated data is the header) under dek,
// so that only the commitment is wrong.
func withCommitment(t *testing.T, s sealed, commit [32]byte, dek []byte) []byte {
	t.Helper()
	b := bytes.Clone(s.bytes)
	copy(b[hdr-32:hdr], commit[:])
	mplain, err := s.res.Manifest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := secret.FromBytes(bytes.Clone(dek))
	defer k.Wipe()
	mct, fct, err := object.SealTrailer(k, b[:hdr], mplain, s.res.Sizes.ManifestOff)
	if err != nil {
		t.Fatal(err)
	}
	if len(mct)+len(fct)+int(s.res.Sizes.ManifestOff) != len(b) {
		t.Fatal("resealed trailer does not fit")
	}
	copy(b[s.res.Sizes.ManifestOff:], mct)
	copy(b[len(b)-format.FooterLen:], fct)
	return b
}

// a13Wrap forges at the key-record layer: an alg-1 wrap whose 48-byte GCM
// ciphertext opens under the subkeys of two bucket keys (the real one and
// another, same salt, each with its own AD) to two different data keys.
// Recovery tries every bucket key on a header; the wrap's own commitment
// makes the wrong key fail before GCM. Control: the same ciphertext with
// the other key's commitment opens under that key.
func a13Wrap(t *testing.T, f *forgeCtx) {
	other := randBytes(32)
	otherKey, _ := secret.FromBytes(bytes.Clone(other))
	defer otherKey.Wipe()
	realBytes := f.bk.bytes()
	salt := randBytes(32)
	okm := func(w []byte) []byte {
		b, err := hkdf.Key(sha256.New, w, salt, "holdfast/v1/wrap", 64)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	okmReal, okmOther := okm(realBytes), okm(other)
	adOther := f.ad
	adOther.Bucket = keys.ID{1} // the other bucket's id
	ct, err := salamander(okmReal[:32], okmOther[:32], make([]byte, 12), f.ad.Bytes(), adOther.Bytes(), 2)
	if err != nil {
		t.Fatal(err)
	}
	d1, err1 := gcmOpen(okmReal[:32], make([]byte, 12), ct, f.ad.Bytes())
	d2, err2 := gcmOpen(okmOther[:32], make([]byte, 12), ct, adOther.Bytes())
	if err1 != nil || err2 != nil || bytes.Equal(d1, d2) {
		t.Fatalf("the wrap does not open under both keys: %v, %v", err1, err2)
	}
	record := func(commit []byte) []byte { return append(append(bytes.Clone(salt), commit...), ct...) }
	// Committed to the real key: the real key opens it, the other does not.
	forReal := record(okmReal[32:])
	if k, err := keys.UnwrapSoftware(f.bk.key, f.ad, forReal); err != nil {
		t.Fatalf("the real key does not open its own record: %v", err)
	} else {
		k.Wipe()
	}
	if _, err := keys.UnwrapSoftware(otherKey, adOther, forReal); !errors.Is(err, keys.ErrNotMyKey) {
		t.Fatalf("the other key opened a record committed to the real key: %v", err)
	}
	// Control: the same ciphertext committed to the other key opens under it.
	if k, err := keys.UnwrapSoftware(otherKey, adOther, record(okmOther[32:])); err != nil {
		t.Fatalf("control: the other key does not open the record committed to it: %v", err)
	} else {
		k.Wipe()
	}
}

// A14: an object whose data key is all zeros, validly wrapped under the
// real bucket key with the genuine AD and committed by its own C. The
// product's reader refuses it at "key unwrap"; the same construction with
// a random key opens (control). Then it replaces the genuine object, and
// is injected under a name of its own (as it would be for recovery).
func a14(t *testing.T, w *world) {
	big := newObj("row-a14", "big", 70000)
	n := setup(t, w, big)
	f := newForgeCtx(t, w, "row-a14", n["big"])
	var salt [format.SaltLen]byte
	rand.Read(salt[:])
	pt := randBytes(70000)
	zero := f.seal(t, make([]byte, 32), salt, pt)
	k, err := keys.UnwrapSoftware(f.bk.key, f.ad, zero.res.Wrapped)
	if err != nil {
		t.Fatalf("the all-zero key is not validly wrapped: %v", err)
	}
	k.Use(func(b []byte) error {
		if !bytes.Equal(b, make([]byte, 32)) {
			t.Fatal("the wrapped key is not all zeros")
		}
		return nil
	})
	k.Wipe()
	control := f.seal(t, randBytes(32), salt, pt)
	if got, err := f.readAll(t, control.bytes); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("control: the same construction with a random key does not open: %v", err)
	}
	got, err := f.readAll(t, zero.bytes)
	layerIs(t, "in-process read of the all-zero key object", err, format.LayerUnwrap)
	if len(got) != 0 || !strings.Contains(err.Error(), "all-zero") {
		t.Fatalf("all-zero key object: %v, %d bytes", err, len(got))
	}
	variant(t, w, "all-zero key in place", func(t *testing.T, tp *tamper) {
		tp.write(t, n["big"], zero.bytes)
		w.expectRefused(t, allReaders, *big, 4, 0)
		w.expectVerify(t, map[string]string{big.path(): "altered"})
	})
	variant(t, w, "all-zero key injected", func(t *testing.T, tp *tamper) {
		fresh := freshName()
		g := *f
		g.name = fresh
		g.id, _ = format.ParseStoreName(fresh)
		g.ad = g.bk.dataAD(g.r, g.id)
		m := *f.m
		m.Object = g.id
		g.m = &m
		tp.write(t, fresh, g.seal(t, make([]byte, 32), salt, pt).bytes)
		w.expectIntact(t, allReaders, *big)
		w.expectVerify(t, map[string]string{fresh: "unknown"})
	})
	done(t, w)
}
