package local

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/regfile"
	"github.com/holdfast/holdfast/internal/store"
)

const (
	tmpDirName = ".tmp"
	tmpPrefix  = "put-"

	// copyBlock is the copy buffer size and the granularity at which Put
	// checks its context.
	copyBlock = 1 << 20

	// writeBlock is the largest write(2) of a slice a source's WriteTo
	// hands over: a whole segment's ciphertext (4 MiB and its tags) in one
	// call. Writing it in 1 MiB calls made a 1 GiB put about 5% slower on
	// tmpfs (each call takes the inode's lock and updates its times); the
	// context is still checked every 8 MiB, a few milliseconds of writing.
	writeBlock = 8 << 20
)

var (
	_ store.Store          = (*Store)(nil)
	_ store.DeferredSyncer = (*Store)(nil)
)

// Options configures a Store. The zero value is the production
// configuration.
type Options struct {
	// TestHookBeforeRename, if set, is called by Put after the temporary
	// file has been fully written and fsynced, immediately before it is
	// renamed into place. It exists only so crash tests can stop a process
	// at that point. Production code never sets it.
	TestHookBeforeRename func(name string)
}

// Store is a store.Store backed by a local directory. It is safe for
// concurrent use.
type Store struct {
	dirtyMu sync.Mutex
	dirty   map[string]struct{} // fan directories that received PutNoSync objects

	root   string
	tmp    string
	opts   Options
	closed atomic.Bool

	// fanDone records fan-out directories known to exist durably, so the
	// root directory is fsynced once per new fan-out directory.
	fanDone sync.Map // string -> struct{}
}

// Open opens the store in dir, creating dir (mode 0700) if needed, and
// removes temporary files left behind by an earlier crash.
func Open(dir string) (*Store, error) {
	return OpenWithOptions(dir, Options{})
}

// OpenWithOptions is Open with options. Only tests pass non-zero Options.
func OpenWithOptions(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("local: open: empty directory path")
	}
	root := filepath.Clean(dir)
	_, statErr := os.Stat(root)
	created := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("local: open %q: %w", dir, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("local: open %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("local: open %q: not a directory", dir)
	}
	if created {
		if err := syncDir(filepath.Dir(root)); err != nil {
			return nil, fmt.Errorf("local: open %q: %w", dir, err)
		}
	}
	s := &Store{root: root, tmp: filepath.Join(root, tmpDirName), opts: opts}
	if err := os.Mkdir(s.tmp, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("local: open %q: %w", dir, err)
	}
	if err := syncDir(root); err != nil {
		return nil, fmt.Errorf("local: open %q: %w", dir, err)
	}
	if err := s.removeStaleTemps(); err != nil {
		return nil, fmt.Errorf("local: open %q: %w", dir, err)
	}
	return s, nil
}

// removeStaleTemps removes temporary files left by interrupted Puts of
// processes that are gone. Temporary names carry the writer's pid, so a
// second process opening the same store (the CLI while the gateway runs)
// never removes a live writer's file.
func (s *Store) removeStaleTemps() error {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if pid, ok := tempOwner(e.Name()); ok && (pid == os.Getpid() || processExists(pid)) {
			continue // a live writer's, perhaps this process's own
		}
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return fmt.Errorf("removing stale temporary file: %w", err)
		}
	}
	return nil
}

// tempOwner returns the pid in a temporary file name "put-PID-RANDOM".
func tempOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, tmpPrefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	return pid, err == nil && pid > 0
}

// processExists reports whether a process with this pid runs.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// fanDir returns the fan-out directory name for a valid object name.
func fanDir(name string) string {
	if len(name) < 2 {
		return name
	}
	return name[:2]
}

func (s *Store) objectPath(name string) string {
	return filepath.Join(s.root, fanDir(name), name)
}

// check runs the checks shared by every per-object method.
func (s *Store) check(ctx context.Context, op, name string) error {
	if s.closed.Load() {
		return fmt.Errorf("local: %s %q: store is closed", op, name)
	}
	if !store.ValidName(name) {
		return fmt.Errorf("local: %s %q: %w", op, name, store.ErrInvalidName)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: %s %q: %w", op, name, err)
	}
	return nil
}

// Put implements store.Store. It reads r to EOF, so that a body longer than
// size is detected.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := s.check(ctx, "put", name); err != nil {
		return err
	}
	if size < store.UnknownSize {
		return fmt.Errorf("local: put %q: negative size %d: %w", name, size, store.ErrShortWrite)
	}
	if err := s.put(ctx, name, r, size); err != nil {
		return fmt.Errorf("local: put %q: %w", name, err)
	}
	return nil
}

