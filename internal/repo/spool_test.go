package repo

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	fp "github.com/holdfast/holdfast/internal/testutil/faultproxy"
)

// TestPartSentAgainFromSpool: a part whose upload to S3 is lost after the
// provider read all of it (the connection reset instead of the answer)
// is sent again from what the spool kept — in memory while spoolMemory
// has room, in a spool file when it has none — and the completed object
// reads back byte-exact. While the part goes up, the memory case holds
// the part's bytes of the budget and no spool file, the file case one
// spool file and no budget; afterwards both hold nothing. The control is
// the same part with no fault: one request, no resend.
func TestPartSentAgainFromSpool(t *testing.T) {
	for _, tc := range []struct {
		name      string
		budget    int64
		fault     bool
		wantFiles int
	}{
		{"memory", 64 << 20, true, 0},
		{"file", 0, true, 1},
		{"memory, no fault (control)", 64 << 20, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := spoolMemory
			spoolMemory = newPartMemory(tc.budget)
			t.Cleanup(func() { spoolMemory = old })

			ctx := context.Background()
			srv := startS3(t, "spool")
			var parts atomic.Int32
			var files, held atomic.Int64
			var home string
			tmp := func() int {
				ents, _ := os.ReadDir(filepath.Join(home, spoolDirName, spoolTmpName))
				return len(ents)
			}
			isPart := func(r *http.Request) bool { return r.Method == http.MethodPut && r.URL.Query().Has("partNumber") }
			sched := fp.Schedule{Rate: 1, Mix: []fp.Kind{fp.ResetAfter}, Match: isPart, Limit: 1}
			if !tc.fault {
				sched = fp.Schedule{}
			}
			p, err := fp.Start(fp.Options{Upstream: srv.Endpoint, CAFile: srv.CAFile, StallFor: 5 * time.Second, Schedule: sched,
				Observe: func(r *http.Request) {
					if isPart(r) && parts.Add(1) == 1 {
						files.Store(int64(tmp()))
						held.Store(spoolMemory.inUse())
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			home = filepath.Join(t.TempDir(), "home")
			r, err := Init(ctx, InitOptions{Home: home, Passphrase: pass, KDF: keyring.Calibrate(0), S3: &S3Config{
				Bucket: "spool", Prefix: "vault/", Endpoint: p.URL, PathStyle: true, AllowHTTP: true,
				MaxBackoff: Duration(10 * time.Millisecond), Timeout: Duration(20 * time.Second)}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			if _, err := r.CreateBucket(ctx, "bkt"); err != nil {
				t.Fatal(err)
			}
			id, err := r.CreateUpload(ctx, "bkt", "obj", PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p1, p2 := body(1, 6<<20), body(2, 1000)
			pi1, err := r.PutPart(ctx, "bkt", "obj", id, 1, bytes.NewReader(p1), int64(len(p1)))
			if err != nil {
				t.Fatalf("part 1: %v", err)
			}
			pi2, err := r.PutPart(ctx, "bkt", "obj", id, 2, bytes.NewReader(p2), int64(len(p2)))
			if err != nil {
				t.Fatalf("part 2: %v", err)
			}
			wantSends, wantFaults := int32(1), 0
			if tc.fault {
				wantSends, wantFaults = 2, 1
			}
			if got := parts.Load(); got != wantSends || p.Faults().Total() != wantFaults {
				t.Fatalf("part 1 went up %d times with %v faults; want %d and %d", got, p.Faults(), wantSends, wantFaults)
			}
			if f, h := files.Load(), held.Load(); f != int64(tc.wantFiles) || (tc.wantFiles == 0) != (h >= int64(len(p1))) {
				t.Fatalf("while part 1 went up: %d spool files, %d bytes of spool memory", f, h)
			}
			if _, err := r.CompleteUpload(ctx, "bkt", "obj", id, []CompletedPart{{Number: 1, ETag: pi1.ETag}, {Number: 2, ETag: pi2.ETag}}, CompleteOptions{}); err != nil {
				t.Fatalf("completion: %v", err)
			}
			rd, err := r.OpenObject(ctx, "bkt", "obj")
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			_, err = rd.WriteTo(ctx, &got)
			rd.Close()
			if err != nil || !bytes.Equal(got.Bytes(), append(append([]byte{}, p1...), p2...)) {
				t.Fatalf("read back: %d bytes, %v", got.Len(), err)
			}
			if n, u := tmp(), spoolMemory.inUse(); n != 0 || u != 0 {
				t.Fatalf("afterwards: %d spool files, %d bytes of spool memory", n, u)
			}
		})
	}
}

// TestPartMemory: buffers busy and idle together stay within the limit;
// a buffer given back is reused for a part it fits, and freed to make
// room for a larger one; a part the limit has no room for gets none; once
// no part is busy, nothing is held.
func TestPartMemory(t *testing.T) {
	m := newPartMemory(100)
	a, b := m.take(40), m.take(40)
	if a == nil || b == nil || m.inUse() != 80 {
		t.Fatalf("two parts within the limit: %v %v, %d in use", a != nil, b != nil, m.inUse())
	}
	if c := m.take(30); c != nil {
		t.Fatal("a part beyond the limit got memory")
	}
	if c := m.take(20); c == nil {
		t.Fatal("a part within what is left got none") // the control of the refusal above
	} else {
		m.give(c)
	}
	*a = append(*a, "kept"...)
	m.give(a)
	if c := m.take(40); c != a || len(*c) != 0 {
		t.Fatal("a part of the same size did not reuse the idle buffer, emptied")
	} else {
		m.give(c)
	}
	// b busy; idle: 20 and 40. A part of 60 needs both freed.
	d := m.take(60)
	if d == nil || m.held != 100 || len(m.idle) != 0 {
		t.Fatalf("a larger part: %v, %d held, %d idle", d != nil, m.held, len(m.idle))
	}
	if e := m.take(1); e != nil {
		t.Fatalf("held %d with a part of 1 more, over the limit", m.held)
	}
	m.give(d)
	if m.held != 100 || len(m.idle) != 1 {
		t.Fatalf("with a part still busy: %d held, %d idle", m.held, len(m.idle))
	}
	m.give(b)
	if m.inUse() != 0 || m.held != 0 || len(m.idle) != 0 {
		t.Fatalf("after every buffer was given back: %d in use, %d held, %d idle", m.inUse(), m.held, len(m.idle))
	}
}
