package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/secret"
)

// Names in the audit directory.
const (
	LogName    = "audit.log"  // the entries
	StateName  = "state"      // the writer's next seq, head and current key (0600)
	RecordName = "k0.sealed"  // K_0 sealed under the root key, and where checkpoints go
	DirName    = "audit"      // the directory's name in the home
	cpFileName = "checkpoint" // default off-box copy's name, beside the directory
)

// DefaultEvery is how many entries go between two checkpoints.
const DefaultEvery = 100

var (
	// ErrExists: Create found a log already there.
	ErrExists = errors.New("an audit log already exists")
	// ErrNoLog: the directory holds no audit log (none was created).
	ErrNoLog = errors.New("no audit log")
	// ErrStateMismatch: the writer's state does not continue the log's
	// last line: the log was cut or edited, or an old state file was put
	// back. The writer appends nothing until someone looks.
	ErrStateMismatch = errors.New("the audit log's last line does not match the writer's state (the log was cut or edited, or an old state file was restored)")
	// ErrCheckpointCopy: the entries are in the log but the checkpoint
	// could not be copied off the box.
	ErrCheckpointCopy = errors.New("the audit checkpoint could not be copied off the box")
	// ErrStoreCheckpoint: the entries and the checkpoint are in the log
	// and the off-box copy, but the checkpoint could not be copied to the
	// repository's store (Options.Sink); the next checkpoint tries again.
	ErrStoreCheckpoint = errors.New("the audit checkpoint could not be copied to the store (it is in the log and the off-box copy; the next checkpoint tries again)")
	// ErrNoRecord: the log (or its state, or its off-box copy) is there
	// but the sealed record is not: it was deleted. Writers append
	// nothing; verify opens K_0 from the off-box copy of the record.
	ErrNoRecord = errors.New("the audit log's sealed record is missing")
)

// Dir is the audit directory of a home.
func Dir(home string) string { return filepath.Join(home, DirName) }

// DefaultCheckpoints is where checkpoints are copied unless told
// otherwise: beside the audit directory, outside it (docs/audit.md says
// why a path on another machine is better).
func DefaultCheckpoints(home string) string { return filepath.Join(home, "audit-"+cpFileName+"s.log") }

// state is the writer's state file: what the next append needs. Key is
// K_Seq; every older key is gone.
type state struct {
	Format int    `json:"format"`
	Seq    uint64 `json:"seq"`   // the next entry's seq
	Head   string `json:"head"`  // SHA-256 of the last line
	Since  int    `json:"since"` // entries since the last checkpoint
	// Checkpoints is the off-box copy's path, from the record Create was
	// given (sealed there under K_0's config MAC): the writer copies
	// checkpoints here, and appends nothing while the record names
	// another path (an edit it cannot verify without K_0).
	Checkpoints string `json:"checkpoints"`
	Key         []byte `json:"key"` // K_Seq (base64); wiped after use
}

const stateFormat = 1

// Options tune a Writer.
type Options struct {
	// Every is how many entries go between two checkpoints (DefaultEvery
	// if zero).
	Every int
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Sink, if set, takes a copy of each checkpoint after the log and the
	// off-box copy have it: the repository's store. Of the checkpoints
	// one append writes, the newest goes (it vouches for every line
	// before it); one that fails is sent again with the next append that
	// checkpoints, unless a newer one replaces it.
	Sink CheckpointSink
	// OnSinkError hears every failed copy to Sink (wrapping
	// ErrStoreCheckpoint): the entries are durable, so it is not an
	// append's error. Nil: the append returns it instead.
	OnSinkError func(error)
	// SinkTimeout bounds one copy to Sink (DefaultSinkTimeout if zero).
	SinkTimeout time.Duration
}

// CheckpointSink keeps copies of the log's checkpoints away from the
// premises: the repository's store (repo.(*Repo).PutAuditCheckpoint,
// docs/audit.md, "Checkpoints"). line is the checkpoint's line, byte for
// byte as in the log, without its newline.
type CheckpointSink interface {
	PutAuditCheckpoint(ctx context.Context, line []byte) error
}

// DefaultSinkTimeout bounds one copy of a checkpoint to the store.
const DefaultSinkTimeout = time.Minute

// Writer appends to the audit log in one directory. It holds no file or
// key between calls: each Append locks the log, reads the state, writes
// and lets go, so any number of Writers, in any number of processes, may
// append to one log.
type Writer struct {
	dir    string
	cpPath string
	every  int
	now    func() time.Time

	sink        CheckpointSink
	onSinkError func(error)
	sinkTimeout time.Duration
	sinkMu      sync.Mutex
	unsent      []byte // the newest checkpoint line Sink does not have yet
	sent        []byte // the last line this writer copied to Sink

	newestMu sync.Mutex
	newest   []byte // the newest checkpoint line this writer wrote or found at the log's end
}

