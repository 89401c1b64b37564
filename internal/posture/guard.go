package posture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/harden"
)

// DefaultInterval is how often a Guard re-checks posture when its
// Interval is zero.
const DefaultInterval = 60 * time.Second

// ErrSealed is wrapped by the error Guard.Acquire returns while keys are
// sealed.
var ErrSealed = errors.New("keys sealed")

// errChanging is why Acquire refuses while keys are being sealed or
// unsealed.
var errChanging = errors.New("keys are being sealed or unsealed")

// errNotChecked is why a Guard that has not checked yet is sealed.
var errNotChecked = errors.New("posture not checked yet")

// SealedError says why keys are sealed. It wraps ErrSealed and the reason
// (an *UnmetError, or the error of the Unseal callback).
type SealedError struct{ Reason error }

func (e *SealedError) Error() string {
	var u *UnmetError
	if errors.As(e.Reason, &u) {
		c := u.Unmet[0]
		return fmt.Sprintf("keys sealed: posture check %s failed: %s; policy %q requires it: %s%s", c.Name, Problem(c.Check), u.Policy, Fix(c.Name), u.more())
	}
	return "keys sealed: " + e.Reason.Error()
}

func (e *SealedError) Unwrap() []error { return []error{ErrSealed, e.Reason} }

// ReadHost applies this process's hardening again (harden.Apply is safe to
// repeat and looks for a tracer anew) and reads every check of this host.
// It is what a Guard reads when its Read field is nil.
func ReadHost() Report {
	hr := harden.Apply()
	return Run(Options{Hardening: &hr})
}

// Guard keeps a long-running process's keys sealed whenever its policy is
// not met. It re-checks the posture every Interval and on SIGHUP (Run), or
// when told to (Recheck). When a required check fails it calls Seal, which
// wipes the keys; when a later check passes it calls Unseal, which makes
// them available again. Request handlers ask Acquire for permission to use
// the keys and are given a clear error while sealed.
//
// A new Guard is sealed: keys are made available by the first passing
// check, never before. Set the fields before the first Recheck or Run and
// do not change them after. The callbacks run inside a check: Seal and
// Unseal while no permission is outstanding and none can be given, so
// they must not call Acquire; none of them may call Recheck.
type Guard struct {
	// Policy judges each reading. Required unless Load is set.
	Policy *Policy
	// Load, if set, reads the policy anew at every check (a policy file
	// edited, then SIGHUP sent); it replaces Policy. An error seals, with
	// that error as the reason: a policy that cannot be read is not met.
	Load func() (*Policy, error)
	// Read returns the posture; nil means ReadHost. Tests feed crafted
	// checks here to simulate posture changes.
	Read func() Report
	// Seal is called, with no permission outstanding, when a check fails
	// after keys were unsealed: it must wipe them. May be nil.
	Seal func(reason error)
	// Unseal is called when a check passes while sealed: it makes the keys
	// available. An error keeps the guard sealed with that reason. May be
	// nil.
	Unseal func() error
	// BeginSeal, if set, is called when a seal begins, before it waits
	// for the permissions outstanding to be released (from then on
	// Acquire refuses and Sealing is true). Only when keys were unsealed.
	BeginSeal func(reason error)
	// Notify, if set, is called after a check whose outcome (the unmet and
	// warned checks) differs from the previous one's, the first check
	// included: a process logs warnings once, not every interval.
	Notify func(Verdict)
	// Hup, if set, is called after each check Run makes on a SIGHUP, with
	// its outcome (nil: unsealed): an operator who sent the signal hears
	// back even when nothing changed.
	Hup func(err error)
	// Interval between checks in Run; zero means DefaultInterval.
	Interval time.Duration

	// newTicker makes Run's clock; tests replace it with a channel they
	// tick by hand.
	newTicker func(time.Duration) (<-chan time.Time, func())

	checking sync.Mutex            // one check at a time
	keys     sync.RWMutex          // read: permissions outstanding; write: sealing or unsealing
	sealing  atomic.Pointer[error] // set while a seal waits for permissions to be released
	open     bool                  // unsealed; guarded by keys
	why      error                 // why sealed; guarded by keys
	last     string                // the previous check's outcome; guarded by checking
}

// Acquire asks for permission to use the keys. It returns a release
// function the caller must call once done with them, or, while sealed, a
// *SealedError (wrapping ErrSealed) saying which check failed. Sealing
// waits until every permission is released, so no request uses keys that
// are being wiped; a request that streams for long should acquire per
// chunk.
func (g *Guard) Acquire() (release func(), err error) {
	if why := g.sealing.Load(); why != nil {
		// A seal is waiting for outstanding permissions: new requests are
		// refused at once rather than queued behind it.
		return nil, &SealedError{*why}
	}
	// Never wait: a holder of a permission may ask for another (a
	// response body read inside its request's handler), and a read lock
	// requested while a seal waits would deadlock.
	if !g.keys.TryRLock() {
		if why := g.sealing.Load(); why != nil {
			return nil, &SealedError{*why}
		}
		return nil, &SealedError{errChanging}
	}
	if !g.open {
		why := g.why
		g.keys.RUnlock()
		if why == nil {
			why = errNotChecked
		}
		return nil, &SealedError{why}
	}
	return sync.OnceFunc(g.keys.RUnlock), nil
}

