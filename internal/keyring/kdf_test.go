package keyring

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestTestHookIsReversible(t *testing.T) {
	if insecureTest.Load() {
		t.Fatal("hook on at the start of the test")
	}
	restore := SetInsecureTestParamsForTesting()
	if currentLimits() != insecureLimits || Calibrate(time.Hour) != insecureTestParams {
		t.Fatal("hook did not lower the floor")
	}
	inner := SetInsecureTestParamsForTesting()
	inner()
	if !insecureTest.Load() {
		t.Fatal("nested restore turned the hook off")
	}
	restore()
	if currentLimits() != productionLimits {
		t.Fatal("restore did not bring back the production floor")
	}
}

// TestParamBounds checks the production bounds (hook off) without deriving:
// each case differs from a control at the bound in one parameter.
func TestParamBounds(t *testing.T) {
	floor := Params{Time: MinTime, MemoryKiB: MinMemoryKiB, Threads: MinThreads}
	ceiling := Params{Time: MaxTime, MemoryKiB: MaxMemoryKiB, Threads: MaxThreads}
	for _, c := range []struct {
		name  string
		p     Params
		want  error
		param string
	}{
		{"floor", floor, nil, ""},
		{"ceiling", ceiling, nil, ""},
		{"time below floor", Params{0, floor.MemoryKiB, floor.Threads}, ErrKDFTooWeak, "time"},
		{"memory below floor", Params{floor.Time, floor.MemoryKiB - 1, floor.Threads}, ErrKDFTooWeak, "memory"},
		{"threads below floor", Params{floor.Time, floor.MemoryKiB, 0}, ErrKDFTooWeak, "threads"},
		{"time above ceiling", Params{ceiling.Time + 1, ceiling.MemoryKiB, ceiling.Threads}, ErrKDFTooCostly, "time"},
		{"memory above ceiling", Params{ceiling.Time, ceiling.MemoryKiB + 1, ceiling.Threads}, ErrKDFTooCostly, "memory"},
		{"threads above ceiling", Params{ceiling.Time, ceiling.MemoryKiB, ceiling.Threads + 1}, ErrKDFTooCostly, "threads"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := currentLimits().check(c.p)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, c.want) || !errors.Is(err, ErrKDFParams) || !strings.Contains(err.Error(), c.param) {
				t.Fatalf("got %v, want %v naming %s", err, c.want, c.param)
			}
			// Create refuses before deriving (and before touching disk).
			path := filepath.Join(t.TempDir(), "keyring")
			if _, err := Create(path, testPass, newRepo(t), c.p); !errors.Is(err, c.want) {
				t.Fatalf("create: got %v, want %v", err, c.want)
			}
			if _, err := os.Lstat(path); err == nil {
				t.Fatal("refused create wrote a file")
			}
		})
	}
	// Memory must be at least 8 KiB per thread (RFC 9106), even under the
	// test hook's floor.
	cheap(t)
	if err := currentLimits().check(Params{Time: 1, MemoryKiB: 512, Threads: 64}); err != nil {
		t.Fatalf("control: %v", err)
	}
	if err := currentLimits().check(Params{Time: 1, MemoryKiB: 511, Threads: 64}); !errors.Is(err, ErrKDFTooWeak) {
		t.Fatalf("memory below 8 KiB per thread: %v", err)
	}
}

// TestOpenParamBounds writes files whose headers claim parameters out of
// bounds and checks that Open refuses them before deriving: a file that
// claims 4 GiB would otherwise take seconds and gigabytes.
func TestOpenParamBounds(t *testing.T) {
	_, path := newKeyring(t) // hook on from here
	good := mustRead(t, path)
	claim := func(p Params) []byte {
		b := setU32(good, offTime, p.Time)
		b = setU32(b, offMemory, p.MemoryKiB)
		return rechecksum(setByte(b, offThreads, p.Threads))
	}
	for _, c := range []struct {
		name string
		file []byte
		hook bool
		want error
	}{
		{"control: cheap file, hook on", good, true, nil},
		{"cheap file, hook off", good, false, ErrKDFTooWeak},
		{"below the test floor", claim(Params{1, 32, 1}), true, ErrKDFTooWeak},
		{"time zero", claim(Params{0, 64, 1}), true, ErrKDFTooWeak},
		{"threads zero", claim(Params{1, 64, 0}), true, ErrKDFTooWeak},
		{"memory above ceiling", claim(Params{1, MaxMemoryKiB + 1, 1}), true, ErrKDFTooCostly},
		{"memory above ceiling, hook off", claim(Params{1, MaxMemoryKiB + 1, 1}), false, ErrKDFTooCostly},
		{"time above ceiling", claim(Params{MaxTime + 1, 64, 1}), true, ErrKDFTooCostly},
		{"threads above ceiling", claim(Params{1, 1 << 20, MaxThreads + 1}), true, ErrKDFTooCostly},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !c.hook {
				prev := insecureTest.Swap(false)
				defer insecureTest.Store(prev)
			}
			if err := os.WriteFile(path, c.file, 0o600); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			k, err := Open(path, testPass)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				k.Close()
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			t.Logf("refused in %v: %v", time.Since(start), err)
		})
	}
}

func TestCalibrateUnderHook(t *testing.T) {
	cheap(t)
	for _, target := range []time.Duration{0, time.Millisecond, time.Hour} {
		if p := Calibrate(target); p != insecureTestParams {
			t.Fatalf("Calibrate(%v) = %v under the hook", target, p)
		}
	}
}

// TestProductionDerivation is the one test that pays for real 64 MiB
// derivations: Calibrate, then Create and Open with its result, with the
// hook off.
func TestProductionDerivation(t *testing.T) {
	if insecureTest.Load() {
		t.Fatal("hook on")
	}
	start := time.Now()
	p := Calibrate(0)
	calibration := time.Since(start)
	if p.MemoryKiB != 64<<10 || p.Threads != uint8(min(4, runtime.NumCPU())) || p.Time < MinTime || p.Time > MaxTime {
		t.Fatalf("calibrated %v", p)
	}
	path := filepath.Join(t.TempDir(), "keyring")
	start = time.Now()
	k, err := Create(path, testPass, newRepo(t), p)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Since(start)
	k.Close()
	start = time.Now()
	k, err = Open(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Since(start)
	defer k.Close()
	if k.Params() != p {
		t.Fatalf("file holds %v, want %v", k.Params(), p)
	}
	// A floor-cost derivation: the cheapest a production file can be.
	start = time.Now()
	key, err := deriveKEK(testPass, make([]byte, saltLen), Params{Time: 1, MemoryKiB: MinMemoryKiB, Threads: p.Threads})
	if err != nil {
		t.Fatal(err)
	}
	key.Wipe()
	floor := time.Since(start)
	t.Logf("calibration %v chose %v; create %v, open %v; one derivation at the floor (t=1, 64 MiB) %v",
		calibration, p, created, opened, floor)
}
