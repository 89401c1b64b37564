package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
)

// TestAbortRacesCompletion: another process (another gateway) aborts an
// upload while this one completes it. The abort read the upload while the
// completion had stored its object; it goes on after the completion
// committed. The completion was acknowledged, so its object stays and
// reads back (the abort used to delete it). Control: the same abort
// before the completion commits wins — the completion fails and nothing
// is left: verify finds the store and the catalog agree.
func TestAbortRacesCompletion(t *testing.T) {
	ctx := context.Background()
	for _, abortAt := range []string{"upload:committed", "upload:stored"} {
		t.Run(abortAt, func(t *testing.T) {
			e := &mpEnv{env: newEnv(t), kind: "local"}
			var seen catalog.Upload
			var other *Repo
			aborted := false
			e.hooks = &Hooks{At: func(p string) {
				switch {
				case p == "upload:stored": // the other process reads the upload
					u, err := other.Catalog().GetUpload(ctx, seen.ID)
					if err != nil {
						t.Error(err)
					}
					seen = u
				}
				if p == abortAt { // ... and aborts it, here
					if err := other.abortUpload(ctx, seen); err != nil {
						t.Errorf("abort: %v", err)
					}
					aborted = true
				}
			}}
			e.reopen()
			var err error
			if other, err = Open(ctx, OpenOptions{Home: e.home, Passphrase: pass}); err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			id := e.create("k", PutOptions{})
			seen.ID = id
			data := body(1, 1000)
			p := e.part("k", id, 1, data)
			_, cerr := e.r.CompleteUpload(ctx, mpBucket, "k", id, []CompletedPart{{Number: p.Number, ETag: `"` + p.ETag + `"`}}, CompleteOptions{})
			if !aborted || !seen.Completing {
				t.Fatalf("the race was not set up: aborted %v, seen completing %v", aborted, seen.Completing)
			}
			got, gerr := e.get(mpBucket, "k")
			if abortAt == "upload:committed" {
				if cerr != nil || gerr != nil || !bytes.Equal(got, data) {
					t.Fatalf("acknowledged completion: %v; read %d bytes, %v", cerr, len(got), gerr)
				}
			} else if cerr == nil || !errors.Is(gerr, ErrNotFound) {
				t.Fatalf("control: completion after the abort: %v; read: %v", cerr, gerr)
			}
			if _, err := e.r.Verify(ctx, VerifyOptions{}, func(f Finding) { t.Errorf("verify: %+v", f) }); err != nil {
				t.Fatal(err)
			}
		})
	}
}
