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

	"golang.org/x/sys/unix"
)

// WriteIn is Write for name, a path relative to root: the temporary file,
// the move into place and the directory sync all resolve through root, so
// no name (a "..", an absolute path) and no symbolic link in the tree can
// make it write outside root's directory. name's directory must exist.
func WriteIn(root *os.Root, name string, o Options, fill func(io.Writer) error) error {
	if !filepath.IsLocal(name) {
		return fmt.Errorf("%q is not a path inside %q", name, root.Name())
	}
	return write(rootDir{root}, name, o, fill)
}

type rootDir struct{ r *os.Root }

// createTemp makes an unnamed file (O_TMPFILE) in dir, opened through the
// root, where the file system and /proc allow (see osDir.createTemp).
func (d rootDir) createTemp(dir, base string) (*os.File, string, error) {
	if procFDs() {
		if df, err := d.r.Open(dir); err == nil {
			fd, err := unix.Openat(int(df.Fd()), ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
			df.Close()
			if err == nil {
				return os.NewFile(uintptr(fd), filepath.Join(dir, "."+base+".tmp")), "", nil
			}
		}
	}
	return d.createNamed(dir, base)
}

// linkUnnamed links f under name in dir, resolved through the root: the
// link is made relative to the directory's descriptor, and name holds no
// slash.
func (d rootDir) linkUnnamed(f *os.File, dir, name string) error {
	df, err := d.r.Open(dir)
	if err != nil {
		return err
	}
	defer df.Close()
	if err := unix.Linkat(unix.AT_FDCWD, fdPath(f), int(df.Fd()), name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: filepath.Join(dir, name), Err: err}
	}
	return nil
}

func (d rootDir) createNamed(dir, base string) (f *os.File, tmp string, err error) {
	for range 100 {
		tmp = filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err = d.r.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return f, tmp, err
}
func (d rootDir) remove(name string) error { return d.r.Remove(name) }
func (d rootDir) chtimes(name string, mtime time.Time) error {
	return d.r.Chtimes(name, time.Time{}, mtime)
}
func (d rootDir) link(oldname, newname string) error   { return d.r.Link(oldname, newname) }
func (d rootDir) rename(oldname, newname string) error { return d.r.Rename(oldname, newname) }
func (d rootDir) syncDir(dir string) error {
	f, err := d.r.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
