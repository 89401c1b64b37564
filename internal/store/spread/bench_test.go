package spread

import (
	"bytes"
	"testing"
)

// BenchmarkEncode measures the CPU cost of spreading: Reed-Solomon
// encoding of 3-of-5 stripes and the HMAC-SHA256 tag of every shard, on
// one core (a Put spreads the tags over a goroutine per member). Its
// MB/s inverts to the CPU seconds per GiB that bench/spread.sh reports.
func BenchmarkEncode(b *testing.B) {
	r := newRig(b, 0)
	const size = 16 << 20
	data := body(1, size)
	ref := publicRef("0123456789abcdef0123456789abcdef")
	g := r.s.geometry(ref, size)
	tgs := make([]*tagger, 5)
	for j := range tgs {
		var err error
		if tgs[j], err = r.s.keys.newTagger(g, 2, j, ref.name, 1); err != nil {
			b.Fatal(err)
		}
	}
	var tag [TagSize]byte
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		i := int64(0)
		err := r.s.encodeStripes(b.Context(), g, bytes.NewReader(data), func(shards [][]byte) {
			for j, sh := range shards {
				tgs[j].tag(tag[:0], i, sh)
			}
			i++
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeDegraded measures rebuilding stripes from parity: two
// data shards of every stripe missing.
func BenchmarkDecodeDegraded(b *testing.B) {
	r := newRig(b, 0)
	const size = 16 << 20
	data := body(2, size)
	ref := publicRef("0123456789abcdef0123456789abcdef")
	g := r.s.geometry(ref, size)
	var stripes [][][]byte
	if err := r.s.encodeStripes(b.Context(), g, bytes.NewReader(data), func(shards [][]byte) {
		stripes = append(stripes, shards)
	}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		for _, st := range stripes {
			shards := []([]byte){nil, nil, st[2], st[3], st[4]}
			if err := r.s.enc.ReconstructData(shards); err != nil {
				b.Fatal(err)
			}
		}
	}
}
