package keyring

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/holdfast/holdfast/internal/secret"
)

// Params are the Argon2id cost parameters recorded in a keyring file.
type Params struct {
	Time      uint32 // passes over memory (Argon2 t)
	MemoryKiB uint32 // memory in KiB (Argon2 m)
	Threads   uint8  // lanes (Argon2 p)
}

func (p Params) String() string {
	return fmt.Sprintf("argon2id t=%d m=%dKiB p=%d", p.Time, p.MemoryKiB, p.Threads)
}

// Bounds on the parameters of any keyring file, checked on Create, Open and
// ChangePassphrase before anything is derived.
const (
	MinTime      = 1        // floor: passes
	MinMemoryKiB = 64 << 10 // floor: 64 MiB
	MinThreads   = 1        // floor: lanes
	MaxTime      = 64       // ceiling: passes
	MaxMemoryKiB = 4 << 20  // ceiling: 4 GiB
	MaxThreads   = 64       // ceiling: lanes
)

// CalibratedMemoryKiB is the memory Calibrate always chooses: the floor.
const CalibratedMemoryKiB = MinMemoryKiB

// DefaultCalibrationTarget is how long one derivation should take when
// Calibrate is given no target.
const DefaultCalibrationTarget = 500 * time.Millisecond

var (
	// ErrKDFParams: a file's (or a caller's) Argon2id parameters are out of
	// bounds. The file is refused before any derivation.
	ErrKDFParams = errors.New("argon2id parameters out of bounds")
	// ErrKDFTooWeak: a parameter is below the floor (a downgrade).
	ErrKDFTooWeak = fmt.Errorf("%w: below the floor", ErrKDFParams)
	// ErrKDFTooCostly: a parameter is above the ceiling (a denial of
	// service).
	ErrKDFTooCostly = fmt.Errorf("%w: above the ceiling", ErrKDFParams)
)

// limits are the bounds in force.
type limits struct{ min, max Params }

var (
	productionLimits = limits{
		min: Params{Time: MinTime, MemoryKiB: MinMemoryKiB, Threads: MinThreads},
		max: Params{Time: MaxTime, MemoryKiB: MaxMemoryKiB, Threads: MaxThreads},
	}
	// insecureTestParams are what Calibrate returns, and the floor, while
	// the test hook is on.
	insecureTestParams = Params{Time: 1, MemoryKiB: 64, Threads: 1}
	insecureLimits     = limits{min: insecureTestParams, max: productionLimits.max}

	insecureTest atomic.Bool
)

// SetInsecureTestParamsForTesting lowers the parameter floor to
// 64 KiB / time 1 / 1 thread and makes Calibrate return exactly those cheap
// parameters, so that tests do not spend a real derivation on every
// keyring. It returns a function that restores the previous setting.
//
// Production code never calls it: it panics unless it runs inside a test
// binary (testing.Testing), so the shortcut is unreachable in a released
// holdfast.
func SetInsecureTestParamsForTesting() (restore func()) {
	if !testing.Testing() {
		panic("keyring: SetInsecureTestParamsForTesting called outside a test binary")
	}
	prev := insecureTest.Swap(true)
	return func() { insecureTest.Store(prev) }
}

func currentLimits() limits {
	if insecureTest.Load() {
		return insecureLimits
	}
	return productionLimits
}