// PutNoSync implements store.DeferredSyncer: Put without the fsyncs,
// which Sync performs for all such objects at once.
func (s *Store) PutNoSync(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := s.check(ctx, "put", name); err != nil {
		return err
	}
	if size < store.UnknownSize {
		return fmt.Errorf("local: put %q: negative size %d: %w", name, size, store.ErrShortWrite)
	}
	if err := s.putOpt(ctx, name, r, size, false); err != nil {
		return fmt.Errorf("local: put %q: %w", name, err)
	}
	return nil
}

// Sync implements store.DeferredSyncer: one syncfs for the data of every
// object written since the last Sync, then an fsync of each directory that
// received one.
func (s *Store) Sync(ctx context.Context) error {
	s.dirtyMu.Lock()
	dirs := s.dirty
	s.dirty = nil
	s.dirtyMu.Unlock()
	if len(dirs) == 0 {
		return nil
	}
	if err := s.syncAll(dirs); err != nil {
		// Nothing is known durable: the next Sync does it all again.
		s.dirtyMu.Lock()
		if s.dirty == nil {
			s.dirty = map[string]struct{}{}
		}
		for d := range dirs {
			s.dirty[d] = struct{}{}
		}
		s.dirtyMu.Unlock()
		return fmt.Errorf("local: sync: %w", err)
	}
	return nil
}

