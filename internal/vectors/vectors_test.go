package vectors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
)

const committed = "../../testdata/vectors/object"

// TestCommittedVectorsAreCurrent fails when the generator's output differs
// from the committed vectors: a format change must be deliberate.
func TestCommittedVectorsAreCurrent(t *testing.T) {
	if err := Check(committed); err != nil {
		t.Fatalf("%v (run: go run ./internal/vectors/cmd/genvectors)", err)
	}
}

func decodeID(t *testing.T, s string) keys.ID {
	t.Helper()
	var id keys.ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		t.Fatalf("bad id %q", s)
	}
	copy(id[:], b)
	return id
}

// TestVectors reads every committed vector the way Holdfast reads a store
// without a catalog: positive ones must yield their plaintext and manifest,
// negative ones must be rejected at the layer they name.
func TestVectors(t *testing.T) {
	idx := loadIndex(t, committed)
	var pos, neg int
	for _, c := range idx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(committed, c.File))
			if err != nil {
				t.Fatal(err)
			}
			plain, m, err := readVector(t, c, data)
			if c.Expect == "ok" {
				pos++
				if err != nil {
					t.Fatalf("positive vector rejected: %v", err)
				}
				sum := sha256.Sum256(plain)
				if hex.EncodeToString(sum[:]) != c.PlainSHA256 || m.Length != c.Length || uint64(len(data)) != c.StoredLength ||
					m.Key != c.Key || m.BucketName != c.Bucket || m.ObjectVersion != c.ObjectVersion || int(m.Kind) != c.Kind {
					t.Fatalf("positive vector decoded to something else")
				}
				return
			}
			neg++
			if err == nil {
				t.Fatalf("negative vector accepted")
			}
			if got := format.LayerOf(err); string(got) != c.Layer {
				t.Fatalf("rejected at layer %q, vector says %q (%v)", got, c.Layer, err)
			}
		})
	}
	if pos < 8 || neg < 20 {
		t.Fatalf("only %d positive and %d negative vectors", pos, neg)
	}
}

func loadIndex(t *testing.T, dir string) Index {
	t.Helper()
	idx, err := LoadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func readVector(t *testing.T, c Case, data []byte) ([]byte, *format.Manifest, error) {
	t.Helper()
	m, plain, err := Open(context.Background(), t.TempDir(), c, data)
	return plain, m, err
}
