package regfile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrChanged is the error of a Source whose file changed while it was
// being read: what was read is no version the file ever had.
var ErrChanged = errors.New("the file changed while it was being read")

// ErrNotMappable is the error of a View or Map that could not map the
// file (a file system that cannot map it, some FUSE and special files;
// the process's mapping limits): nothing was consumed, and the rest of
// the file can still be read through Read.
var ErrNotMappable = errors.New("the file cannot be mapped")

// Source reads a regular file to store it, as it was when NewSource saw
// it: the size then is the whole input, and the file is looked at again
// once all of it was read — a file whose size, modification time or
// change time is not what it was ends with ErrChanged instead of io.EOF.
// (A change is told by those times, so one made within the file system's
// clock tick of the last change before NewSource, or through a shared
// writable mapping that has not been written back, can go unseen.)
//
// It is an io.Reader, and it can also hand over a piece of the file
// without copying it (View): the piece is mapped read-only from the
// page cache, so an encrypting reader reads the file's pages once,
// where read(2) would first copy them into the process. A 1 GiB put
// on tmpfs spent about a sixth of its CPU time in that copy.
type Source struct {
	f     *os.File
	start unix.Stat_t // what NewSource saw
	off   int64
	end   error       // the result at the end, once checked
	count func(int64) // told of the bytes read, or nil
}

// NewSource reads f, which must be a regular file, from its start.
func NewSource(f *os.File) (*Source, error) {
	s := &Source{f: f}
	if err := s.stat(&s.start); err != nil {
		return nil, err
	}
	if s.start.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", f.Name())
	}
	return s, nil
}

// withFD runs fn on f's descriptor, which stays open meanwhile (a Close
// from another goroutine waits, and one before makes withFD fail).
func withFD(f *os.File, op string, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err == nil {
		var ferr error
		if err = rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err == nil {
			err = ferr
		}
	}
	if err != nil {
		return &os.PathError{Op: op, Path: f.Name(), Err: err}
	}
	return nil
}

func (s *Source) stat(st *unix.Stat_t) error {
	return withFD(s.f, "stat", func(fd int) error {
		for {
			if err := unix.Fstat(fd, st); err != unix.EINTR {
				return err
			}
		}
	})
}

// Size is the file's size when NewSource saw it: the length of the input.
func (s *Source) Size() int64 { return s.start.Size }

// SetProgress has fn told of the number of bytes every Read or View
// moves past.
func (s *Source) SetProgress(fn func(n int64)) { s.count = fn }

func (s *Source) advance(n int64) {
	s.off += n
	if s.count != nil && n > 0 {
		s.count(n)
	}
}

// Read reads the next bytes of the file.
func (s *Source) Read(p []byte) (int, error) {
	size := s.start.Size
	if s.off >= size {
		return 0, s.atEnd()
	}
	if int64(len(p)) > size-s.off {
		p = p[:size-s.off]
	}
	n, err := s.f.ReadAt(p, s.off)
	s.advance(int64(n))
	switch {
	case n == len(p):
		return n, nil
	case err == io.EOF: // the file is shorter than it was
		return n, ErrChanged
	}
	return n, err
}

// View returns the next min(n, what is left) bytes of the file, mapped
// read-only, and moves past them; at the end it returns no bytes and
// the error Read would. The bytes stay valid until release is called,
// which the caller must do once, and only then. A file its file system
// cannot map gives ErrNotMappable and moves past nothing.
//
// A file truncated while a view of it is read makes the read fault
// (SIGBUS) where the pages are gone: a reader of views must run with
// runtime/debug.SetPanicOnFault and treat the fault as a change. Once
// every view is released, Unchanged tells whether the file changed.
func (s *Source) View(n int) (view []byte, release func(), err error) {
	size := s.start.Size
	if s.off >= size {
		return nil, nil, s.atEnd()
	}
	k := min(int64(n), size-s.off)
	view, release, err = Map(s.f, s.off, int(k))
	if err != nil {
		return nil, nil, err
	}
	s.advance(k)
	return view, release, nil
}

// Map maps n bytes of f from offset off read-only (MAP_SHARED: the page
// cache's pages themselves). The bytes stay valid until release is
// called, which the caller must do once, and only then; reading past
// the end of a file cut short meanwhile faults (see View), as does an
// I/O error reading a page in. A failed mapping gives ErrNotMappable; a
// closed f, another error.
func Map(f *os.File, off int64, n int) (view []byte, release func(), err error) {
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	lead := int(off - start)
	var m []byte
	var merr error
	err = withFD(f, "mmap", func(fd int) error {
		m, merr = unix.Mmap(fd, start, lead+n, unix.PROT_READ, unix.MAP_SHARED)
		return nil
	})
	switch {
	case err != nil:
		return nil, nil, err
	case merr != nil:
		// Whatever the reason (a file system that cannot map, the
		// process's mapping limits), reading still may not fail.
		return nil, nil, fmt.Errorf("%w: %w", ErrNotMappable, &os.PathError{Op: "mmap", Path: f.Name(), Err: merr})
	}
	return m[lead : lead+n : lead+n], func() { _ = unix.Munmap(m) }, nil
}

// atEnd is what the input ends with: io.EOF if the file is as it was.
// It is checked once: views handed out before it may still be read, so a
// reader of views asks Unchanged again once it has released them.
func (s *Source) atEnd() error {
	if s.end == nil {
		s.end = s.Unchanged()
		if s.end == nil {
			s.end = io.EOF
		}
	}
	return s.end
}

// Unchanged looks at the file again: nil if its size, modification time
// and change time are what NewSource saw, else ErrChanged (or the error
// looking failed with).
func (s *Source) Unchanged() error {
	var st unix.Stat_t
	if err := s.stat(&st); err != nil {
		return err
	}
	if st.Size != s.start.Size || st.Mtim != s.start.Mtim || st.Ctim != s.start.Ctim {
		return ErrChanged
	}
	return nil
}
