package spread

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/reedsolomon"
)

// The layout vectors recompute, from docs/format.md ("Spread store
// shards") and the standard library alone, what the store writes: the
// member names and every byte of every member object. A change to either
// fails here before it can strand stored objects.

func docKey(t *testing.T, info string) []byte {
	k, err := hkdf.Key(sha256.New, bytes.Repeat([]byte{7}, 32), nil, info, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func docHMAC(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// docToken is the member-j token of a name of at most 46 bytes.
func docToken(t *testing.T, j int, name string) string {
	iv := docHMAC(docKey(t, "holdfast/v1/spread/name-iv"), []byte("holdfast/v1/spread/name\x00"), []byte{byte(j)}, []byte(name))[:16]
	blk, err := aes.NewCipher(docKey(t, "holdfast/v1/spread/name-enc"))
	if err != nil {
		t.Fatal(err)
	}
	ct := []byte(name)
	cipher.NewCTR(blk, iv).XORKeyStream(ct, ct)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(append(iv, ct...)))
}

func TestLayoutVectors(t *testing.T) {
	const (
		name  = "0123456789abcdef0123456789abcdef"
		chunk = 1000
		size  = 7001 // stripes of 3000, 3000 and 1001 bytes
		gen   = uint64(0x0123456789abcdef)
	)
	r := newRig(t, chunk)
	data := body(42, size)
	g := r.s.geometry(publicRef(name), size)
	errs, err := r.s.writeMembers(t.Context(), publicRef(name), g, gen, bytes.NewReader(data), []int{0, 1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	for j, e := range errs {
		if e != nil {
			t.Fatalf("member %d: %v", j, e)
		}
	}
	enc, err := reedsolomon.New(3, 2)
	if err != nil {
		t.Fatal(err)
	}
	macKey := docKey(t, "holdfast/v1/spread/shard-mac")
	golden := map[int]string{}
	for j := range 5 {
		// The name: TOKEN-SIZE-GEN in base 36.
		wantName := docToken(t, j, name) + "-" + strconv.FormatInt(size, 36) + "-" + strconv.FormatUint(gen, 36)
		p := r.shardFile(t, j, name)
		if got := p[strings.LastIndex(p, "/")+1:]; got != wantName {
			t.Fatalf("member %d name %q, want %q", j, got, wantName)
		}
		// The bytes: per stripe, the shard and its tag.
		var want []byte
		for i, off := 0, 0; off < size; i, off = i+1, off+3*chunk {
			li := min(3*chunk, size-off)
			sl := (li + 2) / 3
			buf := make([]byte, 5*sl)
			copy(buf, data[off:off+li])
			shards := [][]byte{buf[:sl], buf[sl : 2*sl], buf[2*sl : 3*sl], buf[3*sl : 4*sl], buf[4*sl:]}
			if err := enc.Encode(shards); err != nil {
				t.Fatal(err)
			}
			prefix := []byte("holdfast/v1/spread/shard\x00")
			prefix = append(prefix, 0 /* erasure */, 3, 2, byte(j))
			prefix = binary.BigEndian.AppendUint32(prefix, chunk)
			prefix = binary.BigEndian.AppendUint16(prefix, uint16(len(name)))
			prefix = append(prefix, name...)
			prefix = binary.BigEndian.AppendUint64(prefix, size)
			prefix = binary.BigEndian.AppendUint64(prefix, gen)
			idx := binary.BigEndian.AppendUint64(nil, uint64(i))
			want = append(want, shards[j]...)
			want = append(want, docHMAC(macKey, prefix, idx, shards[j])...)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("member %d object: %d bytes differ from the documented layout (%d bytes)", j, len(got), len(want))
		}
		sum := sha256.Sum256(got)
		golden[j] = hex.EncodeToString(sum[:8])
	}
	// Golden digests: the reedsolomon library's matrix is part of the
	// format too; these catch a change in it.
	for j, want := range map[int]string{0: "2e135957fd19f82e", 3: "43c46467fc67d839", 4: "fcc225b8190d008e"} {
		if golden[j] != want {
			t.Errorf("member %d object digest %s, want %s", j, golden[j], want)
		}
	}
}

// FuzzMemberName: the member-name parser and the token decoder take
// names a provider chose; they must never panic, and whatever they accept
// must print back to the same name.
func FuzzMemberName(f *testing.F) {
	for _, s := range []string{"abc-0-0", "abc-1z-2a-h", "-0-0", "a--", "a-00-1", "a-1-1-1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-7-7",
		"zzzzzzzzzzzzzzzzzzzzzzzzzz-1y2p0ij32e8e7-3w5e11264sgsf-h", "abc-c-0-0-u", "abc-1.abcdefgh-2s-9-u", "abc--0-0-u", "a-B-1-1-u"} {
		f.Add(s)
	}
	k, err := secretForFuzz()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mn, ok := parseMemberName(s)
		if !ok {
			return
		}
		if mn.String() != s {
			t.Fatalf("parse(%q) prints back as %q", s, mn.String())
		}
		if name, err := k.nameOfToken(0, mn.token); err == nil {
			t.Fatalf("a fuzzed token decoded to %q", name)
		}
		if name, err := k.nameOfBlock(0, []byte(s)); err == nil {
			t.Fatalf("a fuzzed name block decoded to %q", name)
		}
	})
}
