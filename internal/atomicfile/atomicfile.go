// Package atomicfile writes files so that a reader sees either the old
// content or the new, never a mix, and a crash or failure leaves nothing
// half-written under the name: the content goes to a temporary file in the
// same directory (O_EXCL, mode 0600), is synced, and is moved into place;
// then the directory is synced.
//
// It never leaves a temporary file behind on failure and never writes
// outside the target's directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
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
	// createTemp creates and opens a new file in dir, mode 0600, named
	// "."+base+".tmp-" and a random suffix, and returns it with its name.
	createTemp(dir, base string) (*os.File, string, error)
	remove(name string) error
	chtimes(name string, mtime time.Time) error
	link(oldname, newname string) error
	rename(oldname, newname string) error
	syncDir(dir string) error
}

type osDir struct{}

func (osDir) createTemp(dir, base string) (*os.File, string, error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, "", err
	}
	return f, f.Name(), nil
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
