package audit

import (
	"strings"
	"testing"
)

// TestLongTextIsClipped: an entry carrying text from outside too long for
// a line once escaped (a client's certificate name or a field name of
// 12,000 '<', six bytes each in JSON) is written, clipped and marked, and
// does not fail the entries appended with it. Control: an ordinary entry
// in the same append is written unchanged.
func TestLongTextIsClipped(t *testing.T) {
	l := newTestLog(t, 100)
	long := strings.Repeat("<", 12000)
	plain := Entry{Kind: KindObject, Actor: "cli", Op: "GetObject", Subject: "b/k", Status: "ok", Detail: "fine"}
	hostile := Entry{Kind: KindRefusal, Actor: long, Op: long, Subject: long, Status: long, Detail: long}
	if err := l.w.Append(plain, hostile); err != nil {
		t.Fatalf("append: %v", err)
	}
	es, err := readAll(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []Entry
	for _, e := range es {
		if e.Kind == KindObject || e.Kind == KindRefusal {
			got = append(got, e)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d entries written, want 2", len(got))
	}
	if g := got[0]; g.Actor != plain.Actor || g.Op != plain.Op || g.Subject != plain.Subject || g.Detail != plain.Detail {
		t.Errorf("control: the ordinary entry changed: %+v", g)
	}
	h := got[1]
	for name, v := range map[string]string{"actor": h.Actor, "op": h.Op, "subject": h.Subject, "status": h.Status, "detail": h.Detail} {
		if len(v) >= len(long) || !strings.HasSuffix(v, "…[12000 bytes]") {
			t.Errorf("%s: %d bytes, not clipped and marked", name, len(v))
		}
	}
}
