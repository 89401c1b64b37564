package object

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// assemble builds a stored object from parts as a multipart upload does:
// the header, each part's segment sealed on its own (in the order given by
// seal, which may differ from the object's), the padding, the manifest and
// the footer. It returns the stored bytes and the result.
func assemble(t *testing.T, f *fixture, mp *Multipart, parts [][]byte, sealOrder []int) ([]byte, *Result) {
	t.Helper()
	cts := make([][]byte, len(parts))
	segs := make([]format.Segment, len(parts))
	for _, i := range sealOrder {
		sr, err := mp.Segment(bytes.NewReader(parts[i]), int64(len(parts[i])), nil)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := io.ReadAll(sr)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(ct)) != sr.Len() {
			t.Fatalf("segment of %d bytes: %d bytes of ciphertext, Len says %d", len(parts[i]), len(ct), sr.Len())
		}
		cts[i], segs[i] = ct, format.Segment{Len: uint64(len(parts[i])), Salt: sr.Salt()}
	}
	res, err := mp.Trailer(f.ident, Attrs{ContentType: "text/plain", Meta: []format.MetaPair{{Name: ":etag", Value: "x-2"}}}, segs)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(mp.HeaderBytes())
	for _, ct := range cts {
		b.Write(ct)
	}
	if _, err := io.Copy(&b, io.NewSectionReader(mp.Padding(), 0, int64(res.Sizes.Padding))); err != nil {
		t.Fatal(err)
	}
	b.Write(res.ManifestCT)
	b.Write(res.FooterCT)
	if uint64(b.Len()) != res.Sizes.Stored {
		t.Fatalf("assembled %d bytes, the size rule says %d", b.Len(), res.Sizes.Stored)
	}
	return b.Bytes(), res
}

// TestMultipartObjectReads: an object assembled from parts sealed one by
// one, out of order, with part lengths around the chunk size and one part
// longer than a default segment (opened in pieces), opens under its pin
// and reads byte-exact, whole and in ranges across part boundaries; its
// layout is exactly what the size rule gives. Sealing the trailer again
// gives the same bytes (what a retried completion relies on).
func TestMultipartObjectReads(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mp, err := NewMultipart(f.wrap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Wipe()
	sizes := []int{format.ChunkSize, format.ChunkSize + 1, DefaultSegmentSize + 3*format.ChunkSize + 7, format.ChunkSize - 1, 1}
	parts := make([][]byte, len(sizes))
	var plain []byte
	for i, n := range sizes {
		parts[i] = make([]byte, n)
		rand.Read(parts[i])
		plain = append(plain, parts[i]...)
	}
	stored, res := assemble(t, f, mp, parts, []int{3, 0, 4, 2, 1})
	name := format.StoreName(f.ident.Object)
	if err := f.st.Put(ctx, name, bytes.NewReader(stored), int64(len(stored))); err != nil {
		t.Fatal(err)
	}
	o, err := Open(ctx, f.st, name, f.expect(res), f.unwrap)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Wipe()
	var got bytes.Buffer
	if _, err := o.WriteTo(ctx, &got); err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Fatalf("whole read: %d of %d bytes, %v", got.Len(), len(plain), err)
	}
	// Ranges that start and end in different parts.
	rng := mrand.New(mrand.NewPCG(1, 2))
	bounds := []int{0}
	for _, n := range sizes {
		bounds = append(bounds, bounds[len(bounds)-1]+n)
	}
	for range 40 {
		i := rng.IntN(len(bounds) - 1)
		off := min(len(plain)-1, max(0, bounds[i]+rng.IntN(200)-100))
		n := min(len(plain)-off, bounds[i+1]-bounds[i]+rng.IntN(3*format.ChunkSize))
		rc, err := o.Range(ctx, int64(off), int64(n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, plain[off:off+n]) {
			t.Fatalf("range %d+%d: %v", off, n, err)
		}
	}
	again, err := mp.Trailer(f.ident, Attrs{ContentType: "text/plain", Meta: []format.MetaPair{{Name: ":etag", Value: "x-2"}}}, res.Manifest.Segments)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.ManifestCT, res.ManifestCT) || !bytes.Equal(again.FooterCT, res.FooterCT) || again.Pin != res.Pin {
		t.Fatal("the same trailer sealed twice differs")
	}
}

