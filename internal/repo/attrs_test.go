package repo

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// digestAtEOF fills attrs["etag"] with the MD5 of what was read, at EOF:
// what the gateway does with a request body.
type digestAtEOF struct {
	r     io.Reader
	h     hash.Hash
	attrs map[string]string
}

func (d *digestAtEOF) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	if err == io.EOF {
		d.attrs["etag"] = hex.EncodeToString(d.h.Sum(nil))
	}
	return n, err
}

// Attributes set while the body is read reach the catalog and the
// manifest, survive a rebuild of the catalog from the store, and stay
// apart from user metadata; user metadata cannot pose as one.
func TestPutAttrs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	body := strings.Repeat("attribute test ", 10000)
	attrs := map[string]string{"cache-control": "no-store", "empty": ""}
	src := &digestAtEOF{r: strings.NewReader(body), h: md5.New(), attrs: attrs}
	ent, err := e.r.Put(ctx, "docs", "a", src, PutOptions{Meta: map[string]string{"colour": "blue"}, Attrs: attrs})
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum([]byte(body))
	want := hex.EncodeToString(sum[:])
	check := func(when string, r *Repo) {
		t.Helper()
		got, err := r.Stat(ctx, "docs", "a")
		if err != nil {
			t.Fatal(err)
		}
		if Attr(got, "etag") != want || Attr(got, "cache-control") != "no-store" || Attr(got, "empty") != "" {
			t.Errorf("%s: attributes %v", when, got.Meta)
		}
		if um := UserMeta(got); len(um) != 1 || um["colour"] != "blue" {
			t.Errorf("%s: user metadata %v", when, um)
		}
	}
	if Attr(ent, "etag") != want {
		t.Errorf("Put's entry: etag %q, want %q", Attr(ent, "etag"), want)
	}
	check("after put", e.r)

	// Rebuilt from the store alone (no catalog backup): the same.
	e.r.Close()
	if err := os.Remove(filepath.Join(e.home, CatalogFile)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CatalogFile + "-wal", CatalogFile + "-shm"} {
		os.Remove(filepath.Join(e.home, f))
	}
	r, _, err := Recover(ctx, RecoverOptions{Home: e.home, Passphrase: pass, AcceptUnverifiedFreshness: true})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	check("after recover", r)

	// A user metadata name in the attributes' namespace is refused, and
	// nothing is stored; the same put with a plain name works.
	if _, err := e.r.Put(ctx, "docs", "b", strings.NewReader("x"), PutOptions{Meta: map[string]string{":etag": "forged"}}); err == nil {
		t.Fatal("user metadata named :etag was accepted")
	}
	if _, err := e.r.Stat(ctx, "docs", "b"); err == nil {
		t.Fatal("the refused put stored an object")
	}
	if _, err := e.r.Put(ctx, "docs", "b", strings.NewReader("x"), PutOptions{Meta: map[string]string{"etag": "plain"}}); err != nil {
		t.Fatalf("control: %v", err)
	}
}