// Create makes a new audit log in dir: the sealed record (rec, from
// Seal, which names where checkpoints go), the genesis checkpoint (seq
// 0, MACed under k0) in the log, a copy of the record and the genesis
// checkpoint in the off-box copy (appended: lines of an earlier log
// there stay), and the state holding K_1. k0 stays the caller's. It
// fails with ErrExists if dir already holds a log, a state or a record.
// With o.Sink, the genesis checkpoint is copied to it last; a copy that
// fails goes to o.OnSinkError (or, without one, is returned with the
// Writer: the log exists).
func Create(dir string, rec Record, k0 secret.Key, o Options) (*Writer, error) {
	w, genesis, err := create(dir, rec, k0, o)
	if err != nil {
		return nil, err
	}
	return w, w.toSink([][]byte{genesis})
}

func create(dir string, rec Record, k0 secret.Key, o Options) (_ *Writer, genesis []byte, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	w := newWriter(dir, rec.Checkpoints, o)
	for _, p := range []string{w.logPath(), w.statePath()} {
		if _, err := os.Lstat(p); err == nil {
			return nil, nil, fmt.Errorf("%q: %w", p, ErrExists)
		}
	}
	b, err := marshalRecord(rec)
	if err != nil {
		return nil, nil, err
	}
	err = atomicfile.WriteFile(filepath.Join(dir, RecordName), b, atomicfile.Options{Mode: 0o600, NoReplace: true})
	if errors.Is(err, atomicfile.ErrExists) {
		return nil, nil, fmt.Errorf("%q: %w", filepath.Join(dir, RecordName), ErrExists)
	} else if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			// No log came of it: a record alone would refuse the next Create.
			os.Remove(filepath.Join(dir, RecordName))
		}
	}()
	var line []byte
	var next []byte
	err = k0.Use(func(k []byte) error {
		line, err = encode(Entry{Seq: 0, Time: w.now(), Kind: KindCheckpoint, Op: "genesis", Detail: "audit log created"}, k)
		next = ratchet(k)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	defer clear(next)
	f, err := os.OpenFile(w.logPath(), os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	defer func() {
		if err != nil {
			os.Remove(w.logPath())
		}
	}()
	if err := flock(f, unix.LOCK_EX); err != nil {
		return nil, nil, err
	}
	if err := writeSync(f, append(line, '\n')); err != nil {
		return nil, nil, err
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, nil, err
	}
	if err := w.saveState(state{Format: stateFormat, Seq: 1, Head: hashLine(line), Checkpoints: rec.Checkpoints, Key: next}); err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			os.Remove(w.statePath())
		}
	}()
	if err := appendOffBox(w.cpPath, [][]byte{recordLine(b), line}); err != nil {
		return nil, nil, err
	}
	w.seen(line)
	return w, line, nil
}

// Open returns the writer of the log in dir, which Create made. It
// checks nothing: each append checks that the log, its state and its
// sealed record are all there and agree, and fails if they do not (a
// missing record is ErrNoRecord), so that a damaged log is never
// skipped. Locate says whether a home keeps a log at all.
func Open(dir string, o Options) (*Writer, error) {
	w := newWriter(dir, "", o)
	if st, err := w.readState(); err == nil {
		w.cpPath = st.Checkpoints
		clear(st.Key)
	}
	return w, nil
}

func newWriter(dir, cpPath string, o Options) *Writer {
	w := &Writer{dir: dir, cpPath: cpPath, every: o.Every, now: o.Now, sink: o.Sink, onSinkError: o.OnSinkError, sinkTimeout: o.SinkTimeout}
	if w.sinkTimeout <= 0 {
		w.sinkTimeout = DefaultSinkTimeout
	}
	if w.every <= 0 {
		w.every = DefaultEvery
	}
	if w.now == nil {
		w.now = time.Now
	}
	return w
}

// ReadRecord reads dir's sealed record; no record is an error wrapping
// ErrNoLog.
func ReadRecord(dir string) (Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordName))
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, fmt.Errorf("%q: %w", dir, ErrNoLog)
	}
	if err != nil {
		return Record{}, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil || rec.Format != recordFormat {
		return Record{}, fmt.Errorf("the audit record %q is malformed", filepath.Join(dir, RecordName))
	}
	return rec, nil
}

