// Package attest owns the attestation evidence a key server client sends
// to have keys released to it (docs/keyserver.md, "Posture and
// attestation"): the single-use nonces the server issues, the binding of
// evidence to a nonce and to the client's TLS key (ReportData), the
// Attester a client gets evidence from (the SEV-SNP guest device), and
// the verification of AMD SEV-SNP reports (go-sev-guest) and Intel TDX
// quotes (go-tdx-guest) against the vendors' roots, an allowed list of
// measurements, and a guest that is not debuggable.
//
// It never fetches anything over the network (no AMD KDS, no Intel PCS):
// what it cannot check offline it does not claim to check. Its only trust
// roots in a shipped binary are the ones embedded in those libraries
// (Roots{} — the zero value); other roots are passed only by tests. It
// holds no key material and never prints or exits.
package attest