func (s *Store) syncAll(dirs map[string]struct{}) error {
	d, err := os.Open(s.root)
	if err != nil {
		return err
	}
	err = unix.Syncfs(int(d.Fd()))
	d.Close()
	if err != nil {
		return err
	}
	for dir := range dirs {
		if err := syncDir(filepath.Join(s.root, dir)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) put(ctx context.Context, name string, r io.Reader, size int64) error {
	return s.putOpt(ctx, name, r, size, true)
}

func (s *Store) putOpt(ctx context.Context, name string, r io.Reader, size int64, durable bool) error {
	return s.publish(ctx, name, durable, func(f *os.File) error { return copyBody(ctx, f, r, size) })
}

// publish makes name hold what fill writes, never visible in part: a new
// temporary file, filled, synced (when durable), closed and renamed into
// its fan-out directory, which is then synced (or, not durable, left to
// Sync).
func (s *Store) publish(ctx context.Context, name string, durable bool, fill func(f *os.File) error) error {
	f, err := s.createTemp()
	if err != nil {
		return err
	}
	tmpPath := f.Name()
	renamed := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if !renamed {
			os.Remove(tmpPath)
		}
	}()

	if err := fill(f); err != nil {
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	err = f.Close()
	f = nil
	if err != nil {
		return err
	}
	if err := s.ensureFanDir(fanDir(name)); err != nil {
		return err
	}
	if hook := s.opts.TestHookBeforeRename; hook != nil {
		hook(name)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := regfile.Rename(tmpPath, s.objectPath(name)); err != nil {
		return err
	}
	renamed = true
	if !durable {
		s.dirtyMu.Lock()
		if s.dirty == nil {
			s.dirty = map[string]struct{}{}
		}
		s.dirty[fanDir(name)] = struct{}{}
		s.dirtyMu.Unlock()
		return nil
	}
	// The object is visible now. If this fsync fails its durability is
	// unknown; the error is reported all the same.
	return syncDir(filepath.Join(s.root, fanDir(name)))
}

// createTemp creates a new temporary file with O_EXCL and mode 0600.
func (s *Store) createTemp() (*os.File, error) {
	for range 10 {
		p := filepath.Join(s.tmp, tmpPrefix+strconv.Itoa(os.Getpid())+"-"+strings.ToLower(rand.Text()))
		f, err := regfile.CreateExcl(p, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, errors.New("cannot create a unique temporary file")
}

// ensureFanDir creates the fan-out directory if needed and makes its entry
// in the root directory durable before any object is renamed into it.
func (s *Store) ensureFanDir(fan string) error {
	if _, ok := s.fanDone.Load(fan); ok {
		return nil
	}
	if err := os.Mkdir(filepath.Join(s.root, fan), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	s.fanDone.Store(fan, struct{}{})
	return nil
}

var errTooLong = errors.New("body longer than declared size")

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBlock); return &b }}

// copyBody copies r to f, checking ctx between blocks, and fails unless r
// yields exactly size bytes before EOF.
func copyBody(ctx context.Context, f *os.File, r io.Reader, size int64) error {
	unknown := size == store.UnknownSize
	if unknown {
		size = math.MaxInt64 - 1
	}
	var err error
	if src, ok := r.(*os.File); ok {
		err = copyFromFile(ctx, f, src, size, unknown)
	} else {
		// bodyWriter is not an io.ReaderFrom, so io.CopyBuffer either lets
		// an io.WriterTo source write into it or copies through buf.
		sp := smallPool.Get().(*[]byte)
		w := &bodyWriter{ctx: ctx, f: f, left: size, small: (*sp)[:0]}
		bp := bufPool.Get().(*[]byte)
		_, err = io.CopyBuffer(w, r, *bp)
		if err == nil {
			err = w.flush()
		}
		bufPool.Put(bp)
		smallPool.Put(sp)
		if err == nil && w.left != 0 && !unknown {
			err = fmt.Errorf("got %d of %d bytes: %w", size-w.left, size, store.ErrShortWrite)
		}
	}
	if errors.Is(err, errTooLong) {
		return fmt.Errorf("more than %d bytes: %w", size, store.ErrShortWrite)
	}
	return err
}

// bodyWriter writes to f, refusing to go past the declared size. Small
// writes (an object's header, manifest and footer) are gathered in small
// so that a small object costs one write system call.
type bodyWriter struct {
	ctx   context.Context
	f     *os.File
	left  int64
	small []byte
}

// smallWrite is the largest write bodyWriter gathers.
const smallWrite = 64 << 10

var smallPool = sync.Pool{New: func() any { b := make([]byte, 0, smallWrite); return &b }}

func (w *bodyWriter) flush() error {
	if len(w.small) == 0 {
		return nil
	}
	_, err := w.f.Write(w.small)
	w.small = w.small[:0]
	return err
}

// Write writes p in blocks of at most writeBlock bytes, checking the
// context before each, so that a source's WriteTo handing over a large
// slice is still cancellable.
func (w *bodyWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, errTooLong
	}
	if len(w.small)+len(p) <= cap(w.small) {
		w.small = append(w.small, p...)
		w.left -= int64(len(p))
		return len(p), nil
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	if len(p) < cap(w.small) {
		w.small = append(w.small, p...)
		w.left -= int64(len(p))
		return len(p), nil
	}
	written := 0
	for written < len(p) {
		if err := w.ctx.Err(); err != nil {
			return written, err
		}
		n, err := w.f.Write(p[written:min(len(p), written+writeBlock)])
		written += n
		w.left -= int64(n)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// copyFromFile lets f.ReadFrom use copy_file_range or splice for a file
// source, one block at a time so ctx is still checked between blocks.
func copyFromFile(ctx context.Context, f, src *os.File, size int64, unknown bool) error {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := min(copyBlock, size-n+1)
		got, err := f.ReadFrom(&io.LimitedReader{R: src, N: want})
		n += got
		if err != nil {
			return err
		}
		if n > size {
			return errTooLong
		}
		if got < want { // EOF
			break
		}
	}
	if n != size && !unknown {
		return fmt.Errorf("got %d of %d bytes: %w", n, size, store.ErrShortWrite)
	}
	return nil
}

// ReadRange implements store.Store. The returned reader reads the file with
// pread and fails once ctx is done.
func (s *Store) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := s.check(ctx, "read", name); err != nil {
		return nil, err
	}
	if off < 0 || length < -1 {
		return nil, fmt.Errorf("local: read %q: offset %d length %d: %w", name, off, length, store.ErrInvalidRange)
	}
	f, err := openObject(s.objectPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local: read %q: %w", name, store.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("local: read %q: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("local: read %q: %w", name, err)
	}
	if off > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("local: read %q: offset %d beyond size %d: %w", name, off, fi.Size(), store.ErrInvalidRange)
	}
	n := fi.Size() - off
	if length >= 0 && length < n {
		n = length
	}
	return &rangeReader{ctx: ctx, sr: io.NewSectionReader(f, off, n), f: f}, nil
}

// errNotRegular: something other than a regular file — a directory, a
// symbolic link, a FIFO, a device — is where an object should be.
var errNotRegular = errors.New("not a regular file")

// openObject opens the object file at path for reading, refusing whatever
// is not a regular file before it can block or lead elsewhere: a symbolic
// link is not followed, and a FIFO (whose open would wait for a writer,
// and no context can interrupt an open) is opened without blocking and
// then refused.
func openObject(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) { // the last component is a symbolic link
		return nil, errNotRegular
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, errNotRegular
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

type rangeReader struct {
	ctx context.Context
	sr  *io.SectionReader
	f   *os.File
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.sr.Read(p)
}

// View hands over the next min(n, what is left) bytes of the range
// without copying them: mapped read-only from the page cache
// (regfile.Map, whose ErrNotMappable leaves the range where it was). The
// caller releases the view once, and copies what it authenticates before
// it does: the provider's file can change under a mapping.
func (r *rangeReader) View(n int) ([]byte, func(), error) {
	if err := r.ctx.Err(); err != nil {
		return nil, nil, err
	}
	pos, err := r.sr.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, nil, err
	}
	left := r.sr.Size() - pos
	if left <= 0 {
		return nil, nil, io.EOF
	}
	k := min(int64(n), left)
	_, base, _ := r.sr.Outer()
	view, release, err := regfile.Map(r.f, base+pos, int(k))
	if err != nil {
		return nil, nil, err
	}
	if _, err := r.sr.Seek(k, io.SeekCurrent); err != nil {
		release()
		return nil, nil, err
	}
	return view, release, nil
}

// Faulted tells why reading a view that ended at offset end of the range
// faulted: io.ErrUnexpectedEOF if the file now ends before it (the
// provider cut it short), else an I/O error reading it in.
func (r *rangeReader) Faulted(end int64) error {
	fi, err := r.f.Stat()
	if err != nil {
		return err
	}
	if _, base, _ := r.sr.Outer(); fi.Size() < base+end {
		return io.ErrUnexpectedEOF
	}
	return &fs.PathError{Op: "read", Path: r.f.Name(), Err: syscall.EIO}
}

func (r *rangeReader) Close() error { return r.f.Close() }

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if err := s.check(ctx, "stat", name); err != nil {
		return store.ObjectInfo{}, err
	}
	fi, err := os.Lstat(s.objectPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return store.ObjectInfo{}, fmt.Errorf("local: stat %q: %w", name, store.ErrNotExist)
	}
	if err != nil {
		return store.ObjectInfo{}, fmt.Errorf("local: stat %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return store.ObjectInfo{}, fmt.Errorf("local: stat %q: %w", name, errNotRegular)
	}
	return store.ObjectInfo{Name: name, Size: fi.Size()}, nil
}

// Delete implements store.Store. Empty fan-out directories are kept, so a
// concurrent Put never loses the directory it is renaming into.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.check(ctx, "delete", name); err != nil {
		return err
	}
	err := os.Remove(s.objectPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local: delete %q: %w", name, store.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("local: delete %q: %w", name, err)
	}
	if err := syncDir(filepath.Join(s.root, fanDir(name))); err != nil {
		return fmt.Errorf("local: delete %q: %w", name, err)
	}
	return nil
}

