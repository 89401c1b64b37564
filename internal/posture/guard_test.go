package posture

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// feed is a posture that the test changes: Read returns the latest
// report set.
type feed struct {
	mu  sync.Mutex
	rep Report
}

func (f *feed) set(r Report) { f.mu.Lock(); f.rep = r; f.mu.Unlock() }
func (f *feed) read() Report { f.mu.Lock(); defer f.mu.Unlock(); return f.rep }

// server stands in for a gateway: a key that Seal wipes and Unseal
// restores, and a request handler that serves only with permission.
type server struct {
	g               *Guard
	mu              sync.Mutex
	key             []byte
	seals, unseals  int
	failNextUnseal  bool
	notes           []Verdict
	servedWithWiped bool
}

func newServer(p *Policy, read func() Report) *server {
	s := &server{}
	s.g = &Guard{
		Policy: p,
		Read:   read,
		Seal: func(error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			clear(s.key)
			s.key = nil
			s.seals++
		},
		Unseal: func() error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.failNextUnseal {
				s.failNextUnseal = false
				return errors.New("keyring session gone")
			}
			s.key = bytes.Repeat([]byte{0x42}, 32)
			s.unseals++
			return nil
		},
		Notify: func(v Verdict) { s.notes = append(s.notes, v) },
	}
	return s
}

// serve handles one request: it uses the key only with permission.
func (s *server) serve() error {
	release, err := s.g.Acquire()
	if err != nil {
		return err
	}
	defer release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.key) == 0 {
		s.servedWithWiped = true
		return errors.New("served without a key")
	}
	return nil
}

func (s *server) counts() (int, int) { s.mu.Lock(); defer s.mu.Unlock(); return s.seals, s.unseals }

var (
	passing = crafted()          // a confidential VM
	failing = crafted(vm...)     // an ordinary VM: cvm.type and cvm.attestation fail confidential
	warning = crafted(vm[2:]...) // a confidential VM without lockdown: passes with a warning
)

// TestGuardSealsAndUnseals moves a guard from unsealed to sealed and back
// by simulated posture changes, checking that no request is served while
// sealed and that requests are served again after a passing re-check.
func TestGuardSealsAndUnseals(t *testing.T) {
	conf, _ := Profile(ProfileConfidential)
	f := &feed{rep: passing}
	s := newServer(conf, f.read)

	// A new guard is sealed: nothing has been checked.
	if err := s.serve(); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "not checked yet") {
		t.Fatalf("before the first check: %v, want sealed, not checked yet", err)
	}
	// Positive control: a passing check unseals, requests are served.
	if err := s.g.Recheck(); err != nil {
		t.Fatalf("passing check: %v", err)
	}
	if err := s.serve(); err != nil {
		t.Fatalf("after a passing check: %v", err)
	}
	if sealed, err := s.g.Sealed(); sealed || err != nil {
		t.Errorf("Sealed() = %v, %v after a passing check", sealed, err)
	}
	// The posture changes: the next check seals and wipes the key.
	f.set(failing)
	err := s.g.Recheck()
	const why = `keys sealed: posture check cvm.type failed: this host is not a confidential VM (none); policy "confidential" requires it: run on an AMD SEV-SNP or Intel TDX guest (also unmet: cvm.attestation)`
	if err == nil || err.Error() != why {
		t.Fatalf("failing check: %v\nwant %s", err, why)
	}
	for i := range 3 {
		err := s.serve()
		var se *SealedError
		var ue *UnmetError
		if !errors.Is(err, ErrSealed) || !errors.As(err, &se) || !errors.As(err, &ue) || err.Error() != why {
			t.Errorf("request %d while sealed: %v", i, err)
		}
	}
	if sealed, err := s.g.Sealed(); !sealed || err == nil || err.Error() != why {
		t.Errorf("Sealed() = %v, %v", sealed, err)
	}
	// Still failing: still sealed, Seal not called again.
	if err := s.g.Recheck(); !errors.Is(err, ErrSealed) {
		t.Errorf("second failing check: %v", err)
	}
	if seals, unseals := s.counts(); seals != 1 || unseals != 1 {
		t.Errorf("%d seals, %d unseals; want 1 and 1", seals, unseals)
	}
	// A passing re-check whose unseal fails stays sealed, saying why.
	f.set(passing)
	s.failNextUnseal = true
	if err := s.g.Recheck(); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "keyring session gone") {
		t.Errorf("check passing, unseal failing: %v", err)
	}
	if err := s.serve(); !errors.Is(err, ErrSealed) {
		t.Errorf("request after a failed unseal: %v", err)
	}
	// The next passing re-check unseals: requests are served again.
	if err := s.g.Recheck(); err != nil {
		t.Fatalf("passing re-check: %v", err)
	}
	if err := s.serve(); err != nil {
		t.Errorf("request after a passing re-check: %v", err)
	}
	if seals, unseals := s.counts(); seals != 1 || unseals != 2 {
		t.Errorf("%d seals, %d unseals; want 1 and 2", seals, unseals)
	}
	if s.servedWithWiped {
		t.Error("a request was served with a wiped key")
	}
	// Notify saw each change once: pass, fail, pass (the repeated failing
	// check and the failed unseal were no change of posture).
	var got []string
	for _, v := range s.notes {
		got = append(got, strings.Join(judgedNames(v.Unmet), "+"))
	}
	if strings.Join(got, ",") != ",cvm.type+cvm.attestation," {
		t.Errorf("Notify saw unmet %q, want pass, the two CVM checks, pass", got)
	}
}

