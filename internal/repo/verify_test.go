package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/store"
)

// hookStore wraps a store and lets a test intercept reads.
type hookStore struct {
	store.Store
	readRange func(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	stat      func(ctx context.Context, name string) (store.ObjectInfo, error)
}

func (h *hookStore) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if h.readRange != nil {
		return h.readRange(ctx, name, off, length)
	}
	return h.Store.ReadRange(ctx, name, off, length)
}

func (h *hookStore) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if h.stat != nil {
		return h.stat(ctx, name)
	}
	return h.Store.Stat(ctx, name)
}

// verifyAll runs verify and returns its summary and findings.
func (e *env) verifyWith(o VerifyOptions) (VerifySummary, []Finding, error) {
	e.t.Helper()
	var fs []Finding
	sum, err := e.r.Verify(context.Background(), o, func(f Finding) { fs = append(fs, f) })
	return sum, fs, err
}

// damagedRepo puts n small objects and then, as the provider, alters one,
// truncates one, deletes one and injects an object; it returns the
// damaged keys by status.
func damagedRepo(t *testing.T, n int) (*env, map[Status]string) {
	e := newEnv(t)
	for i := range n {
		e.put("data", fmt.Sprintf("f%03d", i), random(100+i))
	}
	dmg := map[Status]string{StatusAltered: "f003", StatusTruncated: "f010", StatusMissing: "f020"}
	flip(t, e.storePath(e.nameOf("data", "f003")), 300)
	if err := os.Truncate(e.storePath(e.nameOf("data", "f010")), 2000); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.storePath(e.nameOf("data", "f020"))); err != nil {
		t.Fatal(err)
	}
	injected := "0123456789abcdef0123456789abcdef"
	if err := os.MkdirAll(filepath.Dir(e.storePath(injected)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.storePath(injected), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	dmg[StatusUnknown] = injected
	return e, dmg
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// wantDamage checks that fs names exactly the damage in dmg.
func wantDamage(t *testing.T, fs []Finding, dmg map[Status]string) {
	t.Helper()
	got := map[Status]string{}
	for _, f := range fs {
		what := f.Key
		if f.Key == "" {
			what = f.Name
		}
		got[f.Status] = what
	}
	if !reflect.DeepEqual(got, dmg) {
		t.Fatalf("findings %v, want %v", got, dmg)
	}
}

// TestVerifyResume interrupts verify after some objects (a cancel from the
// progress hook, as an interrupt would) and resumes it: the resumed run
// reports the same findings, in the same order, and the same summary as an
// uninterrupted run (the control), and leaves no checkpoint behind.
func TestVerifyResume(t *testing.T) {
	e, dmg := damagedRepo(t, 80)
	whole, wholeFs, err := e.verifyWith(VerifyOptions{Jobs: 3})
	if err != nil {
		t.Fatal(err)
	}
	wantDamage(t, wholeFs, dmg)

	for _, stopAt := range []int{1, 25, 60} {
		t.Run(fmt.Sprint(stopAt), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var first []Finding
			part, err := e.r.Verify(ctx, VerifyOptions{Jobs: 3, Progress: func(n int, _ int64) {
				if n == stopAt {
					cancel()
				}
			}}, func(f Finding) { first = append(first, f) })
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted verify: %v", err)
			}
			if part.Checked != stopAt || (len(first) > 0 && !reflect.DeepEqual(first, wholeFs[:len(first)])) {
				t.Fatalf("the interrupted run checked %d objects (want %d), reported %+v", part.Checked, stopAt, first)
			}
			if _, err := os.Stat(filepath.Join(e.home, verifyCheckpointFile)); err != nil {
				t.Fatalf("no checkpoint after the interruption: %v", err)
			}
			// Other options do not resume it.
			if _, _, err := e.verifyWith(VerifyOptions{Resume: true, Quick: true}); !errors.Is(err, ErrResumeMismatch) {
				t.Fatalf("resume with --quick: %v", err)
			}
			sum, fs, err := e.verifyWith(VerifyOptions{Jobs: 2, Resume: true})
			if err != nil {
				t.Fatal(err)
			}
			if !sum.Resumed {
				t.Fatal("the summary does not say resumed")
			}
			if !reflect.DeepEqual(fs, wholeFs) {
				t.Fatalf("resumed findings\n%+v\nwant\n%+v", fs, wholeFs)
			}
			if sum.Checked != whole.Checked || !reflect.DeepEqual(sum.Counts, whole.Counts) {
				t.Fatalf("resumed summary %+v, whole %+v", sum, whole)
			}
			if _, err := os.Stat(filepath.Join(e.home, verifyCheckpointFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("checkpoint left after a complete run: %v", err)
			}
		})
	}
	// --resume with no checkpoint is a whole run.
	sum, fs, err := e.verifyWith(VerifyOptions{Resume: true})
	if err != nil || sum.Resumed || !reflect.DeepEqual(fs, wholeFs) {
		t.Fatalf("resume without a checkpoint: %v, resumed %t, %d findings", err, sum.Resumed, len(fs))
	}
}

// TestVerifySample checks only a sample's bytes: an object altered in
// place outside the sample is not found, one inside is; a missing or
// truncated object is found wherever it is (the listing shows it). The
// control is the same repository verified without a sample.
func TestVerifySample(t *testing.T) {
	e := newEnv(t)
	seed := []byte("a fixed seed for the test sample")
	const frac = 0.3
	var in, out []string
	for i := range 120 {
		key := fmt.Sprintf("f%03d", i)
		e.put("data", key, random(500))
		if inSample(seed, e.nameOf("data", key), frac) {
			in = append(in, key)
		} else {
			out = append(out, key)
		}
	}
	if len(in) < 10 || len(out) < 10 {
		t.Fatalf("sample of %d in %d: the seed makes a poor test", len(in), len(in)+len(out))
	}
	// Control: nothing damaged, the sample reads about frac of them.
	sum, fs, err := e.verifyWith(VerifyOptions{Sample: frac, SampleSeed: seed})
	if err != nil || len(fs) != 0 || sum.Damaged() {
		t.Fatalf("clean sampled verify: %v %+v", err, fs)
	}
	if sum.Unsampled != len(out) || sum.Counts[StatusOK] != len(in)+3 { // + marker, journal, backup
		t.Fatalf("sampled: %d unsampled, %d ok; want %d and %d", sum.Unsampled, sum.Counts[StatusOK], len(out), len(in)+3)
	}
	flip(t, e.storePath(e.nameOf("data", out[0])), 300)
	flip(t, e.storePath(e.nameOf("data", in[0])), 300)
	if err := os.Remove(e.storePath(e.nameOf("data", out[1]))); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(e.storePath(e.nameOf("data", out[2])), 1000); err != nil {
		t.Fatal(err)
	}
	_, fs, err = e.verifyWith(VerifyOptions{Sample: frac, SampleSeed: seed})
	if err != nil {
		t.Fatal(err)
	}
	wantDamage(t, fs, map[Status]string{StatusAltered: in[0], StatusMissing: out[1], StatusTruncated: out[2]})
	// Control: without a sample the object altered outside it is found.
	_, fs, err = e.verifyWith(VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 4 {
		t.Fatalf("unsampled verify: %+v", fs)
	}
	found := false
	for _, f := range fs {
		found = found || (f.Key == out[0] && f.Status == StatusAltered)
	}
	if !found {
		t.Fatalf("unsampled verify missed %s: %+v", out[0], fs)
	}
}

// TestVerifyJobs: with Jobs N, N objects are read at once (each read waits
// until N are in flight); with Jobs 1 never more than one. The findings
// are the same, in the same order.
func TestVerifyJobs(t *testing.T) {
	e, dmg := damagedRepo(t, 40)
	run := func(jobs int, barrier bool) []Finding {
		var mu sync.Mutex
		inFlight, peak := 0, 0
		gate := make(chan struct{})
		var once sync.Once
		e.hooks = &Hooks{WrapStore: func(s store.Store) store.Store {
			return &hookStore{Store: s, readRange: func(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
				mu.Lock()
				inFlight++
				peak = max(peak, inFlight)
				if inFlight == jobs {
					once.Do(func() { close(gate) })
				}
				mu.Unlock()
				defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
				if barrier {
					select {
					case <-gate:
					case <-time.After(20 * time.Second):
						return nil, fmt.Errorf("only %d reads in flight, want %d", peak, jobs)
					}
				}
				return s.ReadRange(ctx, name, off, length)
			}}
		}}
		e.reopen()
		_, fs, err := e.verifyWith(VerifyOptions{Jobs: jobs})
		if err != nil {
			t.Fatalf("jobs %d: %v", jobs, err)
		}
		if peak != jobs {
			t.Fatalf("jobs %d: at most %d reads in flight", jobs, peak)
		}
		wantDamage(t, fs, dmg)
		return fs
	}
	one := run(1, false)
	four := run(4, true)
	if !reflect.DeepEqual(one, four) {
		t.Fatalf("findings differ with 1 and 4 jobs:\n%+v\n%+v", one, four)
	}
}

// TestVerifyUnchecked: objects the store does not answer for are
// unchecked, not damaged and not clean; the control (the store answers)
// is clean. When every object fails, verify stops: could not check.
func TestVerifyUnchecked(t *testing.T) {
	e := newEnv(t)
	for i := range maxUncheckedRun + 5 {
		e.put("data", fmt.Sprintf("f%02d", i), random(300))
	}
	down := map[string]bool{e.nameOf("data", "f04"): true, e.nameOf("data", "f11"): true}
	all := false
	e.hooks = &Hooks{WrapStore: func(s store.Store) store.Store {
		fail := func(name string) error {
			if all || down[name] {
				return fmt.Errorf("reading %s: %w", name, store.ErrUnavailable)
			}
			return nil
		}
		return &hookStore{Store: s,
			readRange: func(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
				if err := fail(name); err != nil {
					return nil, err
				}
				return s.ReadRange(ctx, name, off, length)
			},
			stat: func(ctx context.Context, name string) (store.ObjectInfo, error) {
				if err := fail(name); err != nil {
					return store.ObjectInfo{}, err
				}
				return s.Stat(ctx, name)
			}}
	}}
	e.reopen()
	sum, fs, err := e.verifyWith(VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Unchecked() != 2 || sum.Damaged() || sum.Verdict() != VerdictUnchecked || len(fs) != 2 {
		t.Fatalf("two objects unreachable: %s, %+v", sum.Verdict(), fs)
	}
	for _, f := range fs {
		if f.Status != StatusUnchecked || f.Key == "" {
			t.Fatalf("finding %+v", f)
		}
	}
	// Control: the store answers.
	clear(down)
	if sum, fs, err := e.verifyWith(VerifyOptions{}); err != nil || sum.Verdict() != VerdictClean || len(fs) != 0 {
		t.Fatalf("control: %v %s %+v", err, sum.Verdict(), fs)
	}
	// Everything unreachable (after the listing): verify stops after
	// maxUncheckedRun objects in a row.
	all = true
	if _, _, err := e.verifyWith(VerifyOptions{Jobs: 2}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("store down: %v", err)
	}
}

// TestVerifyLock: a second verify in the same home while one runs is
// refused (their checkpoints would mix); once the first ends, it runs.
func TestVerifyLock(t *testing.T) {
	e := newEnv(t)
	e.put("data", "k", random(10))
	unlock, err := e.r.lockVerify()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.verifyWith(VerifyOptions{}); !errors.Is(err, ErrVerifyRunning) {
		t.Fatalf("verify while another runs: %v", err)
	}
	unlock()
	if sum, _, err := e.verifyWith(VerifyOptions{}); err != nil || sum.Verdict() != VerdictClean {
		t.Fatalf("verify after the other ended: %v, %s", err, sum.Verdict())
	}
}
