//go:build unix

package posture

import (
	"context"
	"errors"
	"syscall"
	"testing"
)

// TestGuardSIGHUP: SIGHUP makes a running guard check again — to sealed,
// then back to unsealed — while its clock never ticks.
func TestGuardSIGHUP(t *testing.T) {
	s, feed, _, stop, _ := runGuard(t, 0)
	hup := func() {
		t.Helper()
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// Run registers for SIGHUP before its first check, so once that check
	// has read, a SIGHUP no longer ends the test process.
	feed <- passing
	hup()
	feed <- failing // read by the check the signal caused
	hup()
	feed <- passing // read once the failing check is complete
	if seals, _ := s.counts(); seals != 1 {
		t.Errorf("%d seals after a failing check, want 1", seals)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	if err := s.serve(); err != nil {
		t.Errorf("after the passing check: %v", err)
	}
	if seals, unseals := s.counts(); seals != 1 || unseals != 2 {
		t.Errorf("%d seals, %d unseals; want 1, 2", seals, unseals)
	}
}
