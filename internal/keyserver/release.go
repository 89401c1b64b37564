package keyserver

import (
	"time"

	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/holdfast/holdfast/internal/attest"
	"github.com/holdfast/holdfast/internal/keyserver/api"
	"github.com/holdfast/holdfast/internal/posture"
)

// ReleasePolicyFile is the state directory's release policy
// (docs/keyserver.md, "Posture and attestation"). Its absence means no
// posture or attestation is asked of any client.
const ReleasePolicyFile = "release-policy.json"

// Refusal reasons of the release policy.
const (
	reasonPosture     = "posture"
	reasonAttestation = "attestation"
)

// ReleasePolicy is release-policy.json: what a client's posture and
// attestation must show before a key is released to it (root-level
// unwraps, data-key unwraps, bucket key makes).
type ReleasePolicy struct {
	Version int `json:"version"`
	// Default applies to every client not named in Clients.
	Default ReleaseRule `json:"default"`
	// Clients are rules by enrolled client name; a client's rule replaces
	// the default (it is not merged with it).
	Clients map[string]ReleaseRule `json:"clients,omitempty"`
}

// ReleaseRule is what one client must show.
type ReleaseRule struct {
	Posture     *PostureRule `json:"posture,omitempty"`
	Attestation *attest.Rule `json:"attestation,omitempty"`
}

// PostureRule judges the posture report a client sends with internal/
// posture's vocabulary (docs/in-process.md): a built-in profile's
// required checks, and more checks required by name. Without a profile
// only the named checks are required.
type PostureRule struct {
	Profile string   `json:"profile,omitempty"`
	Require []string `json:"require,omitempty"`
}

// policy is the posture.Policy a rule amounts to.
func (p PostureRule) policy(name string) (*posture.Policy, error) {
	var b strings.Builder
	if p.Profile != "" {
		fmt.Fprintf(&b, "profile %s\n", p.Profile)
	} else {
		// Not baseline: nothing is required but what the rule names.
		for _, n := range posture.Names() {
			if !slices.Contains(p.Require, n) {
				fmt.Fprintf(&b, "%s info\n", n)
			}
		}
	}
	for _, n := range p.Require {
		fmt.Fprintf(&b, "%s require\n", n)
	}
	return posture.Parse(name, strings.NewReader(b.String()))
}

// loadReleasePolicy reads and checks a release policy file; (nil, nil)
// when there is none.
func loadReleasePolicy(path string) (*ReleasePolicy, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p ReleasePolicy
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields() // a misspelt requirement must not pass for none
	if err := d.Decode(&p); err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	if p.Version != 1 {
		return nil, fmt.Errorf("%q: unsupported version %d", path, p.Version)
	}
	check := func(who string, r ReleaseRule) error {
		if r.Posture != nil {
			if _, err := r.Posture.policy(path); err != nil {
				return fmt.Errorf("%q, %s: posture: %w", path, who, err)
			}
		}
		if r.Attestation != nil {
			if err := r.Attestation.Validate(); err != nil {
				return fmt.Errorf("%q, %s: %w", path, who, err)
			}
		}
		return nil
	}
	if err := check("default rule", p.Default); err != nil {
		return nil, err
	}
	for name, r := range p.Clients {
		if err := check(fmt.Sprintf("client %q", name), r); err != nil {
			return nil, err
		}
	}
	return &p, nil
}

// rule returns the rule for a client and where it comes from.
func (p *ReleasePolicy) rule(client string) (ReleaseRule, string) {
	if r, ok := p.Clients[client]; ok {
		return r, fmt.Sprintf("rule for client %q", client)
	}
	return p.Default, "default rule"
}

// release is what gates key releases: the policy, the nonces issued for
// attestation, and the roots evidence must chain to.
type release struct {
	policy *releasePolicy
	nonces *attest.Nonces
	// roots: nil, the AMD and Intel roots embedded in go-sev-guest and
	// go-tdx-guest (attest.Roots{}), in every shipped binary. Only
	// export_test.go sets others (docs/keyserver.md, "Trust roots").
	roots atomic.Pointer[attest.Roots]
	// certTime: nil, now. Only export_test.go sets another, so that a test
	// of a sample whose certificates expire keeps its meaning.
	certTime atomic.Pointer[time.Time]
}

