package gateway

// Sealing: while the host's posture does not meet the policy, the gateway
// holds no key. A posture.Guard re-checks the posture (on an interval and
// on SIGHUP); when a required check fails it seals: in-flight requests are
// stopped, the repository's and the access table's keys are wiped, and
// every request is answered 503 "keys sealed" (the log and /readyz name
// the failed check), until a passing check unseals (the keyring is opened anew, without a
// person: from an unlocked session or a passphrase file).

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/gofiber/fiber/v3"
	"github.com/versity/versitygw/s3err"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/repo"
)

// UseGuard makes the backend, and the server started with it, obey g:
// every request needs g's permission (refused 503 while sealed), and
// response and request bodies stop when a seal begins. Call it before
// Start. g's Seal and Unseal callbacks are the caller's (see Sealer).
func (b *Backend) UseGuard(g *posture.Guard) { b.guard = g }

// sealedAPIError is the S3 error of a request refused while sealed. It
// does not say which check failed: the refusal comes before
// authentication, and what the host lacks (its hardening, swap, kernel)
// is for its operator — the log, /readyz and the metrics say it — not for
// anyone who can reach the port.
func sealedAPIError() s3err.APIError {
	return s3err.APIError{Code: "ServiceUnavailable", HTTPStatusCode: 503,
		Description: "Keys are sealed: this host's posture does not meet its policy (its operator's log says why). " +
			"Requests succeed again after a passing posture check."}
}

// gate is the front end's first middleware when a guard is in use: the
// request holds a permission while its handler runs (a GET's body, sent
// after, takes its own per read: objectBody).
func (b *Backend) gate(c fiber.Ctx) error {
	release, err := b.guard.Acquire()
	if err != nil {
		if se, ok := b.events.(sealEvents); ok {
			se.RefusedSealed()
		}
		e := sealedAPIError()
		c.Status(e.HTTPStatusCode)
		c.Set("Content-Type", "application/xml")
		c.Set("Retry-After", "60")
		return c.Send(e.XMLBody("", ""))
	}
	defer release()
	return c.Next()
}

// sealEvents is implemented by an Events sink that counts sealing
// (Metrics does).
type sealEvents interface {
	// KeysSealed records whether keys are sealed now.
	KeysSealed(sealed bool)
	// RefusedSealed counts a request refused while sealed (not logged one
	// by one: a sealed gateway under load would flood the log).
	RefusedSealed()
}

// errSealing stops a request or response body when a seal begins.
var errSealing = errors.New("keys are being sealed: the transfer was stopped")

// sealCheck fails a request body's next read once a seal has begun, so
// that a slow client cannot hold the seal off (the seal waits for the
// request's permission).
type sealCheck struct {
	r io.Reader
	g *posture.Guard
}

func (s sealCheck) Read(p []byte) (int, error) {
	if s.g.Sealing() {
		return 0, sealedAPIError()
	}
	return s.r.Read(p)
}

// gated returns r checked against the guard, or r itself without one.
func (b *Backend) gated(r io.Reader) io.Reader {
	if b.guard == nil {
		return r
	}
	return sealCheck{r, b.guard}
}

// bodies are the GET response bodies being sent; a seal stops them.
type bodies struct {
	mu  sync.Mutex
	set map[*objectBody]struct{}
}

func (s *bodies) add(o *objectBody) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = map[*objectBody]struct{}{}
	}
	s.set[o] = struct{}{}
}

func (s *bodies) remove(o *objectBody) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.set, o)
}

// stopAll stops every body being sent: its object reader is closed and
// its keys wiped, and its next Read fails (the front end then cuts the
// connection short of the declared length).
func (s *bodies) stopAll() int {
	s.mu.Lock()
	all := make([]*objectBody, 0, len(s.set))
	for o := range s.set {
		all = append(all, o)
	}
	clear(s.set)
	s.mu.Unlock()
	for _, o := range all {
		o.stop()
	}
	return len(all)
}

// KeyHolder is what else holds keys in a gateway process besides the
// repository: the access table (package access).
type KeyHolder interface {
	Seal()
	Unseal(keys.Source)
}

// Sealer gives up and retakes a gateway's keys: its Seal and Unseal are a
// posture.Guard's callbacks. Seal runs with no request holding a
// permission (the guard waits for them), so no request is using a key
// that is wiped.
type Sealer struct {
	Repo    *repo.Repo
	Access  KeyHolder
	Backend *Backend
	// Reopen opens the repository's key source anew without a person (an
	// unlocked session, a passphrase or PIN file); without it keys stay
	// sealed until the gateway is restarted.
	Reopen func() (repo.RootKeys, error)
	Log    *slog.Logger
}

// Seal wipes every key the gateway holds.
func (s *Sealer) Seal(reason error) {
	stopped := s.Backend.live.stopAll()
	s.Access.Seal()
	s.Repo.SealKeys()
	if se, ok := s.Backend.events.(sealEvents); ok {
		se.KeysSealed(true)
	}
	s.log().Error("keys sealed: requests are refused until a posture check passes", "reason", reason.Error(), "transfers_stopped", stopped)
}

// Unseal takes the keys back, if they were sealed (the first passing
// check finds them open: serve opened them at start).
func (s *Sealer) Unseal() error {
	if !s.Repo.KeysSealed() {
		return nil
	}
	if s.Reopen == nil {
		return errors.New("no way to open the keyring without a person: restart holdfast serve, or run it in an unlocked session (holdfast unlock) or with --passphrase-file")
	}
	kr, err := s.Reopen()
	if err != nil {
		return fmt.Errorf("opening the key source: %w", err)
	}
	if err := s.Repo.UnsealKeys(kr); err != nil {
		return err
	}
	s.Access.Unseal(kr)
	if se, ok := s.Backend.events.(sealEvents); ok {
		se.KeysSealed(false)
	}
	s.log().Info("keys unsealed: the posture check passed")
	return nil
}

func (s *Sealer) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}