// Checkpoints is where this writer copies its checkpoints (as its state
// named when it was opened).
func (w *Writer) Checkpoints() string { return w.cpPath }

// Newest is the newest checkpoint line (without its newline) this
// writer wrote, or found as the log's last line when it was asked to
// checkpoint; nil before either. It is the line byte for byte as in the
// log and the off-box copy, and holds no secret (seq, time, the head it
// vouches for, its MAC): a key server hands it to its clients.
func (w *Writer) Newest() []byte {
	w.newestMu.Lock()
	defer w.newestMu.Unlock()
	return bytes.Clone(w.newest)
}

func (w *Writer) seen(line []byte) {
	w.newestMu.Lock()
	defer w.newestMu.Unlock()
	if e, why := parse(line); why == "" && e.Kind == KindCheckpoint {
		if o, _ := parse(w.newest); w.newest == nil || e.Seq > o.Seq {
			w.newest = bytes.Clone(line)
		}
	}
}

// LogPath is the log file.
func (w *Writer) LogPath() string { return w.logPath() }

func (w *Writer) logPath() string   { return filepath.Join(w.dir, LogName) }
func (w *Writer) statePath() string { return filepath.Join(w.dir, StateName) }

// Append appends es, in order, with one write and one sync, and a
// checkpoint after every Every-th entry. A zero Time is now; Seq, Prev
// and MAC are the writer's. When it returns nil every entry is durable.
func (w *Writer) Append(es ...Entry) error {
	return w.append(es, false)
}

// Checkpoint appends a checkpoint (unless the last line is one) and
// copies it off the box; with a Sink, the newest checkpoint goes to it
// too, even when it was there already (a writer without a Sink wrote
// it).
func (w *Writer) Checkpoint() error { return w.append(nil, true) }

// Close writes a final checkpoint: the off-box copy then vouches for
// every line written so far.
func (w *Writer) Close() error { return w.Checkpoint() }

// appendMu makes one append at a time in this process; the flock
// serialises processes (and Writers on other descriptors).
var appendMu sync.Mutex

func (w *Writer) append(es []Entry, checkpoint bool) error {
	cps, err := w.appendLocked(es, checkpoint)
	if err != nil && cps == nil {
		return err // the log took nothing
	}
	if len(cps) == 0 && !checkpoint {
		return nil
	}
	// The log has the checkpoints (the off-box copy may not: err). The
	// store gets its copy after the lock is let go; a checkpoint asked
	// for when the last line already is one sends again a copy that
	// failed before.
	return errors.Join(err, w.toSink(cps))
}

// toSink copies the newest of cps (or, if none, the one a failed copy
// left) to the sink. A failure is kept for the next time and reported to
// onSinkError, or returned if there is none.
func (w *Writer) toSink(cps [][]byte) error {
	if w.sink == nil {
		return nil
	}
	w.sinkMu.Lock()
	defer w.sinkMu.Unlock()
	line := w.unsent
	if len(cps) > 0 {
		line = cps[len(cps)-1]
	}
	if line == nil || bytes.Equal(line, w.sent) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.sinkTimeout)
	err := w.sink.PutAuditCheckpoint(ctx, line)
	cancel()
	if err == nil {
		w.unsent, w.sent = nil, line
		return nil
	}
	w.unsent = line
	err = fmt.Errorf("%w: %w", ErrStoreCheckpoint, err)
	if w.onSinkError != nil {
		w.onSinkError(err)
		return nil
	}
	return err
}