func (r *release) checkTime() time.Time {
	if p := r.certTime.Load(); p != nil {
		return *p
	}
	return time.Time{}
}

func (r *release) trusted() attest.Roots {
	if p := r.roots.Load(); p != nil {
		return *p
	}
	return attest.Roots{}
}

func newRelease(path string) *release {
	return &release{policy: &releasePolicy{path: path}, nonces: &attest.Nonces{}}
}

// releasePolicy is the server's view of release-policy.json, re-read
// whenever it changed (one stat per request that releases a key), as
// clients.json is.
type releasePolicy struct {
	path string

	mu    sync.Mutex
	seen  bool // a stamp was taken (the file existed)
	stamp fileStamp
	p     *ReleasePolicy
}

// get returns the policy in force (nil: none), or why it cannot be read:
// then no key is released (fail closed) until it can.
func (r *releasePolicy) get() (*ReleasePolicy, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.p, r.seen = nil, false
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("checking %q: %w", r.path, err)
	case r.seen && stampOf(fi) == r.stamp:
		return r.p, nil
	}
	p, err := loadReleasePolicy(r.path)
	if err != nil {
		r.seen = false
		return nil, err
	}
	r.p, r.stamp, r.seen = p, stampOf(fi), true
	return p, nil
}

// gate judges a request that releases a key against the release policy:
// the posture the client reports, then its attestation evidence. It
// returns what the release record should add ("" when nothing was
// asked), or a refusal (reason posture or attestation), or an error that
// makes the answer "unavailable" (the policy cannot be read).
func (s *Server) gate(c call, cl api.Claims) (string, error) {
	p, err := s.rel.policy.get()
	if err != nil {
		return "", fmt.Errorf("the release policy cannot be read, so no key is released: %w", err)
	}
	if p == nil {
		return "", nil
	}
	rule, which := p.rule(c.client.Name)
	var notes []string
	if rule.Posture != nil {
		pol, err := rule.Posture.policy(ReleasePolicyFile + " " + which)
		if err != nil {
			return "", err
		}
		if cl.Posture == nil {
			return "", refusalFor(reasonPosture, "the release policy (%s) asks for this host's posture report, and the request carries none", which)
		}
		var u *posture.UnmetError
		if err := pol.Evaluate(*cl.Posture).Err(); errors.As(err, &u) {
			var probs []string
			for _, j := range u.Unmet {
				probs = append(probs, fmt.Sprintf("%s (%s)", j.Name, posture.Problem(j.Check)))
			}
			return "", refusalFor(reasonPosture, "the host's reported posture does not meet the release policy (%s): it requires %s",
				which, strings.Join(probs, ", "))
		}
		notes = append(notes, "posture met")
	}
	if rule.Attestation != nil {
		if c.r.TLS == nil || len(c.r.TLS.PeerCertificates) == 0 {
			return "", refusalFor(reasonAttestation, "no client certificate to bind evidence to")
		}
		res, err := attest.Verify(s.rel.nonces, cl.Attestation, attest.Check{Rule: *rule.Attestation, Owner: c.client.Serial,
			SPKI: c.r.TLS.PeerCertificates[0].RawSubjectPublicKeyInfo, Roots: s.rel.trusted(), Now: s.rel.checkTime()})
		var ae *attest.Error
		if errors.As(err, &ae) {
			return "", &logDetail{refusalFor(reasonAttestation, "%s (release policy: %s)", ae.Error(), which), ae.Detail}
		}
		if err != nil {
			return "", err
		}
		notes = append(notes, fmt.Sprintf("attested %s measurement %x", res.Type, res.Measurement))
	}
	if len(notes) == 0 {
		return "", nil
	}
	return "; " + strings.Join(notes, ", ") + " (" + which + ")", nil
}

// logDetail is an error whose detail goes to the log only (a verifier
// library's own words), not to the client.
type logDetail struct {
	error
	detail string
}

func (e *logDetail) Unwrap() error { return e.error }

// nonce issues an attestation nonce to the client (api.PathNonce).
func (s *Server) nonce(c call) (any, error) {
	n, exp, err := s.rel.nonces.Issue(c.client.Serial)
	if err != nil {
		return nil, err
	}
	return api.Nonce{Nonce: n, Expires: exp}, nil
}