// TestMultipartLayoutMatchesSealer: one part gives, byte for byte, what
// the Sealer gives for the same plaintext, key, salt and attributes, so a
// reader cannot tell how an object was written.
func TestMultipartLayoutMatchesSealer(t *testing.T) {
	f := newFixture(t)
	plain := make([]byte, 3*format.ChunkSize+11)
	rand.Read(plain)
	// Both draw the data key and then the salt from the same stream.
	seed := make([]byte, 64)
	rand.Read(seed)
	s, err := NewSealer(bytes.NewReader(plain), f.ident, Attrs{ContentType: "a/b"}, f.wrapFrom(seed[32:]), SealOptions{Rand: bytes.NewReader(seed)})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := s.WriteTo(&want); err != nil {
		t.Fatal(err)
	}
	mp, err := NewMultipart(f.wrapFrom(seed[32:]), bytes.NewReader(seed[:32]))
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Wipe()
	sr, err := mp.Segment(bytes.NewReader(plain), int64(len(plain)), bytes.NewReader(seed[32:]))
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := io.ReadAll(sr)
	res, err := mp.Trailer(f.ident, Attrs{ContentType: "a/b"}, []format.Segment{{Len: uint64(len(plain)), Salt: sr.Salt()}})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	got.Write(mp.HeaderBytes())
	got.Write(ct)
	io.Copy(&got, io.NewSectionReader(mp.Padding(), 0, int64(res.Sizes.Padding)))
	got.Write(res.ManifestCT)
	got.Write(res.FooterCT)
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("multipart object differs from the sealer's (%d vs %d bytes)", got.Len(), want.Len())
	}
}

// wrapFrom wraps with a fixed salt, so two sealers make one header.
func (f *fixture) wrapFrom(salt []byte) WrapFunc {
	return func(dek secret.Key) (keys.Alg, []byte, error) {
		w, err := keys.WrapSoftware(f.kek, f.ad, dek, bytes.NewReader(salt))
		return keys.AlgHKDFGCMCommit, w, err
	}
}

// TestPaddingAtAnyOffset: the padding read at any offset is the padding
// stream's bytes there (the control: the whole stream read in one go).
func TestPaddingAtAnyOffset(t *testing.T) {
	f := newFixture(t)
	mp, err := NewMultipart(f.wrap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Wipe()
	want := make([]byte, 5000)
	fillPadding(mp.d.padStream(), want)
	for _, c := range []struct{ off, n int }{{0, 5000}, {1, 15}, {15, 2}, {16, 16}, {17, 100}, {4095, 905}, {4999, 1}} {
		got := make([]byte, c.n)
		if _, err := mp.Padding().ReadAt(got, int64(c.off)); err != nil || !bytes.Equal(got, want[c.off:c.off+c.n]) {
			t.Errorf("padding at %d+%d differs (%v)", c.off, c.n, err)
		}
	}
}

// TestSegmentLengthMustMatch: a body shorter or longer than declared
// fails with ErrSegmentLength; the exact length (control) succeeds.
func TestSegmentLengthMustMatch(t *testing.T) {
	f := newFixture(t)
	mp, err := NewMultipart(f.wrap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Wipe()
	body := make([]byte, 2*format.ChunkSize+5)
	for _, c := range []struct {
		declared int
		ok       bool
	}{{len(body), true}, {len(body) + 1, false}, {len(body) - 1, false}, {2 * format.ChunkSize, false}, {0, false}} {
		sr, err := mp.Segment(bytes.NewReader(body), int64(c.declared), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(sr)
		if c.ok != (err == nil) || !c.ok && !errors.Is(err, ErrSegmentLength) {
			t.Errorf("declared %d of %d bytes: %v", c.declared, len(body), err)
		}
	}
}

// TestResumeNeedsTheCommittedKey: an upload resumed with its own data key
// seals; with another key it is refused before anything is sealed.
func TestResumeNeedsTheCommittedKey(t *testing.T) {
	f := newFixture(t)
	var kept secret.Key
	mp, err := NewMultipart(func(dek secret.Key) (keys.Alg, []byte, error) {
		kept = dek // a copy shares the key material
		return f.wrap(dek)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := mp.Header()
	if _, err := ResumeMultipart(kept, h); err != nil {
		t.Fatal("control: resuming with the data key:", err)
	}
	other, _ := secret.New()
	if _, err := ResumeMultipart(other, h); format.LayerOf(err) != format.LayerCommit {
		t.Fatalf("resumed with another key: %v", err)
	}
	mp.Wipe()
}
