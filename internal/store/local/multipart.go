package local

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/store"
)

// Objects built from parts (store.PartUploader). Each construction is a
// directory .uploads/NAME-HANDLE beside the fan-out directories; each
// uploaded part is a file in it, written to a temporary file, fsynced and
// renamed like an object, and named N-RANDOM, so that a part sent again
// never overwrites the bytes an earlier upload of its number left (the
// caller says which ones to use). Completion concatenates the chosen parts
// (copy_file_range where the kernel offers it) and the tail into a
// temporary file in .tmp, fsyncs it and renames it into place as Put does,
// then removes the directory. List and Stat never see any of it.

const (
	uploadsDirName = ".uploads"
	partTmpPrefix  = "tmp-"
)

var (
	_ store.PartUploader = (*Store)(nil)
	_ store.Janitor      = (*Store)(nil)
)

func (s *Store) uploadsDir() string { return filepath.Join(s.root, uploadsDirName) }

// uploadDir returns the directory of a construction, checking that name
// and handle cannot leave the uploads directory.
func (s *Store) uploadDir(op, name, handle string) (string, error) {
	if s.closed.Load() {
		return "", fmt.Errorf("local: %s %q: store is closed", op, name)
	}
	if !store.ValidName(name) {
		return "", fmt.Errorf("local: %s %q: %w", op, name, store.ErrInvalidName)
	}
	if !validToken(handle) {
		return "", fmt.Errorf("local: %s %q: invalid upload handle %q", op, name, handle)
	}
	return filepath.Join(s.uploadsDir(), name+"-"+handle), nil
}

