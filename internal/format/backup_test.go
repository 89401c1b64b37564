package format

import (
	"bytes"
	"fmt"
	"io"
	"strings"
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
		System:       []BackupSystem{{Object: keys.ID{1}, Kind: KindJournal}, {Object: keys.ID{2}, Kind: KindMarker}},
		Reservations: []BackupReservation{{Bucket: "a", Key: "gone", Version: 3}, {Bucket: "a", Key: "x", Version: 1}, {Bucket: "a", Key: "y", Version: 4}},
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
	if b[0] != 2 || len(g.Reservations) != 3 || g.Reservations[0].Key != "gone" {
		t.Fatalf("version %d, reservations %+v", b[0], g.Reservations)
	}
	// Version 1 (no reservations) is still read and re-encoded as itself.
	c.Version, c.Reservations = 1, nil
	b1, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g1, err := ParseCatalogBackup(b1)
	if err != nil || g1.Version != 1 || g1.Reservations != nil {
		t.Fatalf("version 1: %+v %v", g1, err)
	}
	if b1r, _ := g1.Marshal(); !bytes.Equal(b1, b1r) {
		t.Fatal("version 1 re-encoding differs")
	}
	if h, err := ParseCatalogBackupHead(b1); err != nil || h.Version != 1 {
		t.Fatalf("version 1 head: %+v %v", h, err)
	}
	if _, err := ParseCatalogBackup(append([]byte{3}, b1[1:]...)); err == nil {
		t.Fatal("version 3 accepted")
	}
}

func TestCatalogBackupRules(t *testing.T) {
	for name, edit := range map[string]func(*CatalogBackup){
		"sequence zero":           func(c *CatalogBackup) { c.Sequence = 0 },
		"first with previous":     func(c *CatalogBackup) { c.Previous[0] = 1 },
		"later without previous":  func(c *CatalogBackup) { c.Sequence = 2 },
		"buckets unordered":       func(c *CatalogBackup) { c.Buckets[0].Name = "c" },
		"keys unordered":          func(c *CatalogBackup) { c.Keys[1].Version = 1 },
		"key state unknown":       func(c *CatalogBackup) { c.Keys[0].State = 9 },
		"objects unordered":       func(c *CatalogBackup) { c.Objects[1].Key = "a" },
		"object version zero":     func(c *CatalogBackup) { c.Objects[0].Version = 0 },
		"system kind backup":      func(c *CatalogBackup) { c.System[0].Kind = KindBackup },
		"system unordered":        func(c *CatalogBackup) { c.System[1].Object = keys.ID{0} },
		"short wrapped object":    func(c *CatalogBackup) { c.Objects[0].Wrapped = make([]byte, 60) },
		"reservations unordered":  func(c *CatalogBackup) { c.Reservations[1].Key = "a" },
		"reservation version 0":   func(c *CatalogBackup) { c.Reservations[0].Version = 0 },
		"reservation long bucket": func(c *CatalogBackup) { c.Reservations[2].Bucket = strings.Repeat("z", 64) },
		"reservations in v1":      func(c *CatalogBackup) { c.Version = 1 },
		"unknown version":         func(c *CatalogBackup) { c.Version = 3 },
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

// TestBackupEncoderMatchesMarshal: the streaming encoder writes exactly
// Marshal's bytes and returns their backup hash, whatever the write sizes.
func TestBackupEncoderMatchesMarshal(t *testing.T) {
	c := sampleBackup()
	c.Sequence, c.Previous = 7, [32]byte{9}
	for i := range 3000 { // more than one flush of the encoder's buffer
		c.Objects = append(c.Objects, BackupObject{Bucket: "b", Key: fmt.Sprintf("k%05d", i), Version: 1, KeyVersion: 1,
			Wrapped: make([]byte, 112), Segments: 1, ContentType: "text/plain"})
	}
	want, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	head := *c
	head.Objects, head.System, head.Reservations = nil, nil, nil
	var buf bytes.Buffer
	enc, err := NewBackupEncoder(&buf, &head, uint64(len(c.Objects)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Objects {
		if err := enc.Object(&c.Objects[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.System(c.System, uint64(len(c.Reservations))); err != nil {
		t.Fatal(err)
	}
	for i := range c.Reservations {
		if err := enc.Reservation(&c.Reservations[i]); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := enc.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("encoder wrote %d bytes that differ from Marshal's %d", buf.Len(), len(want))
	}
	if sum != BackupHash(want) {
		t.Fatal("encoder's hash differs from BackupHash")
	}
	h, err := ParseCatalogBackupHead(want)
	if err != nil || h.Sequence != 7 || h.Previous != c.Previous || h.Repo != c.Repo {
		t.Fatalf("head: %+v %v", h, err)
	}
	if _, err := ParseCatalogBackupHead(want[:BackupHeadLen-1]); err == nil {
		t.Fatal("short head accepted")
	}
}

// TestBackupEncoderRules: the encoder refuses what Marshal refuses; each
// case has a control that differs only in the rule broken.
func TestBackupEncoderRules(t *testing.T) {
	enc := func(objs []BackupObject, announce uint64) error {
		c := sampleBackup()
		c.Objects, c.System, c.Reservations = nil, nil, nil
		e, err := NewBackupEncoder(io.Discard, c, announce)
		if err != nil {
			return err
		}
		for i := range objs {
			if err := e.Object(&objs[i]); err != nil {
				return err
			}
		}
		if err := e.System(sampleBackup().System, 0); err != nil {
			return err
		}
		_, err = e.Finish()
		return err
	}
	objs := sampleBackup().Objects
	if err := enc(objs, 2); err != nil {
		t.Fatalf("control: %v", err)
	}
	if err := enc(objs, 3); err == nil {
		t.Error("fewer objects than announced accepted")
	}
	if err := enc(objs, 1); err == nil {
		t.Error("more objects than announced accepted")
	}
	if err := enc([]BackupObject{objs[1], objs[0]}, 2); err == nil {
		t.Error("objects out of order accepted")
	}
	bad := sampleBackup()
	bad.Objects = nil
	bad.Sequence = 2
	if _, err := NewBackupEncoder(io.Discard, bad, 0); err == nil {
		t.Error("sequence 2 without a previous hash accepted")
	}

	res := func(rs []BackupReservation, announce uint64) error {
		c := sampleBackup()
		c.Objects, c.System, c.Reservations = nil, nil, nil
		e, err := NewBackupEncoder(io.Discard, c, 0)
		if err != nil {
			return err
		}
		if err := e.System(nil, announce); err != nil {
			return err
		}
		for i := range rs {
			if err := e.Reservation(&rs[i]); err != nil {
				return err
			}
		}
		_, err = e.Finish()
		return err
	}
	rs := sampleBackup().Reservations
	if err := res(rs, 3); err != nil {
		t.Fatalf("reservations control: %v", err)
	}
	if err := res(rs, 4); err == nil {
		t.Error("fewer reservations than announced accepted")
	}
	if err := res(rs, 2); err == nil {
		t.Error("more reservations than announced accepted")
	}
	if err := res([]BackupReservation{rs[1], rs[0]}, 2); err == nil {
		t.Error("reservations out of order accepted")
	}
}
