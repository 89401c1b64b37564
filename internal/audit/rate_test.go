package audit

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func observeN(w *RateWatch, a string, n int) (hits int) {
	for i := 0; i < n; i++ {
		if _, ok := w.Observe(a); ok {
			hits++
		}
	}
	return hits
}

// TestRateBelowLimit: an actor at its floor rate for many windows is
// never anomalous (control for the tests below).
func TestRateBelowLimit(t *testing.T) {
	c := newClock()
	w := NewRateWatch(RateConfig{Window: time.Minute, Floor: 10, Factor: 3, Now: c.now})
	for i := 0; i < 100; i++ {
		if hits := observeN(w, "a", 2); hits != 0 {
			t.Fatalf("window step %d: anomalous at 2 per 6s (limit 30 per minute)", i)
		}
		c.add(6 * time.Second)
	}
}

// TestRateAnomaly: a burst over Factor × Floor in the window raises one
// anomaly per slot, for that actor only; with CutOff set the actor is
// refused until the cool-down ends, others never.
func TestRateAnomaly(t *testing.T) {
	c := newClock()
	w := NewRateWatch(RateConfig{Window: time.Minute, Floor: 10, Factor: 3, CutOff: 5 * time.Minute, Now: c.now})
	if hits := observeN(w, "b", 30); hits != 0 {
		t.Fatalf("control: 30 in a window (the limit) raised %d anomalies", hits)
	}
	if w.Refused("a") || w.Refused("b") {
		t.Fatal("control: refused before any anomaly")
	}
	if hits := observeN(w, "a", 31); hits != 1 {
		t.Fatalf("31 in a window raised %d anomalies, want 1", hits)
	}
	if hits := observeN(w, "a", 100); hits != 0 {
		t.Fatalf("more in the same slot raised %d anomalies, want none", hits)
	}
	if !w.Refused("a") || w.Refused("b") {
		t.Fatal("want a refused, b not")
	}
	c.add(5*time.Minute - time.Second)
	if !w.Refused("a") {
		t.Fatal("refused ended before the cool-down")
	}
	c.add(time.Second)
	if w.Refused("a") {
		t.Fatal("still refused after the cool-down")
	}
}

// TestRateWarnOnly: without CutOff an anomaly refuses nothing.
func TestRateWarnOnly(t *testing.T) {
	c := newClock()
	w := NewRateWatch(RateConfig{Window: time.Minute, Floor: 1, Factor: 2, Now: c.now})
	if hits := observeN(w, "a", 3); hits != 1 {
		t.Fatalf("%d anomalies, want 1", hits)
	}
	if w.Refused("a") {
		t.Fatal("refused without a cut-off")
	}
}

// TestRateBaseline: an actor whose usual rate is above the floor has a
// baseline to match (learnt at most ×2 a window), and a tenfold jump
// over it is anomalous; an anomalous burst does not raise the baseline.
// Control: the steady rate raises no anomaly once learnt.
func TestRateBaseline(t *testing.T) {
	c := newClock()
	w := NewRateWatch(RateConfig{Window: time.Minute, Floor: 10, Factor: 10, Now: c.now})
	// 90 per minute (9 per 6 s slot) for 20 minutes: within 10 × the floor
	// from the first window, and learnt.
	for i := 0; i < 200; i++ {
		if h := observeN(w, "a", 9); h != 0 {
			t.Fatalf("control: slot %d: anomalous at a steady 90 per minute", i)
		}
		c.add(6 * time.Second)
	}
	if b := w.actors["a"].baseline; b < 80 || b > 100 {
		t.Fatalf("baseline %.1f, want about 90", b)
	}
	// A burst of 10× for one slot: anomalous.
	if h := observeN(w, "a", 900); h != 1 {
		t.Fatalf("burst raised %d anomalies, want 1", h)
	}
	before := w.actors["a"].baseline
	c.add(2 * time.Minute)
	observeN(w, "a", 1)
	if after := w.actors["a"].baseline; after > before {
		t.Fatalf("baseline rose from %.1f to %.1f after an anomalous burst", before, after)
	}
}

// rampWindow spreads n operations of actor evenly over one window's
// slots, and returns the anomalies raised.
func rampWindow(w *RateWatch, c *fakeClock, actor string, n int) (hits int) {
	for s := 0; s < slots; s++ {
		hits += observeN(w, actor, n/slots)
		c.add(w.Config().Window / slots)
	}
	return hits
}

// TestRateRamp: an actor that ramps up by a little less than Factor each
// window (9k, 81k, 659k a window, defaults: floor 1000, factor 10) no
// longer teaches the watch its own rate: the ramp raises an anomaly.
// Control: steady traffic at the first window's rate raises none.
func TestRateRamp(t *testing.T) {
	c := newClock()
	w := NewRateWatch(RateConfig{Now: c.now})
	for i := 0; i < 20; i++ {
		if h := rampWindow(w, c, "steady", 9000); h != 0 {
			t.Fatalf("control: window %d of a steady 9,000 a window raised %d anomalies", i, h)
		}
	}
	c = newClock()
	w = NewRateWatch(RateConfig{Now: c.now})
	hits := 0
	for _, n := range []int{9000, 81000, 659000} {
		hits += rampWindow(w, c, "ramp", n)
	}
	if hits == 0 {
		t.Fatalf("the ramp 9k → 81k → 659k a window raised no anomaly (baseline %.0f)", w.actors["ramp"].baseline)
	}
}

// TestRateFirstWindowChecked: the first window is checked against the
// floor before it becomes the baseline: a first window far over it does
// not make the next one normal. Control: a first window at the floor
// is learnt.
func TestRateFirstWindowChecked(t *testing.T) {
	c := newClock()
	w := NewRateWatch(RateConfig{Floor: 100, Factor: 10, Now: c.now})
	rampWindow(w, c, "quiet", 100)
	observeN(w, "quiet", 1) // the next window: the first is folded
	if b := w.actors["quiet"].baseline; b <= 0 || b > 200 {
		t.Fatalf("control: baseline %.0f after a first window of 100, want (0, 200]", b)
	}
	c = newClock()
	w = NewRateWatch(RateConfig{Floor: 100, Factor: 10, Now: c.now})
	if h := rampWindow(w, c, "loud", 50000); h == 0 {
		t.Fatal("a first window of 50,000 (floor 100 × 10) raised no anomaly")
	}
	if h := rampWindow(w, c, "loud", 50000); h == 0 {
		t.Fatalf("the second window of 50,000 raised no anomaly (baseline %.0f): the first was learnt unchecked", w.actors["loud"].baseline)
	}
}