// appendLocked appends under the log's lock and returns the checkpoint
// lines the log took (nil if the log took nothing), with the error of
// the append or of the off-box copy.
func (w *Writer) appendLocked(es []Entry, checkpoint bool) (cps [][]byte, err error) {
	appendMu.Lock()
	defer appendMu.Unlock()
	f, st, last, err := w.lock()
	if err != nil {
		return nil, err
	}
	defer f.Close() // and so unlock
	key := st.Key
	defer func() { clear(key) }()
	var buf bytes.Buffer
	var lines [][]byte
	add := func(e Entry) error {
		if e.Time.IsZero() {
			e.Time = w.now()
		}
		e.Seq, e.Prev, e.MAC = st.Seq, st.Head, ""
		line, err := encode(e, key)
		if err != nil {
			return err
		}
		next := ratchet(key)
		clear(key)
		key = next
		buf.Write(line)
		buf.WriteByte('\n')
		st.Seq, st.Head = st.Seq+1, hashLine(line)
		if e.Kind == KindCheckpoint {
			st.Since = 0
			lines = append(lines, line)
		} else {
			st.Since++
		}
		return nil
	}
	for _, e := range es {
		if e.Kind == KindCheckpoint {
			return nil, errors.New("audit: checkpoints are the writer's to write")
		}
		if err := add(e); err != nil {
			return nil, err
		}
		if st.Since >= w.every {
			if err := add(w.checkpoint()); err != nil {
				return nil, err
			}
		}
	}
	if checkpoint && st.Since > 0 {
		if err := add(w.checkpoint()); err != nil {
			return nil, err
		}
	}
	if buf.Len() == 0 {
		if checkpoint && st.Since == 0 {
			w.seen(last)
		}
		if checkpoint && w.sink != nil && st.Since == 0 {
			// Nothing since the last checkpoint: it is the one the
			// store gets (a key command wrote it without one).
			return [][]byte{last}, nil
		}
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := writeSync(f, buf.Bytes()); err != nil {
		f.Truncate(fi.Size()) // what this call wrote, never more
		return nil, fmt.Errorf("appending to %q: %w", w.logPath(), err)
	}
	st.Key = key
	// A crash here leaves the state one append behind: the next append
	// finds its own lines and rolls forward (current).
	if err := w.saveState(st); err != nil {
		return lines, err
	}
	err = appendOffBox(st.Checkpoints, lines)
	if err == nil && len(lines) > 0 {
		// Handed out only once the off-box copy has it too.
		w.seen(lines[len(lines)-1])
	}
	return lines, err
}

// lock opens the log, locks it, and returns it with the writer's state
// (rolled forward: current) and the log's last line, once it has
// checked that the sealed record is there and names the state's off-box
// copy: a deleted record, or one pointed elsewhere, stops the writer.
// The caller closes f (and so unlocks) and wipes st.Key.
func (w *Writer) lock() (f *os.File, st state, last []byte, err error) {
	f, err = os.OpenFile(w.logPath(), os.O_RDWR|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, state{}, nil, fmt.Errorf("the audit log %q is missing (deleted?): %w", w.logPath(), ErrNoLog)
	}
	if err != nil {
		return nil, state{}, nil, err
	}
	fail := func(err error) (*os.File, state, []byte, error) {
		clear(st.Key)
		f.Close()
		return nil, state{}, nil, err
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		return fail(fmt.Errorf("locking %q: %w", w.logPath(), err))
	}
	st, last, err = w.current(f)
	if err != nil {
		return fail(err)
	}
	rec, err := ReadRecord(w.dir)
	if errors.Is(err, ErrNoLog) {
		return fail(fmt.Errorf("%q: %w (run 'holdfast audit verify'; docs/audit.md, \"Repair\")", filepath.Join(w.dir, RecordName), ErrNoRecord))
	} else if err != nil {
		return fail(err)
	}
	if rec.Checkpoints != st.Checkpoints {
		return fail(fmt.Errorf("the sealed record names the off-box copy %q but the writer's state %q: %w", rec.Checkpoints, st.Checkpoints, ErrRecordPath))
	}
	return f, st, last, nil
}

// Ready checks, writing nothing, that the log can take an entry now:
// it is there and writable, its last line continues the writer's state,
// the sealed record is there and names the state's off-box copy, and the
// directory can take the new state. A key command calls it before it
// does anything, so that an operation the log cannot record is not done.
func (w *Writer) Ready() error {
	appendMu.Lock()
	defer appendMu.Unlock()
	f, st, _, err := w.lock()
	if err != nil {
		return err
	}
	defer f.Close()
	clear(st.Key)
	if err := unix.Access(w.dir, unix.W_OK); err != nil {
		return fmt.Errorf("the audit directory %q cannot take the writer's state: %w", w.dir, err)
	}
	return nil
}

func (w *Writer) checkpoint() Entry {
	return Entry{Time: w.now(), Kind: KindCheckpoint, Op: "checkpoint"}
}

// current reads the state and checks it against the log's last line
// (under the caller's lock), and returns the last line too. If the last append wrote its lines but not
// the state (a crash between the two), it rolls the state forward over
// them: each must carry the MAC of the key the state holds, which only
// this writer had.
func (w *Writer) current(f *os.File) (state, []byte, error) {
	st, err := w.readState()
	if err != nil {
		return state{}, nil, err
	}
	// Find the state's head among the last lines (almost always the very
	// last: read little first), then roll forward over those after it.
	var lines [][]byte
	at := -1
	for _, n := range []int64{2 * maxLine, tailBytes} {
		var whole bool
		if lines, whole, err = tailLines(f, n); err != nil {
			clear(st.Key)
			return state{}, nil, err
		}
		if at = indexOfHash(lines, st.Head); at >= 0 || whole {
			break
		}
	}
	mismatch := func() (state, []byte, error) {
		clear(st.Key)
		return state{}, nil, fmt.Errorf("%q: %w", w.logPath(), ErrStateMismatch)
	}
	if at < 0 {
		return mismatch()
	}
	if e, why := parse(lines[at]); why != "" || e.Seq+1 != st.Seq {
		return mismatch()
	}
	for _, line := range lines[at+1:] {
		e, why := parse(line)
		if why != "" || e.Seq != st.Seq || e.Prev != st.Head || !macOK(e, st.Key) {
			return mismatch()
		}
		next := ratchet(st.Key)
		clear(st.Key)
		st.Key = next
		st.Seq, st.Head = st.Seq+1, hashLine(line)
		if e.Kind == KindCheckpoint {
			st.Since = 0
		} else {
			st.Since++
		}
	}
	return st, bytes.Clone(lines[len(lines)-1]), nil
}

// tailBytes bounds how much of the log's end current reads when it rolls
// forward: enough for any one append's lines in practice (a batch of a
// few hundred entries).
const tailBytes = 4 << 20

// tailLines returns the whole lines in the last max bytes of f (the first
// may be cut and is dropped unless the read reached the start: whole). A
// last line without its newline is damage: ErrStateMismatch.
func tailLines(f *os.File, max int64) (lines [][]byte, whole bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	n := min(size, max)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return nil, false, fmt.Errorf("reading %q: %w", f.Name(), err)
	}
	if n == 0 || buf[n-1] != '\n' {
		return nil, false, fmt.Errorf("%q: the last line is not a whole entry: %w", f.Name(), ErrStateMismatch)
	}
	lines = bytes.Split(buf[:n-1], []byte{'\n'})
	if n < size {
		lines = lines[1:]
	}
	return lines, n == size, nil
}

