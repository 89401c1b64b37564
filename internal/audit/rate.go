package audit

import (
	"sync"
	"time"
)

// RateConfig tunes a RateWatch. The zero value of a field takes the
// default named beside it.
type RateConfig struct {
	// Window is the sliding window key use is counted over (1 minute).
	Window time.Duration
	// Floor is the least baseline, in operations per window (1000): an
	// actor with no history, or a quiet one, may do Factor × Floor.
	Floor float64
	// Factor: an actor whose count over the window passes Factor ×
	// max(baseline, Floor) is anomalous (10).
	Factor float64
	// CutOff, if not zero, refuses the anomalous actor's operations for
	// that long (Refused says so); zero only warns.
	CutOff time.Duration
	// Now is the clock (time.Now if nil): tests inject one.
	Now func() time.Time
}

// slots per window: the window slides in steps of Window/slots.
const slots = 10

// ewma weight of one finished window in the baseline: the baseline is
// folded once per window (Window-aligned), not per slot.
const alpha = 0.2

// maxGrowth bounds how much one window may raise the baseline (over
// max(baseline, Floor)): an actor that ramps up by a little less than
// Factor each window is found within a few windows.
const maxGrowth = 2

// Anomaly is one actor's key use found far above its baseline.
type Anomaly struct {
	Actor    string
	Count    int     // operations in the window
	Limit    float64 // Factor × max(baseline, Floor)
	Baseline float64 // operations per window the actor usually does
	CutUntil time.Time
}

// RateWatch counts each actor's key-using operations over a sliding
// window and compares them with the actor's own baseline: a moving
// average of its past windows, never below Floor. Safe for concurrent
// use.
type RateWatch struct {
	cfg    RateConfig
	mu     sync.Mutex
	actors map[string]*actorRate
}

type actorRate struct {
	slot     int64 // index of the current slot (time / step)
	counts   [slots]int
	window   int64 // index of the current whole window (slot / slots)
	inWindow int   // operations in it so far
	baseline float64
	seen     bool  // a window has been folded into the baseline
	flagged  int64 // the slot in which the last anomaly was raised, +1 (0: none)
	cutUntil time.Time
}

// NewRateWatch returns a watch with cfg (defaults filled in).
func NewRateWatch(cfg RateConfig) *RateWatch {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.Floor <= 0 {
		cfg.Floor = 1000
	}
	if cfg.Factor <= 0 {
		cfg.Factor = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &RateWatch{cfg: cfg, actors: map[string]*actorRate{}}
}

// Config is the watch's configuration, defaults filled in.
func (w *RateWatch) Config() RateConfig { return w.cfg }

// Refused reports whether actor is cut off now.
func (w *RateWatch) Refused(actor string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.actors[actor]
	return a != nil && w.cfg.Now().Before(a.cutUntil)
}

// Lift ends every cut-off now (an administrator's decision: the key
// server's SIGHUP) and returns the actors it ended it for. Baselines and
// counts stay.
func (w *RateWatch) Lift() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.cfg.Now()
	var out []string
	for name, a := range w.actors {
		if now.Before(a.cutUntil) {
			out = append(out, name)
		}
		a.cutUntil = time.Time{}
	}
	return out
}

// Observe counts one key-using operation of actor. It returns the
// anomaly when this operation takes the actor over its limit (once per
// slot, so that a flood does not flood the log too).
func (w *RateWatch) Observe(actor string) (Anomaly, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.cfg.Now()
	step := int64(w.cfg.Window / slots)
	if step <= 0 {
		step = 1
	}
	cur := now.UnixNano() / step
	a := w.actors[actor]
	if a == nil {
		a = &actorRate{slot: cur, window: cur / slots}
		w.actors[actor] = a
	}
	w.advance(a, cur)
	a.counts[cur%slots]++
	a.inWindow++
	total := 0
	for _, c := range a.counts {
		total += c
	}
	limit := w.cfg.Factor * max(a.baseline, w.cfg.Floor)
	if float64(total) <= limit || a.flagged == cur+1 {
		return Anomaly{}, false
	}
	a.flagged = cur + 1
	if w.cfg.CutOff > 0 {
		a.cutUntil = now.Add(w.cfg.CutOff)
	}
	return Anomaly{Actor: actor, Count: total, Limit: limit, Baseline: a.baseline, CutUntil: a.cutUntil}, true
}

// advance moves a's sliding window to slot cur, and folds each whole
// window that ended into the baseline once.
func (w *RateWatch) advance(a *actorRate, cur int64) {
	if cur <= a.slot {
		return
	}
	steps := min(cur-a.slot, slots) // after a long silence, zeros are zeros
	for s := cur - steps + 1; s <= cur; s++ {
		a.counts[s%slots] = 0
	}
	a.slot = cur
	if win := cur / slots; win > a.window {
		w.fold(a, a.inWindow)
		// Windows with no operation at all (at most a few: the floor
		// holds the baseline up anyway).
		for i := int64(0); i < min(win-a.window-1, 4*slots); i++ {
			w.fold(a, 0)
		}
		a.window, a.inWindow = win, 0
	}
}

// fold folds one whole window's count into a's baseline: not if it was
// anomalous (an attacker must not teach the watch a higher baseline by
// being anomalous; the first window too is checked, against the floor),
// and never above maxGrowth × max(baseline, Floor).
func (w *RateWatch) fold(a *actorRate, n int) {
	base := max(a.baseline, w.cfg.Floor)
	if float64(n) > w.cfg.Factor*base {
		return
	}
	next := float64(n)
	if a.seen {
		next = (1-alpha)*a.baseline + alpha*float64(n)
	}
	a.baseline, a.seen = min(next, maxGrowth*base), true
}
