package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/secret"
)

// ksEnv runs real holdfast processes (the test binary, as TestMain
// dispatches "holdfast") for the key server tests.
type ksEnv struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func newKSEnv(t *testing.T) *ksEnv {
	dir := t.TempDir()
	bin := filepath.Join(dir, "holdfast")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(),
		"HOLDFAST_PASSPHRASE=key server test passphrase", "HOLDFAST_HOME=" + filepath.Join(dir, "home")}
	return &ksEnv{t: t, bin: bin, dir: dir, env: env}
}

func (k *ksEnv) run(extraEnv []string, args ...string) (int, string, string) {
	k.t.Helper()
	cmd := exec.Command(k.bin, args...)
	var out, errb strings.Builder
	cmd.Env, cmd.Stdout, cmd.Stderr = append(append([]string(nil), k.env...), extraEnv...), &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		k.t.Fatalf("holdfast %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func (k *ksEnv) ok(args ...string) string {
	k.t.Helper()
	code, out, errs := k.run(nil, args...)
	if code != 0 {
		k.t.Fatalf("holdfast %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

// ksProc is a running `holdfast keyserver serve`.
type ksProc struct {
	cmd    *exec.Cmd
	url    string
	ops    string
	stderr *bytes.Buffer
	mu     *sync.Mutex
}

func (k *ksEnv) serve(stateDir, listen string, extra ...string) *ksProc {
	k.t.Helper()
	cmd := exec.Command(k.bin, append([]string{"keyserver", "serve", "--dir", stateDir, "--listen", listen, "--ops-listen", "127.0.0.1:0"}, extra...)...)
	cmd.Env = k.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		k.t.Fatal(err)
	}
	p := &ksProc{cmd: cmd, stderr: &bytes.Buffer{}, mu: &sync.Mutex{}}
	cmd.Stderr = lockedWriter{p.mu, p.stderr}
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		if m := regexp.MustCompile(`^key server (https://\S+)`).FindStringSubmatch(l); m != nil {
			p.url = m[1]
		}
		if m := regexp.MustCompile(`health and metrics: http://(\S+)/healthz`).FindStringSubmatch(l); m != nil {
			p.ops = m[1]
		}
		if strings.HasPrefix(l, "  stop with") {
			break
		}
	}
	go io.Copy(io.Discard, out)
	if p.url == "" {
		cmd.Process.Kill()
		cmd.Wait()
		k.t.Fatalf("keyserver serve printed no address; stderr:\n%s", p.stderr)
	}
	k.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func bundle(dir string) remote.Config {
	return remote.Config{CertFile: filepath.Join(dir, keyserver.BundleCert), KeyFile: filepath.Join(dir, keyserver.BundleKey),
		CAFile: filepath.Join(dir, keyserver.BundleCA), Timeout: 5 * time.Second, Attempts: 1, CacheTTL: -1}
}

func (p *ksProc) open(t *testing.T, dir string) (*remote.Source, error) {
	c := bundle(dir)
	c.URL = p.url
	return remote.Open(context.Background(), c)
}

// refusals returns the log's refusal records.
func refusals(t *testing.T, stateDir string) []string {
	t.Helper()
	return logged(t, stateDir, "refuse")
}

// logged returns the details of the log's records of op.
func logged(t *testing.T, stateDir, op string) []string {
	t.Helper()
	ch, err := oplog.Read(keyserver.Dir(stateDir).LogPath())
	if err != nil {
		t.Fatalf("reading the key server's log: %v", err)
	}
	var out []string
	for _, r := range ch.Records {
		if r.Op == op {
			out = append(out, r.Detail)
		}
	}
	return out
}

// waitUntil polls cond (another process's doing, which nothing signals)
// until it holds or the deadline passes; it reports whether it held.
func waitUntil(limit time.Duration, cond func() bool) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(limit); ; <-tick.C {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// wantRefusalLogged waits for one new refusal record (handshake
// refusals are written off the handshake path, at most once a minute per
// reason and peer; the first at once).
func wantRefusalLogged(t *testing.T, stateDir string, before int, reason string) int {
	t.Helper()
	var rs []string
	waitUntil(5*time.Second, func() bool { rs = refusals(t, stateDir); return len(rs) > before })
	if len(rs) != before+1 || !strings.HasPrefix(rs[len(rs)-1], reason+":") {
		t.Fatalf("want one new refusal %q in the log after %d, got %q", reason, before, rs)
	}
	return len(rs)
}

// metric returns the value of the series named exactly name on the
// server's /metrics.
func metric(t *testing.T, p *ksProc, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestKeyServer runs the key server as a real process on 127.0.0.1: a home
// joined to it puts and gets through the CLI; clients without a valid
// certificate, revoked, from another CA, or asking for a bucket outside
// their grant are refused, clearly and in the log, each beside a positive
// control; the server is killed under load and the clients recover.
func TestKeyServer(t *testing.T) {
	k := newKSEnv(t)
	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	cli := filepath.Join(k.dir, "cli")
	k.ok("keyserver", "enroll", "cli", "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", cli)
	for _, f := range []string{keyserver.BundleKey, keyserver.BundleCert, keyserver.BundleCA} {
		if fi, err := os.Stat(filepath.Join(cli, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("bundle file %s: %v %v", f, fi, err)
		}
	}
	p := k.serve(ks, "127.0.0.1:0")
	port := p.url[strings.LastIndex(p.url, ":")+1:]

	// A home whose root keys are the server's: put and get byte-exact.
	k.ok("keyserver", "join", "--url", p.url, "--client-dir", cli)
	if _, err := os.Stat(filepath.Join(k.dir, "home", "keyring")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a joined home holds a keyring file: %v", err)
	}
	data := make([]byte, 300_000)
	rand.Read(data)
	src := filepath.Join(k.dir, "data.bin")
	os.WriteFile(src, data, 0o600)
	k.ok("put", src, "bkt/first")
	got := filepath.Join(k.dir, "got.bin")
	k.ok("get", "bkt/first", got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, data) {
		t.Fatal("get did not return the bytes put")
	}
	bid := strings.TrimSpace(k.ok("keyserver", "bucket-id", "bkt"))

	t.Run("refusals", func(t *testing.T) { testKeyServerRefusals(t, k, p, ks, cli, bid) })
	t.Run("rollback", func(t *testing.T) { testKeyServerRollback(t, k, src, true) })
	t.Run("rollback-between-backups", func(t *testing.T) { testKeyServerRollback(t, k, src, false) })
	t.Run("restart", func(t *testing.T) { p = testKeyServerRestart(t, k, p, ks, port) })
	t.Run("audit-after-restart", func(t *testing.T) { testKeyServerAuditAfterRestart(t, k, ks) })
	t.Run("kill", func(t *testing.T) { testKeyServerKill(t, k, p, ks, port, data) })
}

// testKeyServerRollback: the host's owner snapshots the joined home (its
// catalog and, here, its store), the repository goes on (a write, and
// with backups a catalog backup, recorded on the key server), and the
// owner puts the snapshot back: the home is refused as rolled back (exit
// 7). Without backups it is the catalog head, recorded on the key server
// at every commit, that tells. The control: the home as it was before the
// snapshot was put back opens.
func testKeyServerRollback(t *testing.T, k *ksEnv, src string, backups bool) {
	home := filepath.Join(k.dir, "home")
	if backups {
		k.ok("backup")
	}
	snap := filepath.Join(k.dir, "snapshot")
	os.RemoveAll(snap)
	if err := os.CopyFS(snap, os.DirFS(home)); err != nil {
		t.Fatal(err)
	}
	obj := "bkt/after-snapshot"
	if !backups {
		obj = "bkt/after-snapshot-2"
	}
	k.ok("put", src, obj)
	if backups {
		k.ok("backup")
	}
	k.ok("ls", "bkt")
	current := filepath.Join(k.dir, "current")
	if err := os.Rename(home, current); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(snap, home); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := k.run(nil, "ls", "bkt")
	if code != exitRefused || !strings.Contains(stderr, "rolled back") || !strings.Contains(stderr, "put back to an older copy") {
		t.Fatalf("a rolled-back home: exit %d, %s", code, stderr)
	}
	if !backups && !strings.Contains(stderr, "records catalog commit") {
		t.Fatalf("a home rolled back between backups was refused, but not for its catalog head: %s", stderr)
	}
	// The control: the home as it was opens and lists the later object.
	if err := os.RemoveAll(home); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(current, home); err != nil {
		t.Fatal(err)
	}
	if out := k.ok("ls", "bkt"); !strings.Contains(out, obj[len("bkt/"):]) {
		t.Fatalf("the current home lists %q", out)
	}
}

func testKeyServerRefusals(t *testing.T, k *ksEnv, p *ksProc, ks, cli, bid string) {
	n := len(refusals(t, ks))

	// No certificate: the same TLS client, with and without one.
	caPEM, _ := os.ReadFile(filepath.Join(cli, keyserver.BundleCA))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(cli, keyserver.BundleCert), filepath.Join(cli, keyserver.BundleKey))
	if err != nil {
		t.Fatal(err)
	}
	get := func(certs []tls.Certificate) error {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS13}}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(p.url + "/v1/versions")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	if err := get([]tls.Certificate{cert}); err != nil {
		t.Fatalf("control with the certificate: %v", err)
	}
	if err := get(nil); err == nil || !strings.Contains(err.Error(), "remote error: tls") {
		t.Fatalf("without a certificate: want a TLS refusal, got %v", err)
	}
	n = wantRefusalLogged(t, ks, n, "no-certificate")

	// A certificate from another CA (another key server's), trusting
	// this server's CA: refused; the control is this CA's bundle.
	other := filepath.Join(k.dir, "ks-other")
	k.ok("keyserver", "init", "--dir", other, "--host", "127.0.0.1")
	foreign := filepath.Join(k.dir, "foreign")
	k.ok("keyserver", "enroll", "cli", "--dir", other, "--bucket", "*", "--out", foreign)
	fc := bundle(foreign)
	fc.URL, fc.CAFile = p.url, filepath.Join(cli, keyserver.BundleCA)
	if _, err := remote.Open(context.Background(), fc); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "refused this client's certificate") {
		t.Fatalf("a certificate of another CA: want ErrRefused, got %v", err)
	}
	n = wantRefusalLogged(t, ks, n, "bad-certificate")
	if s, err := p.open(t, cli); err != nil {
		t.Fatalf("control: %v", err)
	} else {
		s.Close()
	}

	// Revoked: the same bundle opens before the revocation, not after;
	// and a home using it gets a clear error (exit 5).
	victim := filepath.Join(k.dir, "victim")
	k.ok("keyserver", "enroll", "victim", "--dir", ks, "--bucket", "*", "--out", victim)
	s, err := p.open(t, victim)
	if err != nil {
		t.Fatalf("control before revocation: %v", err)
	}
	s.Close()
	k.ok("keyserver", "revoke", "victim", "--dir", ks)
	if _, err := p.open(t, victim); !errors.Is(err, remote.ErrRefused) {
		t.Fatalf("revoked: want ErrRefused, got %v", err)
	}
	n = wantRefusalLogged(t, ks, n, "revoked")
	vhome := filepath.Join(k.dir, "vhome")
	os.MkdirAll(vhome, 0o700)
	ksj, _ := os.ReadFile(filepath.Join(k.dir, "home", "keysource.json"))
	os.WriteFile(filepath.Join(vhome, "keysource.json"), bytes.ReplaceAll(ksj, []byte(cli), []byte(victim)), 0o600)
	for _, f := range []string{"config.json", "catalog.db"} {
		b, _ := os.ReadFile(filepath.Join(k.dir, "home", f))
		os.WriteFile(filepath.Join(vhome, f), b, 0o600)
	}
	code, _, errs := k.run([]string{"HOLDFAST_HOME=" + vhome}, "get", "bkt/first", filepath.Join(k.dir, "v.bin"))
	if code != exitKey || !strings.Contains(errs, "refused this client's certificate") {
		t.Fatalf("get with a revoked certificate: exit %d, %s", code, errs)
	}
	// The second revoked handshake from this peer within the minute is
	// counted now and summarised into the log later.
	if m := metric(t, p, `holdfast_keyserver_refusals_total{reason="revoked"}`); m != "2" {
		t.Fatalf("revoked refusals counted: %q, want 2", m)
	}
	if code, _, errs := k.run(nil, "get", "bkt/first", filepath.Join(k.dir, "c.bin")); code != 0 {
		t.Fatalf("control get: exit %d %s", code, errs)
	}

	// A bucket outside the grant: the same client wraps for its bucket,
	// and is refused for another.
	gw := filepath.Join(k.dir, "gw")
	k.ok("keyserver", "enroll", "gw", "--dir", ks, "--bucket", bid, "--out", gw)
	s, err = p.open(t, gw)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var id keys.ID
	if b, err := hex.DecodeString(bid); err != nil || copy(id[:], b) != len(id) {
		t.Fatalf("bucket-id printed %q", bid)
	}
	other2 := id
	other2[0] ^= 1
	dk, _ := secret.New()
	defer dk.Wipe()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.Repo(), Bucket: id, KEKVersion: s.Primary(), KeyVersion: 9}
	w, err := s.Wrap(context.Background(), s.Primary(), ad, dk)
	if err != nil {
		t.Fatalf("control: wrap for the granted bucket: %v", err)
	}
	if k2, err := s.Unwrap(context.Background(), w, ad); err != nil || !k2.Equal(dk) {
		t.Fatalf("control: unwrap for the granted bucket: %v", err)
	}
	ad.Bucket = other2
	if _, err := s.Wrap(context.Background(), s.Primary(), ad, dk); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "may not use bucket") {
		t.Fatalf("another bucket: want ErrRefused, got %v", err)
	}
	wantRefusalLogged(t, ks, n, "not-authorized")

	// Each refusal above is in the audit log too, with its reason, and
	// the log is intact.
	for _, want := range []struct{ status, actor, op string }{
		{"no-certificate", "127.0.0.1", "handshake"}, {"bad-certificate", "127.0.0.1", "handshake"},
		{"revoked", "127.0.0.1", "handshake"}, {"not-authorized", "gw", "wrap"},
	} {
		if !waitUntil(5*time.Second, func() bool {
			for _, e := range auditLog(t, k, ks) {
				if e.Kind == audit.KindRefusal && e.Status == want.status && e.Actor == want.actor && e.Op == want.op {
					return true
				}
			}
			return false
		}) {
			t.Errorf("no %s refusal of %s in the audit log", want.status, want.actor)
		}
	}
	k.ok("audit", "verify", "--dir", ks)
}

// testKeyServerKill kills the key server while puts and gets run: every
// client ends with success or a clear "cannot be reached" error (exit
// 5), and after a restart everything acknowledged reads back, verify is
// clean, and the same commands succeed.
// testKeyServerRestart: a graceful restart under load. A new server
// process starts on the same address while the old one serves (the port
// is shared, SO_REUSEPORT), then the old one gets SIGTERM mid-load: it
// stops taking connections and finishes what is in flight. Every client
// succeeds — no request is dropped — and the old process exits 0. (The
// control, which differs in the stop being abrupt and without a
// successor, is the kill test below: there clients fail.)
func testKeyServerRestart(t *testing.T, k *ksEnv, old *ksProc, ks, port string) *ksProc {
	const n = 6
	src := filepath.Join(k.dir, "restart.bin")
	big := make([]byte, 2<<20)
	rand.Read(big)
	os.WriteFile(src, big, 0o600)
	released := len(logged(t, ks, "release"))
	next := k.serve(ks, "127.0.0.1:"+port)
	res := make([]string, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if c, _, e := k.run(nil, "put", src, fmt.Sprintf("restart/k%d", i)); c != 0 {
				res[i] = fmt.Sprintf("put: exit %d: %s", c, e)
			}
		}()
		go func() {
			defer wg.Done()
			if c, _, e := k.run(nil, "get", "bkt/first", filepath.Join(k.dir, fmt.Sprintf("r%d.bin", i))); c != 0 {
				res[n+i] = fmt.Sprintf("get: exit %d: %s", c, e)
			}
		}()
	}
	if !waitUntil(30*time.Second, func() bool { return len(logged(t, ks, "release")) > released }) {
		t.Fatal("the load got no key from the servers in 30 s")
	}
	old.cmd.Process.Signal(syscall.SIGTERM)
	if err := old.cmd.Wait(); err != nil {
		t.Errorf("the old server did not stop cleanly on SIGTERM: %v", err)
	}
	wg.Wait()
	for i, r := range res {
		if r != "" {
			t.Errorf("client %d during a graceful restart: %s", i, r)
		}
	}
	for i := range n {
		got := filepath.Join(k.dir, fmt.Sprintf("restart%d.bin", i))
		k.ok("get", fmt.Sprintf("restart/k%d", i), got)
		if b, _ := os.ReadFile(got); !bytes.Equal(b, big) {
			t.Fatalf("restart/k%d reads back wrong bytes", i)
		}
	}
	return next
}

