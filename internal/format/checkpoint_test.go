package format_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
)

var checkpointLine = []byte(`{"seq":7,"time":"2026-11-27T12:00:00Z","kind":"checkpoint","op":"checkpoint","prev":"00","mac":"11"}`)

func TestAuditCheckpointRoundTrip(t *testing.T) {
	c := format.AuditCheckpoint{Repo: keys.ID{1, 2, 3}, Line: checkpointLine}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// version, repo id, u16 length, the line: nothing else.
	if want := 1 + 16 + 2 + len(checkpointLine); len(b) != want || b[0] != 1 || int(b[17])<<8|int(b[18]) != len(checkpointLine) {
		t.Fatalf("encoded %d bytes (% x…), want %d", len(b), b[:19], want)
	}
	got, err := format.ParseAuditCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Repo != c.Repo || !bytes.Equal(got.Line, c.Line) {
		t.Fatalf("parsed %+v", got)
	}
	// The longest line allowed encodes and parses.
	long := format.AuditCheckpoint{Repo: c.Repo, Line: bytes.Repeat([]byte{'x'}, format.MaxCheckpointLine)}
	lb, err := long.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := format.ParseAuditCheckpoint(lb); err != nil {
		t.Fatal(err)
	}
}

func TestAuditCheckpointRules(t *testing.T) {
	good, err := format.AuditCheckpoint{Repo: keys.ID{9}, Line: checkpointLine}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := format.ParseAuditCheckpoint(good); err != nil {
		t.Fatalf("control: %v", err)
	}
	withLine := func(line []byte) []byte {
		b := append([]byte{1}, make([]byte, 16)...)
		b = append(b, byte(len(line)>>8), byte(len(line)))
		return append(b, line...)
	}
	if _, err := format.ParseAuditCheckpoint(withLine(checkpointLine)); err != nil {
		t.Fatalf("control, hand-made: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":               nil,
		"version 0":           func() []byte { c := bytes.Clone(good); c[0] = 0; return c }(),
		"version 2":           func() []byte { c := bytes.Clone(good); c[0] = 2; return c }(),
		"trailing byte":       append(bytes.Clone(good), 0),
		"cut short":           good[:len(good)-1],
		"no line":             good[:17],
		"length beyond":       func() []byte { c := bytes.Clone(good); c[18]++; return c }(),
		"empty line":          withLine(nil),
		"a newline":           withLine(append(bytes.Clone(checkpointLine), '\n')),
		"two lines":           withLine([]byte("{}\n{}")),
		"longer than allowed": withLine(bytes.Repeat([]byte{'x'}, format.MaxCheckpointLine+1)),
	} {
		if _, err := format.ParseAuditCheckpoint(b); !errors.Is(err, format.ErrCorrupt) || format.LayerOf(err) != format.LayerManifest {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, line := range map[string][]byte{"empty": nil, "newline": []byte("a\nb"),
		"too long": bytes.Repeat([]byte{'x'}, format.MaxCheckpointLine+1)} {
		if _, err := (format.AuditCheckpoint{Line: line}).Marshal(); !errors.Is(err, format.ErrCorrupt) {
			t.Errorf("marshal %s: %v", name, err)
		}
	}
}

// A manifest of kind 5 is a system object like kinds 2-4; kind 6 is unknown.
func TestManifestKindCheckpoint(t *testing.T) {
	m := format.Manifest{Kind: format.KindCheckpoint, ObjectVersion: 1, Segments: []format.Segment{{Len: 10}}, Length: 10}
	b, err := m.Marshal()
	if err != nil {
		t.Fatalf("kind 5: %v", err)
	}
	if _, err := format.ParseManifest(b); err != nil {
		t.Fatalf("kind 5: %v", err)
	}
	named := m
	named.BucketName = "b"
	if _, err := named.Marshal(); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("kind 5 with a bucket name: %v", err)
	}
	b[1] = 6
	if _, err := format.ParseManifest(b); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("kind 6: %v", err)
	}
	if got := format.KindCheckpoint.String(); got != "audit checkpoint" {
		t.Errorf("String: %q", got)
	}
}
