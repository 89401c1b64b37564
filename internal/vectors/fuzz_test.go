package vectors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
)

// FuzzReadObject mutates stored objects and reads them with the vector's
// key. Nothing may panic, and whatever is accepted must be exactly the
// genuine plaintext: no edit of the stored bytes yields other plaintext.
func FuzzReadObject(f *testing.F) {
	idx, err := LoadIndex(committed)
	if err != nil {
		f.Fatal(err)
	}
	var pos []Case
	for _, c := range idx.Cases {
		if c.Expect == "ok" && c.Length < 100000 {
			pos = append(pos, c)
		}
	}
	n := 0
	for i, c := range idx.Cases {
		data, err := os.ReadFile(filepath.Join(committed, c.File))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i%len(pos)), data)
		n++
	}
	if n == 0 || len(pos) == 0 {
		f.Fatal("no seeds")
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		c := pos[int(which)%len(pos)]
		_, plain, err := OpenIn(context.Background(), &memStore{name: c.StoreName, data: data}, c)
		if err != nil {
			return
		}
		sum := sha256.Sum256(plain)
		if hex.EncodeToString(sum[:]) != c.PlainSHA256 {
			t.Fatalf("accepted an object whose plaintext is not the genuine one (%d bytes)", len(plain))
		}
		orig, _ := os.ReadFile(filepath.Join(committed, c.File))
		if !bytes.Equal(orig, data) {
			t.Fatalf("accepted a stored object that differs from the genuine one")
		}
	})
}

// memStore serves one object from memory: the fuzzer needs thousands of
// reads a second, which the real local store (fsync per put) cannot give.
// The same reads run against the local store in TestVectors.
type memStore struct {
	store.Store
	name string
	data []byte
}

func (m *memStore) ReadRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if name != m.name {
		return nil, store.ErrNotExist
	}
	if off < 0 || off > int64(len(m.data)) || n < -1 {
		return nil, store.ErrInvalidRange
	}
	end := int64(len(m.data))
	if n >= 0 && off+n < end {
		end = off + n
	}
	return io.NopCloser(bytes.NewReader(m.data[off:end])), nil
}

func (m *memStore) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if name != m.name {
		return store.ObjectInfo{}, store.ErrNotExist
	}
	return store.ObjectInfo{Name: name, Size: int64(len(m.data))}, nil
}
