package keyserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/holdfast/holdfast/internal/attest"
	"github.com/holdfast/holdfast/internal/attest/attesttest"
	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/keyserver/api"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/secret"
)

// Posture reports a client claims: with and without AES-NI.
var (
	withAES = posture.Report{Checks: []posture.Check{{Name: posture.CheckAES, Status: posture.Pass, Value: "present"}}}
	noAES   = posture.Report{Checks: []posture.Check{{Name: posture.CheckAES, Status: posture.Warn, Value: "absent"}}}
)

var goodMeasurement = attesttest.Measurement(0xA5)

// writePolicy replaces the state directory's release policy (a new file
// renamed over the old, as an editor or a deployment tool would).
func writePolicy(t *testing.T, dir string, p any) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "release-policy.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, keyserver.ReleasePolicyFile)); err != nil {
		t.Fatal(err)
	}
}

// cvmPolicy: the client "cvm" must report AES-NI and attest an SEV-SNP
// guest of goodMeasurement; every other client, nothing.
func cvmPolicy() keyserver.ReleasePolicy {
	return keyserver.ReleasePolicy{Version: 1, Clients: map[string]keyserver.ReleaseRule{
		"cvm": {Posture: &keyserver.PostureRule{Require: []string{posture.CheckAES}},
			Attestation: &attest.Rule{Type: attest.TypeSEVSNP, Measurements: []attest.HexBytes{goodMeasurement}}},
	}}
}

// attestedServer starts a key server whose attestation roots are the
// test chain's, with cvmPolicy.
func attestedServer(t *testing.T) (dir, url string, chain *attesttest.Chain, srv *keyserver.Server) {
	dir, url, srv = startWith(t, keyserver.Options{})
	chain, err := attesttest.DefaultChain()
	if err != nil {
		t.Fatal(err)
	}
	keyserver.SetAttestationRootsForTest(srv, chain.Roots())
	writePolicy(t, dir, cvmPolicy())
	return dir, url, chain, srv
}

var allGrant = keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap", "data"}}

// TestReleaseAttested: through the remote key source, the attested
// client with a passing posture gets its keys, and the release record
// says what was attested; a client no rule names gets keys with no
// claims asked of it; a posture without AES-NI is refused, with the
// reason in the client's error and in the log.
func TestReleaseAttested(t *testing.T) {
	dir, url, chain, _ := attestedServer(t)
	cvm := enroll(t, dir, "cvm", allGrant)
	ctx := context.Background()
	k, _ := secret.New()
	defer k.Wipe()

	good := cvm
	good.Posture = func() posture.Report { return withAES }
	good.Attester = &attesttest.SNP{Chain: chain, Measurement: goodMeasurement}
	s, err := open(t, url, good)
	if err != nil {
		t.Fatal(err)
	}
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.Repo(), Bucket: keys.ID{4}, KEKVersion: 1, KeyVersion: 1}
	w, err := s.Wrap(ctx, 1, ad, k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Unwrap(ctx, w, ad); err != nil || !got.Equal(k) {
		t.Fatalf("control: attested unwrap: %v", err)
	}
	rel := records(t, dir, "release")
	if d := rel[len(rel)-1]; !strings.Contains(d, `client "cvm"`) || !strings.Contains(d, "attested sev-snp measurement a5a5") || !strings.Contains(d, "posture met") {
		t.Fatalf("release record: %q", d)
	}
	// Data keys and bucket key makes are gated too, and pass.
	bad := ad
	bad.KeyVersion = 2
	wbk, kc, err := s.MakeBucketKey(ctx, bad)
	if err != nil {
		t.Fatalf("attested bucket key make: %v", err)
	}
	bk := remote.BucketKey{Bucket: bad.Bucket, Version: 2, Wrapped: wbk, KeyCheck: kc}
	dad := keys.AD{Purpose: keys.PurposeDataKey, Repo: s.Repo(), Bucket: bad.Bucket, KEKVersion: 2, Object: keys.ID{1}}
	alg, data, err := s.WrapDataKey(ctx, bk, dad, k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.UnwrapDataKey(ctx, bk, dad, alg, data); err != nil || !got.Equal(k) {
		t.Fatalf("attested data key unwrap: %v", err)
	}

	// The same client, same evidence, reporting no AES-NI: refused.
	weak := good
	weak.Posture = func() posture.Report { return noAES }
	ws, err := open(t, url, weak)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ws.Unwrap(ctx, w, ad)
	if !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "cpu.aes") {
		t.Fatalf("posture without AES-NI: %v", err)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "posture: ") || !strings.Contains(d, `client "cvm"`) || !strings.Contains(d, "cpu.aes") {
		t.Fatalf("posture refusal not logged: %q", d)
	}
	// Without its attester: refused, naming what is missing.
	bare := good
	bare.Attester = nil
	bs, err := open(t, url, bare)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Unwrap(ctx, w, ad); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "must send sev-snp attestation evidence") {
		t.Fatalf("no evidence: %v", err)
	}

	// A client no rule names, with no attester and no AES-NI: the
	// default rule asks nothing.
	plain := enroll(t, dir, "plain", allGrant)
	plain.Posture = func() posture.Report { return noAES }
	ps, err := open(t, url, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ps.Unwrap(ctx, w, ad); err != nil || !got.Equal(k) {
		t.Fatalf("default rule: %v", err)
	}
}

