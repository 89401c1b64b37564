package attest

import "time"

// VerifyTDXSignature is the TDX signature and chain check alone, without
// the nonce, binding, debug and measurement checks: the TDX sample
// quote's fixed report data cannot carry a binding, so its signature path
// is shown to work apart from them.
func VerifyTDXSignature(raw []byte, roots Roots, now time.Time) (measurement, reportData []byte, debug bool, err error) {
	q, e := verifyTDX(raw, roots, now)
	if e != nil {
		return nil, nil, false, e
	}
	return q.measurement, q.reportData, q.debug, nil
}

// IntelRootPEM is the embedded Intel root.
var IntelRootPEM = intelRootPEM
