package attest_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/holdfast/holdfast/internal/attest"
	"github.com/holdfast/holdfast/internal/attest/attesttest"
)

var spkiA, spkiB = []byte("client A's SubjectPublicKeyInfo"), []byte("client B's SubjectPublicKeyInfo")

func kind(t *testing.T, err error) attest.Failure {
	t.Helper()
	var e *attest.Error
	if !errors.As(err, &e) {
		t.Fatalf("want an *attest.Error, got %v", err)
	}
	return e.Kind
}

// TestSNP: good evidence verifies (the control); each refusal differs
// from it in one thing only.
func TestSNP(t *testing.T) {
	chain, err := attesttest.DefaultChain()
	if err != nil {
		t.Fatal(err)
	}
	other, err := attesttest.OtherChain()
	if err != nil {
		t.Fatal(err)
	}
	good := attesttest.Measurement(0xAA)
	rule := attest.Rule{Type: attest.TypeSEVSNP, Measurements: []attest.HexBytes{good}}
	if err := rule.Validate(); err != nil {
		t.Fatal(err)
	}
	n := &attest.Nonces{}
	// evidence makes a report for a fresh nonce of owner "a", bound to
	// spki, by c.
	evidence := func(c *attesttest.Chain, spki, m []byte, debug bool) *attest.Evidence {
		t.Helper()
		nonce, _, err := n.Issue("a")
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Report(attest.ReportData(nonce, spki), m, debug)
		if err != nil {
			t.Fatal(err)
		}
		return &attest.Evidence{Type: attest.TypeSEVSNP, Nonce: nonce, Report: r}
	}
	check := attest.Check{Rule: rule, Owner: "a", SPKI: spkiA, Roots: chain.Roots()}

	ev := evidence(chain, spkiA, good, false)
	res, err := attest.Verify(n, ev, check)
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	if !bytes.Equal(res.Measurement, good) || res.Type != attest.TypeSEVSNP {
		t.Fatalf("control result %+v", res)
	}
	if _, err := attest.Verify(n, ev, check); kind(t, err) != attest.FailReplayed {
		t.Fatalf("replayed: %v", err)
	}
	cases := []struct {
		name  string
		ev    *attest.Evidence
		check attest.Check
		want  attest.Failure
	}{
		{"unbound", evidence(chain, spkiB, good, false), check, attest.FailUnbound},
		{"measurement", evidence(chain, spkiA, attesttest.Measurement(0xBB), false), check, attest.FailMeasurement},
		{"untrusted signer", evidence(other, spkiA, good, false), check, attest.FailSigner},
		{"debug", evidence(chain, spkiA, good, true), check, attest.FailDebug},
		// The production roots (AMD's, embedded in go-sev-guest) do not
		// trust the test chain.
		{"production roots", evidence(chain, spkiA, good, false), attest.Check{Rule: rule, Owner: "a", SPKI: spkiA}, attest.FailSigner},
		{"another client's nonce", evidence(chain, spkiA, good, false), attest.Check{Rule: rule, Owner: "b", SPKI: spkiA, Roots: chain.Roots()}, attest.FailReplayed},
		{"wrong type", func() *attest.Evidence { e := evidence(chain, spkiA, good, false); e.Type = attest.TypeTDX; return e }(), check, attest.FailType},
		{"no evidence", nil, check, attest.FailMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attest.Verify(n, tc.ev, tc.check)
			if got := kind(t, err); got != tc.want {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
			// The control, made the same way, still passes.
			if _, err := attest.Verify(n, evidence(chain, spkiA, good, false), check); err != nil {
				t.Fatalf("control after: %v", err)
			}
		})
	}
}