// rawClient speaks the API directly with a client bundle, to send exactly
// the evidence a test means (the same bytes twice, evidence made for
// another key).
type rawClient struct {
	t    *testing.T
	url  string
	hc   *http.Client
	spki []byte
}

func newRawClient(t *testing.T, url string, c remote.Config) *rawClient {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &rawClient{t: t, url: url, hc: &http.Client{Transport: tr}, spki: cert.Leaf.RawSubjectPublicKeyInfo}
}

func (c *rawClient) call(method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *rawClient) nonce() []byte {
	c.t.Helper()
	code, b := c.call(http.MethodGet, api.PathNonce, nil)
	var n api.Nonce
	if code != http.StatusOK || json.Unmarshal(b, &n) != nil || len(n.Nonce) != attest.NonceSize {
		c.t.Fatalf("nonce: %d %s", code, b)
	}
	return n.Nonce
}

// unwrapBody is an unwrap request of w with claims.
func unwrapBody(t *testing.T, w keys.Wrapped, ad keys.AD, r posture.Report, ev *attest.Evidence) []byte {
	t.Helper()
	b, err := json.Marshal(&api.UnwrapRequest{Wrapped: w, AD: ad, Claims: api.Claims{Posture: &r, Attestation: ev}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReleaseRefusals: for the client an attestation rule names, good
// evidence is released (the control, made anew before each case); each
// refusal differs from it in one thing, is answered 403 with a message
// naming what failed, and is in the key-operation log with its reason.
func TestReleaseRefusals(t *testing.T) {
	dir, url, chain, srv := attestedServer(t)
	other, err := attesttest.OtherChain()
	if err != nil {
		t.Fatal(err)
	}
	cfg := enroll(t, dir, "cvm", allGrant)
	// A wrap to unwrap, by an unattested admin (wraps release nothing).
	admin, err := open(t, url, enroll(t, dir, "admin", allGrant))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := secret.New()
	defer k.Wipe()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: admin.Repo(), Bucket: keys.ID{5}, KEKVersion: 1, KeyVersion: 1}
	w, err := admin.Wrap(context.Background(), 1, ad, k)
	if err != nil {
		t.Fatal(err)
	}
	c := newRawClient(t, url, cfg)
	otherKey := newRawClient(t, url, enroll(t, dir, "elsewhere", allGrant)).spki

	// evidence is a report by ch for a new nonce, bound to spki.
	type opts struct {
		ch      *attesttest.Chain
		spki    []byte
		m       []byte
		debug   bool
		posture posture.Report
	}
	goodOpts := func() opts { return opts{ch: chain, spki: c.spki, m: goodMeasurement, posture: withAES} }
	body := func(o opts) []byte {
		n := c.nonce()
		r, err := o.ch.Report(attest.ReportData(n, o.spki), o.m, o.debug)
		if err != nil {
			t.Fatal(err)
		}
		return unwrapBody(t, w, ad, o.posture, &attest.Evidence{Type: attest.TypeSEVSNP, Nonce: n, Report: r})
	}
	control := func() []byte {
		t.Helper()
		b := body(goodOpts())
		code, out := c.call(http.MethodPost, api.PathUnwrap, b)
		var kr api.KeyResponse
		if code != http.StatusOK || json.Unmarshal(out, &kr) != nil || !bytes.Equal(kr.Key, keyBytes(k)) {
			t.Fatalf("control: %d %s", code, out)
		}
		return b
	}
	cases := []struct {
		name   string
		body   func(sent []byte) []byte // sent: the control's request
		reason string                   // the log's
		want   string                   // in the answer and the log
	}{
		{"posture without AES-NI", func([]byte) []byte { o := goodOpts(); o.posture = noAES; return body(o) }, "posture", "cpu.aes"},
		{"replayed", func(sent []byte) []byte { return sent }, "attestation", "attestation replayed"},
		{"unbound", func([]byte) []byte { o := goodOpts(); o.spki = otherKey; return body(o) }, "attestation", "attestation unbound"},
		{"wrong measurement", func([]byte) []byte { o := goodOpts(); o.m = attesttest.Measurement(0x5A); return body(o) }, "attestation", "attestation measurement"},
		{"untrusted signer", func([]byte) []byte { o := goodOpts(); o.ch = other; return body(o) }, "attestation", "attestation untrusted-signer"},
		{"debug guest", func([]byte) []byte { o := goodOpts(); o.debug = true; return body(o) }, "attestation", "attestation debug"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sent := control()
			if e := lastAudit(t, dir, audit.KindKey); e.Op != "release" || e.Actor != "cvm" || !strings.Contains(e.Detail, "attested sev-snp") {
				t.Fatalf("control: the release's audit entry: %+v", e)
			}
			before := len(records(t, dir, "refuse"))
			beforeAudit := len(auditEntries(t, dir, audit.KindRefusal))
			code, out := c.call(http.MethodPost, api.PathUnwrap, tc.body(sent))
			var e api.Error
			if code != http.StatusForbidden || json.Unmarshal(out, &e) != nil || e.Code != api.CodeRefused || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("want 403 refused naming %q, got %d %s", tc.want, code, out)
			}
			rs := records(t, dir, "refuse")
			if len(rs) != before+1 {
				t.Fatalf("%d refusal records added, want 1", len(rs)-before)
			}
			if d := rs[len(rs)-1]; !strings.HasPrefix(d, tc.reason+": ") || !strings.Contains(d, `client "cvm"`) || !strings.Contains(d, tc.want) {
				t.Fatalf("refusal record: %q", d)
			}
			// The same refusal in the audit log: the client, the
			// operation, the reason as status.
			as := auditEntries(t, dir, audit.KindRefusal)
			if len(as) != beforeAudit+1 {
				t.Fatalf("%d refusal entries added to the audit log, want 1", len(as)-beforeAudit)
			}
			if e := as[len(as)-1]; e.Actor != "cvm" || e.Op != "unwrap" || e.Status != tc.reason || !strings.Contains(e.Detail, tc.want) {
				t.Fatalf("audit refusal entry: %+v", e)
			}
			t.Logf("logged: %s", rs[len(rs)-1])
		})
	}

	// Intel's TDX sample quote, for a client whose rule wants TDX with the
	// sample's own MRTD: its signature verifies against Intel's root
	// (checked at a date inside its PCK chain's validity), but its fixed
	// report data is not our binding of this nonce and key: unbound.
	keyserver.SetAttestationTimeForTest(srv, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	q := testdata.RawQuote
	mrtd := attestHexMRTD(t, q)
	p := cvmPolicy()
	p.Clients["tdx"] = keyserver.ReleaseRule{Attestation: &attest.Rule{Type: attest.TypeTDX, Measurements: []attest.HexBytes{mrtd}}}
	writePolicy(t, dir, p)
	tc := newRawClient(t, url, enroll(t, dir, "tdx", allGrant))
	code, out := tc.call(http.MethodPost, api.PathUnwrap, unwrapBody(t, w, ad, withAES, &attest.Evidence{Type: attest.TypeTDX, Nonce: tc.nonce(), Report: q}))
	if code != http.StatusForbidden || !strings.Contains(string(out), "attestation unbound") {
		t.Fatalf("TDX sample quote: %d %s", code, out)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "attestation: ") || !strings.Contains(d, `client "tdx"`) || !strings.Contains(d, "unbound") {
		t.Fatalf("TDX refusal record: %q", d)
	}
	if e := lastAudit(t, dir, audit.KindRefusal); e.Actor != "tdx" || e.Status != "attestation" || !strings.Contains(e.Detail, "unbound") {
		t.Fatalf("TDX audit refusal entry: %+v", e)
	}
	keyserver.SetAttestationTimeForTest(srv, time.Time{}) // now, for the test chain's evidence
	// The control for the policy change: cvm still passes.
	control()
	// Every refusal above is in the audit log, and the log is intact.
	if _, err := verifyAudit(t, dir); err != nil {
		t.Fatalf("audit verify after the refusals: %v", err)
	}
}

func keyBytes(k secret.Key) []byte {
	var out []byte
	k.Use(func(b []byte) error { out = append(out, b...); return nil })
	return out
}

// TestReleasePolicyReload: the release policy takes effect, changes and
// goes away without a restart; one that cannot be read releases nothing.
func TestReleasePolicyReload(t *testing.T) {
	dir, url := start(t)
	cfg := enroll(t, dir, "laptop", allGrant)
	cfg.Posture = func() posture.Report { return noAES }
	s, err := open(t, url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, _ := secret.New()
	defer k.Wipe()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.Repo(), Bucket: keys.ID{6}, KEKVersion: 1, KeyVersion: 1}
	w, err := s.Wrap(ctx, 1, ad, k)
	if err != nil {
		t.Fatal(err)
	}
	unwrap := func() error { _, err := s.Unwrap(ctx, w, ad); return err }
	if err := unwrap(); err != nil {
		t.Fatalf("control, no policy file: %v", err)
	}
	writePolicy(t, dir, keyserver.ReleasePolicy{Version: 1, Default: keyserver.ReleaseRule{Posture: &keyserver.PostureRule{Require: []string{posture.CheckAES}}}})
	if err := unwrap(); !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "cpu.aes") {
		t.Fatalf("default rule requiring AES-NI, added while serving: %v", err)
	}
	if d := lastRefusal(t, dir); !strings.HasPrefix(d, "posture: ") || !strings.Contains(d, "default rule") {
		t.Fatalf("not logged: %q", d)
	}
	writePolicy(t, dir, keyserver.ReleasePolicy{Version: 1, Default: keyserver.ReleaseRule{Posture: &keyserver.PostureRule{Require: []string{posture.CheckPCLMUL}}},
		Clients: map[string]keyserver.ReleaseRule{"laptop": {}}})
	if err := unwrap(); err != nil {
		t.Fatalf("a rule for laptop that asks nothing: %v", err)
	}
	// A misspelt requirement is not taken for none: nothing is released.
	if err := os.WriteFile(filepath.Join(dir, keyserver.ReleasePolicyFile), []byte(`{"version":1,"default":{"postur":{}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unwrap(); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("unreadable policy: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, keyserver.ReleasePolicyFile)); err != nil {
		t.Fatal(err)
	}
	if err := unwrap(); err != nil {
		t.Fatalf("policy removed: %v", err)
	}
}
