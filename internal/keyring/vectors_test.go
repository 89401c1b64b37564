package keyring

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/keys"
)

// committedVectors is where the generator program writes the vectors that
// stay in the repository.
const committedVectors = "../../testdata/vectors/keyring"

var expectErr = map[string]error{
	ExpectCorrupt:         ErrCorrupt,
	ExpectWrongPassphrase: ErrWrongPassphrase,
	ExpectUnsupported:     ErrUnsupported,
	ExpectKDFTooWeak:      ErrKDFTooWeak,
	ExpectKDFTooCostly:    ErrKDFTooCostly,
}

func generate(t testing.TB) (string, VectorIndex) {
	t.Helper()
	dir := t.TempDir()
	if err := GenerateVectors(dir); err != nil {
		t.Fatal(err)
	}
	var idx VectorIndex
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, VectorIndexFile)), &idx); err != nil {
		t.Fatal(err)
	}
	return dir, idx
}

func TestVectors(t *testing.T) {
	dir, idx := generate(t)
	cheap(t)
	seen := map[string]int{}
	for _, v := range idx.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			path := filepath.Join(dir, v.File)
			before := mustRead(t, path)
			k, err := Open(path, []byte(v.Passphrase))
			if !bytes.Equal(mustRead(t, path), before) {
				t.Fatal("open changed the file")
			}
			if v.Expect != ExpectOK {
				want, ok := expectErr[v.Expect]
				if !ok {
					t.Fatalf("unknown expectation %q", v.Expect)
				}
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %s (%v) at layer %s", err, v.Expect, want, v.Layer)
				}
				for other, oerr := range expectErr {
					if other != v.Expect && errors.Is(err, oerr) && !errors.Is(want, oerr) {
						t.Fatalf("error %v is also %s", err, other)
					}
				}
				seen[v.Expect]++
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			seen[v.Expect]++
			repo := k.Repo()
			if hex.EncodeToString(repo[:]) != v.Repo || k.Primary() != v.Primary {
				t.Fatalf("repo %x primary %d, want %s %d", repo, k.Primary(), v.Repo, v.Primary)
			}
			var got []VectorVersion
			for i, info := range k.Versions() {
				vv := VectorVersion{Version: info.Version, State: info.State.String(), Created: info.Created}
				if key := k.st.roots[i].key; key.Valid() {
					kc, err := keys.KeyCheck(key)
					if err != nil {
						t.Fatal(err)
					}
					vv.KeyCheck = hex.EncodeToString(kc)
				}
				got = append(got, vv)
			}
			if !slices.EqualFunc(got, v.Versions, func(a, b VectorVersion) bool {
				return a.Version == b.Version && a.State == b.State && a.Created.Equal(b.Created) && a.KeyCheck == b.KeyCheck
			}) {
				t.Fatalf("versions %+v, want %+v", got, v.Versions)
			}
			f, ok := k.Freshness()
			if ok != (v.Freshness != nil) {
				t.Fatalf("freshness present %v, want %v", ok, v.Freshness != nil)
			}
			if ok && (f.Sequence != v.Freshness.Sequence || hex.EncodeToString(f.Hash[:]) != v.Freshness.Hash || !f.Time.Equal(v.Freshness.Time)) {
				t.Fatalf("freshness %+v, want %+v", f, *v.Freshness)
			}
		})
	}
	// The set must cover every outcome, so that a generator that lost its
	// vectors cannot pass.
	for _, want := range []string{ExpectOK, ExpectCorrupt, ExpectWrongPassphrase, ExpectUnsupported, ExpectKDFTooWeak, ExpectKDFTooCostly} {
		if seen[want] == 0 {
			t.Errorf("no vector expects %s", want)
		}
	}
}

// TestVectorsProductionFloor opens the vectors with the production floor:
// every vector that gets as far as the KDF check is refused as too weak,
// before any derivation.
func TestVectorsProductionFloor(t *testing.T) {
	dir, idx := generate(t)
	if insecureTest.Load() {
		t.Fatal("hook on")
	}
	n := 0
	for _, v := range idx.Vectors {
		if v.Expect != ExpectOK && v.Layer != LayerAEAD && v.Layer != LayerPayload {
			continue // rejected earlier, or by the ceiling
		}
		_, err := Open(filepath.Join(dir, v.File), []byte(v.Passphrase))
		if !errors.Is(err, ErrKDFTooWeak) {
			t.Fatalf("%s: got %v, want ErrKDFTooWeak", v.Name, err)
		}
		n++
	}
	if n < 3 {
		t.Fatalf("only %d vectors checked", n)
	}
}

