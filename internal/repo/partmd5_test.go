package repo

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
	"testing"
)

// TestPartMD5: the ETag digest of a part is its MD5 on both of partMD5's
// paths (crypto/md5 below simdMinPart, the shared md5-simd server from
// it), with many parts hashed at once, in pieces of uneven sizes, as a
// gateway receives them; the control is crypto/md5 over the whole part.
func TestPartMD5(t *testing.T) {
	sizes := []int64{0, 1, 63, 64, 65, simdMinPart - 1, simdMinPart, simdMinPart + 1, 5<<20 + 3}
	var wg sync.WaitGroup
	for round := range 3 {
		for _, size := range sizes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				part := make([]byte, size)
				rand.Read(part)
				h := partMD5(size)
				defer h.Close()
				piece := 1 + (int(size)/7+round*4093)%65536
				if _, err := io.CopyBuffer(struct{ io.Writer }{h}, struct{ io.Reader }{newPieces(part, piece)}, make([]byte, piece)); err != nil {
					t.Error(err)
					return
				}
				want := md5.Sum(part)
				if got := hex.EncodeToString(h.Sum(nil)); got != hex.EncodeToString(want[:]) {
					t.Errorf("part of %d bytes in pieces of %d: digest %s, MD5 %x", size, piece, got, want)
				}
			}()
		}
	}
	wg.Wait()
}

// pieces reads b at most n bytes at a time.
type pieces struct {
	b []byte
	n int
}

func newPieces(b []byte, n int) *pieces { return &pieces{b, n} }

func (p *pieces) Read(q []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	k := copy(q[:min(len(q), p.n)], p.b)
	p.b = p.b[k:]
	return k, nil
}
