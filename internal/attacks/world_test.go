package attacks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/testutil/faultproxy"
	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// floorKDF is the cheapest Argon2id a released holdfast accepts (the
// production floor): the suite runs the real binary, which cannot take the
// test-only parameters, and this keeps each command's derivation short.
var floorKDF = keyring.Params{Time: keyring.MinTime, MemoryKiB: keyring.MinMemoryKiB, Threads: keyring.MinThreads}

// s3Prefix is where every S3 world keeps its repository in its bucket.
const s3Prefix = "repo/"

// world is one repository under attack: a home, its store, the provider's
// hands on that store, and (started on demand) a gateway.
type world struct {
	name string // "local" or "s3" (plus a suffix for isolated worlds)
	kind string // "local" or "s3"
	dir  string // scratch directory
	home string
	pass []byte

	prov provider
	gw   *gateway

	// S3 worlds only: the provider's bucket.
	bucket string
}

// newWorld makes a repository on a backend: kind "local" (a directory
// store) or "s3" (a bucket on the shared versitygw, reached through the
// recording and fault-injecting proxies). The home is made in-process with
// the floor KDF; everything after that goes through the binary.
func newWorld(t *testing.T, kind, name string) *world {
	t.Helper()
	return newWorldWith(t, kind, name, nil)
}

