package repo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/store"
)

// listHook calls seen for every name the store lists, before verify gets
// it.
type listHook struct {
	store.Store
	seen func(name string)
}

func (s listHook) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, func(oi store.ObjectInfo) error {
		s.seen(oi.Name)
		return fn(oi)
	})
}

// TestVerifyWriteDiscardedMeanwhile: verify lists a pending write's
// object; the write then fails and removes it (the store first, then its
// pending record), before verify looks the name up. Verify must not call
// it injected: it is gone, and it was ours. Control: an object injected
// under a name the catalog never had, listed in the same run, is still
// reported unknown.
func TestVerifyWriteDiscardedMeanwhile(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.put("bkt", "k", []byte("taken"))
	injected := "0123456789abcdef0123456789abcdef"
	if err := os.MkdirAll(filepath.Dir(e.storePath(injected)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.storePath(injected), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	pendingName := make(chan string, 1)
	release := make(chan struct{})
	e.hooks = &Hooks{At: func(p string) {
		if p == "put:stored" {
			ps, _ := e.r.Catalog().ListPending(ctx)
			pendingName <- format.StoreName(ps[0].ObjectID)
			<-release
		}
	}}
	e.reopen()
	putDone := make(chan error, 1)
	go func() {
		// Create-only on a taken key: stored, then refused at the commit
		// and discarded.
		_, err := e.r.Put(ctx, "bkt", "k", strings.NewReader("create-only, refused"), PutOptions{CreateOnly: true})
		putDone <- err
	}()
	name := <-pendingName
	var writeErr error
	other, err := Open(ctx, OpenOptions{Home: e.home, Passphrase: pass, Hooks: &Hooks{
		WrapStore: func(s store.Store) store.Store {
			return listHook{s, func(n string) {
				if n == name {
					close(release)
					writeErr = <-putDone
				}
			}}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	found := map[string]Status{}
	if _, err := other.Verify(ctx, VerifyOptions{}, func(f Finding) { found[f.Name] = f.Status }); err != nil {
		t.Fatal(err)
	}
	if writeErr == nil {
		t.Fatal("the create-only write on a taken key succeeded: the race was not set up")
	}
	if st, ok := found[name]; ok {
		t.Errorf("the discarded write's object reported %q", st)
	}
	if found[injected] != StatusUnknown || len(found) != 1 {
		t.Errorf("control: findings %v, want only the injected object, unknown", found)
	}
}
