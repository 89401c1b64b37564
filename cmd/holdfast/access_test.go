package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/access"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
)

// TestAccessCLIWithLiveTable: while a table is open in this process, as
// in a running gateway, `holdfast access` processes add keys (several at
// once) and revoke one; the table sees each add, and the revocation,
// within MaxStale, and every key it sees opens.
func TestAccessCLIWithLiveTable(t *testing.T) {
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	env := policyTestEnv(t)
	var home, pass string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HOLDFAST_HOME="); ok {
			home = v
		}
		if v, ok := strings.CutPrefix(kv, "HOLDFAST_PASSPHRASE="); ok {
			pass = v
		}
	}
	if code, _, errs := cliRun(t, env, false, "init"); code != 0 {
		t.Fatalf("init: %d %s", code, errs)
	}
	ctx := context.Background()
	r, err := repo.Open(ctx, repo.OpenOptions{Home: home, Passphrase: []byte(pass)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const stale = 100 * time.Millisecond
	// The live table's staleness runs on a clock the test moves on.
	var now atomic.Int64
	now.Store(int64(time.Hour))
	defer access.SetClockForTesting(func() time.Duration { return time.Duration(now.Load()) })()
	gw, err := access.Open(ctx, r.Catalog(), r.ID(), r.KeySource(), access.Options{MaxStale: stale})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	resolves := func(id string) bool {
		_, _, err := gw.IAM().DeriveSigningKey(id, "", "20260101", "us-east-1", "s3")
		return err == nil
	}

	// The gateway keeps checking while the CLI works.
	stop := make(chan struct{})
	var checks sync.WaitGroup
	checks.Add(1)
	go func() {
		defer checks.Done()
		for {
			select {
			case <-stop:
				return
			default:
				gw.BucketPolicy("photos")
				gw.BucketPolicyFor("photos", "HFUNKNOWN00000000000")
				resolves("HFUNKNOWN00000000000")
			}
		}
	}()
	type added struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	keys := make([]added, 3)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, errs := cliRun(t, env, false, "--json", "access", "add", "client", "--bucket", "photos:rl")
			if code != 0 || json.Unmarshal([]byte(out), &keys[i]) != nil {
				t.Errorf("access add: %d %s %s", code, out, errs)
			}
		}()
	}
	wg.Wait()
	now.Add(int64(stale))
	for _, k := range keys {
		if !access.ValidID(k.ID) || len(k.Secret) != access.SecretLen {
			t.Fatalf("access add printed %+v", k)
		}
		if !resolves(k.ID) || !gw.Allowed(k.ID, "photos", access.List) {
			t.Fatalf("the live table does not see %s, added %v ago", k.ID, stale)
		}
	}
	if code, out, errs := cliRun(t, env, false, "access", "revoke", keys[0].ID); code != 0 {
		t.Fatalf("revoke: %d %s %s", code, out, errs)
	}
	now.Add(int64(stale))
	if resolves(keys[0].ID) || gw.Allowed(keys[0].ID, "photos", access.List) {
		t.Fatal("the live table still accepts a key revoked by the CLI")
	}
	if !resolves(keys[1].ID) || !resolves(keys[2].ID) {
		t.Fatal("control: the other keys stopped resolving")
	}
	close(stop)
	checks.Wait()
	code, out, _ := cliRun(t, env, false, "access", "list")
	if code != 0 || strings.Contains(out, keys[0].ID) || !strings.Contains(out, keys[1].ID) || strings.Contains(out, keys[1].Secret) {
		t.Fatalf("list after revoke: %d\n%s", code, out)
	}
}
