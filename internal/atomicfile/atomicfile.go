// Package atomicfile writes files so that a reader sees either the old
// content or the new, never a mix, and a crash or failure leaves nothing
// half-written under the name: the content goes to a temporary file in the
// same directory (unnamed, O_TMPFILE, where the file system allows — a
// killed writer then leaves nothing at all; else O_EXCL; mode 0600), is
// synced, and is moved into place; then the directory is synced.
//
// It never leaves a temporary file behind on failure and never writes
// outside the target's directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrExists: NoReplace found something at the path.
var ErrExists = errors.New("file already exists")

// Options tune Write.
type Options struct {
	// Mode of the final file; 0600 if zero.
	Mode os.FileMode
	// NoReplace moves the file into place with a hard link that fails with
	// ErrExists if the path exists, so a concurrent creator is never
	// overwritten. Otherwise a rename replaces any existing file.
	NoReplace bool
	// ModTime, if not zero, is the final file's modification time (set
	// before the file is moved into place).
	ModTime time.Time
}

// Write makes path hold exactly what fill writes, or leaves it untouched.
func Write(path string, o Options, fill func(io.Writer) error) error {
	return write(osDir{}, path, o, fill)
}

// dirOps are the file-system operations write needs, resolved either
// directly (Write) or inside an os.Root (WriteIn).
type dirOps interface {
	// createTemp creates and opens a new file in dir, mode 0600: unnamed
	// (O_TMPFILE; name "") where it can, else as createNamed does.
	createTemp(dir, base string) (*os.File, string, error)
	// createNamed creates and opens a new file in dir, mode 0600, named
	// "."+base+".tmp-" and a random suffix, and returns it with its name.
	createNamed(dir, base string) (*os.File, string, error)
	// linkUnnamed gives the unnamed file f the name name (no slash) in
	// dir; fs.ErrExist if it is taken.
	linkUnnamed(f *os.File, dir, name string) error
	remove(name string) error
	chtimes(name string, mtime time.Time) error
	link(oldname, newname string) error
	rename(oldname, newname string) error
	syncDir(dir string) error
}

type osDir struct{}

// createTemp makes an unnamed file in dir (O_TMPFILE) where the file
// system and /proc allow it, so that a process killed while it writes —
// SIGKILL, a lost terminal, a power cut — leaves nothing behind: the name
// is "" then, and the file gets one only once complete (linkTemp).
// Elsewhere it makes a named temporary file.
func (osDir) createTemp(dir, base string) (*os.File, string, error) {
	if procFDs() {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), filepath.Join(dir, "."+base+".tmp")), "", nil
		}
	}
	return osDir{}.createNamed(dir, base)
}

func (osDir) createNamed(dir, base string) (*os.File, string, error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, "", err
	}
	return f, f.Name(), nil
}

func (osDir) linkUnnamed(f *os.File, dir, name string) error {
	return linkTemp(f, filepath.Join(dir, name))
}

// procFDs reports whether /proc/self/fd is there: an unnamed file is
// linked into place through it.
var procFDs = sync.OnceValue(func() bool {
	fi, err := os.Stat("/proc/self/fd")
	return err == nil && fi.IsDir()
})

// fdPath names f's file through /proc/self/fd.
func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// linkTemp gives the unnamed file f the name newname, which must not
// exist.
func linkTemp(f *os.File, newname string) error {
	err := unix.Linkat(unix.AT_FDCWD, fdPath(f), unix.AT_FDCWD, newname, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: newname, Err: err}
	}
	return nil
}

func (osDir) remove(name string) error                   { return os.Remove(name) }
func (osDir) chtimes(name string, mtime time.Time) error { return os.Chtimes(name, time.Time{}, mtime) }
func (osDir) link(oldname, newname string) error         { return os.Link(oldname, newname) }
func (osDir) rename(oldname, newname string) error       { return os.Rename(oldname, newname) }
func (osDir) syncDir(dir string) error                   { return SyncDir(dir) }

// write is Write through d.
func write(d dirOps, path string, o Options, fill func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, tmp, err := d.createTemp(dir, base)
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		// After a rename the name is gone; after a link or a failure it
		// must go.
		if rmErr := d.remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("removing temporary file: %w", rmErr)
		}
	}()
	// The temporary file stays 0600 while it is written (a partial file
	// left by a crash is readable by its owner only); the final mode is set
	// once the content is complete.
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing temporary file: %w", err)
	}
	if o.Mode != 0 && o.Mode != 0o600 {
		if err := f.Chmod(o.Mode); err != nil {
			return fmt.Errorf("setting mode of temporary file: %w", err)
		}
	}
	if tmp == "" {
		// Unnamed (O_TMPFILE): it is named only now, complete.
		if tmp, err = nameTemp(d, f, dir, base, o); err != nil {
			return err
		}
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("closing temporary file: %w", err)
	}
	if !o.ModTime.IsZero() {
		if err := d.chtimes(tmp, o.ModTime); err != nil {
			return fmt.Errorf("setting the modification time of temporary file: %w", err)
		}
	}
	if o.NoReplace {
		if err := d.link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%q: %w", path, ErrExists)
			}
			return fmt.Errorf("moving file into place: %w", err)
		}
	} else if err := d.rename(tmp, path); err != nil {
		return fmt.Errorf("moving file into place: %w", err)
	}
	// If this last sync fails, the new content is in place but its
	// durability is unknown; the error says so.
	if err := d.syncDir(dir); err != nil {
		return fmt.Errorf("file written, but syncing its directory failed: %w", err)
	}
	return nil
}

// nameTemp gives the complete, unnamed file f a temporary name in dir
// (with its modification time set first), so that write moves it into
// place as it does a named one. A name is drawn until one is free.
func nameTemp(d dirOps, f *os.File, dir, base string, o Options) (string, error) {
	if !o.ModTime.IsZero() {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(o.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(f), ts, 0); err != nil {
			return "", fmt.Errorf("setting the modification time of temporary file: %w", err)
		}
	}
	for {
		name := "." + base + ".tmp-" + strconv.FormatUint(rand.Uint64(), 36)
		err := d.linkUnnamed(f, dir, name)
		if err == nil {
			return filepath.Join(dir, name), nil
		}
		if !errors.Is(err, fs.ErrExist) {
			// /proc refused the link: copy the content to a named file.
			return copyTemp(d, f, dir, base)
		}
	}
}

// copyTemp copies the complete, unnamed file f to a new named temporary
// file in dir, synced, with f's mode.
func copyTemp(d dirOps, f *os.File, dir, base string) (tmp string, err error) {
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	c, tmp, err := d.createNamed(dir, base)
	if err != nil {
		return "", fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if cerr := c.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			d.remove(tmp)
			tmp = ""
		}
	}()
	if _, err := io.Copy(c, f); err != nil {
		return tmp, fmt.Errorf("copying temporary file: %w", err)
	}
	if err := c.Chmod(fi.Mode().Perm()); err != nil {
		return tmp, err
	}
	if err := c.Sync(); err != nil {
		return tmp, fmt.Errorf("syncing temporary file: %w", err)
	}
	return tmp, nil
}

// WriteFile is Write for a byte slice.
func WriteFile(path string, data []byte, o Options) error {
	return Write(path, o, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// SyncDir fsyncs a directory, making the entries in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
