// Package attesttest makes synthetic attestation evidence for tests:
// SEV-SNP reports signed by go-sev-guest's test-only certificate chain
// (or by a second chain no root trusts), and the trust roots that accept
// the first. Only tests import it; a shipped binary never trusts these
// roots (internal/attest's Roots{} is the libraries' embedded roots).
package attesttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/holdfast/holdfast/internal/attest"
)

// Chain is a test-only AMD chain: ARK → ASK → VCEK.
type Chain struct{ signer *sevtest.AmdSigner }

// productName is the chips the test chains claim to be.
var productName = kds.ProductName(abi.DefaultSevProduct())

// DefaultChain is go-sev-guest's test-only chain (its fixed test keys).
func DefaultChain() (*Chain, error) {
	s, err := sevtest.DefaultTestOnlyCertChain(productName, time.Now().Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	return &Chain{s}, nil
}

// OtherChain is a chain of fresh keys, shaped like the default one but
// trusted by no root: a report it signs is from an untrusted signer.
func OtherChain() (*Chain, error) {
	rsaKey := func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }
	ark, err := rsaKey()
	if err != nil {
		return nil, err
	}
	ask, err := rsaKey()
	if err != nil {
		return nil, err
	}
	vcek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	vlek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	b := &sevtest.AmdSignerBuilder{
		Keys:            &sevtest.AmdKeys{Ark: ark, Ask: ask, Asvk: ask, Vcek: vcek, Vlek: vlek},
		ProductName:     productName,
		CSPID:           "holdfast-untrusted",
		ArkCreationTime: now, AskCreationTime: now, AsvkCreationTime: now, VcekCreationTime: now, VlekCreationTime: now,
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		return nil, err
	}
	return &Chain{s}, nil
}

// Roots trusts this chain's ARK and ASK (for its product line) only.
func (c *Chain) Roots() attest.Roots {
	line := kds.ProductLine(abi.DefaultSevProduct())
	return attest.Roots{AMD: map[string][]*trust.AMDRootCerts{line: {{
		ProductLine:  line,
		ProductCerts: &trust.ProductCerts{Ark: c.signer.Ark, Ask: c.signer.Ask, Asvk: c.signer.Asvk},
	}}}}
}

// Report is a signed SEV-SNP report with reportData and measurement,
// followed by the chain's certificate table (as a guest's quote provider
// returns it).
func (c *Chain) Report(reportData [64]byte, measurement []byte, debug bool) ([]byte, error) {
	r := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: reportData[:]})
	report := r[:abi.ReportSize]
	binary.LittleEndian.PutUint64(report[0x08:0x10], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: debug}))
	if len(measurement) != 48 {
		return nil, fmt.Errorf("measurement of %d bytes, want 48", len(measurement))
	}
	copy(report[0x90:0xC0], measurement)
	rr, ss, err := c.signer.Sign(abi.SignedComponent(report))
	if err != nil {
		return nil, err
	}
	if err := abi.SetSignature(rr, ss, report); err != nil {
		return nil, err
	}
	certs, err := c.signer.CertTableBytes()
	if err != nil {
		return nil, err
	}
	return append(append([]byte(nil), report...), certs...), nil
}

// Measurement is a fixed test measurement; Measurement(n) another.
func Measurement(n byte) []byte {
	m := make([]byte, 48)
	for i := range m {
		m[i] = n
	}
	return m
}

// SNP is a synthetic SEV-SNP guest: an attest.Attester whose reports the
// chain signs, with a measurement and a debug bit.
type SNP struct {
	Chain       *Chain
	Measurement []byte
	Debug       bool
}

func (a *SNP) Type() string { return attest.TypeSEVSNP }

func (a *SNP) Evidence(ctx context.Context, reportData [64]byte) (attest.Evidence, error) {
	r, err := a.Chain.Report(reportData, a.Measurement, a.Debug)
	return attest.Evidence{Type: attest.TypeSEVSNP, Report: r}, err
}
