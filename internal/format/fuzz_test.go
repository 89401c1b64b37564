package format_test

import (
	"bytes"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/vectors"
)

// Every parser is fuzzed from the committed vectors, and the seeds must be
// there: a fuzz target without seeds fails.

func seeds(f *testing.F) *vectors.Seeds {
	s, err := vectors.LoadSeeds("../../testdata/vectors/object", f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	return s
}

func need(f *testing.F, what string, n int) {
	if n == 0 {
		f.Fatalf("no %s seeds in the vectors", what)
	}
}

func FuzzParseHeader(f *testing.F) {
	s := seeds(f)
	need(f, "header", len(s.Headers))
	for _, b := range s.Headers {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := format.ParseHeader(b)
		if err != nil {
			return
		}
		out, err := h.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("accepted header does not re-encode to itself: %v", err)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	s := seeds(f)
	need(f, "manifest", len(s.Manifests))
	for _, b := range s.Manifests {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := format.ParseManifest(b)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil || !bytes.Equal(out, b) || m.PlainLen() != len(b) {
			t.Fatalf("accepted manifest does not re-encode to itself: %v", err)
		}
	})
}

func FuzzParseKeyRecord(f *testing.F) {
	s := seeds(f)
	need(f, "key record", len(s.Records))
	for _, b := range s.Records {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A journal entry: one record, or a batch of them.
		recs, err := format.ParseJournal(b)
		if err != nil {
			return
		}
		var out []byte
		if len(b) > 0 && b[0] == 2 {
			batch := make([]format.KeyRecord, len(recs))
			for i, r := range recs {
				batch[i] = *r
			}
			out, err = format.MarshalKeyBatch(batch)
		} else {
			out, err = recs[0].Marshal()
		}
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("accepted journal entry does not re-encode to itself: %v", err)
		}
	})
}

func FuzzParseMarker(f *testing.F) {
	s := seeds(f)
	need(f, "marker", len(s.Markers))
	for _, b := range s.Markers {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := format.ParseMarker(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Marshal(), b) {
			t.Fatal("accepted marker does not re-encode to itself")
		}
	})
}

func FuzzParseFooter(f *testing.F) {
	s := seeds(f)
	need(f, "footer", len(s.Footers))
	for _, b := range s.Footers {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ft, err := format.ParseFooter(b)
		if err != nil {
			return
		}
		if !bytes.Equal(ft.Marshal(), b) {
			t.Fatal("accepted footer does not re-encode to itself")
		}
	})
}

func FuzzParseCatalogBackup(f *testing.F) {
	s := seeds(f)
	need(f, "catalog backup", len(s.Backups))
	for _, b := range s.Backups {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := format.ParseCatalogBackup(b)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("accepted catalog backup does not re-encode to itself: %v", err)
		}
		// The head parser and the streaming encoder agree with the whole.
		h, err := format.ParseCatalogBackupHead(b)
		if err != nil || h.Repo != c.Repo || h.Sequence != c.Sequence || h.Created != c.Created || h.Previous != c.Previous {
			t.Fatalf("head of an accepted catalog backup: %+v %v", h, err)
		}
		if c.Version != 2 {
			return // the streaming encoder writes version 2 only
		}
		head := *c
		head.Objects, head.System, head.Reservations = nil, nil, nil
		var buf bytes.Buffer
		enc, err := format.NewBackupEncoder(&buf, &head, uint64(len(c.Objects)))
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
		if err != nil || !bytes.Equal(buf.Bytes(), b) || sum != format.BackupHash(b) {
			t.Fatalf("the streaming encoder does not reproduce an accepted catalog backup: %v", err)
		}
	})
}

func FuzzParseAuditCheckpoint(f *testing.F) {
	s := seeds(f)
	need(f, "audit checkpoint", len(s.Checkpoints))
	for _, b := range s.Checkpoints {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := format.ParseAuditCheckpoint(b)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("accepted audit checkpoint does not re-encode to itself: %v", err)
		}
	})
}
