package repo

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// A verify run keeps two files in the home while it runs, so that an
// interrupted run can be resumed (VerifyOptions.Resume):
//
//   - verify.checkpoint, rewritten atomically: the options of the run, the
//     store name up to which every object is done, and the summary so far;
//   - verify.findings, appended: the findings so far, one JSON object a
//     line, of which the checkpoint vouches for the first findings_bytes.
//
// Neither holds a secret: store names, counts, and the bucket and key of
// damaged objects, which the catalog beside them holds already. The
// sample seed only decides which objects are read; it is not a key. Both
// are removed when a run completes.
const (
	verifyCheckpointFile = "verify.checkpoint"
	verifyFindingsFile   = "verify.findings"
	verifyLockFile       = "verify.lock"
	checkpointVersion    = 1
)

// ErrVerifyRunning: another verify runs in this home (their checkpoints
// would mix).
var ErrVerifyRunning = errors.New("another verify is running in this home")

// lockVerify takes the home's verify lock (an flock, released by the
// kernel if the process dies) for the length of a run.
func (r *Repo) lockVerify() (func(), error) {
	f, err := os.OpenFile(filepath.Join(r.Home, verifyLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("verify: %w", ErrVerifyRunning)
		}
		return nil, fmt.Errorf("verify: locking %s: %w", verifyLockFile, err)
	}
	return func() { f.Close() }, nil
}

// ErrResumeMismatch: verify --resume found a checkpoint of a run with
// other options (quick or sample).
var ErrResumeMismatch = errors.New("the interrupted verify used other options")

type verifyCheckpoint struct {
	Version       int           `json:"version"`
	Repo          string        `json:"repo"`
	Quick         bool          `json:"quick"`
	Sample        float64       `json:"sample"`
	Seed          string        `json:"seed"`
	Cursor        string        `json:"cursor"`
	Summary       VerifySummary `json:"summary"`
	FindingsBytes int64         `json:"findings_bytes"`
}

// checkpointer writes a run's checkpoint and findings files.
type checkpointer struct {
	dir      string
	findings *os.File
	bytes    int64 // findings written so far
	err      error // the first error appending a finding
}

func (r *Repo) newVerifyRun(o VerifyOptions, report func(Finding)) (*verifyRun, error) {
	v := &verifyRun{r: r, o: o, report: report, sum: VerifySummary{Counts: map[Status]int{}}}
	v.cp = &checkpointer{dir: r.Home}
	if o.Resume {
		ok, err := v.resume()
		if err != nil || ok {
			return v, err
		}
	}
	// A fresh run: forget any earlier one.
	if err := v.cp.finish(); err != nil {
		return v, err
	}
	v.seed = o.SampleSeed
	if v.seed == nil && o.Sample > 0 {
		v.seed = make([]byte, 32)
		if _, err := rand.Read(v.seed); err != nil {
			return v, err
		}
	}
	v.sum.Sample, v.sum.Jobs = o.Sample, o.Jobs
	return v, nil
}

// resume loads the checkpoint, if any, and reports its findings again. It
// returns false if there is none.
func (v *verifyRun) resume() (bool, error) {
	b, err := os.ReadFile(filepath.Join(v.cp.dir, verifyCheckpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var c verifyCheckpoint
	if err := json.Unmarshal(b, &c); err != nil || c.Version != checkpointVersion {
		return false, fmt.Errorf("verify: %s is not a checkpoint this program reads (%v); run verify without --resume",
			verifyCheckpointFile, err)
	}
	if c.Repo != hex.EncodeToString(v.r.id[:]) {
		return false, fmt.Errorf("verify: %s belongs to another repository; run verify without --resume", verifyCheckpointFile)
	}
	if c.Quick != v.o.Quick || c.Sample != v.o.Sample {
		return false, fmt.Errorf("verify: %w (quick=%t sample=%g); resume with those, or run without --resume",
			ErrResumeMismatch, c.Quick, c.Sample)
	}
	seed, err := hex.DecodeString(c.Seed)
	if err != nil {
		return false, fmt.Errorf("verify: %s: bad seed", verifyCheckpointFile)
	}
	if v.o.SampleSeed != nil {
		seed = v.o.SampleSeed
	}
	f, err := os.OpenFile(filepath.Join(v.cp.dir, verifyFindingsFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	// Findings written after the checkpoint are done again; drop them.
	if err := f.Truncate(c.FindingsBytes); err != nil {
		f.Close()
		return false, err
	}
	sc := bufio.NewScanner(io.LimitReader(f, c.FindingsBytes))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var fd Finding
		if err := json.Unmarshal(sc.Bytes(), &fd); err != nil {
			f.Close()
			return false, fmt.Errorf("verify: %s: %w", verifyFindingsFile, err)
		}
		v.report(fd)
	}
	if err := sc.Err(); err != nil {
		f.Close()
		return false, err
	}
	if _, err := f.Seek(c.FindingsBytes, io.SeekStart); err != nil {
		f.Close()
		return false, err
	}
	v.cp.findings, v.cp.bytes = f, c.FindingsBytes
	v.seed, v.cursor, v.sum = seed, c.Cursor, c.Summary
	if v.sum.Counts == nil {
		v.sum.Counts = map[Status]int{}
	}
	v.sum.Resumed, v.sum.Jobs = true, v.o.Jobs
	return true, nil
}

// add appends a finding to the findings file.
func (c *checkpointer) add(f Finding) {
	if c.err != nil {
		return
	}
	if c.findings == nil {
		c.findings, c.err = os.OpenFile(filepath.Join(c.dir, verifyFindingsFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if c.err != nil {
			return
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		c.err = err
		return
	}
	n, err := c.findings.Write(append(b, '\n'))
	c.bytes += int64(n)
	c.err = err
}

// save makes the findings so far durable, then records the checkpoint.
func (c *checkpointer) save(v *verifyRun) error {
	if c.err != nil {
		return fmt.Errorf("verify: writing %s: %w", verifyFindingsFile, c.err)
	}
	if c.findings != nil {
		if err := c.findings.Sync(); err != nil {
			return fmt.Errorf("verify: writing %s: %w", verifyFindingsFile, err)
		}
	}
	cp := verifyCheckpoint{Version: checkpointVersion, Repo: hex.EncodeToString(v.r.id[:]), Quick: v.o.Quick,
		Sample: v.o.Sample, Seed: hex.EncodeToString(v.seed), Cursor: v.cursor, Summary: v.sum, FindingsBytes: c.bytes}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(c.dir, verifyCheckpointFile), b, atomicfile.Options{}); err != nil {
		return fmt.Errorf("verify: writing %s: %w", verifyCheckpointFile, err)
	}
	return nil
}

// finish removes both files: the run is complete (or a new one starts).
func (c *checkpointer) finish() error {
	c.close()
	for _, name := range []string{verifyCheckpointFile, verifyFindingsFile} {
		if err := os.Remove(filepath.Join(c.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (c *checkpointer) close() {
	if c.findings != nil {
		c.findings.Close()
		c.findings = nil
	}
}

func (v *verifyRun) close() { v.cp.close() }

// inSample reports whether name is in the sample of fraction frac drawn
// with seed: a keyed hash of the name, so that the choice is stable for a
// run (and its resumption) and unpredictable to the store.
func inSample(seed []byte, name string, frac float64) bool {
	h := sha256.New()
	h.Write(seed)
	h.Write([]byte(name))
	var sum [sha256.Size]byte
	u := binary.BigEndian.Uint64(h.Sum(sum[:0])[:8]) >> 11 // 53 bits
	return float64(u) < frac*(1<<53)
}