// newWorldWith is newWorld with a change to the S3 settings (A2 puts a
// TLS proxy of its own in front of versitygw).
func newWorldWith(t *testing.T, kind, name string, s3cfg func(*repo.S3Config)) *world {
	t.Helper()
	// Worlds outlive their test: A4 sweeps every store at the end. The
	// suite's root directory goes when TestMain ends.
	dir, err := os.MkdirTemp(suiteDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	pass := []byte("attack-suite-passphrase-" + hex.EncodeToString(randBytes(12)))
	w := &world{name: name, kind: kind, dir: dir, home: filepath.Join(dir, "home"), pass: pass}
	addSecret(name+" passphrase", pass)
	opts := repo.InitOptions{Home: w.home, Passphrase: bytes.Clone(pass), KDF: floorKDF}
	switch kind {
	case "local":
		opts.StorePath = filepath.Join(dir, "store")
		w.prov = &localProvider{root: opts.StorePath}
	case "s3":
		env := sharedS3(t)
		// A fresh bucket each run: versitygw outlives a -count=N run.
		w.bucket = "hf-attacks-" + strings.ReplaceAll(name, "_", "-") + "-" + hex.EncodeToString(randBytes(4))
		if err := env.srv.MakeBucket(context.Background(), w.bucket); err != nil {
			t.Fatal(err)
		}
		opts.S3 = &repo.S3Config{Bucket: w.bucket, Prefix: s3Prefix, Endpoint: env.rec.url, PathStyle: true, AllowHTTP: true,
			MaxAttempts: 4, MaxBackoff: repo.Duration(50 * time.Millisecond), IdleTimeout: repo.Duration(2 * time.Second),
			Timeout: repo.Duration(60 * time.Second)}
		if s3cfg != nil {
			s3cfg(opts.S3)
		}
		w.prov = &s3Provider{c: env.client, bucket: w.bucket}
	default:
		t.Fatalf("unknown backend %q", kind)
	}
	r, err := repo.Init(context.Background(), opts)
	if err != nil {
		t.Fatalf("init %s: %v", name, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	register(w)
	t.Cleanup(func() {
		if w.gw != nil {
			w.gw.stop(t)
		}
	})
	return w
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// cliResult is one run of the binary.
type cliResult struct {
	code           int
	stdout, stderr []byte
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d, stderr %q", r.code, r.stderr)
}

// env is the environment of the binary: the home, the passphrase (in the
// environment, as scripts pass it) and the store's S3 credentials.
func (w *world) env() []string {
	e := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + w.dir, "TMPDIR=" + os.TempDir(),
		"HOLDFAST_HOME=" + w.home, "HOLDFAST_PASSPHRASE=" + string(w.pass)}
	for k, v := range awsEnv() {
		e = append(e, k+"="+v)
	}
	return e
}

// cli runs holdfast with args and returns what it did; its standard error
// joins the log corpus.
func (w *world) cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	return w.cliIn(t, nil, args...)
}

func (w *world) cliIn(t *testing.T, stdin []byte, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, holdfastBin, args...)
	cmd.Env = w.env()
	cmd.Dir = w.dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	logs.add(se.Bytes())
	res := cliResult{stdout: so.Bytes(), stderr: se.Bytes()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("holdfast %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// must runs holdfast and requires exit 0.
func (w *world) must(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := w.cli(t, args...)
	if r.code != 0 {
		t.Fatalf("holdfast %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// put stores data as bucket/key through the CLI (standard input) and
// returns the store name of the new version.
func (w *world) put(t *testing.T, bucket, key string, data []byte, extra ...string) string {
	t.Helper()
	args := append([]string{"put", "--json"}, extra...)
	args = append(args, "-", bucket+"/"+key)
	r := w.cliIn(t, data, args...)
	if r.code != 0 {
		t.Fatalf("put %s/%s: %v", bucket, key, r)
	}
	var st statJSON
	if err := json.Unmarshal(r.stdout, &st); err != nil || len(st.Object) != 32 {
		t.Fatalf("put %s/%s --json: %v: %s", bucket, key, err, r.stdout)
	}
	return st.Object
}

// statJSON is `holdfast stat --json`.
type statJSON struct {
	Object      string            `json:"object"`
	Size        int64             `json:"size"`
	Version     uint64            `json:"version"`
	Modified    time.Time         `json:"modified"`
	ContentType string            `json:"content_type"`
	Meta        map[string]string `json:"meta"`
}

func (w *world) stat(t *testing.T, bucket, key string) statJSON {
	t.Helper()
	r := w.must(t, "stat", "--json", bucket+"/"+key)
	var st statJSON
	if err := json.Unmarshal(r.stdout, &st); err != nil || len(st.Object) != 32 {
		t.Fatalf("stat %s/%s: %v: %s", bucket, key, err, r.stdout)
	}
	return st
}

func (w *world) storeName(t *testing.T, bucket, key string) string {
	return w.stat(t, bucket, key).Object
}

// verifyJSON is what the suite reads of `holdfast verify --json`.
type verifyJSON struct {
	Verdict  string          `json:"verdict"`
	Summary  json.RawMessage `json:"summary"`
	Findings []struct {
		Bucket string `json:"bucket"`
		Key    string `json:"key"`
		Kind   string `json:"kind"`
		Name   string `json:"name"`
		Status string `json:"status"`
		Layer  string `json:"layer"`
	} `json:"findings"`
}

// verify runs `holdfast verify --json` and returns its exit code and the
// non-ok findings, by "bucket/key" for objects and by store name for the
// rest.
func (w *world) verify(t *testing.T) (int, string, map[string]string) {
	t.Helper()
	r := w.cli(t, "verify", "--json")
	var v verifyJSON
	if err := json.Unmarshal(r.stdout, &v); err != nil {
		if r.code == 6 { // could not check: no report
			return r.code, "", nil
		}
		t.Fatalf("verify --json: %v: %v\n%s", r, err, r.stdout)
	}
	got := map[string]string{}
	for _, f := range v.Findings {
		if f.Status == "ok" {
			continue
		}
		// An object the repository never wrote (or no longer holds) is
		// named by its store name; the rest by bucket/key.
		what := f.Name
		if f.Bucket != "" && f.Status != "unknown" {
			what = f.Bucket + "/" + f.Key
		}
		got[what] = f.Status
	}
	return r.code, v.Verdict, got
}

// expectVerify requires verify's exact report: clean and exit 0 for an
// empty want, else exit 4, verdict damaged and exactly these findings.
func (w *world) expectVerify(t *testing.T, want map[string]string) {
	t.Helper()
	code, verdict, got := w.verify(t)
	wantCode, wantVerdict := 0, "clean"
	if len(want) > 0 {
		wantCode, wantVerdict = 4, "damaged"
	}
	if code != wantCode || verdict != wantVerdict || !sameMap(got, want) {
		t.Fatalf("verify: exit %d, verdict %q, findings %v; want exit %d, %q, %v", code, verdict, got, wantCode, wantVerdict, want)
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// provider is the attacker's hands on the store: raw bytes under store
// names, behind Holdfast's back.
type provider interface {
	read(t *testing.T, name string) []byte
	write(t *testing.T, name string, b []byte)
	remove(t *testing.T, name string)
	exists(t *testing.T, name string) bool
	list(t *testing.T) []string
}

// localProvider edits the local directory store's files.
type localProvider struct{ root string }

func (p *localProvider) path(name string) string {
	return filepath.Join(p.root, name[:2], name)
}

func (p *localProvider) read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(p.path(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *localProvider) write(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p.path(name)), 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(p.path(name)); err == nil && fi.IsDir() {
		os.RemoveAll(p.path(name)) // put back a file A15 replaced with a directory
	}
	if err := os.WriteFile(p.path(name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *localProvider) remove(t *testing.T, name string) {
	t.Helper()
	if err := os.RemoveAll(p.path(name)); err != nil {
		t.Fatal(err)
	}
}

func (p *localProvider) exists(t *testing.T, name string) bool {
	_, err := os.Lstat(p.path(name))
	return err == nil
}

func (p *localProvider) list(t *testing.T) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(p.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.Contains(path, "/.") {
			names = append(names, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// s3Provider edits the bucket with its own S3 client, straight to
// versitygw (not through the proxies that record Holdfast's requests).
type s3Provider struct {
	c      *s3.Client
	bucket string
}

func (p *s3Provider) read(t *testing.T, name string) []byte {
	t.Helper()
	out, err := p.c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &p.bucket, Key: aws.String(s3Prefix + name)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *s3Provider) write(t *testing.T, name string, b []byte) {
	t.Helper()
	p.writeKey(t, s3Prefix+name, b)
}

func (p *s3Provider) writeKey(t *testing.T, key string, b []byte) {
	t.Helper()
	_, err := p.c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &p.bucket, Key: aws.String(key),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))})
	if err != nil {
		t.Fatal(err)
	}
}

func (p *s3Provider) remove(t *testing.T, name string) {
	t.Helper()
	p.removeKey(t, s3Prefix+name)
}

func (p *s3Provider) removeKey(t *testing.T, key string) {
	t.Helper()
	if _, err := p.c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &p.bucket, Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
}

func (p *s3Provider) exists(t *testing.T, name string) bool {
	_, err := p.c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &p.bucket, Key: aws.String(s3Prefix + name)})
	return err == nil
}

func (p *s3Provider) list(t *testing.T) []string {
	t.Helper()
	var names []string
	pg := s3.NewListObjectsV2Paginator(p.c, &s3.ListObjectsV2Input{Bucket: &p.bucket, Prefix: aws.String(s3Prefix)})
	for pg.HasMorePages() {
		out, err := pg.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Contents {
			names = append(names, strings.TrimPrefix(aws.ToString(o.Key), s3Prefix))
		}
	}
	return names
}

// tamper records what an attack changed so that it can be undone: the
// original bytes of every name it touched (nil: the name did not exist).
type tamper struct {
	w    *world
	orig map[string][]byte
}

func (w *world) tamper() *tamper { return &tamper{w: w, orig: map[string][]byte{}} }

func (tp *tamper) save(t *testing.T, name string) {
	t.Helper()
	if _, seen := tp.orig[name]; seen {
		return
	}
	if tp.w.prov.exists(t, name) {
		tp.orig[name] = tp.w.prov.read(t, name)
	} else {
		tp.orig[name] = nil
	}
}

// edit rewrites the stored bytes of name with fn.
func (tp *tamper) edit(t *testing.T, name string, fn func([]byte) []byte) {
	t.Helper()
	tp.save(t, name)
	tp.w.prov.write(t, name, fn(tp.w.prov.read(t, name)))
}

func (tp *tamper) write(t *testing.T, name string, b []byte) {
	t.Helper()
	tp.save(t, name)
	tp.w.prov.write(t, name, b)
}

func (tp *tamper) remove(t *testing.T, name string) {
	t.Helper()
	tp.save(t, name)
	tp.w.prov.remove(t, name)
}

// undo puts every touched name back as it was.
func (tp *tamper) undo(t *testing.T) {
	t.Helper()
	for name, b := range tp.orig {
		if b == nil {
			tp.w.prov.remove(t, name)
		} else {
			tp.w.prov.write(t, name, b)
		}
	}
	tp.orig = map[string][]byte{}
}

// gateway is a running `holdfast serve` and an S3 client signed with an
// admin access key made for the suite.
type gateway struct {
	seen   map[string]bool // buckets the gateway has shown it knows
	cmd    *exec.Cmd
	url    string
	client *s3.Client
	out    *lockedBuffer
	exited chan struct{}
}

// gateway starts (once) `holdfast serve` on the world's home.
func (w *world) gateway(t *testing.T) *gateway {
	t.Helper()
	if w.gw != nil {
		return w.gw
	}
	r := w.must(t, "access", "add", "attack-suite", "--admin", "--json")
	var key struct{ ID, Secret string }
	if err := json.Unmarshal(r.stdout, &key); err != nil || key.Secret == "" {
		t.Fatalf("access add: %v: %s", err, r.stdout)
	}
	addSecret(w.name+" gateway access secret", []byte(key.Secret))
	// No sampled integrity checks (they would read objects mid-attack) and
	// no posture re-checks during the run (the suite attacks the store, not
	// the host; a host check failing under a loaded CI machine would seal
	// the keys and refuse every request, which is not what is tested here).
	g, err := startServe(w, "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--sample-interval", "0", "--posture-interval", "24h")
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(w.home, "gateway", "cert.pem"))
	if err != nil {
		g.kill()
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	g.client = s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(g.url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, ""), RetryMaxAttempts: 1,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}})
	w.gw = g
	return g
}

// startServe runs `holdfast serve ARGS` and waits for its banner. Its
// standard output and error join the log corpus when it stops.
func startServe(w *world, args ...string) (*gateway, error) {
	cmd := exec.Command(holdfastBin, append([]string{"serve"}, args...)...)
	cmd.Env = w.env()
	cmd.Dir = w.dir
	out := &lockedBuffer{}
	cmd.Stderr = out
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &gateway{cmd: cmd, out: out, exited: make(chan struct{}), seen: map[string]bool{}}
	banner := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sent := false
		for sc.Scan() {
			l := sc.Text()
			out.Write([]byte(l + "\n"))
			if m := regexp.MustCompile(`S3 endpoint (\S+)`).FindStringSubmatch(l); m != nil && !sent {
				banner <- m[1]
				sent = true
			}
		}
		if !sent {
			close(banner)
		}
	}()
	go func() { cmd.Wait(); close(g.exited) }()
	select {
	case u, ok := <-banner:
		if !ok {
			<-g.exited
			logs.add(out.bytes())
			return nil, fmt.Errorf("holdfast serve exited (%v) without serving:\n%s", cmd.ProcessState, out.bytes())
		}
		g.url = u
		return g, nil
	case <-time.After(60 * time.Second):
		g.kill()
		return nil, fmt.Errorf("holdfast serve printed no endpoint in 60 s:\n%s", out.bytes())
	}
}

func (g *gateway) kill() {
	g.cmd.Process.Kill()
	<-g.exited
	logs.add(g.out.bytes())
}

// stop ends the gateway with SIGTERM, as an operator would.
func (g *gateway) stop(t *testing.T) {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		g.cmd.Process.Kill()
		<-g.exited
		t.Errorf("holdfast serve did not stop on SIGTERM")
	}
	logs.add(g.out.bytes())
}

// awaitBucket waits until the gateway serves the suite's key a bucket the
// CLI created. The gateway reads buckets from the shared catalog, so that
// should be at once; the poll bounds how long the suite waits before
// calling it a failure (it caught a policy cache keyed by a reused request
// buffer, which denied some new buckets until the access table changed).
func (g *gateway) awaitBucket(t *testing.T, bucket string) {
	t.Helper()
	if g.seen[bucket] {
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// A listing, not HeadBucket: its error names the S3 error code.
		_, err := g.client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1)})
		if err == nil {
			g.seen[bucket] = true
			return
		}
		if time.Now().After(deadline) {
			out := g.out.bytes()
			t.Fatalf("the gateway did not come to know bucket %s in 15 s: %v\ngateway output (last 4 KiB):\n%s", bucket, err, out[max(0, len(out)-4096):])
		}
		<-tick.C
	}
}

