package keyserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/keyserver/api"
)

// TestLongFieldNameRefusalRecorded: a client's request whose unknown field
// name is 12,000 '<' (six bytes each once escaped: a line too long for
// either log) is refused and recorded in keyops.log and the audit log,
// its text clipped. It used to be in neither, and to fail the audit batch
// written with it — other clients' key releases included. Control: a
// request with a short unknown field is refused and recorded the same way.
func TestLongFieldNameRefusalRecorded(t *testing.T) {
	dir, url := start(t)
	rc := newRawClient(t, url, enroll(t, dir, "probe", keyserver.Grant{Buckets: []string{"01000000000000000000000000000000"}, Ops: []string{"wrap"}}))
	for _, field := range []string{"surprise", strings.Repeat("<", 12000)} {
		before := len(records(t, dir, "refuse"))
		code, body := rc.call(http.MethodPost, api.PathWrap, []byte(`{"`+field+`":1}`))
		if code != http.StatusBadRequest {
			t.Fatalf("field of %d bytes: HTTP %d %.200s", len(field), code, body)
		}
		rs := records(t, dir, "refuse")
		if len(rs) != before+1 || !strings.Contains(rs[len(rs)-1], "unknown field") || len(rs[len(rs)-1]) > 4200 {
			t.Fatalf("field of %d bytes: keyops.log refusals %d -> %d, last %.120q", len(field), before, len(rs), rs[len(rs)-1])
		}
		short := field[:min(len(field), 8)]
		waitAudit(t, dir, audit.KindRefusal, func(e audit.Entry) bool {
			return e.Actor == "probe" && strings.Contains(e.Detail, "unknown field") && strings.Contains(e.Detail, short)
		})
	}
}

// TestCatalogHeadJumpRefused: a client allowed to report catalog heads
// cannot move the book to the end of the sequence range in one report
// (every open of the repository would then refuse its catalog as rolled
// back): the report is refused and logged under the client's name, and
// the book keeps its head. Control: an ordinary report advances it.
func TestCatalogHeadJumpRefused(t *testing.T) {
	dir, url := start(t)
	rc := newRawClient(t, url, enroll(t, dir, "gateway", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap"}}))
	if code, b := rc.call(http.MethodPost, api.PathCatalogHead, []byte(`{"has":true,"seq":5}`)); code != http.StatusOK {
		t.Fatalf("control: an ordinary report: %d %s", code, b)
	}
	code, b := rc.call(http.MethodPost, api.PathCatalogHead, []byte(`{"has":true,"seq":18446744073709551615}`))
	if code != http.StatusForbidden {
		t.Fatalf("a report of the last sequence: %d %s", code, b)
	}
	if code, b := rc.call(http.MethodGet, api.PathCatalogHead, nil); code != http.StatusOK || !strings.Contains(string(b), `"seq":5`) {
		t.Fatalf("the book after the refused report: %d %s", code, b)
	}
	rs := records(t, dir, "refuse")
	if len(rs) == 0 || !strings.Contains(rs[len(rs)-1], "gateway") || !strings.Contains(rs[len(rs)-1], "catalog head jump") {
		t.Fatalf("the refusal is not logged under the client's name: %q", rs)
	}
}
