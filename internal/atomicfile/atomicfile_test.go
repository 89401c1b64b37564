package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesOrLeavesUntouched(t *testing.T) {
	d := t.TempDir()
	p := filepath.Join(d, "f")
	if err := WriteFile(p, []byte("one"), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("content %q", b)
	}
	// A failing fill leaves the old content and no temporary file.
	boom := errors.New("boom")
	err := Write(p, Options{}, func(w io.Writer) error { w.Write([]byte("partial")); return boom })
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("failed write changed the file: %q", b)
	}
	if es, _ := os.ReadDir(d); len(es) != 1 {
		t.Fatalf("%d entries left in the directory", len(es))
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

func TestNoReplace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := WriteFile(p, []byte("first"), Options{NoReplace: true}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("second"), Options{NoReplace: true}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Fatalf("content %q", b)
	}
}
