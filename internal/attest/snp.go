package attest

import (
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify"
)

// verifySNP checks an SEV-SNP report's signature by the VCEK or VLEK in
// its certificate table, and that certificate's chain to the ASK (or
// ASVK) and ARK of roots, at now. Nothing is fetched: a table without the
// signing key's certificate is refused; CRLs are not checked.
func verifySNP(raw []byte, roots Roots, now time.Time) (quote, *Error) {
	att, err := abi.ReportCertsToProto(raw)
	if err != nil {
		return quote{}, fail(FailMalformed, err, "the SEV-SNP report and certificate table do not parse")
	}
	opts := &verify.Options{DisableCertFetching: true, Now: now, TrustedRoots: roots.AMD}
	if err := verify.SnpAttestation(att, opts); err != nil {
		return quote{}, fail(FailSigner, err, "the SEV-SNP report's signature or its VCEK/VLEK certificate does not verify against the trusted AMD roots")
	}
	r := att.GetReport()
	pol, err := abi.ParseSnpPolicy(r.GetPolicy())
	if err != nil {
		return quote{}, fail(FailMalformed, err, "the SEV-SNP guest policy does not parse")
	}
	return quote{typ: TypeSEVSNP, reportData: r.GetReportData(), measurement: r.GetMeasurement(), debug: pol.Debug}, nil
}
