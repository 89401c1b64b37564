package keyring

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// writeFileAtomic makes path hold exactly data, or leaves it untouched. It
// writes a temporary file in the same directory (created with O_EXCL, mode
// 0600), syncs it, moves it into place and syncs the directory. With
// replace false the move is a hard link that fails if path exists
// (ErrExists), so a concurrent creator is never overwritten.
func writeFileAtomic(path string, data []byte, replace bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// os.CreateTemp opens with O_RDWR|O_CREATE|O_EXCL and mode 0600.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		// After a rename the name is gone; after a link (or a failure) it
		// must go.
		if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("removing temporary file: %w", rmErr)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("setting mode of temporary file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing temporary file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing temporary file: %w", err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return fmt.Errorf("closing temporary file: %w", err)
	}
	f = nil
	if replace {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("replacing keyring file: %w", err)
		}
	} else if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return fmt.Errorf("moving keyring file into place: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
