package keyserver_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/secret"
)

// auditEntries returns the entries of dir's audit log of kind (all if
// ""), the hash chain checked.
func auditEntries(t *testing.T, dir string, kind audit.Kind) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	err := audit.Scan(keyserver.Dir(dir).AuditDir(), func(e audit.Entry) error {
		if kind == "" || e.Kind == kind {
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the audit log: %v", err)
	}
	return out
}

// lastAudit is the newest entry of kind (zero if none).
func lastAudit(t *testing.T, dir string, kind audit.Kind) audit.Entry {
	t.Helper()
	es := auditEntries(t, dir, kind)
	if len(es) == 0 {
		return audit.Entry{}
	}
	return es[len(es)-1]
}

// waitAudit waits for an entry of kind matching ok (handshake refusals
// are written by the summary goroutine, off the handshake).
func waitAudit(t *testing.T, dir string, kind audit.Kind, ok func(audit.Entry) bool) audit.Entry {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Second); ; <-tick.C {
		for _, e := range auditEntries(t, dir, kind) {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s entry as wanted in the audit log: %+v", kind, auditEntries(t, dir, kind))
		}
	}
}

// verifyAudit verifies dir's audit log with K_0 opened by its keyring,
// as 'holdfast audit verify --dir' does.
func verifyAudit(t *testing.T, dir string, copies ...string) (audit.Report, error) {
	t.Helper()
	kr, err := keyring.Open(filepath.Join(dir, keyserver.KeyringFile), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	return audit.VerifyKeysWith(context.Background(), audit.Locate(dir, ""), keyserver.AuditKeys(kr), kr.Repo(), audit.VerifyOptions{Copies: copies})
}

// TestAuditKeyOps: every kind of record the key server writes goes to
// the audit log too — init, enroll, a wrap, a release (subject: the
// bucket id), a request refusal (status: its reason) and a handshake
// refusal (actor: the peer) — and the log verifies.
func TestAuditKeyOps(t *testing.T) {
	dir, url := start(t)
	c := enroll(t, dir, "gw", keyserver.Grant{Buckets: []string{"01000000000000000000000000000000"}, Ops: []string{"wrap", "unwrap"}})
	s, err := open(t, url, c)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := secret.New()
	defer k.Wipe()
	ctx := context.Background()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.Repo(), Bucket: keys.ID{1}, KEKVersion: 1, KeyVersion: 1}
	w, err := s.Wrap(ctx, 1, ad, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unwrap(ctx, w, ad); err != nil {
		t.Fatalf("control: %v", err)
	}
	bad := ad
	bad.Bucket = keys.ID{2}
	if _, err := s.Wrap(ctx, 1, bad, k); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("another bucket: %v", err)
	}
	ops := map[string]audit.Entry{}
	for _, e := range auditEntries(t, dir, "") {
		ops[e.Op+"/"+string(e.Kind)] = e
	}
	for _, want := range []string{"genesis/checkpoint", "keyserver-init/key", "enroll/key", "keyserver-start/key", "wrap/key", "release/key", "wrap/refusal"} {
		if _, ok := ops[want]; !ok {
			t.Errorf("no %s entry in the audit log: %v", want, ops)
		}
	}
	if e := ops["release/key"]; e.Actor != "gw" || e.Subject != "01000000000000000000000000000000" || e.Status != "ok" || !strings.Contains(e.Detail, "root unwrap") {
		t.Errorf("release entry: %+v", e)
	}
	if e := ops["wrap/refusal"]; e.Actor != "gw" || e.Status != "not-authorized" || !strings.Contains(e.Detail, "may not use bucket 02") {
		t.Errorf("refusal entry: %+v", e)
	}
	// A handshake without a certificate: the peer is the actor.
	rc := newRawClient(t, url, c)
	rc.hc.Transport.(*http.Transport).TLSClientConfig.Certificates = nil
	if _, err := rc.hc.Get(url + "/v1/versions"); err == nil {
		t.Fatal("a connection without a certificate was answered")
	}
	e := waitAudit(t, dir, audit.KindRefusal, func(e audit.Entry) bool { return e.Status == "no-certificate" })
	if e.Actor != "127.0.0.1" || e.Op != "handshake" {
		t.Errorf("handshake refusal entry: %+v", e)
	}
	if rep, err := verifyAudit(t, dir); err != nil {
		t.Fatalf("audit verify: %v", err)
	} else if rep.Entries < 8 {
		t.Fatalf("audit verify checked %d entries", rep.Entries)
	}
}

