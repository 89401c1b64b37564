package format

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/keys"
)

// TestSpecSizeTable recomputes the worked examples in docs/format.md from
// the size rule, so the document cannot drift from the code.
func TestSpecSizeTable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/format.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "Worked examples")
	if !ok {
		t.Fatal("no worked examples in docs/format.md")
	}
	rows := 0
	for _, line := range strings.Split(rest, "\n") {
		f := strings.Split(strings.Trim(line, "| "), "|")
		if len(f) != 6 {
			if rows > 0 {
				break
			}
			continue
		}
		var v [6]uint64
		okRow := true
		for i := range f {
			n, err := strconv.ParseUint(strings.ReplaceAll(strings.TrimSpace(f[i]), ",", ""), 10, 64)
			if err != nil {
				okRow = false
				break
			}
			v[i] = n
		}
		if !okRow {
			continue
		}
		rows++
		p := v[0]
		sz := ComputeSizes([]uint64{p}, 200)
		got := [6]uint64{p, Chunks(p), SegmentCTLen(p), HeaderLen + SegmentCTLen(p) + FooterLen + ManifestBlk, sz.Stored, sz.Padding}
		if got != v {
			t.Errorf("docs row %v, computed %v", v, got)
		}
	}
	if rows < 5 {
		t.Fatalf("found only %d rows in the worked examples", rows)
	}
}

func TestSizeClassesHideExactSize(t *testing.T) {
	// Sizes within one class, and 65535/65536/65537, store the same.
	a := ComputeSizes([]uint64{65535}, 300).Stored
	for _, p := range []uint64{65536, 65537, 66000} {
		if s := ComputeSizes([]uint64{p}, 300).Stored; s != a {
			t.Fatalf("%d stores %d, 65535 stores %d", p, s, a)
		}
	}
	// Metadata length within the manifest block does not change it.
	for _, m := range []int{100, 1000, 4000} {
		if s := ComputeSizes([]uint64{65537}, m).Stored; s != a {
			t.Fatalf("manifest of %d bytes changes the stored size", m)
		}
	}
	// Control: a size in another class does differ.
	if ComputeSizes([]uint64{200000}, 300).Stored == a {
		t.Fatal("size classes do not separate at all")
	}
}

func TestPadme(t *testing.T) {
	for _, c := range []struct{ in, out uint64 }{{0, 0}, {1, 1}, {4096, 4096}, {4097, 4352}, {69849, 71680}, {1 << 30, 1 << 30}, {1<<30 + 1, 1<<30 + 1<<25}} {
		if got := Padme(c.in); got != c.out {
			t.Errorf("Padme(%d) = %d, want %d", c.in, got, c.out)
		}
	}
	// Overhead bound: at most 12% for every L in a sample.
	for L := uint64(4096); L < 1<<34; L = L*3/2 + 7 {
		if p := Padme(L); p < L || float64(p-L) > 0.12*float64(L) {
			t.Fatalf("Padme(%d) = %d", L, p)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Alg: keys.AlgHKDFGCMCommit, Wrapped: bytes.Repeat([]byte{7}, keys.WrappedLenHKDFGCMCommit)}
	h.Commit[0] = 9
	b, err := h.Marshal()
	if err != nil || len(b) != HeaderLen {
		t.Fatal(err)
	}
	g, err := ParseHeader(b)
	if err != nil || !bytes.Equal(g.Wrapped, h.Wrapped) || g.Commit != h.Commit {
		t.Fatal("round trip", err)
	}
	h2 := Header{Alg: keys.AlgGCM, Wrapped: bytes.Repeat([]byte{5}, keys.WrappedLenGCM)}
	b2, _ := h2.Marshal()
	if _, err := ParseHeader(b2); err != nil {
		t.Fatal(err)
	}
	b2[12+keys.WrappedLenGCM] = 1 // unused slot byte
	if LayerOf(func() error { _, err := ParseHeader(b2); return err }()) != LayerHeader {
		t.Fatal("non-zero unused slot accepted")
	}
}

func TestManifestOneEncoding(t *testing.T) {
	m := &Manifest{Kind: KindData, ObjectVersion: 1, BucketName: "b", Key: "k", Length: 5,
		Meta: []MetaPair{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}, Segments: []Segment{{Len: 5}}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != m.PlainLen() {
		t.Fatalf("PlainLen %d, encoded %d", m.PlainLen(), len(b))
	}
	g, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := g.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("re-encoding differs")
	}
	if _, err := ParseManifest(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	bad := *m
	bad.Meta = []MetaPair{{Name: "b", Value: "2"}, {Name: "a", Value: "1"}}
	if _, err := bad.Marshal(); err == nil {
		t.Fatal("unordered metadata accepted")
	}
	bad = *m
	bad.Length = 6
	if _, err := bad.Marshal(); err == nil {
		t.Fatal("length mismatch accepted")
	}
	bad = *m
	bad.Segments = []Segment{{Len: 5}, {Len: 0}}
	if _, err := bad.Marshal(); err == nil {
		t.Fatal("empty trailing segment accepted")
	}
}

func TestStoreNames(t *testing.T) {
	id := keys.ID{0xde, 0xad, 0xbe, 0xef}
	n := StoreName(id)
	if len(n) != 32 || !strings.HasPrefix(n, "deadbeef") {
		t.Fatal(n)
	}
	if g, ok := ParseStoreName(n); !ok || g != id {
		t.Fatal("round trip")
	}
	for _, bad := range []string{"", "DEADBEEF000000000000000000000000", n + "0", "holdfast-repo-" + n} {
		if _, ok := ParseStoreName(bad); ok {
			t.Fatalf("%q parsed", bad)
		}
	}
}
