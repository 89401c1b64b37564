package keyring

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// ErrExists: Create found a file (or anything else) at the keyring path.
var ErrExists = errors.New("keyring file already exists")

// readFile reads a keyring file, refusing to read more than any keyring can
// be.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileLen+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileLen {
		return nil, fmt.Errorf("%w: longer than the maximum %d bytes", ErrCorrupt, maxFileLen)
	}
	return b, nil
}

// writeFileAtomic makes path hold exactly data (mode 0600), or leaves it
// untouched; with replace false it refuses an existing file (ErrExists).
func writeFileAtomic(path string, data []byte, replace bool) error {
	err := atomicfile.WriteFile(path, data, atomicfile.Options{Mode: 0o600, NoReplace: !replace})
	if errors.Is(err, atomicfile.ErrExists) {
		return ErrExists
	}
	return err
}

// lockKeyring takes an exclusive lock on the keyring at path (an flock on
// path + ".lock", made if missing) and returns its release. Every
// replacement of the keyring file holds it from the check of the file on
// disk to the rename.
func lockKeyring(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking keyring: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking keyring: %w", err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
