package attest

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-sev-guest/verify/trust"
)

// Roots are the trust roots evidence must chain to. The zero value — the
// only one a shipped binary uses — is the roots embedded in go-sev-guest
// (AMD's ARK and ASK per product line) and Intel's SGX root CA as
// go-tdx-guest embeds it (intelRootPEM). Tests pass others
// (docs/keyserver.md, "Posture and attestation").
type Roots struct {
	// AMD maps a product line ("Milan", "Genoa", "Turin") to its ARK and
	// AS(V)K; nil: go-sev-guest's embedded roots.
	AMD map[string][]*trust.AMDRootCerts
	// Intel is the pool a PCK certificate chain must end in; nil:
	// Intel's SGX root CA (intelRootPEM).
	Intel *x509.CertPool
}

// Rule is what a release policy asks of a client's evidence.
type Rule struct {
	Type string `json:"type"` // TypeSEVSNP or TypeTDX
	// Measurements are the allowed launch measurements: SEV-SNP
	// MEASUREMENT, TDX MRTD (48 bytes each, hex in the policy file).
	Measurements []HexBytes `json:"measurements"`
}

// Validate checks a rule's spelling.
func (r Rule) Validate() error {
	if !slices.Contains(Types(), r.Type) {
		return fmt.Errorf("attestation type %q: want %s", r.Type, strings.Join(Types(), " or "))
	}
	if len(r.Measurements) == 0 {
		return fmt.Errorf("attestation of type %q names no allowed measurement", r.Type)
	}
	for _, m := range r.Measurements {
		if len(m) != measurementSize {
			return fmt.Errorf("measurement %x is %d bytes, want %d", []byte(m), len(m), measurementSize)
		}
	}
	return nil
}

const measurementSize = 48

// HexBytes is bytes written as hex in JSON.
type HexBytes []byte

func (h HexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *HexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("%q is not hex", b)
	}
	*h = d
	return nil
}

// Check is one verification: the rule, who sent the evidence, and what
// it must be bound to.
type Check struct {
	Rule Rule
	// Owner is the client the nonce must have been issued to.
	Owner string
	// SPKI is the SubjectPublicKeyInfo (DER) of the client certificate of
	// the connection the evidence came on.
	SPKI []byte
	// Roots: the zero value is the libraries' embedded roots.
	Roots Roots
	// Now is the time certificates are checked at (zero: now). Only tests
	// of the TDX sample quote, whose certificates are of their day, set it.
	Now time.Time
}

// Result is what verified evidence says.
type Result struct {
	Type        string
	Measurement []byte
}

// Verify checks evidence in this order, and stops at the first failure:
// the type; the nonce (consumed whatever follows); the signature and
// certificate chain against the roots; the report data against
// ReportData(nonce, SPKI); a guest that is not debuggable; the
// measurement against the allowed list.
func Verify(n *Nonces, ev *Evidence, c Check) (Result, error) {
	if ev == nil {
		return Result{}, fail(FailMalformed, nil, "this client must send %s attestation evidence with requests that release keys", c.Rule.Type)
	}
	if ev.Type != c.Rule.Type {
		return Result{}, fail(FailType, nil, "evidence of type %q, the release policy wants %q", ev.Type, c.Rule.Type)
	}
	if err := n.Consume(ev.Nonce, c.Owner); err != nil {
		return Result{}, err
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	var q quote
	var err *Error
	switch ev.Type {
	case TypeSEVSNP:
		q, err = verifySNP(ev.Report, c.Roots, c.Now)
	case TypeTDX:
		q, err = verifyTDX(ev.Report, c.Roots, c.Now)
	}
	if err != nil {
		return Result{}, err
	}
	return q.judge(ReportData(ev.Nonce, c.SPKI), c.Rule)
}

// quote is what a verified report or quote says, for the checks common
// to both types.
type quote struct {
	typ         string
	reportData  []byte
	measurement []byte
	debug       bool
}

func (q quote) judge(want [64]byte, r Rule) (Result, error) {
	if subtle.ConstantTimeCompare(q.reportData, want[:]) != 1 {
		return Result{}, fail(FailUnbound, nil, "the report data is not bound to this key server's nonce and this connection's client key")
	}
	if q.debug {
		return Result{}, fail(FailDebug, nil, "the guest policy allows debugging: the host can read its memory")
	}
	if !slices.ContainsFunc(r.Measurements, func(m HexBytes) bool { return bytes.Equal(m, q.measurement) }) {
		return Result{}, fail(FailMeasurement, nil, "measurement %x is not one the release policy allows", q.measurement)
	}
	return Result{Type: q.typ, Measurement: q.measurement}, nil
}
