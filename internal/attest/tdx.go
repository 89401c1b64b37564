package attest

import (
	"crypto/x509"
	_ "embed"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxverify "github.com/google/go-tdx-guest/verify"
)

// intelRootPEM is Intel's SGX Root CA, byte for byte the
// verify/trusted_root.pem that go-tdx-guest v0.3.1 embeds (a test checks
// it is the root of Intel's sample quote). It is passed explicitly:
// given no roots, go-tdx-guest uses the same certificate but writes a
// warning to stdout at every verification.
//
//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// intelRoots is the pool of intelRootPEM.
var intelRoots = func() *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(intelRootPEM) {
		panic("attest: the embedded Intel SGX root CA does not parse") // a fixed file, checked by tests
	}
	return p
}()

// tdAttributesDebug is bit 0 of TDATTRIBUTES: the TD is debuggable.
const tdAttributesDebug = 0x01

// verifyTDX checks a TDX quote (version 4): its PCK certificate chain to
// the Intel root of roots at now, the QE report's signature by the PCK
// key, the QE report data's binding of the attestation key, and the
// quote's signature by that key. Without network it does not check the
// TCB level (Intel's TCB info), the QE identity, or CRLs.
func verifyTDX(raw []byte, roots Roots, now time.Time) (quote, *Error) {
	q, err := tdxabi.QuoteToProto(raw)
	if err != nil {
		return quote{}, fail(FailMalformed, err, "the TDX quote does not parse")
	}
	v4, ok := q.(*tdxpb.QuoteV4)
	if !ok {
		return quote{}, fail(FailMalformed, nil, "the TDX quote is not version 4")
	}
	pool := roots.Intel
	if pool == nil {
		pool = intelRoots
	}
	opts := &tdxverify.Options{Now: now, TrustedRoots: pool}
	if err := tdxverify.TdxQuote(v4, opts); err != nil {
		return quote{}, fail(FailSigner, err, "the TDX quote's signature or its PCK certificate chain does not verify against the trusted Intel root")
	}
	body := v4.GetTdQuoteBody()
	attrs := body.GetTdAttributes()
	return quote{typ: TypeTDX, reportData: body.GetReportData(), measurement: body.GetMrTd(),
		debug: len(attrs) > 0 && attrs[0]&tdAttributesDebug != 0}, nil
}