// TestGuardSealWaitsForRequests: a request holding permission keeps its
// key until it releases; the seal happens then, and later requests are
// refused.
func TestGuardSealWaitsForRequests(t *testing.T) {
	conf, _ := Profile(ProfileConfidential)
	f := &feed{rep: passing}
	s := newServer(conf, f.read)
	if err := s.g.Recheck(); err != nil {
		t.Fatal(err)
	}
	release, err := s.g.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	f.set(failing)
	done := make(chan error)
	go func() { done <- s.g.Recheck() }()
	// While permission is held, the key must still be there (the seal
	// cannot have run, whenever the re-check got to it).
	s.mu.Lock()
	kept := len(s.key) == 32
	s.mu.Unlock()
	if !kept {
		t.Error("the key was wiped while a request held permission")
	}
	release()
	release() // a second call is harmless
	if err := <-done; !errors.Is(err, ErrSealed) {
		t.Errorf("re-check: %v", err)
	}
	if seals, _ := s.counts(); seals != 1 {
		t.Errorf("%d seals after release, want 1", seals)
	}
	if err := s.serve(); !errors.Is(err, ErrSealed) {
		t.Errorf("request after the seal: %v", err)
	}
}

// TestGuardRefusesDuringSeal: once a seal has begun (it waits for a
// permission still held), new requests are refused at once, not queued
// behind it — also for a holder asking for a second permission, which a
// queued read lock would deadlock — and Sealed answers without waiting.
func TestGuardRefusesDuringSeal(t *testing.T) {
	conf, _ := Profile(ProfileConfidential)
	f := &feed{rep: passing}
	s := newServer(conf, f.read)
	begun := make(chan bool, 1)
	s.g.BeginSeal = func(error) { begun <- s.g.Sealing() }
	if err := s.g.Recheck(); err != nil {
		t.Fatal(err)
	}
	release, err := s.g.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	// Control: with no seal under way, a second permission is given.
	again, err := s.g.Acquire()
	if err != nil || s.g.Sealing() {
		t.Fatalf("second permission before any seal: %v (sealing %v)", err, s.g.Sealing())
	}
	again()
	f.set(failing)
	done := make(chan error, 1)
	go func() { done <- s.g.Recheck() }()
	if sealing := <-begun; !sealing {
		t.Error("Sealing() false when the seal began")
	}
	if _, err := s.g.Acquire(); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "cvm.type") {
		t.Errorf("Acquire during the seal: %v", err)
	}
	if sealed, err := s.g.Sealed(); !sealed || !errors.Is(err, ErrSealed) {
		t.Errorf("Sealed() during the seal: %v, %v", sealed, err)
	}
	release()
	if err := <-done; !errors.Is(err, ErrSealed) {
		t.Errorf("re-check: %v", err)
	}
	if s.g.Sealing() {
		t.Error("Sealing() still true after the seal")
	}
	// BeginSeal is for a seal of open keys only: a check failing again
	// while sealed does not call it.
	if err := s.g.Recheck(); !errors.Is(err, ErrSealed) {
		t.Errorf("second failing re-check: %v", err)
	}
	select {
	case <-begun:
		t.Error("BeginSeal called while already sealed")
	default:
	}
}

