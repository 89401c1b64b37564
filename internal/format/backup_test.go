package format

import (
	"bytes"
	"testing"

	"github.com/holdfast/holdfast/internal/keys"
)

func sampleBackup() *CatalogBackup {
	w := keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: 1, Data: make([]byte, keys.WrappedLenHKDFGCMCommit)}
	return &CatalogBackup{Sequence: 1,
		Buckets: []BackupBucket{{Name: "a"}, {Name: "b"}},
		Keys:    []BackupKey{{Bucket: keys.ID{1}, Version: 1, Wrapped: w, State: 1}, {Bucket: keys.ID{1}, Version: 2, Wrapped: w, State: 2}},
		Objects: []BackupObject{
			{Bucket: "a", Key: "x", Version: 1, KeyVersion: 1, Wrapped: make([]byte, 112), Segments: 1},
			{Bucket: "a", Key: "y", Version: 4, KeyVersion: 2, Wrapped: make([]byte, 112), Segments: 1, Meta: []MetaPair{{Name: "k", Value: "v"}}},
		},
		System: []BackupSystem{{Object: keys.ID{1}, Kind: KindJournal}, {Object: keys.ID{2}, Kind: KindMarker}},
	}
}

func TestCatalogBackupRoundTrip(t *testing.T) {
	c := sampleBackup()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseCatalogBackup(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := g.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("re-encoding differs")
	}
	if BackupHash(b) == BackupHash(append(bytes.Clone(b), 0)) {
		t.Fatal("hash ignores content")
	}
}

func TestCatalogBackupRules(t *testing.T) {
	for name, edit := range map[string]func(*CatalogBackup){
		"sequence zero":          func(c *CatalogBackup) { c.Sequence = 0 },
		"first with previous":    func(c *CatalogBackup) { c.Previous[0] = 1 },
		"later without previous": func(c *CatalogBackup) { c.Sequence = 2 },
		"buckets unordered":      func(c *CatalogBackup) { c.Buckets[0].Name = "c" },
		"keys unordered":         func(c *CatalogBackup) { c.Keys[1].Version = 1 },
		"key state unknown":      func(c *CatalogBackup) { c.Keys[0].State = 9 },
		"objects unordered":      func(c *CatalogBackup) { c.Objects[1].Key = "a" },
		"object version zero":    func(c *CatalogBackup) { c.Objects[0].Version = 0 },
		"system kind backup":     func(c *CatalogBackup) { c.System[0].Kind = KindBackup },
		"system unordered":       func(c *CatalogBackup) { c.System[1].Object = keys.ID{0} },
		"short wrapped object":   func(c *CatalogBackup) { c.Objects[0].Wrapped = make([]byte, 60) },
	} {
		c := sampleBackup()
		if _, err := c.Marshal(); err != nil { // control
			t.Fatalf("%s: control: %v", name, err)
		}
		edit(c)
		if _, err := c.Marshal(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	b, _ := sampleBackup().Marshal()
	if _, err := ParseCatalogBackup(append(b, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	if _, err := ParseCatalogBackup(b[:len(b)-1]); err == nil {
		t.Error("truncation accepted")
	}
}
