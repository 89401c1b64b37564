package repo

// Sync: make a key prefix of a bucket match a local directory (SyncUp), or
// a local directory match a prefix (SyncDown), transferring only what
// differs, in one process so that the bucket key is unwrapped once.
//
// A file and an object are the same when their sizes are equal and the
// object's recorded modification time equals the file's (see sameModTime).
// SyncUp records each file's modification time as the object's; SyncDown
// gives each file its object's. Nothing is hashed: a keyed hash would need
// every unchanged file read on every run, and a plain hash of plaintext
// must never reach the store.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/catalog"
)

// ErrUnsafeName: an object key that names no file inside the local
// directory ("..", an absolute path, an empty element). SyncDown refuses
// such keys; they are how another writer could try to make it write
// outside the directory.
var ErrUnsafeName = errors.New("not a safe local file name")

// SyncOptions tune SyncUp and SyncDown.
type SyncOptions struct {
	// Delete removes destination files (objects, or local regular files)
	// that the source does not have — unless something failed earlier in
	// the run, in which case nothing is deleted (SyncSummary.DeletesWithheld).
	Delete bool
	// DryRun decides and reports what would be done, and changes nothing.
	DryRun bool
	// FileMode is the mode of the files SyncDown writes (0600 if zero).
	FileMode os.FileMode
	// Workers is how many objects SyncDown fetches at once (default 4).
	Workers int
	// Report, if set, is called once for each file transferred, deleted,
	// skipped or failed (in a dry run: that would be transferred or
	// deleted), never concurrently. Transfers are reported once they are
	// complete and recorded.
	Report func(SyncEvent)
	// Plan, if set, is called once the sync knows what it will transfer
	// (how many files, how many bytes), before it starts.
	Plan func(files int, bytes int64)
	// Progress, if set, is called with each count of bytes read from
	// files (up) or written to them (down), possibly from several
	// goroutines at once.
	Progress func(n int64)
}

// SyncAction is what happened to one file.
type SyncAction string

const (
	SyncUpload   SyncAction = "upload"
	SyncDownload SyncAction = "download"
	SyncDelete   SyncAction = "delete"
	SyncSkip     SyncAction = "skip" // not a regular file (up) or a directory marker key (down): left alone
	SyncFail     SyncAction = "fail"
)

// SyncEvent reports one file.
type SyncEvent struct {
	Action SyncAction
	Path   string // relative to the local directory, '/'-separated; "" if the key names no safe file
	Key    string // the object key; "" if the file's name cannot be a key
	Size   int64
	Err    error // SyncSkip, SyncFail: why
}

// SyncSummary counts what a sync did (in a dry run: would do).
type SyncSummary struct {
	Transferred     int   // files uploaded (up) or downloaded (down)
	Bytes           int64 // their plaintext bytes
	Deleted         int
	Unchanged       int
	Skipped         int
	Failed          int // files that could not be transferred or deleted
	Damaged         int // of Failed: objects that failed authentication
	DeletesWithheld int // deletions --delete would have made, held back because of failures
}

// sameModTime reports whether a file's and an object's modification
// times match: to the nanosecond, or to the second when either has no
// fraction of a second (a file system or a tool that keeps whole seconds,
// which would otherwise make every run transfer every file again).
func sameModTime(a, b time.Time) bool {
	if a.Equal(b) {
		return true
	}
	return (a.Nanosecond() == 0 || b.Nanosecond() == 0) && a.Unix() == b.Unix()
}

// syncPrefix turns PREFIX into the key prefix of the files below it: ""
// (the whole bucket) or "PREFIX/".
func syncPrefix(prefix string) string {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return ""
	}
	return prefix + "/"
}

// remoteFile is an object below the prefix.
type remoteFile struct {
	key      string
	size     int64
	modified time.Time
}

