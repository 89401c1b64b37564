package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// oldKeyringHome makes a repository (on a 3-of-5 spread store of local
// directories, or on one local store), backs it up twice after saving a
// copy of the keyring (keep = 1, so the copy's record no longer links to
// the store's backups), then loses the catalog and puts the copy back.
func oldKeyringHome(t *testing.T, spreadStore bool) *spreadCLI {
	c := newSpreadCLI(t)
	dir := t.TempDir()
	if spreadStore {
		var ms []map[string]string
		for i, m := range spreadMembers {
			ms = append(ms, map[string]string{"label": m.label, "provider": m.provider, "jurisdiction": m.jurisdiction,
				"path": fmt.Sprintf("member%d", i)})
		}
		b, _ := json.Marshal(map[string]any{"k": 3, "m": 2, "members": ms})
		p := filepath.Join(dir, "layout.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c.must("init", "--store", "spread:"+p)
	} else {
		c.must("init", "--store", filepath.Join(dir, "store"))
	}
	cfgPath := filepath.Join(c.home, "config.json")
	var cfg map[string]any
	b, err := os.ReadFile(cfgPath)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg["backup"] = map[string]int{"keep": 1}
	if b, err = json.Marshal(cfg); err == nil {
		err = os.WriteFile(cfgPath, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	put := func(n int) {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, randomBytes(t, 1000*n), 0o600); err != nil {
			t.Fatal(err)
		}
		c.must("put", p, fmt.Sprintf("bkt/f%d", n))
	}
	put(1)
	out, _ := c.must("backup")
	if got := strings.Contains(out, "and on the store's members"); got != spreadStore {
		t.Fatalf("backup output (spread %v):\n%s", spreadStore, out)
	}
	krPath := filepath.Join(c.home, "keyring")
	oldKR, err := os.ReadFile(krPath)
	if err != nil {
		t.Fatal(err)
	}
	put(2)
	c.must("backup")
	put(3)
	c.must("backup")
	if spreadStore {
		out, _ := c.must("stores")
		if !strings.Contains(out, "FRESHNESS") || strings.Count(out, "seq 4") != 5 {
			t.Fatalf("stores does not show every member's freshness record at sequence 4:\n%s", out)
		}
	}
	for _, f := range []string{"catalog.db", "catalog.db-wal", "catalog.db-shm"} {
		os.Remove(filepath.Join(c.home, f))
	}
	if err := os.WriteFile(krPath, oldKR, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRecoverVerifiedByStoreMembersCLI: recover with an old keyring copy
// says, in text and JSON, that the spread store's members vouched for the
// newest backup; on a single store the same refuses (exit 7), as before.
func TestRecoverVerifiedByStoreMembersCLI(t *testing.T) {
	out, _ := oldKeyringHome(t, true).must("recover")
	want := "catalog backup: sequence 4 of "
	more := ", verified against the freshness record held by the store's members (sequence 4, agreed by 5 of 5 members); the keyring's record is older (sequence 2)"
	if !strings.Contains(out, want) || !strings.Contains(out, more) {
		t.Fatalf("recover output:\n%s\nwant %q…%q", out, want, more)
	}

	out, _ = oldKeyringHome(t, true).must("--json", "recover")
	var rep struct {
		Freshness string `json:"freshness"`
		Store     struct {
			Sequence uint64 `json:"sequence"`
			Agreed   int    `json:"agreed"`
			Members  int    `json:"members"`
		} `json:"store_freshness"`
		Keyring struct {
			Sequence uint64 `json:"sequence"`
		} `json:"keyring_freshness"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Freshness != "verified-by-store-members" || rep.Store.Sequence != 4 || rep.Store.Agreed != 5 || rep.Store.Members != 5 || rep.Keyring.Sequence != 2 {
		t.Fatalf("recover --json: %+v\n%s", rep, out)
	}

	code, _, errs := oldKeyringHome(t, false).run("recover")
	if code != exitRefused || !strings.Contains(errs, "refusing to recover") || !strings.Contains(errs, "sequence 2") {
		t.Fatalf("recover on a single store with the old keyring: exit %d: %s", code, errs)
	}
}
