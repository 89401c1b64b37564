// Package regfile opens and renames regular files with fewer system calls
// than package os spends on them.
//
// os.OpenFile tries to register every file it opens with the runtime's
// network poller: it sets the descriptor non-blocking, asks epoll to
// watch it (which refuses regular files), and sets it blocking again —
// four system calls beside the open. os.Rename looks the new name up
// first (to refuse replacing a directory). Holdfast opens and renames a
// file or two for every object it stores, and on the small-file path
// (`put -r`, many objects a second) those calls were a tenth of the CPU.
// The files here are regular files and object names, never directories,
// so neither extra step does anything for them.
package regfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// Open opens the file at path for reading, as os.Open does.
func Open(path string) (*os.File, error) {
	return open(path, unix.O_RDONLY, 0)
}

// CreateExcl creates a new file at path for writing with mode perm (before
// the umask), failing with an error that satisfies errors.Is(err,
// fs.ErrExist) if something is there already, as os.OpenFile does with
// O_WRONLY|O_CREATE|O_EXCL.
func CreateExcl(path string, perm os.FileMode) (*os.File, error) {
	return open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
}

func open(path string, flags int, perm uint32) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, flags|unix.O_CLOEXEC, perm)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Rename renames oldpath to newpath, replacing a file there, as os.Rename
// does; newpath must not name a directory.
func Rename(oldpath, newpath string) error {
	for {
		err := unix.Rename(oldpath, newpath)
		switch err {
		case nil:
			return nil
		case unix.EINTR: // as os.Rename: network and FUSE file systems
			continue
		}
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
}
