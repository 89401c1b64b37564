package object

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"runtime"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// TestWholeRead: with Expect.WholeMax at least the stored length, opening
// and reading an object (whole or a range) is one store request; below it
// (the control) the same reads take three. Tampering, truncation and
// extension are caught the same way on both paths.
func TestWholeRead(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	plain := make([]byte, 3*65536+77)
	rand.Read(plain)
	res := f.put(t, plain, 0)
	name := format.StoreName(f.ident.Object)
	cnt := storetest.NewCounting(f.st)
	stored := int64(res.Sizes.Stored)

	for _, tc := range []struct {
		name     string
		wholeMax int64
		reads    int64
	}{
		{"whole", stored, 1},
		{"control: larger than WholeMax", stored - 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := f.expect(res)
			exp.WholeMax = tc.wholeMax
			cnt.Reset()
			o, err := Open(ctx, cnt, name, exp, f.unwrap)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := o.WriteTo(ctx, &out); err != nil || !bytes.Equal(out.Bytes(), plain) {
				t.Fatalf("WriteTo: %v (equal %v)", err, bytes.Equal(out.Bytes(), plain))
			}
			if n := cnt.Reads.Load(); n != tc.reads {
				t.Errorf("open and read: %d store requests, want %d", n, tc.reads)
			}
			if tc.reads == 1 {
				rc, err := o.Range(ctx, 65530, 20)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, plain[65530:65550]) {
					t.Fatalf("range: %v", err)
				}
				if n := cnt.Reads.Load(); n != 1 {
					t.Errorf("a range after the whole read made %d store requests in all, want 1", n)
				}
			}
			o.Wipe()
		})
	}

	// Damage on the whole-read path: a flipped body byte stops WriteTo
	// before that chunk; a cut or an extended object fails Open.
	rc, _ := f.st.ReadRange(ctx, name, 0, -1)
	data, _ := io.ReadAll(rc)
	rc.Close()
	exp := f.expect(res)
	exp.WholeMax = stored + 100
	for _, tamper := range []struct {
		name string
		b    []byte
	}{
		{"flip", func() []byte { b := bytes.Clone(data); b[format.HeaderLen+65552+9] ^= 1; return b }()},
		{"cut", data[:len(data)-1]},
		{"extended", append(bytes.Clone(data), 0)},
	} {
		if err := f.st.Put(ctx, name, bytes.NewReader(tamper.b), int64(len(tamper.b))); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		o, err := Open(ctx, f.st, name, exp, f.unwrap)
		if err == nil {
			_, err = o.WriteTo(ctx, &out)
		}
		if err == nil || out.Len() > 65536 {
			t.Errorf("%s: %v after %d bytes released", tamper.name, err, out.Len())
		}
	}
}

// TestSmallReadGarbage: reading a small object whole makes garbage of
// about its own size, not a full 64 KiB padding buffer (a gateway serving
// thousands of small GETs a second spent its time in the collector). The
// control is an object with more than 64 KiB of padding, where the same
// measure sees the full keystream buffer.
func TestSmallReadGarbage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	perRead := func(plain []byte) (uint64, uint64) {
		t.Helper()
		res := f.put(t, plain, 0)
		exp := f.expect(res)
		exp.WholeMax = int64(res.Sizes.Stored)
		o, err := Open(ctx, f.st, format.StoreName(f.ident.Object), exp, f.unwrap)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.WriteTo(ctx, io.Discard); err != nil { // warm the buffer pools
			t.Fatal(err)
		}
		const runs = 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			if _, err := o.WriteTo(ctx, io.Discard); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / runs, res.Sizes.Padding
	}
	small, pad := perRead(make([]byte, 4096))
	if small > 32<<10 {
		t.Errorf("4 KiB object (padding %d): %d bytes allocated per read, want under 32 KiB", pad, small)
	}
	var big, bigPad uint64
	for n := 1 << 20; bigPad < 64<<10; n += 1<<20 + 12345 {
		big, bigPad = perRead(make([]byte, n))
	}
	if big < 64<<10 {
		t.Errorf("control: object with %d bytes of padding: %d bytes allocated per read, want at least 64 KiB", bigPad, big)
	}
	t.Logf("allocated per read: %d bytes (padding %d), control %d bytes (padding %d)", small, pad, big, bigPad)
}
