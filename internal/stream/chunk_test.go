package stream

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
)

// TestSealChunkIsSeal: sealing a segment chunk by chunk gives Seal's
// bytes for every size around the chunk size; a final flag set on the
// wrong chunk (the negative) gives other bytes that do not open.
func TestSealChunkIsSeal(t *testing.T) {
	a, _ := aead(t)
	for _, n := range []int{0, 1, format.ChunkSize - 1, format.ChunkSize, format.ChunkSize + 1, 3*format.ChunkSize + 2} {
		pt := make([]byte, n)
		rand.Read(pt)
		want := Seal(a, nil, pt)
		var got, early []byte
		chunks := format.Chunks(uint64(n))
		for i := uint64(0); i < chunks; i++ {
			lo := i * format.ChunkSize
			hi := min(lo+format.ChunkSize, uint64(n))
			got = SealChunk(a, got, pt[lo:hi], i, i == chunks-1)
			early = SealChunk(a, early, pt[lo:hi], i, i == 0)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d bytes: chunk by chunk differs from Seal", n)
		}
		if chunks > 1 {
			if _, err := Open(a, nil, early, uint64(n)); err == nil {
				t.Errorf("%d bytes: a segment with the final flag on its first chunk opened", n)
			}
		}
	}
}