// indexOfHash is the index of the last line whose SHA-256 is head, or -1.
func indexOfHash(lines [][]byte, head string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if hashLine(lines[i]) == head {
			return i
		}
	}
	return -1
}

func (w *Writer) readState() (state, error) {
	b, err := os.ReadFile(w.statePath())
	if err != nil {
		return state{}, fmt.Errorf("reading the audit state: %w", err)
	}
	defer clear(b)
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Format != stateFormat || len(st.Key) != secret.KeySize || st.Checkpoints == "" {
		clear(st.Key)
		return state{}, fmt.Errorf("the audit state %q is malformed", w.statePath())
	}
	return st, nil
}

func (w *Writer) saveState(st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	defer clear(b)
	// The file is replaced, not rewritten: the old key's blocks are
	// released to the filesystem (docs/audit.md, "What is not protected").
	if err := atomicfile.WriteFile(w.statePath(), b, atomicfile.Options{Mode: 0o600}); err != nil {
		return fmt.Errorf("saving the audit state: %w", err)
	}
	return nil
}

// appendOffBox appends lines (checkpoints, or a record line) to the
// off-box copy at path and syncs it. A write that fails is cut back to
// where it began (as the log's is), so that the copy never keeps part of
// a line this call wrote; a copy whose last line was left partial (a
// crash) gets a newline first, so that the lines written now are whole
// lines of their own (the partial one stays, and verify names it).
func appendOffBox(path string, lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpointCopy, err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX); err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpointCopy, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpointCopy, err)
	}
	var buf bytes.Buffer
	if !endsLine(path, fi.Size()) {
		buf.WriteByte('\n')
	}
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	if err := writeSync(f, buf.Bytes()); err != nil {
		f.Truncate(fi.Size()) // what this call wrote, never more
		return fmt.Errorf("%w: %q: %w", ErrCheckpointCopy, path, err)
	}
	return nil
}

// endsLine reports whether the file at path, of size bytes, is empty or
// ends with a newline; a copy that cannot be read (a write-only one)
// is taken to.
func endsLine(path string, size int64) bool {
	if size == 0 {
		return true
	}
	r, err := os.Open(path)
	if err != nil {
		return true
	}
	defer r.Close()
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, size-1); err != nil {
		return true
	}
	return last[0] == '\n'
}

func writeSync(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
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

func marshalRecord(rec Record) ([]byte, error) {
	if rec.Format != recordFormat || rec.Checkpoints == "" {
		return nil, errors.New("audit: an incomplete record (use Seal)")
	}
	return json.Marshal(rec)
}
