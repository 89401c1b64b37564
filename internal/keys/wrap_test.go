package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/holdfast/holdfast/internal/secret"
)

func TestADEncoding(t *testing.T) {
	a := AD{Purpose: PurposeDataKey, Repo: ID{1}, Bucket: ID{2}, KEKVersion: 3, KeyVersion: 4, Object: ID{5}}
	b := a.Bytes()
	if len(b) != ADLen || ADLen != 76 {
		t.Fatalf("AD is %d bytes (ADLen %d), format.md says 76", len(b), ADLen)
	}
	// Every field changes the encoding.
	for _, o := range []AD{
		{Purpose: PurposeBucketKey, Repo: ID{1}, Bucket: ID{2}, KEKVersion: 3, KeyVersion: 4, Object: ID{5}},
		{Purpose: PurposeDataKey, Repo: ID{9}, Bucket: ID{2}, KEKVersion: 3, KeyVersion: 4, Object: ID{5}},
		{Purpose: PurposeDataKey, Repo: ID{1}, Bucket: ID{9}, KEKVersion: 3, KeyVersion: 4, Object: ID{5}},
		{Purpose: PurposeDataKey, Repo: ID{1}, Bucket: ID{2}, KEKVersion: 9, KeyVersion: 4, Object: ID{5}},
		{Purpose: PurposeDataKey, Repo: ID{1}, Bucket: ID{2}, KEKVersion: 3, KeyVersion: 9, Object: ID{5}},
		{Purpose: PurposeDataKey, Repo: ID{1}, Bucket: ID{2}, KEKVersion: 3, KeyVersion: 4, Object: ID{9}},
	} {
		if bytes.Equal(o.Bytes(), b) {
			t.Fatalf("%+v encodes like %+v", o, a)
		}
	}
}

func TestSoftwareWrap(t *testing.T) {
	kek, _ := secret.New()
	other, _ := secret.New()
	k, _ := secret.New()
	ad := AD{Purpose: PurposeDataKey, Repo: ID{1}, Bucket: ID{2}, KEKVersion: 1, Object: ID{3}}
	w, err := WrapSoftware(kek, ad, k, rand.Reader)
	if err != nil || len(w) != WrappedLenHKDFGCMCommit {
		t.Fatal(len(w), err)
	}
	got, err := UnwrapSoftware(kek, ad, w)
	if err != nil || !got.Equal(k) {
		t.Fatalf("round trip: %v", err)
	}
	// Two wraps of the same key differ (fresh salt, fresh subkey).
	w2, _ := WrapSoftware(kek, ad, k, rand.Reader)
	if bytes.Equal(w, w2) {
		t.Fatal("two wraps are identical")
	}
	// Wrong key: refused at the commitment.
	if _, err := UnwrapSoftware(other, ad, w); !errors.Is(err, ErrNotMyKey) {
		t.Fatalf("other key: %v", err)
	}
	// Wrong associated data: refused at the AEAD.
	ad2 := ad
	ad2.Object = ID{4}
	if _, err := UnwrapSoftware(kek, ad2, w); !errors.Is(err, ErrNotMyKey) {
		t.Fatalf("other AD: %v", err)
	}
	// Every byte matters.
	for i := range w {
		c := bytes.Clone(w)
		c[i] ^= 1
		if _, err := UnwrapSoftware(kek, ad, c); err == nil {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
	if _, err := UnwrapSoftware(kek, ad, w[:100]); err == nil {
		t.Fatal("short record accepted")
	}
}

func TestKeyCheck(t *testing.T) {
	a, _ := secret.New()
	b, _ := secret.New()
	ka, _ := KeyCheck(a)
	ka2, _ := KeyCheck(a)
	kb, _ := KeyCheck(b)
	if len(ka) != 32 || !bytes.Equal(ka, ka2) || bytes.Equal(ka, kb) {
		t.Fatal("key check is not a deterministic per-key value")
	}
}
