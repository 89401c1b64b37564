package regfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCreateWriteRenameOpen: a file made by CreateExcl has the mode asked
// (the umask aside) and takes writes; CreateExcl refuses a name that is
// taken (the control: the same call on a free name succeeds); Rename
// replaces the file at the new name; Open reads what was written; errors
// name the path and the operation, as package os's do.
func TestCreateWriteRenameOpen(t *testing.T) {
	dir := t.TempDir()
	tmp, dst := filepath.Join(dir, "tmp"), filepath.Join(dir, "dst")
	f, err := CreateExcl(tmp, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new contents"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tmp); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi.Mode(), err)
	}
	_, err = CreateExcl(tmp, 0o600)
	var pe *os.PathError
	if !errors.Is(err, fs.ErrExist) || !errors.As(err, &pe) || pe.Path != tmp || pe.Op != "open" {
		t.Fatalf("CreateExcl over a file: %v", err)
	}
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	var le *os.LinkError
	if err := Rename(tmp, dst); !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &le) || le.Old != tmp {
		t.Fatalf("Rename of a name that is gone: %v", err)
	}
	r, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, err := io.ReadAll(r); err != nil || string(b) != "new contents" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if fi, err := r.Stat(); err != nil || fi.Size() != int64(len("new contents")) {
		t.Fatalf("stat of the open file: %v %v", fi, err)
	}
	if _, err := Open(tmp); !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Path != tmp {
		t.Fatalf("Open of a missing file: %v", err)
	}
	// Files are closed on exec, as package os makes them.
	if fd := int(r.Fd()); !closeOnExec(t, fd) {
		t.Error("the descriptor is inherited by child processes")
	}
}

func closeOnExec(t *testing.T, fd int) bool {
	t.Helper()
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	return flags&unix.FD_CLOEXEC != 0
}