// TestGuardLoadsPolicy: with Load, each check reads the policy anew; a
// policy that cannot be read seals, naming why.
func TestGuardLoadsPolicy(t *testing.T) {
	base, _ := Profile(ProfileBaseline)
	conf, _ := Profile(ProfileConfidential)
	var cur *Policy = base
	var loadErr error
	s := newServer(nil, func() Report { return failing }) // an ordinary VM: fails confidential only
	s.g.Load = func() (*Policy, error) { return cur, loadErr }
	if err := s.g.Recheck(); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	cur = conf
	if err := s.g.Recheck(); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "cvm.type") {
		t.Errorf("confidential: %v", err)
	}
	cur = base
	if err := s.g.Recheck(); err != nil {
		t.Errorf("baseline again: %v", err)
	}
	loadErr = errors.New("policy file is writable by others")
	if err := s.g.Recheck(); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "reading the posture policy: policy file is writable by others") {
		t.Errorf("unreadable policy: %v", err)
	}
	if seals, unseals := s.counts(); seals != 2 || unseals != 2 {
		t.Errorf("%d seals, %d unseals; want 2 and 2", seals, unseals)
	}
}

// TestGuardWarnings: a passing posture with a weakness stays unsealed and
// is notified once, not at every check.
func TestGuardWarnings(t *testing.T) {
	conf, _ := Profile(ProfileConfidential)
	s := newServer(conf, func() Report { return warning })
	for range 3 {
		if err := s.g.Recheck(); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.notes) != 1 || strings.Join(judgedNames(s.notes[0].Warned), ",") != CheckLockdown {
		t.Errorf("notes %+v, want one warning about kernel.lockdown", s.notes)
	}
	if err := s.serve(); err != nil {
		t.Errorf("request: %v", err)
	}
	// No policy: sealed, never a panic.
	g := &Guard{Read: func() Report { return passing }}
	if err := g.Recheck(); !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), "no policy") {
		t.Errorf("guard without a policy: %v", err)
	}
}

// runGuard starts Run on a guard whose every Read takes the next report
// from the returned channel, with a clock ticked by hand. Each send on the
// channel returns once a check has read it; a send on the ticks channel
// returns once Run is waiting again, so the previous check is complete.
func runGuard(t *testing.T, interval time.Duration) (s *server, feed chan<- Report, ticks chan<- time.Time, stop func() error, ticker func() (time.Duration, bool)) {
	conf, _ := Profile(ProfileConfidential)
	reports := make(chan Report)
	s = newServer(conf, func() Report { return <-reports })
	tick := make(chan time.Time)
	var mu sync.Mutex
	var d time.Duration
	stopped := false
	s.g.Interval = interval
	s.g.newTicker = func(dd time.Duration) (<-chan time.Time, func()) {
		mu.Lock()
		d = dd
		mu.Unlock()
		return tick, func() { mu.Lock(); stopped = true; mu.Unlock() }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.g.Run(ctx) }()
	t.Cleanup(cancel)
	// stop cancels Run once the check in progress is complete.
	stop = func() error { cancel(); return <-done }
	return s, reports, tick, stop, func() (time.Duration, bool) { mu.Lock(); defer mu.Unlock(); return d, stopped }
}

// TestGuardRun drives Run by a hand-ticked clock (guard_unix_test.go does
// the same with SIGHUP): no sleeps, every step waits for the check it
// causes.
func TestGuardRun(t *testing.T) {
	for _, tc := range []struct {
		interval, want time.Duration
	}{{0, DefaultInterval}, {5 * time.Second, 5 * time.Second}} {
		s, feed, ticks, stop, ticker := runGuard(t, tc.interval)
		feed <- passing // the first check, at once
		ticks <- time.Now()
		if err := s.serve(); err != nil {
			t.Errorf("after the first, passing check: %v", err)
		}
		feed <- failing
		ticks <- time.Now()
		if err := s.serve(); !errors.Is(err, ErrSealed) {
			t.Errorf("after a failing check: %v", err)
		}
		feed <- passing
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
		if err := s.serve(); err != nil {
			t.Errorf("after a passing re-check: %v", err)
		}
		if seals, unseals := s.counts(); seals != 1 || unseals != 2 || s.servedWithWiped {
			t.Errorf("%d seals, %d unseals (served with a wiped key: %v); want 1, 2", seals, unseals, s.servedWithWiped)
		}
		if d, stopped := ticker(); d != tc.want || !stopped {
			t.Errorf("Interval %v: ticker of %v (stopped %v), want %v", tc.interval, d, stopped, tc.want)
		}
	}
}
