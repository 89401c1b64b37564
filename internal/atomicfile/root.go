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
	"time"
)

// WriteIn is Write for name, a path relative to root: the temporary file,
// the move into place and the directory sync all resolve through root, so
// no name (a "..", an absolute path) and no symbolic link in the tree can
// make it write outside root's directory. name's directory must exist.
func WriteIn(root *os.Root, name string, o Options, fill func(io.Writer) error) (err error) {
	if !filepath.IsLocal(name) {
		return fmt.Errorf("%q is not a path inside %q", name, root.Name())
	}
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	var f *os.File
	var tmp string
	for range 100 {
		tmp = filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err = root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if rmErr := root.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("removing temporary file: %w", rmErr)
		}
	}()
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
		if err := root.Chtimes(tmp, time.Time{}, o.ModTime); err != nil {
			return fmt.Errorf("setting the modification time of temporary file: %w", err)
		}
	}
	if o.NoReplace {
		if err := root.Link(tmp, name); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%q: %w", name, ErrExists)
			}
			return fmt.Errorf("moving file into place: %w", err)
		}
	} else if err := root.Rename(tmp, name); err != nil {
		return fmt.Errorf("moving file into place: %w", err)
	}
	d, err := root.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("file written, but syncing its directory failed: %w", err)
	}
	return nil
}
