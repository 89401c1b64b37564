package object

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// TestRewrappedKeyVersion: a data key rewrapped under a newer bucket key
// version (keys rewrap) opens its object only when the reader says the key
// may come from a later record (Expect.Rewrapped), and never from a record
// under an older version than the manifest's. The control is the header's
// own slot, which opens either way.
func TestRewrappedKeyVersion(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	res := f.put(t, []byte("rewrapped"), 0)
	dek, err := keys.UnwrapSoftware(f.kek, f.ad, res.Wrapped)
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Wipe()
	// The same data key under bucket key version v, as a rewrap makes it.
	under := func(v uint32) UnwrapFunc {
		kek, _ := secret.New()
		ad := f.ad
		ad.KEKVersion = v
		w, err := keys.WrapSoftware(kek, ad, dek, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return func(format.Header) (secret.Key, keys.AD, error) {
			k, err := keys.UnwrapSoftware(kek, ad, w)
			return k, ad, err
		}
	}
	for _, c := range []struct {
		name      string
		unwrap    UnwrapFunc
		rewrapped bool
		ok        bool
	}{
		{"header slot", f.unwrap, false, true},
		{"header slot, rewraps allowed", f.unwrap, true, true},
		{"newer record, rewraps allowed", under(2), true, true},
		{"newer record, rewraps not allowed", under(2), false, false},
		{"older record, rewraps allowed", under(0), true, false},
	} {
		exp := f.expect(res)
		exp.Rewrapped = c.rewrapped
		if exp.Rewrapped && c.name == "newer record, rewraps allowed" {
			exp.KeyVersion = 2 // the catalog's record names the newer version
		}
		o, err := Open(ctx, f.st, format.StoreName(f.ident.Object), exp, c.unwrap)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !c.ok && !errors.Is(err, format.ErrCorrupt):
			t.Errorf("%s: opened (%v)", c.name, err)
		}
		if o != nil {
			o.Wipe()
		}
	}
}
