package oplog

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/logtext"
)

// FileName is the log's name in the home directory.
const FileName = "keyops.log"

// maxLine bounds one line: a longer one is damage, not a record.
const maxLine = 64 << 10

// ErrBroken: the log's chain does not hold (a *BrokenError names the
// line), or its last line is not a whole record.
var ErrBroken = errors.New("the key-operation log's chain is broken")

// Path is the log's path in home.
func Path(home string) string { return filepath.Join(home, FileName) }

// Record is one line of the log, as stored: the fields in this order, as
// encoding/json writes them, with no space, then a newline. That is the
// only valid encoding of a record; Read refuses any other.
type Record struct {
	Seq      uint64    `json:"seq"`                // 1, 2, 3… in file order
	Time     time.Time `json:"time"`               // UTC, RFC 3339 with nanoseconds
	Op       string    `json:"op"`                 // keys.Op.Op: create, ceremony, rotate, backup, …
	Repo     string    `json:"repo"`               // repository id, hex
	Source   string    `json:"source"`             // SourceName of the key source kind
	Versions []uint32  `json:"versions,omitempty"` // root key versions concerned
	Detail   string    `json:"detail,omitempty"`
	Prev     string    `json:"prev"` // hex SHA-256 of the previous line without its newline; "" on line 1
}

// SourceName names a key source kind as the log spells it.
func SourceName(k keys.SourceKind) string {
	switch k {
	case keys.SourceKeyring:
		return "keyring"
	case keys.SourcePKCS11:
		return "pkcs11"
	case keys.SourceKeyServer:
		return "keyserver"
	}
	return fmt.Sprintf("kind-%d", k)
}

// BrokenError names the first line of a log at which its chain does not
// hold.
type BrokenError struct {
	Path   string
	Line   int // from 1
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("key-operation log %q is broken at line %d: %s", e.Path, e.Line, e.Reason)
}

// Unwrap makes a BrokenError an ErrBroken.
func (e *BrokenError) Unwrap() error { return ErrBroken }

// Chain is a log read and checked from its first line to its last.
type Chain struct {
	Records []Record
	// Head is the hex SHA-256 of the last line ("" for an empty log). The
	// chain vouches for every line before the last; an anchor outside the
	// premises that keeps Head (the key server) vouches for the last one
	// too, and for the length.
	Head string
}

// Read reads the log at path and checks its chain: every line is one
// record in its one encoding, seq counts from 1, prev is the SHA-256 of
// the line before, and the file ends with a whole line. It returns the
// records before the first broken link with a *BrokenError naming it. A
// missing file is an error wrapping fs.ErrNotExist.
func Read(path string) (Chain, error) {
	f, err := os.Open(path)
	if err != nil {
		return Chain{}, err
	}
	defer f.Close()
	// No append is half-way through while we read.
	if err := flock(f, unix.LOCK_SH); err != nil {
		return Chain{}, fmt.Errorf("locking %q: %w", path, err)
	}
	var c Chain
	broken := func(n int, f string, a ...any) (Chain, error) {
		return c, &BrokenError{Path: path, Line: n, Reason: fmt.Sprintf(f, a...)}
	}
	br := bufio.NewReaderSize(f, maxLine)
	prev := ""
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		switch {
		case err == io.EOF && len(line) == 0:
			c.Head = prev
			return c, nil
		case err == io.EOF:
			return broken(n, "the last line is not a whole record (a write was interrupted, or the file was cut)")
		case errors.Is(err, bufio.ErrBufferFull):
			return broken(n, "longer than %d bytes: not a record", maxLine)
		case err != nil:
			return c, fmt.Errorf("reading %q: %w", path, err)
		}
		line = line[:len(line)-1]
		rec, why := parseLine(line)
		switch {
		case why != "":
			return broken(n, "%s", why)
		case rec.Seq != uint64(n):
			return broken(n, "seq %d where %d belongs (lines before it were removed, or lines were moved)", rec.Seq, n)
		case rec.Prev != prev && n == 1:
			return broken(n, "the first line names a line before it (lines were removed from the start)")
		case rec.Prev != prev:
			return broken(n, "prev is not the SHA-256 of line %d (line %d was changed, or lines were removed or moved)", n-1, n-1)
		}
		prev = hashLine(line)
		c.Records = append(c.Records, rec)
	}
}

// parseLine decodes one line (without its newline); why says what is
// wrong with it.
func parseLine(line []byte) (rec Record, why string) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&rec); err != nil {
		return rec, fmt.Sprintf("not a record: %v", err)
	}
	canon, err := marshal(rec)
	if err != nil || !bytes.Equal(canon, line) {
		return rec, "not in the log's encoding (edited by hand?)"
	}
	return rec, ""
}