// listRemote returns the objects of bucket below pfx by their key
// relative to it, and whether the bucket exists.
func (r *Repo) listRemote(ctx context.Context, bucket, pfx string) (map[string]remoteFile, bool, error) {
	if _, err := r.cat.GetBucket(ctx, bucket); errors.Is(err, catalog.ErrNotFound) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	m := map[string]remoteFile{}
	err := r.cat.List(ctx, bucket, pfx, "", func(e catalog.Entry) error {
		m[e.Key[len(pfx):]] = remoteFile{key: e.Key, size: e.Size, modified: e.Modified}
		return nil
	})
	return m, true, err
}

// syncRun is the state of one sync.
type syncRun struct {
	o   SyncOptions
	mu  sync.Mutex
	sum SyncSummary
}

func (s *syncRun) report(ev SyncEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Action {
	case SyncUpload, SyncDownload:
		s.sum.Transferred++
		s.sum.Bytes += ev.Size
	case SyncDelete:
		s.sum.Deleted++
	case SyncSkip:
		s.sum.Skipped++
	case SyncFail:
		s.sum.Failed++
		if errors.Is(ev.Err, ErrDamaged) {
			s.sum.Damaged++
		}
	}
	if s.o.Report != nil {
		s.o.Report(ev)
	}
}

func (s *syncRun) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum.Failed > 0
}

func (s *syncRun) summary() SyncSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum
}

// progressReader counts the bytes read for SyncOptions.Progress.
type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}

// localWriter writes to a local file and records the first failure, so
// that a local write error is told apart from a store read error.
type localWriter struct {
	w   io.Writer
	fn  func(int64)
	err error
}

func (l *localWriter) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	if err != nil && l.err == nil {
		l.err = err
	}
	if n > 0 && l.fn != nil {
		l.fn(int64(n))
	}
	return n, err
}

// localError marks a failure of the local file system on one file.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