// TestAuditCheckpointHeader: every answer carries the newest checkpoint
// line, byte for byte the log's; a client keeps each new one once in its
// file, which stays identical to log lines; and a server without an
// audit log (the control) sends none.
func TestAuditCheckpointHeader(t *testing.T) {
	dir, url, srv := startWith(t, keyserver.Options{Audit: keyserver.AuditOptions{Every: 2}})
	c := enroll(t, dir, "cli", allGrant)
	cpFile := filepath.Join(t.TempDir(), remote.CheckpointFileName)
	c.CheckpointFile = cpFile
	s, err := open(t, url, c)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := secret.New()
	defer k.Wipe()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.Repo(), Bucket: keys.ID{7}, KEKVersion: 1, KeyVersion: 1}
	for range 6 {
		if _, err := s.Wrap(context.Background(), 1, ad, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Unwrap(context.Background(), keys.Wrapped{Source: keys.SourceKeyServer, KEKVersion: 1}, ad); err == nil {
		t.Fatal("a record of nothing opened")
	}
	logLines := map[string]bool{}
	b, _ := os.ReadFile(filepath.Join(keyserver.Dir(dir).AuditDir(), audit.LogName))
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		logLines[l] = true
	}
	got, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatalf("the client kept no checkpoint: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) < 3 {
		t.Fatalf("the client kept %d checkpoints after 7 requests at one every 2 entries: %q", len(lines), got)
	}
	var prev uint64
	for i, l := range lines {
		seq, ok := audit.ParseCheckpoint([]byte(l))
		if !ok || !logLines[l] || (i > 0 && seq <= prev) {
			t.Fatalf("client copy line %d is not a new checkpoint line of the log: %q", i+1, l)
		}
		prev = seq
	}
	if fi, _ := os.Stat(cpFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the client copy's mode is %v", fi.Mode())
	}
	if h := string(srv.AuditCheckpoint()); !logLines[h] || !strings.Contains(h, `"kind":"checkpoint"`) {
		t.Fatalf("the server's newest checkpoint is not a log line: %q", h)
	}
	// A second process of the same home (a new source) adds nothing for
	// a checkpoint the file holds.
	s2, err := open(t, url, c)
	if err != nil {
		t.Fatal(err)
	}
	s2.Versions()
	if again, _ := os.ReadFile(cpFile); len(again) < len(got) {
		t.Fatal("the client copy shrank")
	} else if n := strings.Count(string(again), "\n"); n > len(lines)+1 {
		t.Fatalf("a second source appended %d lines for what the server had", n-len(lines))
	}
	if rep, err := verifyAudit(t, dir, cpFile); err != nil || len(rep.Copies) != 1 || rep.Copies[0].Checkpoints != len(lines) {
		t.Fatalf("verify with the client copy: %v %+v", err, rep.Copies)
	}

	// The control: a state directory whose audit log was never made.
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	plain := filepath.Join(t.TempDir(), "ks")
	if _, err := keyserver.Init(plain, keyserver.InitOptions{Hosts: []string{"127.0.0.1"}, Passphrase: pass, KDF: keyring.Calibrate(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(keyserver.Dir(plain).AuditDir())
	os.Remove(audit.DefaultCheckpoints(plain))
	ps, err := keyserver.Open(plain, pass, keyserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if cp := ps.AuditCheckpoint(); cp != nil {
		t.Fatalf("a server without an audit log hands out %q", cp)
	}
}

// TestAuditRateAnomaly: a client whose releases pass factor × floor in a
// window gets an anomaly entry (and a warning metric), and with a
// cut-off its next release is refused (reason rate, in both logs) until
// a reload; the control client, at the same clock and below the limit,
// gets neither. The clock is fixed: every release falls in one window.
func TestAuditRateAnomaly(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir, url, srv := startWith(t, keyserver.Options{Audit: keyserver.AuditOptions{
		Rate: audit.RateConfig{Window: time.Minute, Floor: 2, Factor: 2, CutOff: time.Hour, Now: clock}}})
	greedy, err := open(t, url, enroll(t, dir, "greedy", allGrant))
	if err != nil {
		t.Fatal(err)
	}
	steady, err := open(t, url, enroll(t, dir, "steady", allGrant))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := secret.New()
	defer k.Wipe()
	ctx := context.Background()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: greedy.Repo(), Bucket: keys.ID{8}, KEKVersion: 1, KeyVersion: 1}
	w, err := greedy.Wrap(ctx, 1, ad, k)
	if err != nil {
		t.Fatal(err)
	}
	// The limit is 2 × 2 = 4 releases a window: the control stays at it.
	for i := range 4 {
		if _, err := steady.Unwrap(ctx, w, ad); err != nil {
			t.Fatalf("control release %d: %v", i+1, err)
		}
	}
	for i := range 5 { // the fifth passes the limit: released, and an anomaly
		if _, err := greedy.Unwrap(ctx, w, ad); err != nil {
			t.Fatalf("release %d: %v", i+1, err)
		}
	}
	// The anomaly entry is queued for the audit writer (the release is
	// answered first): wait for it, bounded.
	an := auditEntries(t, dir, audit.KindAnomaly)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(30 * time.Second); len(an) == 0 && time.Now().Before(deadline); <-tick.C {
		an = auditEntries(t, dir, audit.KindAnomaly)
	}
	if len(an) != 1 || an[0].Actor != "greedy" || an[0].Op != "rate" || !strings.Contains(an[0].Detail, "5 releases") {
		t.Fatalf("anomaly entries: %+v", an)
	}
	if _, err := greedy.Unwrap(ctx, w, ad); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("a cut-off client's release: %v", err)
	}
	if e := lastAudit(t, dir, audit.KindRefusal); e.Actor != "greedy" || e.Status != "rate" || e.Op != "unwrap" {
		t.Fatalf("the rate refusal entry: %+v", e)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "rate: ") || !strings.Contains(d, `client "greedy"`) {
		t.Fatalf("the rate refusal in keyops.log: %q", d)
	}
	// The control: released at its limit, never flagged nor refused.
	for _, e := range append(auditEntries(t, dir, audit.KindRefusal), an...) {
		if e.Actor == "steady" {
			t.Fatalf("the control client was refused or flagged within its limit: %+v", e)
		}
	}
	rec := httptest.NewRecorder()
	srv.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "\nholdfast_keyserver_rate_anomalies_total 1\n") || strings.Contains(string(body), `holdfast_keyserver_rate_anomalies_total{`) {
		t.Fatalf("the anomaly metric (no per-client label): %s", grepLines(string(body), "rate_anomalies"))
	}
	// A reload lifts the cut-off (logged); the same release then passes.
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := greedy.Unwrap(ctx, w, ad); err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	if e := lastAudit(t, dir, audit.KindKey); e.Op != "release" {
		t.Fatalf("after the reload, the last key entry is %+v", e)
	}
	found := false
	for _, e := range auditEntries(t, dir, audit.KindKey) {
		found = found || (e.Op == "cut-off-lifted" && strings.Contains(e.Detail, "greedy"))
	}
	if !found {
		t.Fatal("the lifted cut-off is not in the audit log")
	}
	if _, err := verifyAudit(t, dir); err != nil {
		t.Fatal(err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
