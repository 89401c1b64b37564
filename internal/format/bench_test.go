package format_test

import (
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/vectors"
)

// The format's hot paths outside the cipher: every read parses a header
// and a manifest, every write marshals them, and every store access
// names an object.

func benchSeeds(b *testing.B) *vectors.Seeds {
	s, err := vectors.LoadSeeds("../../testdata/vectors/object", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if len(s.Headers) == 0 || len(s.Manifests) == 0 {
		b.Fatal("no header or manifest seeds in the vectors")
	}
	return s
}

func BenchmarkParseHeader(b *testing.B) {
	h := benchSeeds(b).Headers[0]
	b.SetBytes(int64(len(h)))
	for b.Loop() {
		if _, err := format.ParseHeader(h); err != nil {
			b.Fatal(err)
		}
	}
}

// largestManifest is the seed manifest with the most bytes (the most
// segments and metadata).
func largestManifest(b *testing.B) []byte {
	var m []byte
	for _, x := range benchSeeds(b).Manifests {
		if _, err := format.ParseManifest(x); err == nil && len(x) > len(m) {
			m = x
		}
	}
	if m == nil {
		b.Fatal("no valid manifest seed")
	}
	return m
}

func BenchmarkParseManifest(b *testing.B) {
	m := largestManifest(b)
	b.SetBytes(int64(len(m)))
	for b.Loop() {
		if _, err := format.ParseManifest(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalManifest(b *testing.B) {
	m, err := format.ParseManifest(largestManifest(b))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStoreName(b *testing.B) {
	id := keys.ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	for b.Loop() {
		_ = format.StoreName(id)
	}
}
