package object

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

type fixture struct {
	st    store.Store
	kek   secret.Key
	ident Identity
	ad    keys.AD
}

func newFixture(t testing.TB) *fixture {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek, _ := secret.New()
	var repo, obj, bucket keys.ID
	rand.Read(repo[:])
	rand.Read(obj[:])
	rand.Read(bucket[:])
	ident := Identity{Kind: format.KindData, Repo: repo, Object: obj, Bucket: bucket, KeyVersion: 1, BucketName: "bkt", Key: "k", ObjectVersion: 1}
	return &fixture{st: st, kek: kek, ident: ident,
		ad: keys.AD{Purpose: keys.PurposeDataKey, Repo: repo, Bucket: bucket, KEKVersion: 1, Object: obj}}
}

func (f *fixture) wrap(dek secret.Key) (keys.Alg, []byte, error) {
	w, err := keys.WrapSoftware(f.kek, f.ad, dek, rand.Reader)
	return keys.AlgHKDFGCMCommit, w, err
}

func (f *fixture) unwrap(h format.Header) (secret.Key, keys.AD, error) {
	k, err := keys.UnwrapSoftware(f.kek, f.ad, h.Wrapped)
	return k, f.ad, err
}

// put seals plain and stores it; it returns the result.
func (f *fixture) put(t testing.TB, plain []byte, segSize int) *Result {
	s, err := NewSealer(bytes.NewReader(plain), f.ident, Attrs{}, f.wrap, SealOptions{SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Put(context.Background(), format.StoreName(f.ident.Object), &buf, int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	return s.Result()
}

func (f *fixture) expect(r *Result) Expect {
	pin := r.Pin
	return Expect{Identity: f.ident, Pin: &pin, StoredLen: int64(r.Sizes.Stored),
		ManifestOff: int64(r.Sizes.ManifestOff), ManifestLen: int64(r.Sizes.ManifestLen)}
}

func TestRoundTripSizes(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{0, 1, 65535, 65536, 65537, 3*65536 + 5, 10 << 20} {
		for _, seg := range []int{0, 65536, 131072} {
			t.Run(fmt.Sprintf("%d/seg%d", n, seg), func(t *testing.T) {
				f := newFixture(t)
				plain := make([]byte, n)
				rand.Read(plain)
				res := f.put(t, plain, seg)
				if res.Manifest.Length != uint64(n) {
					t.Fatalf("length %d", res.Manifest.Length)
				}
				o, err := Open(ctx, f.st, format.StoreName(f.ident.Object), f.expect(res), f.unwrap)
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				if _, err := o.WriteTo(ctx, &out); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), plain) {
					t.Fatal("plaintext differs")
				}
				// Recovery path: no catalog, footer first.
				o2, err := Open(ctx, f.st, format.StoreName(f.ident.Object), Expect{Identity: Identity{Repo: f.ident.Repo, Object: f.ident.Object}}, f.unwrap)
				if err != nil {
					t.Fatal(err)
				}
				if o2.Pin != res.Pin {
					t.Fatal("pin differs on the recovery path")
				}
			})
		}
	}
}

func TestSealerAsReader(t *testing.T) {
	f := newFixture(t)
	plain := make([]byte, 300000)
	rand.Read(plain)
	s, err := NewSealer(bytes.NewReader(plain), f.ident, Attrs{}, f.wrap, SealOptions{SegmentSize: 65536})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(s) // through Read, not WriteTo
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(b)) != s.Result().Sizes.Stored {
		t.Fatalf("read %d bytes, result says %d", len(b), s.Result().Sizes.Stored)
	}
}

// TestRangeReads checks every boundary range against the plaintext and
// that a range read fetches only the chunks it covers.
func TestRangeReads(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	plain := make([]byte, 5*65536+123)
	rand.Read(plain)
	res := f.put(t, plain, 2*65536)
	cnt := storetest.NewCounting(f.st)
	name := format.StoreName(f.ident.Object)
	for _, r := range [][2]int64{{0, 1}, {0, 65536}, {65535, 2}, {65536, 65536}, {131071, 2}, {131072, 1}, {200000, 150000}, {int64(len(plain)) - 1, 1}, {0, -1}, {int64(len(plain)), 0}, {10, 0}} {
		o, err := Open(ctx, cnt, name, f.expect(res), f.unwrap)
		if err != nil {
			t.Fatal(err)
		}
		cnt.Reset()
		rc, err := o.Range(ctx, r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		end := min(r[0]+r[1], int64(len(plain)))
		if r[1] < 0 {
			end = int64(len(plain))
		}
		if !bytes.Equal(got, plain[r[0]:end]) {
			t.Fatalf("range %v differs", r)
		}
		chunks := (end-1)/65536 - r[0]/65536 + 1
		if end == r[0] {
			chunks = 0
		}
		if max := (chunks + 1) * format.ChunkCTSize; cnt.BytesRead.Load() > max {
			t.Fatalf("range %v read %d bytes, at most %d expected", r, cnt.BytesRead.Load(), max)
		}
	}
	o, _ := Open(ctx, f.st, name, f.expect(res), f.unwrap)
	if _, err := o.Range(ctx, int64(len(plain))+1, 1); err == nil {
		t.Fatal("range beyond the end accepted")
	}
}

// TestTamperNeverReleasesPlaintext flips each region and checks that no
// byte after the damaged chunk is delivered and an error results.
func TestTamperNeverReleasesPlaintext(t *testing.T) {
	ctx := context.Background()
	plain := make([]byte, 4*65536)
	rand.Read(plain)
	for _, at := range []int{0, 20, 130, format.HeaderLen, format.HeaderLen + 65552 + 5, format.HeaderLen + 3*65552 + 7, -40, -1} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			f := newFixture(t)
			res := f.put(t, plain, 0)
			name := format.StoreName(f.ident.Object)
			rc, _ := f.st.ReadRange(ctx, name, 0, -1)
			data, _ := io.ReadAll(rc)
			rc.Close()
			// Positive control: the untouched object reads.
			o, err := Open(ctx, f.st, name, f.expect(res), f.unwrap)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := o.WriteTo(ctx, io.Discard); err != nil {
				t.Fatal(err)
			}
			pos := at
			if pos < 0 {
				pos += len(data)
			}
			data[pos] ^= 0x80
			if err := f.st.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			o, err = Open(ctx, f.st, name, f.expect(res), f.unwrap)
			if err == nil {
				_, err = o.WriteTo(ctx, &out)
			}
			if err == nil {
				t.Fatal("tampered object read without error")
			}
			if pos >= format.HeaderLen && pos < format.HeaderLen+4*65552 {
				damaged := (pos - format.HeaderLen) / 65552
				if out.Len() > damaged*65536 {
					t.Fatalf("released %d bytes; chunk %d was damaged", out.Len(), damaged)
				}
			} else if out.Len() != 0 {
				t.Fatalf("released %d bytes despite a damaged header/trailer", out.Len())
			}
		})
	}
}