// TestVectorsDeterministic regenerates the vectors and compares them with
// a second run and, once the generator program has written them, with the
// copy in testdata/vectors/keyring.
func TestVectorsDeterministic(t *testing.T) {
	a, idx := generate(t)
	b, _ := generate(t)
	names := append([]string{VectorIndexFile}, func() (s []string) {
		for _, v := range idx.Vectors {
			s = append(s, v.File)
		}
		return s
	}()...)
	if got := dirNames(t, a); len(got) != len(names) {
		t.Fatalf("generator wrote %d files, index names %d", len(got), len(names))
	}
	if _, err := os.Stat(committedVectors); err != nil {
		t.Logf("no committed vectors at %s (%v): comparing two generator runs only", committedVectors, err)
	} else {
		for _, n := range names {
			if !bytes.Equal(mustRead(t, filepath.Join(a, n)), mustRead(t, filepath.Join(committedVectors, n))) {
				t.Errorf("committed %s differs from the generator's", n)
			}
		}
	}
	for _, n := range names {
		if !bytes.Equal(mustRead(t, filepath.Join(a, n)), mustRead(t, filepath.Join(b, n))) {
			t.Errorf("%s differs between two runs", n)
		}
	}
}

// fuzzLimits keep the fuzzer's derivations cheap whatever a header claims.
var fuzzLimits = limits{
	min: Params{Time: 1, MemoryKiB: 8, Threads: 1},
	max: Params{Time: 2, MemoryKiB: 256, Threads: 4},
}

// FuzzOpen drives the whole read path on bytes. Anything it accepts must
// re-encode to exactly the input (one valid encoding per keyring).
func FuzzOpen(f *testing.F) {
	dir, idx := generate(f)
	n := 0
	for _, v := range idx.Vectors {
		f.Add(mustRead(f, filepath.Join(dir, v.File)), []byte(v.Passphrase))
		n++
	}
	if n == 0 {
		f.Fatal("no seeds")
	}
	f.Fuzz(func(t *testing.T, file, pass []byte) {
		h, kek, st, err := decodeFile(file, pass, fuzzLimits)
		if err != nil {
			if h != (header{}) || kek.Valid() || st.roots != nil {
				t.Fatal("failed decode returned state")
			}
			return
		}
		defer kek.Wipe()
		defer st.wipe()
		pt, err := marshalPayload(st)
		if err != nil {
			t.Fatalf("accepted payload does not marshal: %v", err)
		}
		again, err := sealFile(kek, h, pt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, file) {
			t.Fatal("accepted file does not re-encode to itself")
		}
	})
}

// FuzzPayload drives the payload decoder directly, seeded with the
// decrypted payloads of every vector that decrypts.
func FuzzPayload(f *testing.F) {
	dir, idx := generate(f)
	n := 0
	for _, v := range idx.Vectors {
		b := mustRead(f, filepath.Join(dir, v.File))
		h, ct, err := parseFile(b)
		if err != nil || fuzzLimits.check(h.params) != nil {
			continue
		}
		kek, err := deriveKEK([]byte(v.Passphrase), h.salt[:], h.params)
		if err != nil {
			f.Fatal(err)
		}
		pt, err := openCiphertext(kek, h, ct)
		kek.Wipe()
		if err != nil {
			continue
		}
		f.Add(pt)
		n++
	}
	if n < 10 {
		f.Fatalf("only %d seeds", n)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		p, err := unmarshalPayload(b)
		if !bytes.Equal(in, b) {
			t.Fatal("decoder modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error of unknown class: %v", err)
			}
			return
		}
		defer p.wipe()
		out, err := marshalPayload(p)
		if err != nil {
			t.Fatalf("accepted payload does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatal("accepted payload does not re-encode to itself")
		}
	})
}
