package attest

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
)

// Evidence types (release-policy.json "attestation.type", keysource.json
// "attestation").
const (
	TypeSEVSNP = "sev-snp"
	TypeTDX    = "tdx"
)

// Types lists the evidence types this package verifies.
func Types() []string { return []string{TypeSEVSNP, TypeTDX} }

// Evidence is what a client sends with a request that releases keys.
type Evidence struct {
	Type string `json:"type"`
	// Nonce is the one the server issued for this request (NonceSize).
	Nonce []byte `json:"nonce"`
	// Report is, for sev-snp, the raw attestation report followed by the
	// extended report's certificate table (what go-sev-guest's quote
	// providers return; the table must hold the VCEK or VLEK: nothing is
	// fetched); for tdx, the raw quote (version 4).
	Report []byte `json:"report"`
}

// Attester gets evidence from the platform this process runs on, with
// reportData as its 64 bytes of report data (ReportData). The Nonce is
// the caller's to fill in.
type Attester interface {
	Type() string
	Evidence(ctx context.Context, reportData [64]byte) (Evidence, error)
}

// bindingLabel prefixes the hash that binds evidence to a nonce and a
// TLS key.
const bindingLabel = "holdfast/v1/attest"

// ReportData is the report data evidence must carry for nonce and the
// client's TLS certificate's SubjectPublicKeyInfo (DER):
// SHA-512("holdfast/v1/attest" || nonce || SHA-256(spki)).
func ReportData(nonce, spki []byte) [64]byte {
	k := sha256.Sum256(spki)
	h := sha512.New()
	h.Write([]byte(bindingLabel))
	h.Write(nonce)
	h.Write(k[:])
	var out [64]byte
	h.Sum(out[:0])
	return out
}

// Failure names what was wrong with evidence (the refusal's kind in the
// key server's log and in the client's error).
type Failure string

const (
	FailMalformed   Failure = "malformed"        // not parseable, or no evidence where a rule wants it
	FailType        Failure = "wrong-type"       // not the type the rule names
	FailReplayed    Failure = "replayed"         // nonce unknown, expired, already used, or another client's
	FailSigner      Failure = "untrusted-signer" // signature or certificate chain does not verify against the trusted roots
	FailUnbound     Failure = "unbound"          // report data is not this nonce and this connection's TLS key
	FailDebug       Failure = "debug"            // the guest is debuggable (its memory is readable by the host)
	FailMeasurement Failure = "measurement"      // the measurement is not in the allowed list
)

// Error is a refusal of evidence. Msg is safe to show the client (it
// names nothing the client did not send); Detail, for the log, may add
// the verifier library's own words.
type Error struct {
	Kind   Failure
	Msg    string
	Detail string
}

func (e *Error) Error() string { return fmt.Sprintf("attestation %s: %s", e.Kind, e.Msg) }

func fail(kind Failure, detail error, f string, a ...any) *Error {
	e := &Error{Kind: kind, Msg: fmt.Sprintf(f, a...)}
	if detail != nil {
		e.Detail = detail.Error()
	}
	return e
}

// ErrNoDevice: this host cannot produce evidence (no guest device).
var ErrNoDevice = errors.New("no attestation device on this host")