// validToken: lower-case letters and digits (rand.Text's alphabet),
// nothing a path could be made of.
func validToken(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// partFile returns the file name of a part token "N-RANDOM" of part n.
func partFile(n int, token string) (string, bool) {
	num, rnd, ok := strings.Cut(token, "-")
	if !ok || num != strconv.Itoa(n) || !validToken(rnd) {
		return "", false
	}
	return token, true
}

// PartLimits implements store.PartUploader: a directory has no limits.
func (s *Store) PartLimits() store.PartLimits { return store.PartLimits{} }

// CreateParts implements store.PartUploader.
func (s *Store) CreateParts(ctx context.Context, name string) (string, error) {
	handle := strings.ToLower(rand.Text())
	dir, err := s.uploadDir("create parts", name, handle)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("local: create parts %q: %w", name, err)
	}
	if err := s.ensureUploadsDir(); err != nil {
		return "", fmt.Errorf("local: create parts %q: %w", name, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("local: create parts %q: %w", name, err)
	}
	if err := syncDir(s.uploadsDir()); err != nil {
		return "", fmt.Errorf("local: create parts %q: %w", name, err)
	}
	return handle, nil
}

func (s *Store) ensureUploadsDir() error {
	if _, ok := s.fanDone.Load(uploadsDirName); ok {
		return nil
	}
	if err := os.Mkdir(s.uploadsDir(), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	s.fanDone.Store(uploadsDirName, struct{}{})
	return nil
}

// UploadPart implements store.PartUploader. The part is durable when it
// returns.
func (s *Store) UploadPart(ctx context.Context, name, handle string, n int, r io.Reader, size int64) (string, error) {
	dir, err := s.uploadDir("upload part", name, handle)
	if err != nil {
		return "", err
	}
	if n < 1 || size < 0 {
		return "", fmt.Errorf("local: upload part %d of %q: bad part number or size %d", n, name, size)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("local: upload part %d of %q: %w", n, name, err)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("local: upload part %d of %q: no such upload: %w", n, name, store.ErrNotExist)
	}
	token := strconv.Itoa(n) + "-" + strings.ToLower(rand.Text())
	tmp := filepath.Join(dir, partTmpPrefix+strconv.Itoa(os.Getpid())+"-"+strings.ToLower(rand.Text()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // aborted meanwhile
			err = fmt.Errorf("no such upload: %w", store.ErrNotExist)
		}
		return "", fmt.Errorf("local: upload part %d of %q: %w", n, name, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := copyBody(ctx, f, r, size); err != nil {
		return "", fmt.Errorf("local: upload part %d of %q: %w", n, name, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("local: upload part %d of %q: %w", n, name, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("local: upload part %d of %q: %w", n, name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, token)); err != nil {
		return "", fmt.Errorf("local: upload part %d of %q: %w", n, name, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("local: upload part %d of %q: %w", n, name, err)
	}
	return token, nil
}

// DeletePart implements store.PartUploader.
func (s *Store) DeletePart(ctx context.Context, name, handle string, p store.StoredPart) error {
	dir, err := s.uploadDir("delete part", name, handle)
	if err != nil {
		return err
	}
	file, ok := partFile(p.Number, p.Token)
	if !ok {
		return fmt.Errorf("local: delete part %d of %q: invalid token %q", p.Number, name, p.Token)
	}
	if err := os.Remove(filepath.Join(dir, file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local: delete part %d of %q: %w", p.Number, name, err)
	}
	return nil
}

// CompleteParts implements store.PartUploader.
func (s *Store) CompleteParts(ctx context.Context, name, handle string, parts []store.StoredPart, tail io.ReaderAt, tailSize int64) error {
	dir, err := s.uploadDir("complete", name, handle)
	if err != nil {
		return err
	}
	if err := s.completeParts(ctx, name, dir, parts, tail, tailSize); err != nil {
		return fmt.Errorf("local: complete %q: %w", name, err)
	}
	return nil
}

func (s *Store) completeParts(ctx context.Context, name, dir string, parts []store.StoredPart, tail io.ReaderAt, tailSize int64) error {
	if tailSize < 0 {
		return fmt.Errorf("negative tail size %d", tailSize)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		// Completed before (the caller did not learn it), or never made.
		if _, err := os.Lstat(s.objectPath(name)); err == nil {
			return nil
		}
		return fmt.Errorf("no such upload: %w", store.ErrNotExist)
	}
	files := make([]string, len(parts))
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return fmt.Errorf("part %d after part %d: parts must ascend", p.Number, parts[i-1].Number)
		}
		f, ok := partFile(p.Number, p.Token)
		if !ok {
			return fmt.Errorf("part %d: invalid token %q", p.Number, p.Token)
		}
		files[i] = filepath.Join(dir, f)
	}
	err := s.publish(ctx, name, true, func(f *os.File) error {
		for i, pf := range files {
			src, err := os.Open(pf)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("part %d is gone: %w", parts[i].Number, store.ErrNotExist)
			}
			if err != nil {
				return err
			}
			err = copyFromFile(ctx, f, src, math.MaxInt64-1, true)
			src.Close()
			if err != nil {
				return fmt.Errorf("part %d: %w", parts[i].Number, err)
			}
		}
		if err := copyBody(ctx, f, io.NewSectionReader(tail, 0, tailSize), tailSize); err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The object is durable; the parts are now only garbage.
	if err := os.RemoveAll(dir); err != nil {
		return nil // harmless: the janitor removes it
	}
	_ = syncDir(s.uploadsDir())
	return nil
}

// AbortParts implements store.PartUploader.
func (s *Store) AbortParts(ctx context.Context, name, handle string) error {
	dir, err := s.uploadDir("abort", name, handle)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: abort %q: %w", name, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("local: abort %q: %w", name, err)
	}
	if err := syncDir(s.uploadsDir()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local: abort %q: %w", name, err)
	}
	return nil
}

// AbortIncomplete implements store.Janitor: it removes the constructions
// whose name is not in progress, and in the others the temporary files of
// part uploads whose process is gone.
func (s *Store) AbortIncomplete(ctx context.Context, inProgress func(name string) bool) (int, error) {
	if s.closed.Load() {
		return 0, errors.New("local: abort incomplete: store is closed")
	}
	entries, err := os.ReadDir(s.uploadsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("local: abort incomplete: %w", err)
	}
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		i := strings.LastIndexByte(e.Name(), '-')
		if !e.IsDir() || i < 0 || !store.ValidName(e.Name()[:i]) || !validToken(e.Name()[i+1:]) {
			continue // not ours
		}
		dir := filepath.Join(s.uploadsDir(), e.Name())
		if !inProgress(e.Name()[:i]) {
			if err := os.RemoveAll(dir); err != nil {
				return n, fmt.Errorf("local: abort incomplete: %w", err)
			}
			n++
			continue
		}
		files, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, f := range files {
			rest, ok := strings.CutPrefix(f.Name(), partTmpPrefix)
			if !ok {
				continue
			}
			p, _, _ := strings.Cut(rest, "-")
			if pid, err := strconv.Atoi(p); err == nil && pid > 0 && pid != os.Getpid() && !processExists(pid) {
				os.Remove(filepath.Join(dir, f.Name()))
			}
		}
	}
	if n > 0 {
		_ = syncDir(s.uploadsDir())
	}
	return n, nil
}
