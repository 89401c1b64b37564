package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store/spread"
)

func spreadLayout(dir string, jurisdictions ...string) *SpreadConfig {
	c := &SpreadConfig{K: 3, M: 2}
	for i, j := range jurisdictions {
		c.Members = append(c.Members, SpreadMember{Label: fmt.Sprintf("m%d", i), Provider: fmt.Sprintf("p%d", i),
			Jurisdiction: j, Path: filepath.Join(dir, fmt.Sprintf("member%d", i))})
	}
	return c
}

// TestSpreadRepository: a repository on a 3-of-5 spread store of local
// members stores objects put whole and built from parts (as the gateway
// does), reads them back after reopening, with two members gone too.
func TestSpreadRepository(t *testing.T) {
	ctx := context.Background()
	d := t.TempDir()
	home := filepath.Join(d, "home")
	r, err := Init(ctx, InitOptions{Home: home, Spread: spreadLayout(d, "EU", "EU", "CH", "US", "JP"), Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Spread(); !ok {
		t.Fatalf("store is %T, not a spread store", r.Store())
	}
	whole := random(300_000)
	if _, err := r.Put(ctx, "bkt", "whole", bytes.NewReader(whole), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	id, err := r.CreateUpload(ctx, "bkt", "parts", PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := random(6<<20), random(1000)
	var done []CompletedPart
	for n, b := range [][]byte{p1, p2} {
		pi, err := r.PutPart(ctx, "bkt", "parts", id, n+1, bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("part %d: %v", n+1, err)
		}
		done = append(done, CompletedPart{Number: n + 1, ETag: pi.ETag})
	}
	if _, err := r.CompleteUpload(ctx, "bkt", "parts", id, done, CompleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	want := map[string][]byte{"whole": whole, "parts": append(append([]byte(nil), p1...), p2...)}
	for _, gone := range [][]int{nil, {0, 3}} {
		for _, j := range gone {
			os.Rename(filepath.Join(d, fmt.Sprintf("member%d", j)), filepath.Join(d, fmt.Sprintf("away%d", j)))
		}
		r, err := Open(ctx, OpenOptions{Home: home, Passphrase: pass})
		if err != nil {
			t.Fatal(err)
		}
		for key, w := range want {
			e := &env{t: t, r: r}
			got, err := e.get("bkt", key)
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("members %v gone: get %s: %d bytes, %v", gone, key, len(got), err)
			}
		}
		r.Close()
	}
}

// TestSpreadPolicyAtOpen: a config edited to put K shards in one
// jurisdiction is refused when the repository is opened, naming it; the
// config as init wrote it (the control) opens.
func TestSpreadPolicyAtOpen(t *testing.T) {
	ctx := context.Background()
	d := t.TempDir()
	home := filepath.Join(d, "home")
	r, err := Init(ctx, InitOptions{Home: home, Spread: spreadLayout(d, "EU", "EU", "CH", "US", "JP"), Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cfgPath := filepath.Join(home, ConfigFile)
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	r, err = Open(ctx, OpenOptions{Home: home, Passphrase: pass})
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	r.Close()
	var c Config
	if err := json.Unmarshal(good, &c); err != nil {
		t.Fatal(err)
	}
	c.Store.Spread.Members[2].Jurisdiction = "eu"
	if err := saveConfig(home, c); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, OpenOptions{Home: home, Passphrase: pass})
	if !errors.Is(err, spread.ErrPolicy) || !strings.Contains(err.Error(), `jurisdiction "EU" holds 3 shards`) {
		t.Fatalf("Open with 3 shards in EU: %v", err)
	}
}
