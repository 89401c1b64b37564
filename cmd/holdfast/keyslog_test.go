package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/posture"
)

// logOps reads the home's key-operation log, which must be intact, and
// returns its records.
func logOps(t *testing.T, c *cli) []oplog.Record {
	t.Helper()
	ch, err := oplog.Read(oplog.Path(c.home))
	if err != nil {
		t.Fatal(err)
	}
	return ch.Records
}

func opNames(recs []oplog.Record) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Op)
	}
	return strings.Join(s, " ")
}

// TestKeysLog: init, put, get, keys backup, keys passwd and keys rotate
// (root and bucket) each leave their record, in order, in a log that
// keys log --check finds intact and keys log lists; the file is private
// and holds neither passphrase nor any share's data.
func TestKeysLog(t *testing.T) {
	c := newCLI(t)
	const oldPass, newPass = "pw-for-verify-tests", "a-new-passphrase-for-the-log-test"
	var initOut struct{ Repository string }
	if err := json.Unmarshal([]byte(c.must("--json", "init")), &initOut); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(tree, n), []byte("object "+n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.must("put", "-r", tree, "photos")
	if out := c.must("cat", "photos/a"); out != "object a" {
		t.Fatalf("cat: %q", out)
	}
	shares := filepath.Join(dir, "shares")
	c.must("keys", "backup", "--shares", "3", "--threshold", "2", "--out", shares)
	t.Setenv(NewPassphraseEnv, newPass)
	c.must("keys", "passwd")
	t.Setenv("HOLDFAST_PASSPHRASE", newPass)
	c.must("keys", "rotate")
	c.must("keys", "rotate", "--bucket", "photos")

	out := c.must("keys", "log", "--check")
	if !regexp.MustCompile(`(?m)^5 +\S+ \S+ +passwd `).MatchString(out) ||
		!regexp.MustCompile(`\n[^\n]*keyops.log: intact, 7 record\(s\); head sha256 [0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("keys log --check: %q", out)
	}
	recs := logOps(t, c)
	if got, want := opNames(recs), "create unwrap-counts unwrap-counts backup passwd rotate rotate"; got != want {
		t.Fatalf("ops %q, want %q", got, want)
	}
	for _, r := range recs {
		if r.Repo != initOut.Repository || r.Source != "keyring" {
			t.Errorf("%s: repository %s, source %s; want %s, keyring", r.Op, r.Repo, r.Source, initOut.Repository)
		}
	}
	want := []string{
		`^store .*/store$`,
		`^root-unwraps=0 bucket-key-cache-hits=[1-9]\d*$`, // put -r: the new bucket key stays in the cache
		`^root-unwraps=1 bucket-key-cache-hits=0$`,        // cat: one unwrap
		`^3 shares, threshold 2, set [0-9a-f]{16}$`,
		`^$`,
		`^root key v2 primary; older versions decrypt only$`,
		`^bucket "photos" key v2 primary, under root key v2$`,
	}
	for i, r := range recs {
		if !regexp.MustCompile(want[i]).MatchString(r.Detail) {
			t.Errorf("%s: detail %q, want %s", r.Op, r.Detail, want[i])
		}
	}
	if v := recs[5].Versions; len(v) != 1 || v[0] != 2 {
		t.Errorf("root rotation: versions %v, want [2]", v)
	}

	// The table and the records as stored.
	table := c.must("keys", "log")
	for _, w := range []string{"SEQ", "create", "backup", "passwd", "rotate", "unwrap-counts", "root-unwraps=1", `bucket "photos" key v2`, initOut.Repository[:8] + "…"} {
		if !strings.Contains(table, w) {
			t.Errorf("keys log lacks %q:\n%s", w, table)
		}
	}
	var js []oplog.Record
	if err := json.Unmarshal([]byte(c.must("--json", "keys", "log")), &js); err != nil || len(js) != 7 || js[6].Seq != 7 || js[6].Prev != recs[6].Prev {
		t.Fatalf("keys log --json: %d records, %v", len(js), err)
	}

	// Nothing secret in the file: neither passphrase, nor any share's data
	// (whole, or any 16 digits of it), which the same search finds in the
	// share's own file (positive control).
	logBytes, err := os.ReadFile(oplog.Path(c.home))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(oplog.Path(c.home))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode: %v, %v", fi.Mode(), err)
	}
	secrets := []string{oldPass, newPass}
	ents, err := os.ReadDir(shares)
	if err != nil || len(ents) != 3 {
		t.Fatalf("shares: %d, %v", len(ents), err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(shares, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		data := shareData(t, b)
		secrets = append(secrets, data)
		for i := 0; i+16 <= len(data); i += 16 {
			secrets = append(secrets, data[i:i+16])
		}
		if !bytes.Contains(b, []byte(data[:8])) {
			t.Fatal("the share's data was not found in its own file")
		}
	}
	for _, s := range secrets {
		if bytes.Contains(logBytes, []byte(s)) {
			t.Errorf("the key-operation log holds a secret: %q", s)
		}
	}
}

// shareData returns a share file's data digits, without spaces.
func shareData(t *testing.T, b []byte) string {
	t.Helper()
	_, after, ok := strings.Cut(string(b), "data:\n")
	if !ok {
		t.Fatal("no data in the share file")
	}
	var d strings.Builder
	for _, l := range strings.Split(after, "\n") {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		d.WriteString(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
	}
	if d.Len() < 64 {
		t.Fatalf("share data %q", d.String())
	}
	return d.String()
}

// TestKeysLogCheckBroken: keys log --check passes on the untouched log
// and fails with exit 4, naming the line, once an earlier line is edited;
// keys log lists the records before the break. A home with no log is
// exit 3.
func TestKeysLogCheckBroken(t *testing.T) {
	c := newCLI(t)
	c.must("init")
	c.must("keys", "rotate")
	c.must("keys", "rotate")
	c.must("keys", "log", "--check")
	p := oplog.Path(c.home)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(b, []byte("root key v2 primary"), []byte("root key v9 primary"), 1)
	if bytes.Equal(edited, b) {
		t.Fatal("nothing edited")
	}
	if err := os.WriteFile(p, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := c.run("keys", "log", "--check")
	if code != exitDamaged || !strings.Contains(errs, "broken at line 3: prev is not the SHA-256 of line 2") ||
		!strings.Contains(out, "root key v9") || strings.Contains(out, "root key v3") || strings.Contains(out, "intact") {
		t.Fatalf("--check on an edited log: exit %d\n%s%s", code, out, errs)
	}
	var j struct {
		Intact     bool `json:"intact"`
		BrokenLine int  `json:"broken_line"`
		Records    []oplog.Record
	}
	code, out, _ = c.run("--json", "keys", "log", "--check")
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != exitDamaged || j.Intact || j.BrokenLine != 3 || len(j.Records) != 2 {
		t.Fatalf("--json --check on an edited log: exit %d, %+v, %v", code, j, err)
	}

	if code, _, errs := c.run("--home", t.TempDir(), "keys", "log"); code != exitNotFound || !strings.Contains(errs, "no key-operation log") {
		t.Fatalf("a home without a log: exit %d: %s", code, errs)
	}
}

// TestKeysLogUnwritable: a log that cannot take a record stops keys
// backup before it writes a share, and keys rotate before it rotates; a
// read that is done but cannot be recorded warns and exits 1. With the log
// back, the same commands work.
func TestKeysLogUnwritable(t *testing.T) {
	c := newCLI(t)
	c.must("init")
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("payload"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("put", f, "docs/f")
	p := oplog.Path(c.home)
	aside := p + ".aside"
	if err := os.Rename(p, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p, 0o700); err != nil { // where the log belongs, a directory
		t.Fatal(err)
	}
	shares := filepath.Join(t.TempDir(), "shares")
	code, _, errs := c.run("keys", "backup", "--shares", "3", "--threshold", "2", "--out", shares)
	if code != exitError || !strings.Contains(errs, "the key-operation log cannot take a record, so nothing was done") {
		t.Fatalf("backup with an unwritable log: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(shares); !os.IsNotExist(err) {
		t.Fatalf("backup with an unwritable log wrote shares: %v", err)
	}
	if code, _, errs := c.run("keys", "rotate"); code != exitError || !strings.Contains(errs, "nothing was done") {
		t.Fatalf("rotate with an unwritable log: exit %d: %s", code, errs)
	}
	code, out, errs := c.run("cat", "docs/f")
	if code != exitError || out != "payload" || !strings.Contains(errs, `holdfast: warning: the key-operation log did not record "unwrap-counts"`) {
		t.Fatalf("cat with an unwritable log: exit %d, %q: %s", code, out, errs)
	}

	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, p); err != nil {
		t.Fatal(err)
	}
	c.must("keys", "backup", "--shares", "3", "--threshold", "2", "--out", shares)
	c.must("keys", "rotate")
	if out := c.must("cat", "docs/f"); out != "payload" {
		t.Fatalf("cat: %q", out)
	}
	if got, want := opNames(logOps(t, c)), "create unwrap-counts backup rotate unwrap-counts"; got != want {
		t.Fatalf("ops %q, want %q", got, want)
	}
}

// TestKeysLogServe: serve records its key use when it stops: the sample
// checks it ran unwrapped a bucket key.
func TestKeysLogServe(t *testing.T) {
	c := newCLI(t)
	c.must("init")
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("payload"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("put", f, "docs/f")
	before := len(logOps(t, c))
	srv := startServe(t, serveFlags{addr: "127.0.0.1:0", opsAddr: "127.0.0.1:0", insecureHTTP: true, region: "us-east-1", maxConns: 4, maxReqs: 4,
		logFormat: "text", logLevel: "error", sampleEvery: 20 * time.Millisecond, sampleCount: 4, postureEvery: posture.DefaultInterval})
	// Until the sampler has checked an object (so it unwrapped the
	// bucket key), by its metric.
	if srv.Ops == "" {
		t.Fatalf("serve printed no ops address:\n%s", srv.out.String())
	}
	srv.waitFor("the sampler to check an object", func() bool { return sampled(t, srv.Ops) })
	srv.stop()
	recs := logOps(t, c)
	if len(recs) != before+1 || recs[before].Op != "unwrap-counts" || !strings.HasPrefix(recs[before].Detail, "root-unwraps=1 ") {
		t.Fatalf("after serve: %q, last detail %q", opNames(recs), recs[len(recs)-1].Detail)
	}
}

// sampled reports whether the gateway's sampler has checked an object
// (its metric on the ops address).
func sampled(t *testing.T, ops string) bool {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return regexp.MustCompile(`(?m)^holdfast_gateway_sample_checks_total\{status="ok"\} [1-9]`).Match(b)
}
