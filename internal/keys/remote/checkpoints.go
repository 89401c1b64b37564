package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/audit"
)

// CheckpointFileName is the file in a home where the key server's audit
// checkpoints are kept (Config.CheckpointFile; docs/keyserver.md,
// "Checkpoints to clients").
const CheckpointFileName = "keyserver-checkpoints.log"

// MaxCheckpointCopy bounds the copy: when an append takes the file past
// it, the file is renamed to FILE.1 (replacing the one before) and a new
// one is begun. The two hold the newest 1,000–2,000 checkpoints (a line
// is about 260 bytes), a client's evidence of how far the server's log
// reached; `holdfast audit verify --dir KSDIR --checkpoints FILE
// --checkpoints FILE.1` checks both.
const MaxCheckpointCopy = 256 << 10

// checkpoints keeps the checkpoint lines a key server hands out, each
// seq once, in order: a line is appended only if its seq is past the
// file's last line's (so several processes of one home, each seeing the
// same checkpoint, add it once). It never fails an operation: the copy
// is evidence for the server's verifier, not a gate for this client.
type checkpoints struct {
	path string

	mu   sync.Mutex
	have bool   // seen is set
	seen uint64 // the newest seq this process kept or found
	err  error  // the last failure to keep one
}

// keep appends line if it is a checkpoint newer than the file's last.
func (c *checkpoints) keep(line string) {
	if c == nil || line == "" {
		return
	}
	seq, ok := audit.ParseCheckpoint([]byte(line))
	if !ok {
		return // not a checkpoint line: nothing a verifier could use
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.have && seq <= c.seen {
		return
	}
	last, err := c.append([]byte(line), seq)
	c.err = err
	if err == nil {
		c.have, c.seen = true, max(seq, last)
	}
}

// append appends line (seq) under an flock on the file, unless the
// file's last line is at seq or past it; it returns that last seq.
func (c *checkpoints) append(line []byte, seq uint64) (uint64, error) {
	f, err := lockedAppend(c.path)
	if err != nil {
		return 0, err
	}
	defer f.Close() // and so unlock
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	last, err := lastSeq(f, fi.Size())
	if err != nil {
		return 0, err
	}
	if last >= seq && fi.Size() > 0 {
		return last, nil
	}
	if _, err := f.Write(append(bytes.Clone(line), '\n')); err != nil {
		f.Truncate(fi.Size())
		return 0, fmt.Errorf("appending to %q: %w", c.path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if fi.Size()+int64(len(line))+1 > MaxCheckpointCopy {
		// Still under the lock: whoever waits for it finds the new file
		// (lockedAppend checks the path still names what it locked).
		if err := os.Rename(c.path, c.path+".1"); err != nil {
			return 0, fmt.Errorf("rotating %q: %w", c.path, err)
		}
	}
	return seq, nil
}

// lockedAppend opens path for appending (0600, made if missing) and locks
// it, making sure the path still names the file locked (a rotation may
// have moved it meanwhile).
func lockedAppend(path string) (*os.File, error) {
	for range 8 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, err
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(path, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("%q keeps being replaced", path)
}

// lastSeq is the seq of the file's last whole checkpoint line (0 if
// none).
func lastSeq(f *os.File, size int64) (uint64, error) {
	n := min(size, 64<<10)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil && err != io.EOF {
		return 0, err
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte{'\n'})
	for i := len(lines) - 1; i >= 0; i-- {
		if seq, ok := audit.ParseCheckpoint(lines[i]); ok {
			return seq, nil
		}
	}
	return 0, nil
}

// CheckpointError is the last failure to keep a checkpoint the server
// handed out (nil: none, or none since).
func (s *Source) CheckpointError() error {
	if s.cps == nil {
		return nil
	}
	s.cps.mu.Lock()
	defer s.cps.mu.Unlock()
	return s.cps.err
}