// plainError drops the operation and path of a *fs.PathError (the caller
// names the file).
func plainError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// SyncUp makes bucket's keys below prefix match the regular files below
// dir: new and changed files are stored (batched, as PutMany), and with
// Delete, objects below prefix that dir has no file for are deleted.
// Symbolic links are never followed and, like other files that are not
// regular, are reported as skipped. A file that cannot be read, or whose
// name cannot be a key, is reported as failed and the others go on. The
// error is for what stops the whole run (the store, the catalog, the key,
// an interrupt); the summary says what was done until then.
func (r *Repo) SyncUp(ctx context.Context, dir, bucket, prefix string, o SyncOptions) (SyncSummary, error) {
	s := &syncRun{o: o}
	if err := ValidateBucket(bucket); err != nil {
		return s.sum, err
	}
	pfx := syncPrefix(prefix)
	remote, _, err := r.listRemote(ctx, bucket, pfx)
	if err != nil {
		return s.sum, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return s.sum, err
	}
	defer root.Close()

	// Scan the tree: which files are new or changed.
	seen := map[string]bool{}
	type upload struct {
		PutItem
		size int64
	}
	var items []upload
	err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			// An unreadable directory: its files are unknown, so nothing
			// may be deleted; the rest goes on.
			s.report(SyncEvent{Action: SyncFail, Path: rel, Err: plainError(err)})
			return nil
		}
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			s.report(SyncEvent{Action: SyncSkip, Path: rel, Err: errors.New("a symbolic link (not followed)")})
			return nil
		case !t.IsRegular():
			s.report(SyncEvent{Action: SyncSkip, Path: rel, Err: errors.New("not a regular file")})
			return nil
		}
		seen[rel] = true
		key := pfx + rel
		if err := ValidateKey(key); err != nil {
			s.report(SyncEvent{Action: SyncFail, Path: rel, Err: err})
			return nil
		}
		info, err := d.Info()
		if err != nil {
			s.report(SyncEvent{Action: SyncFail, Path: rel, Key: key, Err: plainError(err)})
			return nil
		}
		if rf, ok := remote[rel]; ok && rf.size == info.Size() && sameModTime(info.ModTime(), rf.modified) {
			s.mu.Lock()
			s.sum.Unchanged++
			s.mu.Unlock()
			return nil
		}
		if o.DryRun {
			s.report(SyncEvent{Action: SyncUpload, Path: rel, Key: key, Size: info.Size()})
			return nil
		}
		// The modification time seen now is recorded: if the file changes
		// while it is read, its time moves on and the next run sends it
		// again.
		name := filepath.FromSlash(rel)
		items = append(items, upload{PutItem{Key: key, Opts: PutOptions{Modified: info.ModTime()},
			Open: func() (io.ReadCloser, error) { return openRegular(root, name, o.Progress) }}, info.Size()})
		return nil
	})
	if err != nil {
		return s.summary(), err
	}

	if o.Plan != nil {
		var total int64
		for _, it := range items {
			total += it.size
		}
		o.Plan(len(items), total)
	}
	if len(items) > 0 {
		puts := make([]PutItem, len(items))
		for i, it := range items {
			puts[i] = it.PutItem
		}
		err := r.PutManySkipping(ctx, bucket, puts, func(e catalog.Entry) {
			s.report(SyncEvent{Action: SyncUpload, Path: e.Key[len(pfx):], Key: e.Key, Size: e.Size})
		}, func(it PutItem, err error) {
			s.report(SyncEvent{Action: SyncFail, Path: it.Key[len(pfx):], Key: it.Key, Err: plainError(err)})
		})
		if err != nil {
			return s.summary(), err
		}
	}

	if o.Delete {
		var gone []string
		for rel := range remote {
			if !seen[rel] {
				gone = append(gone, rel)
			}
		}
		sort.Strings(gone)
		if s.failed() {
			s.mu.Lock()
			s.sum.DeletesWithheld = len(gone)
			s.mu.Unlock()
			return s.summary(), nil
		}
		for _, rel := range gone {
			rf := remote[rel]
			if !o.DryRun {
				if _, err := r.Delete(ctx, bucket, rf.key); err != nil && !errors.Is(err, ErrNotFound) {
					return s.summary(), err
				}
			}
			s.report(SyncEvent{Action: SyncDelete, Path: rel, Key: rf.key, Size: rf.size})
		}
	}
	return s.summary(), nil
}

// openRegular opens name below root for reading, without following a
// symbolic link in its place, and checks that it is still a regular file
// (O_NONBLOCK: a FIFO put there since the scan must not block the open).
func openRegular(root *os.Root, name string, progress func(int64)) (io.ReadCloser, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("no longer a regular file")
	}
	if progress == nil {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{progressReader{f, progress}, f}, nil
}

// localName turns the part of a key below the prefix into a path inside
// the local directory, or says why it cannot be one.
func localName(rel string) (string, error) {
	for _, el := range strings.Split(rel, "/") {
		switch el {
		case "":
			return "", fmt.Errorf("an empty path element: %w", ErrUnsafeName)
		case ".", "..":
			return "", fmt.Errorf("a %q path element: %w", el, ErrUnsafeName)
		}
	}
	name := filepath.FromSlash(rel)
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("not a path inside the directory: %w", ErrUnsafeName)
	}
	return name, nil
}

