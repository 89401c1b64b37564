package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func openRoot(t *testing.T) (*os.Root, string) {
	d := t.TempDir()
	root, err := os.OpenRoot(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, d
}

func TestWriteInReplacesOrLeavesUntouched(t *testing.T) {
	root, d := openRoot(t)
	if err := os.Mkdir(filepath.Join(d, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	write := func(s string, o Options) error {
		return WriteIn(root, filepath.Join("sub", "f"), o, func(w io.Writer) error {
			_, err := io.WriteString(w, s)
			return err
		})
	}
	if err := write("one", Options{Mode: 0o640, ModTime: mt}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d, "sub", "f")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mt) {
		t.Fatalf("content %q, mode %v, mtime %v", b, fi.Mode(), fi.ModTime())
	}
	boom := errors.New("boom")
	err = WriteIn(root, filepath.Join("sub", "f"), Options{}, func(w io.Writer) error { w.Write([]byte("partial")); return boom })
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("failed write changed the file: %q", b)
	}
	if es, _ := os.ReadDir(filepath.Join(d, "sub")); len(es) != 1 {
		t.Fatalf("%d entries left in the directory", len(es))
	}
	// Control for the failure: a second good write replaces the content.
	if err := write("two", Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("content %q", b)
	}
}

// TestWriteInStaysInside: names and symbolic links that lead out of the
// root are refused and write nothing outside.
func TestWriteInStaysInside(t *testing.T) {
	root, d := openRoot(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(d, "link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../x", "/x", filepath.Join("link", "x"), filepath.Join("a", "..", "..", "x")} {
		err := WriteIn(root, name, Options{}, func(w io.Writer) error {
			_, err := io.WriteString(w, "escaped")
			return err
		})
		if err == nil {
			t.Errorf("%q: written", name)
		}
	}
	if es, _ := os.ReadDir(outside); len(es) != 0 {
		t.Fatalf("%d entries written outside the root", len(es))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d), "x")); err == nil {
		t.Fatal("written next to the root")
	}
	// Control: a plain name inside is written.
	if err := WriteIn(root, "x", Options{}, func(w io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