func BenchmarkRawGCMSeal64K(b *testing.B) {
	k := make([]byte, 32)
	aead, _ := keys.NewGCM(k)
	pt := make([]byte, format.ChunkSize)
	dst := make([]byte, 0, format.ChunkCTSize)
	nonce := make([]byte, 12)
	b.SetBytes(format.ChunkSize)
	for b.Loop() {
		dst = aead.Seal(dst[:0], nonce, pt, nil)
	}
}

func BenchmarkRawGCMOpen64K(b *testing.B) {
	k := make([]byte, 32)
	aead, _ := keys.NewGCM(k)
	nonce := make([]byte, 12)
	ct := aead.Seal(nil, nonce, make([]byte, format.ChunkSize), nil)
	dst := make([]byte, 0, format.ChunkSize)
	b.SetBytes(format.ChunkSize)
	for b.Loop() {
		var err error
		if dst, err = aead.Open(dst[:0], nonce, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealStream measures the whole sealing pipeline on one core
// (Workers: 1), comparable with BenchmarkRawGCMSeal64K.
func BenchmarkSealStream(b *testing.B) {
	benchSeal(b, 1)
}

// BenchmarkSealStreamParallel uses every core.
func BenchmarkSealStreamParallel(b *testing.B) {
	benchSeal(b, 0)
}

func benchSeal(b *testing.B, workers int) {
	f := newFixture(b)
	plain := make([]byte, 64<<20)
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		s, err := NewSealer(bytes.NewReader(plain), f.ident, Attrs{}, f.wrap, SealOptions{Workers: workers})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

type memStore struct {
	store.Store
	data []byte
}

func (m *memStore) ReadRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if n < 0 || off+n > int64(len(m.data)) {
		n = int64(len(m.data)) - off
	}
	return io.NopCloser(bytes.NewReader(m.data[off : off+n])), nil
}
func (m *memStore) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	return store.ObjectInfo{Name: name, Size: int64(len(m.data))}, nil
}

// BenchmarkOpenStream measures authenticated decryption of a whole object
// from memory on one core... and on all (the pipeline uses GOMAXPROCS).
func BenchmarkOpenStream(b *testing.B) {
	f := newFixture(b)
	plain := make([]byte, 64<<20)
	s, _ := NewSealer(bytes.NewReader(plain), f.ident, Attrs{}, f.wrap, SealOptions{})
	var buf bytes.Buffer
	s.WriteTo(&buf)
	res := s.Result()
	ms := &memStore{data: buf.Bytes()}
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		o, err := Open(context.Background(), ms, format.StoreName(f.ident.Object), f.expect(res), f.unwrap)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o.WriteTo(context.Background(), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEveryBitFlipIsDetected flips one bit in every byte of a small stored
// object (and in every 13th byte of a two-chunk one), in turn: every
// variant must fail to open or to read, and none may yield any plaintext
// but a prefix of the genuine one. The untouched object is the control.
func TestEveryBitFlipIsDetected(t *testing.T) {
	for _, c := range []struct{ size, stride int }{{100, 1}, {format.ChunkSize + 100, 13}} {
		t.Run(fmt.Sprint(c.size), func(t *testing.T) { everyBitFlip(t, c.size, c.stride) })
	}
}

func everyBitFlip(t *testing.T, size, stride int) {
	ctx := context.Background()
	f := newFixture(t)
	plain := make([]byte, size)
	rand.Read(plain)
	s, err := NewSealer(bytes.NewReader(plain), f.ident, Attrs{}, f.wrap, SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	res := s.Result()
	stored := buf.Bytes()
	name := format.StoreName(f.ident.Object)
	read := func(data []byte) ([]byte, error) {
		o, err := Open(ctx, &memStore{data: data}, name, f.expect(res), f.unwrap)
		if err != nil {
			return nil, err
		}
		var out bytes.Buffer
		_, err = o.WriteTo(ctx, &out)
		return out.Bytes(), err
	}
	if got, err := read(stored); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("control: %v", err)
	}
	for i := 0; i < len(stored); i += stride {
		c := bytes.Clone(stored)
		c[i] ^= 1 << (i % 8)
		got, err := read(c)
		if err == nil {
			t.Fatalf("bit flip at byte %d of %d accepted", i, len(stored))
		}
		if !bytes.HasPrefix(plain, got) {
			t.Fatalf("bit flip at byte %d released bytes that are not the plaintext", i)
		}
	}
}