// SyncDown makes the regular files below dir match bucket's keys below
// prefix: new and changed objects are fetched, authenticated and written
// atomically (a file is either its old content or all of the new, never
// a part), with the object's modification time; directories are created
// as needed (dir too). With Delete, regular files below dir that have no
// object are removed (directories, symbolic links and other files are
// left alone). A key that names no file inside dir is refused (ErrUnsafeName)
// and nothing is written for it. Nothing is ever written outside dir, and
// no symbolic link in it is followed out of it. A key whose file cannot be
// written, or whose object fails authentication, is reported as failed and
// the others go on; the error is for what stops the whole run.
func (r *Repo) SyncDown(ctx context.Context, bucket, prefix, dir string, o SyncOptions) (SyncSummary, error) {
	s := &syncRun{o: o}
	pfx := syncPrefix(prefix)
	remote, ok, err := r.listRemote(ctx, bucket, pfx)
	if err != nil {
		return s.sum, err
	}
	if !ok {
		return s.sum, fmt.Errorf("bucket %q: %w", bucket, ErrNotFound)
	}
	var root *os.Root
	switch fi, err := os.Stat(dir); {
	case err == nil && !fi.IsDir():
		return s.sum, fmt.Errorf("%q is not a directory", dir)
	case err == nil || !o.DryRun:
		// A dry run into a directory that does not exist yet sees it empty.
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return s.sum, err
		}
		if root, err = os.OpenRoot(dir); err != nil {
			return s.sum, err
		}
		defer root.Close()
	}

	// Decide which objects differ from their files.
	rels := make([]string, 0, len(remote))
	for rel := range remote {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	wanted := map[string]bool{}
	type fetch struct {
		rel, name, key string
		size           int64
	}
	var todo []fetch
	for _, rel := range rels {
		rf := remote[rel]
		if strings.HasSuffix(rf.key, "/") && rf.size == 0 {
			// An S3 "folder" marker (an empty KEY/): no file to write.
			s.report(SyncEvent{Action: SyncSkip, Key: rf.key, Err: errors.New("a directory marker, not a file")})
			continue
		}
		name, err := localName(rel)
		if err != nil {
			s.report(SyncEvent{Action: SyncFail, Key: rf.key, Size: rf.size, Err: err})
			continue
		}
		wanted[rel] = true
		if root != nil {
			if link := linkOnPath(root, name); link != "" {
				// os.Root keeps a link from leading out of dir, not from
				// leading to another file in it: writing link/f would
				// overwrite whatever the link names (and --delete would
				// then remove it under its own name).
				s.report(SyncEvent{Action: SyncFail, Path: rel, Key: rf.key,
					Err: fmt.Errorf("a symbolic link is in the way (%q; not followed)", filepath.ToSlash(link))})
				continue
			}
			fi, err := root.Lstat(name)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				// A symbolic link leading out of dir ends here too.
				s.report(SyncEvent{Action: SyncFail, Path: rel, Key: rf.key, Err: fmt.Errorf("local file %q: %w", rel, plainError(err))})
				continue
			case fi.IsDir():
				s.report(SyncEvent{Action: SyncFail, Path: rel, Key: rf.key, Err: errors.New("a directory is in the way (not replaced)")})
				continue
			case fi.Mode()&fs.ModeSymlink != 0:
				s.report(SyncEvent{Action: SyncFail, Path: rel, Key: rf.key, Err: errors.New("a symbolic link is in the way (not replaced)")})
				continue
			case !fi.Mode().IsRegular():
				s.report(SyncEvent{Action: SyncFail, Path: rel, Key: rf.key, Err: errors.New("a file that is not a regular file is in the way (not replaced)")})
				continue
			case fi.Size() == rf.size && sameModTime(fi.ModTime(), rf.modified):
				s.mu.Lock()
				s.sum.Unchanged++
				s.mu.Unlock()
				continue
			}
		}
		if o.DryRun {
			s.report(SyncEvent{Action: SyncDownload, Path: rel, Key: rf.key, Size: rf.size})
			continue
		}
		todo = append(todo, fetch{rel, name, rf.key, rf.size})
	}
	if o.Plan != nil {
		var total int64
		for _, f := range todo {
			total += f.size
		}
		o.Plan(len(todo), total)
	}

	// Fetch them, a few at once; the first error that is not about one
	// file stops the others.
	if len(todo) > 0 {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var fatalOnce sync.Once
		var fatal error
		next := make(chan fetch)
		var wg sync.WaitGroup
		workers := o.Workers
		if workers <= 0 {
			workers = 4
		}
		for range min(workers, len(todo)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for f := range next {
					size, err := r.fetchFile(wctx, root, bucket, f.key, f.name, o)
					switch {
					case err == nil:
						s.report(SyncEvent{Action: SyncDownload, Path: f.rel, Key: f.key, Size: size})
					case perFile(err) && wctx.Err() == nil:
						s.report(SyncEvent{Action: SyncFail, Path: f.rel, Key: f.key, Err: err})
					default:
						fatalOnce.Do(func() { fatal = err; cancel() })
					}
				}
			}()
		}
	feed:
		for _, f := range todo {
			select {
			case next <- f:
			case <-wctx.Done():
				break feed
			}
		}
		close(next)
		wg.Wait()
		if ctx.Err() != nil {
			fatal = ctx.Err() // interrupted: say so, whatever failed on the way
		}
		if fatal != nil {
			return s.summary(), fatal
		}
	}

	if o.Delete && root != nil {
		var gone []string
		err := fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				// Unreadable: report it; the failure withholds deletions.
				s.report(SyncEvent{Action: SyncFail, Path: rel, Err: plainError(err)})
				return nil
			}
			if d.Type().IsRegular() && !wanted[rel] {
				gone = append(gone, rel)
			}
			return nil
		})
		if err != nil {
			return s.summary(), err
		}
		if s.failed() {
			s.mu.Lock()
			s.sum.DeletesWithheld = len(gone)
			s.mu.Unlock()
			return s.summary(), nil
		}
		for _, rel := range gone {
			if !o.DryRun {
				if err := root.Remove(filepath.FromSlash(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					s.report(SyncEvent{Action: SyncFail, Path: rel, Err: plainError(err)})
					continue
				}
			}
			s.report(SyncEvent{Action: SyncDelete, Path: rel})
		}
	}
	return s.summary(), nil
}

