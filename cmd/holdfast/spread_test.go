package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// spreadCLI runs the holdfast command in this process, in one home.
type spreadCLI struct {
	t    *testing.T
	home string
}

func newSpreadCLI(t *testing.T) *spreadCLI {
	t.Cleanup(keyring.SetInsecureTestParamsForTesting())
	home := filepath.Join(t.TempDir(), "home")
	t.Setenv("HOLDFAST_HOME", home)
	t.Setenv("HOLDFAST_PASSPHRASE", "pw-for-spread-tests")
	return &spreadCLI{t: t, home: home}
}

func (c *spreadCLI) run(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb, nil)
	return code, out.String(), errb.String()
}

func (c *spreadCLI) must(args ...string) (string, string) {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 0 {
		c.t.Fatalf("holdfast %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

// gw is a versitygw this test can stop and start again on the same port
// with the same data, as an operator would restart a provider's server.
type gw struct {
	t        *testing.T
	port     int
	data     string
	endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
}

func startGW(t *testing.T) *gw {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	g := &gw{t: t, port: port, data: t.TempDir(), endpoint: fmt.Sprintf("http://127.0.0.1:%d", port)}
	g.start()
	t.Cleanup(g.stop)
	return g
}

func (g *gw) start() {
	g.t.Helper()
	bin, err := versitygw.Binary()
	if err != nil {
		g.t.Fatal(err)
	}
	posix := filepath.Join(g.data, "posix")
	if err := os.MkdirAll(posix, 0o700); err != nil {
		g.t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", g.port), "--access", versitygw.AccessKey,
		"--secret", versitygw.SecretKey, "--region", "us-east-1", "--health", "/health", "--quiet", "posix", posix)
	logf, err := os.OpenFile(filepath.Join(g.data, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		g.t.Fatal(err)
	}
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(g.cmd, g.exited)
	// Ready when /health answers 200.
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := hc.Get(g.endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-g.exited:
			b, _ := os.ReadFile(filepath.Join(g.data, "server.log"))
			g.t.Fatalf("versitygw exited: %s", b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.t.Fatal("versitygw did not become ready in 20 s")
		}
	}
}

func (g *gw) stop() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(os.Interrupt)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		<-g.exited
	}
	g.cmd = nil
}

func (g *gw) client() *s3.Client {
	srv := versitygw.Server{Endpoint: g.endpoint}
	c, err := srv.Client()
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}

// spreadMembers are the five members' places: four jurisdictions, no
// jurisdiction or provider with 3 (=K) shards or more than 2 (=M).
var spreadMembers = []struct{ label, provider, jurisdiction string }{
	{"eu-1", "alpha", "EU"}, {"eu-2", "beta", "EU"}, {"ch-1", "gamma", "CH"}, {"us-1", "delta", "US"}, {"jp-1", "epsilon", "JP"},
}

// spreadLayoutFile writes a 3-of-5 layout file over the servers.
func spreadLayoutFile(t *testing.T, gws []*gw) string {
	type member struct {
		Label        string         `json:"label"`
		Provider     string         `json:"provider"`
		Jurisdiction string         `json:"jurisdiction"`
		S3           map[string]any `json:"s3"`
	}
	var ms []member
	for i, g := range gws {
		ms = append(ms, member{spreadMembers[i].label, spreadMembers[i].provider, spreadMembers[i].jurisdiction, map[string]any{
			"bucket": "hf-spread", "endpoint": g.endpoint, "path_style": true, "allow_http": true,
			// A stopped server refuses connections: fail fast, the other
			// members answer.
			"max_attempts": 2, "max_backoff": "50ms", "timeout": "20s",
		}})
	}
	b, err := json.Marshal(map[string]any{"k": 3, "m": 2, "members": ms})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "layout.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSpreadOverFiveS3Servers is the acceptance test: 3-of-5 over five
// real S3 servers. Objects put through the CLI read back byte-exact; with
// any two servers stopped every object still reads; a write with one
// server down succeeds and is queued; once the servers are back, repair
// puts every shard back and verify is clean. Then a shard is damaged on
// one server, its "checksum" rewritten: reads succeed and name the
// member, and repair rewrites the shard.
func TestSpreadOverFiveS3Servers(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		v := map[string]string{"AWS_ACCESS_KEY_ID": versitygw.AccessKey, "AWS_SECRET_ACCESS_KEY": versitygw.SecretKey,
			"AWS_EC2_METADATA_DISABLED": "true"}[k]
		if v == "" {
			v = os.DevNull
		}
		t.Setenv(k, v)
	}
	ctx := context.Background()
	var gws []*gw
	for range 5 {
		g := startGW(t)
		if _, err := g.client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("hf-spread")}); err != nil {
			t.Fatal(err)
		}
		gws = append(gws, g)
	}
	c := newSpreadCLI(t)
	c.must("init", "--store", "spread:"+spreadLayoutFile(t, gws))

	dir := t.TempDir()
	files := map[string][]byte{}
	for i, n := range []int{0, 1, 70_000, 1<<20 + 3} {
		key := fmt.Sprintf("bkt/f%d", i)
		files[key] = randomBytes(t, n)
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, files[key], 0o600); err != nil {
			t.Fatal(err)
		}
		c.must("put", p, key)
	}
	getAll := func(when string) {
		t.Helper()
		for key, want := range files {
			out := filepath.Join(dir, "out")
			os.Remove(out)
			if code, _, errs := c.run("get", key, out); code != 0 {
				t.Fatalf("%s: get %s: exit %d: %s", when, key, code, errs)
			}
			got, err := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: get %s: %d bytes, %v; want %d bytes (contents differ)", when, key, len(got), err, len(want))
			}
		}
	}
	getAll("all servers up")

	// Any two down: every object reads. (All ten pairs would take a
	// minute; these cover two data members, data and parity, and two
	// parity members.)
	for _, pair := range [][2]int{{0, 1}, {2, 4}, {3, 4}} {
		gws[pair[0]].stop()
		gws[pair[1]].stop()
		getAll(fmt.Sprintf("servers %d and %d stopped", pair[0], pair[1]))
		code, out, _ := c.run("stores")
		if code != exitUnchecked || strings.Count(out, " NO ") != 2 || !strings.Contains(out, spreadMembers[pair[0]].label) {
			t.Fatalf("stores with servers %v stopped: exit %d\n%s", pair, code, out)
		}
		gws[pair[0]].start()
		gws[pair[1]].start()
	}

	// A write with one server down succeeds (4 of 5 is the quorum) and
	// leaves that member's shard for repair.
	gws[3].stop()
	late := randomBytes(t, 200_000)
	p := filepath.Join(dir, "late")
	if err := os.WriteFile(p, late, 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("put", p, "bkt/late")
	files["bkt/late"] = late
	// Positive control of the quorum: with two down the write is refused.
	gws[4].stop()
	if code, _, errs := c.run("put", p, "bkt/refused"); code == 0 || !strings.Contains(errs, "us-1") {
		t.Fatalf("put with two servers down: exit %d: %s", code, errs)
	}
	gws[3].start()
	gws[4].start()
	if code, out, _ := c.run("repair", "--dry-run"); code != exitDamaged || !strings.Contains(out, "need repair") {
		t.Fatalf("repair --dry-run before repair: exit %d\n%s", code, out)
	}
	out, _ := c.must("repair")
	if !strings.Contains(out, "repaired") {
		t.Fatalf("repair output:\n%s", out)
	}
	out, _ = c.must("--json", "stores")
	var lay struct {
		Objects int `json:"objects"`
		Members []struct {
			Label     string `json:"label"`
			Shards    int    `json:"shards"`
			Missing   int    `json:"missing"`
			Reachable bool   `json:"reachable"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &lay); err != nil {
		t.Fatal(err)
	}
	for _, m := range lay.Members {
		if !m.Reachable || m.Shards != lay.Objects || m.Missing != 0 {
			t.Fatalf("after repair, member %s holds %d of %d shards (missing %d, reachable %v)", m.Label, m.Shards, lay.Objects, m.Missing, m.Reachable)
		}
	}
	c.must("repair", "--deep", "--dry-run")
	c.must("verify")
	getAll("after repair")

	// Damage: the provider of member ch-1 flips a byte in the largest
	// shard object it holds and rewrites the 32 bytes after the shard with
	// a SHA-256 of it, as it would a checksum. The S3 server's own ETag
	// and checksums are of course recomputed.
	victim := gws[2].client()
	lo, err := victim.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("hf-spread")})
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var size int64
	for _, o := range lo.Contents {
		if aws.ToInt64(o.Size) > size {
			name, size = aws.ToString(o.Key), aws.ToInt64(o.Size)
		}
	}
	obj, err := victim.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("hf-spread"), Key: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 64 << 10 // the default shard chunk: stripe 0's shard, then its tag
	raw[100] ^= 1
	sum := sha256.Sum256(raw[:chunk])
	copy(raw[chunk:], sum[:])
	if _, err := victim.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("hf-spread"), Key: aws.String(name), Body: bytes.NewReader(raw)}); err != nil {
		t.Fatal(err)
	}
	var reported bool
	for key, want := range files {
		outp := filepath.Join(dir, "out")
		os.Remove(outp)
		code, _, errs := c.run("get", key, outp)
		got, _ := os.ReadFile(outp)
		if code != 0 || !bytes.Equal(got, want) {
			t.Fatalf("get %s with a damaged shard: exit %d: %s", key, code, errs)
		}
		if strings.Contains(errs, "member ch-1") && strings.Contains(errs, "stripe 0") && strings.Contains(errs, "authentication") {
			reported = true
			t.Logf("get %s warned: %s", key, strings.TrimSpace(errs))
		}
	}
	if !reported {
		t.Fatal("no get reported the damaged shard by member and stripe")
	}
	out, _ = c.must("--json", "repair")
	var rep struct {
		Members []struct {
			Label   string `json:"label"`
			Damaged int    `json:"damaged"`
			Rebuilt int    `json:"rebuilt"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if m := rep.Members[2]; m.Damaged != 1 || m.Rebuilt != 1 {
		t.Fatalf("repair of the damaged shard: %+v", rep.Members)
	}
	c.must("repair", "--deep", "--dry-run")
	c.must("verify")
	fixed, err := victim.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("hf-spread"), Key: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(fixed.Body)
	fixed.Body.Close()
	if bytes.Equal(b, raw) {
		t.Fatal("repair left the damaged shard in place")
	}
}

// TestSpreadInitRefusesJurisdiction: init refuses a layout with K shards
// in one jurisdiction, naming it, and creates nothing; the same layout
// with one member moved to another jurisdiction is accepted.
func TestSpreadInitRefusesJurisdiction(t *testing.T) {
	c := newSpreadCLI(t)
	dir := t.TempDir()
	layout := func(jurisdictions ...string) string {
		var ms []map[string]string
		for i, j := range jurisdictions {
			ms = append(ms, map[string]string{"label": fmt.Sprintf("m%d", i), "provider": fmt.Sprintf("p%d", i),
				"jurisdiction": j, "path": fmt.Sprintf("member%d", i)})
		}
		b, _ := json.Marshal(map[string]any{"k": 3, "m": 2, "members": ms})
		p := filepath.Join(dir, "layout.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	code, _, errs := c.run("init", "--store", "spread:"+layout("EU", "US", "EU", "EU", "JP"))
	if code != exitUsage || !strings.Contains(errs, `jurisdiction "EU" holds 3 shards`) {
		t.Fatalf("init with 3 of 5 shards in EU: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(c.home); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused init left the home behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "member0")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused init made a member directory: %v", err)
	}
	// Control: EU holds 2, within both limits.
	c.must("init", "--store", "spread:"+layout("EU", "US", "CH", "EU", "JP"))
	out, _ := c.must("stores")
	for _, want := range []string{"MEMBER", "JURISDICTION", "SHARDS HELD", "REACHABLE", "m2", "CH", "3-of-5"} {
		if !strings.Contains(out, want) {
			t.Fatalf("stores output lacks %q:\n%s", want, out)
		}
	}
	// A second repository is refused on members that hold the first.
	t.Setenv("HOLDFAST_HOME", filepath.Join(t.TempDir(), "other"))
	if code, _, errs := c.run("init", "--store", "spread:"+layout("EU", "US", "CH", "EU", "JP")); code != exitRefused || !strings.Contains(errs, "needs empty members") {
		t.Fatalf("init on members of another repository: exit %d: %s", code, errs)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
