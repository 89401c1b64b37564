package format_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
)

func rewrapRecords(t *testing.T, n int) []format.KeyRecord {
	t.Helper()
	recs := make([]format.KeyRecord, n)
	for i := range recs {
		recs[i] = format.KeyRecord{Type: format.RecordDataKey, Bucket: keys.ID{7}, BucketName: "b", KeyVersion: 3,
			Object: keys.ID{0, byte(i + 1)}, Wrapped: keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit,
				KEKVersion: 3, Data: bytes.Repeat([]byte{byte(i)}, keys.WrappedLenHKDFGCMCommit)}, Created: uint64(i)}
	}
	return recs
}

func TestKeyBatchRoundTrip(t *testing.T) {
	recs := rewrapRecords(t, 5)
	b, err := format.MarshalKeyBatch(recs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := format.ParseJournal(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records back, want %d", len(got), len(recs))
	}
	for i := range recs {
		if got[i].Object != recs[i].Object || !bytes.Equal(got[i].Wrapped.Data, recs[i].Wrapped.Data) {
			t.Errorf("record %d differs", i)
		}
	}
	// Under 1 KiB per record, the bound keys rewrap is held to.
	if per := len(b) / len(recs); per > 300 {
		t.Errorf("%d bytes per record", per)
	}
	// A single record still parses as one.
	one, err := recs[0].Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := format.ParseJournal(one); err != nil || len(got) != 1 {
		t.Errorf("a single record: %d records, %v", len(got), err)
	}
}

func TestKeyBatchRules(t *testing.T) {
	// The positive control: the unbroken batch encodes.
	if _, err := format.MarshalKeyBatch(rewrapRecords(t, 3)); err != nil {
		t.Fatalf("control: %v", err)
	}
	for _, c := range []struct {
		name   string
		break_ func([]format.KeyRecord) []format.KeyRecord
	}{
		{"empty", func(r []format.KeyRecord) []format.KeyRecord { return nil }},
		{"out of order", func(r []format.KeyRecord) []format.KeyRecord { slices.Reverse(r); return r }},
		{"an object twice", func(r []format.KeyRecord) []format.KeyRecord { r[1].Object = r[0].Object; return r }},
		{"two key versions", func(r []format.KeyRecord) []format.KeyRecord {
			r[2].KeyVersion, r[2].Wrapped.KEKVersion = 4, 4
			return r
		}},
		{"two buckets", func(r []format.KeyRecord) []format.KeyRecord { r[1].Bucket = keys.ID{8}; return r }},
		{"a bucket key record", func(r []format.KeyRecord) []format.KeyRecord {
			r[0].Type, r[0].Object = format.RecordBucketKey, keys.ID{}
			return r
		}},
		{"wrapped under another version", func(r []format.KeyRecord) []format.KeyRecord { r[1].Wrapped.KEKVersion = 2; return r }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := format.MarshalKeyBatch(c.break_(rewrapRecords(t, 3))); !errors.Is(err, format.ErrCorrupt) {
				t.Errorf("encoded: %v", err)
			}
		})
	}
}

func TestParseJournalRefusesBadBatches(t *testing.T) {
	good, err := format.MarshalKeyBatch(rewrapRecords(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := format.ParseJournal(good); err != nil {
		t.Fatalf("control: %v", err)
	}
	for name, b := range map[string][]byte{
		"count above the records": func() []byte { c := bytes.Clone(good); c[4] = 4; return c }(),
		"count beyond the bytes":  func() []byte { c := bytes.Clone(good); c[1] = 0xff; return c }(),
		"zero count":              func() []byte { c := bytes.Clone(good); c[4] = 0; return c }(),
		"trailing byte":           append(bytes.Clone(good), 0),
		"cut short":               good[:len(good)-1],
	} {
		if _, err := format.ParseJournal(b); !errors.Is(err, format.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