// linkOnPath returns the first directory of name (below root) that is a
// symbolic link, or "".
func linkOnPath(root *os.Root, name string) string {
	dir := filepath.Dir(name)
	if dir == "." {
		return ""
	}
	parts := strings.Split(dir, string(filepath.Separator))
	for i := range parts {
		p := filepath.Join(parts[:i+1]...)
		fi, err := root.Lstat(p)
		if err != nil {
			return "" // absent (created later) or unreadable: reported when written
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return p
		}
	}
	return ""
}

// perFile reports whether a SyncDown error concerns one file only: the
// local file system refused it, its object failed authentication, or it
// was deleted meanwhile. Anything else (the store, the catalog, the key,
// an interrupt) stops the run; a rerun picks up where it stopped.
func perFile(err error) bool {
	var le localError
	return errors.As(err, &le) || errors.Is(err, ErrDamaged) || errors.Is(err, ErrNotFound)
}

// fetchFile writes object bucket/key to name below root and returns its
// size.
func (r *Repo) fetchFile(ctx context.Context, root *os.Root, bucket, key, name string, o SyncOptions) (int64, error) {
	rd, err := r.OpenObject(ctx, bucket, key)
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	if d := filepath.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o777); err != nil {
			return 0, localError{fmt.Errorf("creating directory %q: %w", filepath.ToSlash(d), plainError(err))}
		}
	}
	var readErr error
	err = atomicfile.WriteIn(root, name, atomicfile.Options{Mode: o.FileMode, ModTime: rd.Entry.Modified}, func(w io.Writer) error {
		lw := &localWriter{w: w, fn: o.Progress}
		_, err := rd.WriteTo(ctx, lw)
		if err != nil && lw.err == nil {
			readErr = err
		}
		return err
	})
	switch {
	case readErr != nil:
		return 0, readErr
	case err != nil:
		return 0, localError{plainError(err)}
	}
	return rd.Entry.Size, nil
}