func marshal(r Record) ([]byte, error) {
	r.Time = r.Time.UTC()
	return json.Marshal(r)
}

func hashLine(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// Log is the key-operation log at one path. Each call opens the file: a
// Log holds no descriptor, and any number of Logs, in any number of
// processes, may append to the same file.
type Log struct{ path string }

var _ keys.OpLog = (*Log)(nil)

// New returns the log at path (Path(home)); the file is made by the first
// Record.
func New(path string) *Log { return &Log{path: path} }

// Path is the log's file.
func (l *Log) Path() string { return l.path }

// Record appends op as one line (made mode 0600 if the file is new) and
// syncs it. Under an exclusive flock it reads the last line, for seq and
// prev, and appends with one write: two processes never interleave or
// fork the chain. A zero op.Time is now. It refuses to append to a file
// whose last line is not a whole record (ErrBroken): the next line could
// not name it.
func (l *Log) Record(op keys.Op) error {
	if op.Op == "" {
		return errors.New("a key-operation record needs an op")
	}
	t := op.Time
	if t.IsZero() {
		t = time.Now()
	}
	f, size, err := l.openLocked(true)
	if err != nil {
		return err
	}
	defer f.Close() // and so unlock
	seq, prev, err := l.tail(f, size)
	if err != nil {
		return err
	}
	// Detail may hold text from outside (a key server client's name, a
	// field it sent): bounded, so the record fits in a line however it is
	// escaped.
	b, err := marshal(Record{Seq: seq + 1, Time: t, Op: logtext.Clip(op.Op, 128), Repo: hex.EncodeToString(op.Repo[:]),
		Source: SourceName(op.Source), Versions: op.Versions, Detail: logtext.Clip(op.Detail, 4096), Prev: prev})
	if err != nil {
		return err
	}
	if len(b) >= maxLine {
		return fmt.Errorf("a key-operation record of %d bytes is too long", len(b))
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Truncate(size) // what this call wrote of the line, never more
		return fmt.Errorf("appending to %q: %w", l.path, err)
	}
	if err := f.Sync(); err != nil {
		f.Truncate(size)
		return fmt.Errorf("syncing %q: %w", l.path, err)
	}
	if size == 0 {
		// A new file: its directory entry must last too.
		if err := syncDir(filepath.Dir(l.path)); err != nil {
			return err
		}
	}
	return nil
}

// Ready checks, writing nothing, that Record could append now: the file,
// if there is one, opens for appending and ends in a whole record; if
// there is none, its directory (if that exists yet) is writable. A
// command calls it before an operation that cannot be undone, so that a
// log that cannot take the record stops the operation before it starts.
func (l *Log) Ready() error {
	f, size, err := l.openLocked(false)
	if errors.Is(err, fs.ErrNotExist) {
		dir := filepath.Dir(l.path)
		if err := unix.Access(dir, unix.W_OK); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot make %q: %q: %w", l.path, dir, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, err = l.tail(f, size)
	return err
}

// openLocked opens the log for appending, not following a symbolic link,
// and takes its exclusive lock; size is the file's size under the lock.
func (l *Log) openLocked(create bool) (*os.File, int64, error) {
	flags := os.O_RDWR | os.O_APPEND | unix.O_NOFOLLOW
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(l.path, flags, 0o600)
	if err != nil {
		return nil, 0, err
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("locking %q: %w", l.path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%q is not a regular file", l.path)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// tail returns the seq and the hash of the last line of f (size bytes):
// 0 and "" for an empty file.
func (l *Log) tail(f *os.File, size int64) (uint64, string, error) {
	if size == 0 {
		return 0, "", nil
	}
	n := min(size, maxLine+1)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return 0, "", fmt.Errorf("reading %q: %w", l.path, err)
	}
	if buf[n-1] != '\n' {
		return 0, "", fmt.Errorf("%q: the last line is not a whole record (a write was interrupted, or the file was cut): %w", l.path, ErrBroken)
	}
	i := bytes.LastIndexByte(buf[:n-1], '\n')
	if i < 0 && n < size {
		return 0, "", fmt.Errorf("%q: the last line is longer than %d bytes: %w", l.path, maxLine, ErrBroken)
	}
	line := buf[i+1 : n-1]
	rec, why := parseLine(line)
	if why == "" && rec.Seq == 0 {
		why = "seq 0"
	}
	if why != "" {
		return 0, "", fmt.Errorf("%q: the last line: %s: %w", l.path, why, ErrBroken)
	}
	return rec.Seq, hashLine(line), nil
}

// flock takes or changes f's lock, waiting for it.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("syncing %q: %w", dir, err)
	}
	return nil
}