// List implements store.Store. Entries that are not objects of this store
// (wrong place, invalid name, not a regular file) are ignored. An error
// from fn is returned unwrapped.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	if s.closed.Load() {
		return fmt.Errorf("local: list %q: store is closed", prefix)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: list %q: %w", prefix, err)
	}
	// Paths are built only from directory entries, never from prefix.
	dirs, err := os.ReadDir(s.root)
	if err != nil {
		return fmt.Errorf("local: list %q: %w", prefix, err)
	}
	for _, d := range dirs {
		fan := d.Name()
		if !d.IsDir() || len(fan) > 2 || !store.ValidName(fan) {
			continue // .tmp and strangers
		}
		if !strings.HasPrefix(fan, prefix) && !strings.HasPrefix(prefix, fan) {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.root, fan))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("local: list %q: %w", prefix, err)
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, prefix) || !store.ValidName(name) || fanDir(name) != fan || !e.Type().IsRegular() {
				continue
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("local: list %q: %w", prefix, err)
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			if err != nil {
				return fmt.Errorf("local: list %q: %w", prefix, err)
			}
			if err := fn(store.ObjectInfo{Name: name, Size: fi.Size()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// ListStrangers implements store.StrangerLister: every entry of the store
// directory that is not part of its layout — anything at the top but the
// fan-out directories and the store's temporary and multipart areas,
// anything in a fan-out
// directory but a regular file with a valid name that belongs there.
// Directories are named with a trailing "/" and not descended into.
func (s *Store) ListStrangers(ctx context.Context, fn func(name string, size int64) error) error {
	if s.closed.Load() {
		return errors.New("local: list: store is closed")
	}
	report := func(rel string, e fs.DirEntry) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("local: list: %w", err)
		}
		if e.IsDir() {
			return fn(rel+"/", 0)
		}
		var size int64
		if fi, err := e.Info(); err == nil {
			size = fi.Size()
		}
		return fn(rel, size)
	}
	dirs, err := os.ReadDir(s.root)
	if err != nil {
		return fmt.Errorf("local: list: %w", err)
	}
	for _, d := range dirs {
		fan := d.Name()
		if (fan == tmpDirName || fan == uploadsDirName) && d.IsDir() {
			continue // the store's own work areas
		}
		if !d.IsDir() || len(fan) > 2 || !store.ValidName(fan) {
			if err := report(fan, d); err != nil {
				return err
			}
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.root, fan))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("local: list: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if store.ValidName(name) && fanDir(name) == fan && e.Type().IsRegular() {
				continue
			}
			if err := report(fan+"/"+name, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close implements store.Store. Later calls fail; Close itself is
// idempotent.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		err = nil // the file system does not support it
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	return nil
}