func testKeyServerKill(t *testing.T, k *ksEnv, p *ksProc, ks, port string, data []byte) {
	const n = 6
	src := filepath.Join(k.dir, "big.bin")
	big := make([]byte, 4<<20)
	rand.Read(big)
	os.WriteFile(src, big, 0o600)
	type result struct {
		code int
		errs string
	}
	res := make([]result, 2*n)
	var wg sync.WaitGroup
	released := len(logged(t, ks, "release"))
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c, _, e := k.run(nil, "put", src, fmt.Sprintf("lod/k%d", i))
			res[i] = result{c, e}
		}()
		go func() {
			defer wg.Done()
			c, _, e := k.run(nil, "get", "bkt/first", filepath.Join(k.dir, fmt.Sprintf("g%d.bin", i)))
			res[n+i] = result{c, e}
		}()
	}
	// Mid-load: once the server has released a key to this load.
	if !waitUntil(30*time.Second, func() bool { return len(logged(t, ks, "release")) > released }) {
		t.Fatal("the load got no key from the server in 30 s")
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	wg.Wait()
	failed := 0
	for i, r := range res {
		switch {
		case r.code == 0:
		case r.code == exitKey && strings.Contains(r.errs, "cannot be reached") && strings.Contains(r.errs, "key source unavailable"):
			failed++
		default:
			t.Errorf("client %d during the kill: exit %d, not a clear error:\n%s", i, r.code, r.errs)
		}
	}
	// While it is down: a clear error, exit 5.
	code, _, errs := k.run(nil, "get", "bkt/first", filepath.Join(k.dir, "down.bin"))
	if code != exitKey || !strings.Contains(errs, "cannot be reached") {
		t.Fatalf("get while the key server is down: exit %d\n%s", code, errs)
	}
	t.Logf("%d of %d clients failed during the kill", failed, 2*n)

	k.serve(ks, "127.0.0.1:"+port)
	k.ok("verify") // exit 0: clean
	for i := range n {
		got := filepath.Join(k.dir, fmt.Sprintf("after%d.bin", i))
		code, _, errs := k.run(nil, "get", fmt.Sprintf("lod/k%d", i), got)
		switch {
		case code == 0:
			if b, _ := os.ReadFile(got); !bytes.Equal(b, big) {
				t.Fatalf("load/k%d reads back wrong bytes", i)
			}
		case res[i].code == 0:
			t.Fatalf("load/k%d was acknowledged but does not read back: exit %d %s", i, code, errs)
		case code != exitNotFound:
			t.Fatalf("load/k%d (its put failed): exit %d %s", i, code, errs)
		}
		k.ok("put", src, fmt.Sprintf("lod/k%d", i)) // the same commands succeed now
	}
	got := filepath.Join(k.dir, "final.bin")
	k.ok("get", "bkt/first", got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, data) {
		t.Fatal("b/first changed")
	}
}

// TestKeyserverInitWeakPassphrase: a key server's new keyring is held to
// the passphrase policy like a home's (exit 2, no state directory); the
// control differs only in the passphrase.
func TestKeyserverInitWeakPassphrase(t *testing.T) {
	k := newKSEnv(t)
	ks := filepath.Join(k.dir, "ks")
	code, _, errs := k.run([]string{"HOLDFAST_PASSPHRASE=ks-weak"}, "keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	if code != exitUsage || !strings.Contains(errs, "holdfast: error: the new passphrase from HOLDFAST_PASSPHRASE is too weak: it has 7 characters") {
		t.Fatalf("weak passphrase: exit %d, stderr %q; want %d and the reason", code, errs, exitUsage)
	}
	if strings.Contains(errs, "ks-weak") {
		t.Fatalf("the error shows the passphrase: %q", errs)
	}
	if _, err := os.Stat(ks); !os.IsNotExist(err) {
		t.Fatalf("a refused init left %s (%v)", ks, err)
	}
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	if _, err := os.Stat(filepath.Join(ks, "keyring")); err != nil {
		t.Fatal(err)
	}
}