// get reads bucket/key through the gateway: what the client received, and
// the error of the request or of reading its body.
func (g *gateway) get(t *testing.T, bucket, key string) ([]byte, error) {
	t.Helper()
	g.awaitBucket(t, bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := g.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// s3Env is the S3 side shared by every S3 world: one versitygw, and in
// front of it the fault proxy (A15) and a recorder that keeps every
// request Holdfast sends to the store (A4).
type s3Env struct {
	srv     *versitygw.Server
	dataDir string // versitygw's backing directory: every byte it stores
	fault   *faultproxy.Proxy
	rec     *recorder
	client  *s3.Client // the provider's own client
}

var (
	s3Once   sync.Once
	s3Shared *s3Env
	s3Err    error
)

// sharedS3 starts versitygw and the proxies on first use.
func sharedS3(t *testing.T) *s3Env {
	t.Helper()
	s3Once.Do(func() {
		if _, err := versitygw.Binary(); err != nil {
			s3Err = err
			return
		}
		dir, err := os.MkdirTemp("", "holdfast-attacks-versitygw-")
		if err != nil {
			s3Err = err
			return
		}
		e := &s3Env{dataDir: dir}
		if e.srv, err = versitygw.Start(dir, true); err != nil {
			s3Err = err
			return
		}
		if e.fault, err = faultproxy.Start(faultproxy.Options{Upstream: e.srv.Endpoint, CAFile: e.srv.CAFile, StallFor: 5 * time.Second}); err != nil {
			s3Err = err
			return
		}
		if e.rec, err = startRecorder(e.fault.URL); err != nil {
			s3Err = err
			return
		}
		if e.client, err = e.srv.Client(); err != nil {
			s3Err = err
			return
		}
		s3Shared = e
	})
	if s3Err != nil {
		t.Fatalf("starting the S3 provider: %v", s3Err)
	}
	return s3Shared
}

func stopShared() {
	for _, e := range tlsEndpoints {
		e.srv.Close()
	}
	if e := s3Shared; e != nil {
		e.rec.close()
		e.fault.Close()
		e.srv.Stop()
		os.RemoveAll(e.dataDir)
	}
}

// recorder is a reverse proxy that keeps a copy of every request it
// passes on: method, URL, headers and body.
type recorder struct {
	url string
	srv *http.Server
	mu  sync.Mutex
	buf bytes.Buffer
}

func startRecorder(upstream string) (*recorder, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rec := &recorder{url: "http://" + l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = quiet // bodies cut short by the fault proxy (A15) are expected
	rec.srv = &http.Server{ErrorLog: quiet, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dump, err := httputil.DumpRequest(r, true) // reads and replaces the body
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		rec.mu.Lock()
		rec.buf.Write(dump)
		rec.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go rec.srv.Serve(l)
	return rec, nil
}

// quiet drops a proxy's error log: the faults it reports are the test's.
var quiet = log.New(io.Discard, "", 0)

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

func (r *recorder) close() { r.srv.Close() }
