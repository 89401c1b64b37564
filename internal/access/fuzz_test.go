package access

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRecord: any bytes in an access record's place are refused or
// decoded into a record that passes its own checks and survives a round
// trip; nothing panics.
func FuzzDecodeRecord(f *testing.F) {
	good, err := json.Marshal(record{Format: recordFormat, Name: "backup server", Created: 1,
		Grants: []recordGrant{{Bucket: "*", Perms: uint8(Read)}, {Bucket: "photos", Perms: uint8(Read | Write | List)}}, Sealed: []byte{1, 2, 3}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"format":1,"name":"a","admin":true,"sealed":""}`))
	f.Add([]byte(`{"format":1,"name":"a","grants":[{"bucket":"b2","perms":16}]}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if r.Format != recordFormat || (!r.Admin && len(r.Grants) == 0) {
			t.Fatalf("accepted a record that fails its checks: %+v", r)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRecord(again); err != nil {
			t.Fatalf("a decoded record does not decode again: %v", err)
		}
	})
}

// FuzzParseGrant: the command line's BUCKET:PERMS never panics, and what
// it accepts prints back to itself.
func FuzzParseGrant(f *testing.F) {
	for _, s := range []string{"photos:rwld", "*:r", "drop:inbox", "x", "a:", ":r", "photos:rr", "Photos:r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGrant(s)
		if err != nil {
			return
		}
		g2, err := ParseGrant(g.String())
		if err != nil || g2 != g {
			t.Fatalf("%q parsed as %v, which prints as %q and parses as %v (%v)", s, g, g.String(), g2, err)
		}
	})
}
