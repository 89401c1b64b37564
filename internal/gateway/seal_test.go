package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/auth"

	"github.com/holdfast/holdfast/internal/access"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/repo"
)

// sealedGW is a gateway as holdfast serve runs it — the real access
// table, a posture guard, a Sealer — whose posture the test sets.
type sealedGW struct {
	*gw
	guard   *posture.Guard
	tbl     *access.Table
	m       *Metrics
	healthy atomic.Bool
	reopens atomic.Int32
	id, sec string
	// sealBegun receives, when a seal begins (it then waits for requests
	// holding permissions), whether the guard said Sealing at that point.
	sealBegun chan bool
	log       syncBuffer // the Sealer's log
	be        *Backend
}

// syncBuffer is a bytes.Buffer for a logger and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startSealedGW(t *testing.T) *sealedGW {
	t.Helper()
	ctx := context.Background()
	d := t.TempDir()
	home := filepath.Join(d, "home")
	pass := []byte("seal test")
	g := &sealedGW{gw: &gw{t: t, store: filepath.Join(d, "store")}}
	r, err := repo.Init(ctx, repo.InitOptions{Home: home, StorePath: g.store, Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	g.r = r
	t.Cleanup(func() { r.Close() })
	if g.tbl, err = access.Open(ctx, r.Catalog(), r.ID(), r.KeySource(), access.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.tbl.Close)
	creds, _, err := g.tbl.Add(ctx, access.Spec{Name: "admin", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	g.id, g.sec = creds.ID, creds.Secret()

	g.m = NewMetrics(nil)
	be := NewBackend(r, TableAccess(g.tbl), g.m)
	g.be = be
	sealer := &Sealer{Repo: r, Access: g.tbl, Backend: be, Log: slog.New(slog.NewTextHandler(&g.log, nil)), Reopen: func() (repo.RootKeys, error) {
		g.reopens.Add(1)
		return keyring.Open(repo.KeyringPath(home), pass)
	}}
	baseline, _ := posture.Profile(posture.ProfileBaseline)
	g.healthy.Store(true)
	g.sealBegun = make(chan bool, 1)
	g.guard = &posture.Guard{Policy: baseline, Seal: sealer.Seal, Unseal: sealer.Unseal, Read: g.read}
	g.guard.BeginSeal = func(error) { g.sealBegun <- g.guard.Sealing() }
	be.UseGuard(g.guard)
	if err := g.guard.Recheck(); err != nil {
		t.Fatalf("first check: %v", err)
	}

	cert, leaf, _, err := LoadOrCreateCert(filepath.Join(d, "tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	g.pool = x509.NewCertPool()
	g.pool.AddCert(leaf)
	srv, err := Start(ctx, be, Options{Addr: "127.0.0.1:0", Certificate: cert, IAM: g.tbl.IAM()})
	if err != nil {
		t.Fatal(err)
	}
	g.srv = srv
	t.Cleanup(func() { _ = srv.Stop() })
	g.url = "https://" + srv.Addr().String()
	return g
}

// read is the guard's posture: the one check baseline requires, passing
// or failing as the test says.
func (g *sealedGW) read() posture.Report {
	c := posture.Check{Name: posture.CheckHardening, Status: posture.Pass, Value: "applied"}
	if !g.healthy.Load() {
		c.Status, c.Value = posture.Fail, "dumpable"
	}
	return posture.Report{Checks: []posture.Check{c}}
}

func (g *sealedGW) metric(name string) string {
	var b strings.Builder
	if err := testutilGather(g.m, &b); err != nil {
		g.t.Fatal(err)
	}
	return grepLines(b.String(), name+" ")
}

// TestPostureSealsTheGateway moves a running gateway to sealed and back
// by simulated posture changes: while sealed no request is served, the
// repository and the access table hold no key, an open download stops
// short and an upload in flight fails and stores nothing; after a passing
// re-check the keyring is opened again and requests succeed.
func TestPostureSealsTheGateway(t *testing.T) {
	g := startSealedGW(t)
	ctx := context.Background()
	c := g.client(g.id, g.sec, nil)

	// Positive control: with the posture met, everything works.
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("vault")}); err != nil {
		t.Fatal(err)
	}
	small := random(t, 100<<10)
	if _, err := put(t, c, "vault", "small", small, nil); err != nil {
		t.Fatal(err)
	}
	big := random(t, 64<<20)
	if _, err := put(t, c, "vault", "big", big, nil); err != nil {
		t.Fatal(err)
	}
	if got, _, err := get(c, "vault", "small", ""); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("GET before sealing: %d bytes, %v", len(got), err)
	}
	if v := g.metric("holdfast_gateway_keys_sealed"); v != "holdfast_gateway_keys_sealed 0" {
		t.Errorf("before sealing: %q", v)
	}

	// A download under way, and an upload whose body is still coming.
	dl, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("vault"), Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Body.Close()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(dl.Body, head); err != nil || !bytes.Equal(head, big[:len(head)]) {
		t.Fatalf("start of the download: %v", err)
	}
	// The upload's body is larger than every buffer on the way: once 16
	// MiB of it are taken, its handler is reading it.
	const upSize = 64 << 20
	upBody, upWriter := io.Pipe()
	upDone := make(chan error, 1)
	go func() { upDone <- g.presignedPut(c, "vault", "late", upBody, upSize, false) }()
	if _, err := upWriter.Write(make([]byte, 16<<20)); err != nil {
		t.Fatal(err)
	}

	// And a response body nobody is reading (asked of the backend
	// directly): only the seal itself can close it.
	idle, err := g.be.GetObject(context.WithValue(ctx, "account", auth.Account{Access: g.be.owner}),
		&s3.GetObjectInput{Bucket: aws.String("vault"), Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Body.Close()

	// The posture fails: the check seals. It waits for the upload's
	// permission; the upload's next read fails once the seal has begun.
	g.healthy.Store(false)
	sealed := make(chan error, 1)
	go func() { sealed <- g.guard.Recheck() }()
	if sealing := <-g.sealBegun; !sealing {
		t.Error("Sealing() is false while a seal waits")
	}
	go func() { // the rest, as far as the server takes it
		_, _ = upWriter.Write(make([]byte, upSize-16<<20))
		upWriter.Close()
	}()
	if err := <-sealed; !errors.Is(err, posture.ErrSealed) || !strings.Contains(err.Error(), posture.CheckHardening) {
		t.Fatalf("failing check: %v", err)
	}
	if err := <-upDone; err == nil {
		t.Error("an upload in flight when the keys were sealed succeeded")
	}
	upBody.Close()

	// The seal closed the idle body's object reader (wiping its data
	// keys) without waiting for a read; the download's was closed either
	// by the seal or by its own next read, refused once the seal began.
	if l := g.log.String(); !strings.Contains(l, "keys sealed") || !regexp.MustCompile(`transfers_stopped=[12]\b`).MatchString(l) {
		t.Errorf("the seal's log: %s", l)
	}
	g.be.live.mu.Lock()
	open := len(g.be.live.set)
	g.be.live.mu.Unlock()
	if open != 0 {
		t.Errorf("%d response bodies still open after the seal", open)
	}
	if n, err := idle.Body.Read(make([]byte, 1)); n != 0 || !(errors.Is(err, errSealing) || errors.Is(err, posture.ErrSealed)) {
		t.Errorf("reading the idle body after the seal: %d bytes, %v", n, err)
	}

	// The download under way stops short of the object's length.
	rest, err := io.ReadAll(dl.Body)
	if err == nil || len(head)+len(rest) >= len(big) {
		t.Errorf("download after sealing: %d of %d bytes, %v; want an error short of the length", len(head)+len(rest), len(big), err)
	}
	if !bytes.Equal(rest, big[len(head):len(head)+len(rest)]) {
		t.Error("download after sealing: wrong bytes")
	}

	// Every request is refused with 503.
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"GET", func() error { _, _, err := get(c, "vault", "small", ""); return err }},
		{"HEAD", func() error {
			_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("vault"), Key: aws.String("small")})
			return err
		}},
		{"PUT", func() error { _, err := put(t, c, "vault", "new", small, nil); return err }},
		{"LIST", func() error {
			_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("vault")})
			return err
		}},
	} {
		err := op.do()
		if code := errCode(err); code != "ServiceUnavailable" {
			t.Errorf("%s while sealed: %v (code %q), want ServiceUnavailable", op.name, err, code)
		} else if !strings.Contains(err.Error(), "Keys are sealed") && !strings.Contains(err.Error(), "StatusCode: 503") {
			t.Errorf("%s while sealed: %v", op.name, err)
		}
	}
	// The refusal comes before authentication, so its body says keys are
	// sealed but not which check failed (raw request: the SDK's error for
	// a HEAD has no body); the guard, which the log and /readyz report,
	// names it (the control: the reason exists, it is just not sent).
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}}).Get(g.url + "/vault/small")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "Keys are sealed") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("anonymous request while sealed: %d %q", resp.StatusCode, body)
	}
	if sealed, why := g.guard.Sealed(); !sealed || why == nil || !strings.Contains(why.Error(), posture.CheckHardening) {
		t.Errorf("the guard while sealed: %v, %v; want sealed, naming %s", sealed, why, posture.CheckHardening)
	}
	for _, leak := range []string{posture.CheckHardening, "dumpable", "baseline"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("the anonymous refusal tells %q: %q", leak, body)
		}
	}

	// No key is held: the repository cannot read, the access table cannot
	// open a secret (so no signature can be checked).
	if !g.r.KeysSealed() {
		t.Error("the repository's keys are not sealed")
	}
	if rd, err := g.r.OpenObject(ctx, "vault", "small"); !errors.Is(err, repo.ErrKeysSealed) {
		if err == nil {
			rd.Close()
		}
		t.Errorf("repository read while sealed: %v", err)
	}
	if _, _, err := g.tbl.IAM().DeriveSigningKey(g.id, "", "20260101", "us-east-1", "s3"); !errors.Is(err, access.ErrSealed) {
		t.Errorf("signing key while sealed: %v", err)
	}
	if v := g.metric("holdfast_gateway_keys_sealed"); v != "holdfast_gateway_keys_sealed 1" {
		t.Errorf("while sealed: %q", v)
	}
	if v := g.metric("holdfast_gateway_sealed_refusals_total"); v == "" || strings.HasSuffix(v, " 0") {
		t.Errorf("refusals while sealed: %q", v)
	}

	// A passing re-check opens the keyring again: requests succeed.
	g.healthy.Store(true)
	if err := g.guard.Recheck(); err != nil {
		t.Fatalf("passing check: %v", err)
	}
	if n := g.reopens.Load(); n != 1 {
		t.Errorf("keyring opened %d times to unseal, want 1", n)
	}
	if got, _, err := get(c, "vault", "big", ""); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("GET after unsealing: %d bytes, %v", len(got), err)
	}
	if _, err := put(t, c, "vault", "after", small, nil); err != nil {
		t.Errorf("PUT after unsealing: %v", err)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("vault"), Key: aws.String("late")}); errCode(err) != "NotFound" {
		t.Errorf("the upload stopped by the seal: HEAD says %v, want NotFound", err)
	}
	if v := g.metric("holdfast_gateway_keys_sealed"); v != "holdfast_gateway_keys_sealed 0" {
		t.Errorf("after unsealing: %q", v)
	}
	if l := g.log.String(); !strings.Contains(l, "keys unsealed") {
		t.Errorf("the unseal's log: %s", l)
	}
}

// presignedPut uploads size bytes from body to bucket/key with a
// presigned URL, so that the body can be a stream the test controls.
func (g *gw) presignedPut(c *s3.Client, bucket, key string, body io.Reader, size int64, ifNoneMatch bool) error {
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key}
	if ifNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	ps, err := s3.NewPresignClient(c).PresignPutObject(context.Background(), in)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPut, ps.URL, body)
	if err != nil {
		return err
	}
	for k, v := range ps.SignedHeader {
		if !strings.EqualFold(k, "host") {
			req.Header[k] = v
		}
	}
	req.ContentLength = size
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return errors.New(resp.Status + ": " + string(b))
	}
	return nil
}