// Sealing reports whether a seal has begun: it is waiting for the
// permissions outstanding to be released, or is wiping keys. Holders of a
// permission that stream for long (a request body being read, a response
// being sent) check it between pieces of work and stop, so that a seal is
// not held off by a slow client.
func (g *Guard) Sealing() bool { return g.sealing.Load() != nil }

// Sealed reports whether keys are sealed, and why.
// Like Acquire it never waits: during a seal or an unseal it reports
// sealed.
func (g *Guard) Sealed() (bool, error) {
	if why := g.sealing.Load(); why != nil {
		return true, &SealedError{*why}
	}
	if !g.keys.TryRLock() {
		return true, &SealedError{errChanging}
	}
	defer g.keys.RUnlock()
	if g.open {
		return false, nil
	}
	if g.why == nil {
		return true, &SealedError{errNotChecked}
	}
	return true, &SealedError{g.why}
}

// Recheck reads the posture now, judges it, and seals or unseals. It
// returns nil when keys are unsealed afterwards, or the *SealedError.
func (g *Guard) Recheck() error {
	g.checking.Lock()
	defer g.checking.Unlock()
	read := g.Read
	if read == nil {
		read = ReadHost
	}
	p := g.Policy
	if g.Load != nil {
		var err error
		if p, err = g.Load(); err != nil {
			return g.sealWith(fmt.Errorf("reading the posture policy: %w", err))
		}
	}
	if p == nil {
		return g.sealWith(errors.New("the guard has no policy"))
	}
	v := p.Evaluate(read())
	if o := outcome(v); o != g.last {
		g.last = o
		if g.Notify != nil {
			g.Notify(v)
		}
	}
	if err := v.Err(); err != nil {
		return g.sealWith(err)
	}
	if g.open {
		return nil
	}
	g.keys.Lock()
	defer g.keys.Unlock()
	if g.Unseal != nil {
		if err := g.Unseal(); err != nil {
			g.why = fmt.Errorf("unsealing after a passing posture check: %w", err)
			return &SealedError{g.why}
		}
	}
	g.open, g.why = true, nil
	return nil
}

// sealWith seals (calling Seal if keys were unsealed) for reason err.
func (g *Guard) sealWith(err error) error {
	g.sealing.Store(&err)
	defer g.sealing.Store(nil)
	// open changes only in a check, under g.checking, which is held here.
	if g.BeginSeal != nil && g.open {
		g.BeginSeal(err)
	}
	g.keys.Lock() // waits for outstanding permissions
	defer g.keys.Unlock()
	if g.open && g.Seal != nil {
		g.Seal(err)
	}
	g.open, g.why = false, err
	return &SealedError{err}
}

// outcome summarises what Notify reports on.
func outcome(v Verdict) string {
	var b strings.Builder
	for _, set := range [][]Judged{v.Unmet, v.Warned} {
		for _, j := range set {
			fmt.Fprintf(&b, "%s=%s:%s,", j.Name, j.Status, j.Value)
		}
		b.WriteByte('|')
	}
	return b.String()
}

// Run checks at once, then every Interval and on every SIGHUP, until ctx
// is done; it returns ctx's error. It leaves the keys as they are when it
// returns: wiping them at exit is the caller's job.
func (g *Guard) Run(ctx context.Context) error {
	return g.run(ctx, g.notifyHUP())
}

// Go is Run in a new goroutine, except that SIGHUP is taken over before
// Go returns: a SIGHUP sent after that is a re-check, never the signal's
// default action (ending the process).
func (g *Guard) Go(ctx context.Context) {
	hup := g.notifyHUP()
	go func() { _ = g.run(ctx, hup) }()
}

func (g *Guard) notifyHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

func (g *Guard) run(ctx context.Context, hup chan os.Signal) error {
	defer signal.Stop(hup)
	d := g.Interval
	if d <= 0 {
		d = DefaultInterval
	}
	newTicker := g.newTicker
	if newTicker == nil {
		newTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	tick, stop := newTicker(d)
	defer stop()
	g.Recheck() // the outcome is the guard's state
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			g.Recheck()
		case <-hup:
			err := g.Recheck()
			if g.Hup != nil {
				g.Hup(err)
			}
		}
	}
}