// sampleTime is within the validity of the TDX sample quote's PCK chain
// (its leaf: 2022-09-20 to 2029-09-20).
var sampleTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// TestTDXSample: Intel's sample quote (go-tdx-guest testing/testdata)
// verifies — signature, QE report, PCK chain to the Intel root — at a time
// within its certificates' validity, with the production roots (the
// positive path); the same quote under a root that is not Intel's is from
// an untrusted signer; and, as evidence, its fixed report data is not our
// binding, so it is refused as unbound after its signature passed.
func TestTDXSample(t *testing.T) {
	m, rd, debug, err := attest.VerifyTDXSignature(testdata.RawQuote, attest.Roots{}, sampleTime)
	if err != nil {
		t.Fatalf("control: the unmodified sample quote does not verify: %v", err)
	}
	t.Logf("sample MRTD %x debug %v report data %x", m, debug, rd)
	// One byte of the signed body changed: the quote's signature fails.
	bad := bytes.Clone(testdata.RawQuote)
	bad[48+200] ^= 1 // inside the TD quote body (header is 48 bytes)
	if _, _, _, err := attest.VerifyTDXSignature(bad, attest.Roots{}, sampleTime); kind(t, err) != attest.FailSigner {
		t.Fatalf("altered quote: %v", err)
	}
	// A root pool without Intel's: untrusted signer.
	chain, err := attesttest.DefaultChain()
	if err != nil {
		t.Fatal(err)
	}
	amdOnly := x509.NewCertPool()
	for _, r := range chain.Roots().AMD {
		amdOnly.AddCert(r[0].ProductCerts.Ark)
	}
	if _, _, _, err := attest.VerifyTDXSignature(testdata.RawQuote, attest.Roots{Intel: amdOnly}, sampleTime); kind(t, err) != attest.FailSigner {
		t.Fatalf("untrusted root: %v", err)
	}
	// The library's own default root (nil pool) agrees with ours.
	if _, _, _, err := attest.VerifyTDXSignature(testdata.RawQuote, attest.Roots{Intel: nil}, sampleTime); err != nil {
		t.Fatal(err)
	}

	// As evidence with a nonce: everything the rule names matches (type,
	// measurement), the signature verifies, the binding cannot.
	rule := attest.Rule{Type: attest.TypeTDX, Measurements: []attest.HexBytes{m}}
	n := &attest.Nonces{}
	nonce, _, err := n.Issue("a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = attest.Verify(n, &attest.Evidence{Type: attest.TypeTDX, Nonce: nonce, Report: testdata.RawQuote},
		attest.Check{Rule: rule, Owner: "a", SPKI: spkiA, Now: sampleTime})
	if kind(t, err) != attest.FailUnbound {
		t.Fatalf("sample quote as evidence: %v, want unbound", err)
	}
}

// TestIntelRoot: the embedded Intel root is the root of the real sample
// quote's PCK chain, byte for byte.
func TestIntelRoot(t *testing.T) {
	q, err := tdxabi.QuoteToProto(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	chain := q.(*tdxpb.QuoteV4).GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	var last *pem.Block
	for rest := chain; ; {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		last, rest = b, r
	}
	ours, _ := pem.Decode(attest.IntelRootPEM)
	if last == nil || ours == nil || !bytes.Equal(last.Bytes, ours.Bytes) {
		t.Fatal("the embedded Intel root is not the sample quote's root CA")
	}
	c, err := x509.ParseCertificate(ours.Bytes)
	if err != nil || c.Subject.CommonName != "Intel SGX Root CA" {
		t.Fatalf("embedded root: %v %v", c, err)
	}
}

// TestNonces: a nonce is single-use, bound to its owner, and expires.
func TestNonces(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	n := &attest.Nonces{Now: func() time.Time { return now }}
	a, _, err := n.Issue("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Consume(a, "a"); err != nil {
		t.Fatalf("control: %v", err)
	}
	if err := n.Consume(a, "a"); err == nil {
		t.Fatal("a nonce used twice")
	}
	b, _, _ := n.Issue("a")
	now = now.Add(attest.NonceTTL)
	if err := n.Consume(b, "a"); err == nil {
		t.Fatal("an expired nonce was accepted")
	}
	now = now.Add(-attest.NonceTTL)
	c, _, _ := n.Issue("a")
	if err := n.Consume(c, "b"); err == nil {
		t.Fatal("another client's nonce was accepted")
	}
	// Per owner, only the newest 16 stay: the oldest is dropped.
	var first []byte
	for i := range 17 {
		x, _, err := n.Issue("flood")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = x
		}
		now = now.Add(time.Millisecond)
	}
	if err := n.Consume(first, "flood"); err == nil {
		t.Fatal("the 17th nonce of one client did not drop its oldest")
	}
	d, _, _ := n.Issue("a")
	if err := n.Consume(d, "a"); err != nil {
		t.Fatalf("another client's nonces were affected by the flood: %v", err)
	}
}

// TestNoDevice: the production attester fails cleanly where there is no
// /dev/sev-guest (as on the CI hosts).
func TestNoDevice(t *testing.T) {
	a, err := attest.NewAttester(attest.TypeSEVSNP)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Evidence(t.Context(), [64]byte{})
	if fileExists("/dev/sev-guest") {
		t.Logf("this host has /dev/sev-guest: %v", err)
		return
	}
	if !errors.Is(err, attest.ErrNoDevice) {
		t.Fatalf("want ErrNoDevice, got %v", err)
	}
}