// check reports the first parameter out of bounds, naming it.
func (l limits) check(p Params) error {
	switch {
	case p.Time < l.min.Time:
		return fmt.Errorf("%w: argon2id time cost %d is below the minimum %d", ErrKDFTooWeak, p.Time, l.min.Time)
	case p.Time > l.max.Time:
		return fmt.Errorf("%w: argon2id time cost %d is above the maximum %d", ErrKDFTooCostly, p.Time, l.max.Time)
	case p.MemoryKiB < l.min.MemoryKiB:
		return fmt.Errorf("%w: argon2id memory %d KiB is below the minimum %d KiB", ErrKDFTooWeak, p.MemoryKiB, l.min.MemoryKiB)
	case p.MemoryKiB > l.max.MemoryKiB:
		return fmt.Errorf("%w: argon2id memory %d KiB is above the maximum %d KiB", ErrKDFTooCostly, p.MemoryKiB, l.max.MemoryKiB)
	case p.Threads < l.min.Threads:
		return fmt.Errorf("%w: argon2id threads %d is below the minimum %d", ErrKDFTooWeak, p.Threads, l.min.Threads)
	case p.Threads > l.max.Threads:
		return fmt.Errorf("%w: argon2id threads %d is above the maximum %d", ErrKDFTooCostly, p.Threads, l.max.Threads)
	case uint64(p.MemoryKiB) < 8*uint64(p.Threads):
		// RFC 9106 requires m >= 8p; x/crypto would silently raise m.
		return fmt.Errorf("%w: argon2id memory %d KiB is below 8 KiB per thread (%d threads)", ErrKDFTooWeak, p.MemoryKiB, p.Threads)
	}
	return nil
}

// deriveKEK runs Argon2id and returns the 32-byte key that seals the file.
// The caller has checked p against the limits in force; the guard below
// only keeps argon2 from panicking.
func deriveKEK(passphrase, salt []byte, p Params) (secret.Key, error) {
	if p.Time < 1 || p.Threads < 1 {
		return secret.Key{}, fmt.Errorf("%w: argon2id time cost and threads must be at least 1", ErrKDFTooWeak)
	}
	warmHeap(p.MemoryKiB)
	b := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, secret.KeySize)
	// Hand the Argon2 work area back to the OS now, so that it neither
	// inflates the peak RSS of what follows nor lingers in the heap.
	debug.FreeOSMemory()
	return secret.FromBytes(b)
}

// warmHeap readies kib KiB of heap for Argon2's work area. Argon2 first
// reads, then writes each block of freshly mapped memory, so every page
// costs two faults and a TLB shootdown across the process's CPUs — on a
// virtual machine that is most of a 64 MiB pass. Writing one byte per page
// of a buffer of that size first costs one cheap fault per page; once the
// buffer is collected, the runtime hands the same, resident pages to
// Argon2's allocation (zeroing them with plain stores). Nothing depends on
// it for correctness: if the pages were returned to the OS meanwhile, the
// derivation is merely slower.
func warmHeap(kib uint32) {
	b := make([]byte, int(kib)<<10)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
}

// Calibrate returns parameters for which one derivation takes about target
// on this machine (DefaultCalibrationTarget if target <= 0): memory fixed at
// 64 MiB, threads min(4, NumCPU), and the time cost measured. It times
// short trials at 64 MiB — time cost 1 on memory fresh from the OS (warmed
// by warmHeap, as for a real Open), which is
// what the first pass of a real Open costs, and time cost 2 on memory
// already mapped, which gives the cost of each further pass — twice each,
// and extrapolates from the fastest. Together they take well under a second
// (about 0.65 s on the 2-CPU VM this was written on, where page faults
// dominate). The result is clamped to [MinTime, MaxTime].
// While the test hook is on it returns the cheap test parameters without
// measuring.
func Calibrate(target time.Duration) Params {
	if insecureTest.Load() {
		return insecureTestParams
	}
	if target <= 0 {
		target = DefaultCalibrationTarget
	}
	threads := uint8(min(4, runtime.NumCPU()))
	trial := func(t uint32) time.Duration {
		start := time.Now()
		warmHeap(CalibratedMemoryKiB)
		argon2.IDKey([]byte("calibrate"), make([]byte, saltLen), t, CalibratedMemoryKiB, threads, secret.KeySize)
		return time.Since(start)
	}
	// The minimum of two runs each resists noise from other processes.
	const passes = 2
	first, many := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for range 2 {
		debug.FreeOSMemory()
		first = min(first, trial(1))
		runtime.GC() // free the work area but keep its pages mapped
		many = min(many, trial(passes))
	}
	debug.FreeOSMemory()
	pass := max(many/passes, time.Microsecond)
	n := 1 + (target-first)/pass
	return Params{
		Time:      uint32(min(max(n, MinTime), MaxTime)),
		MemoryKiB: CalibratedMemoryKiB,
		Threads:   threads,
	}
}
