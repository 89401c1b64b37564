package regfile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func writeTemp(t *testing.T, data []byte) (string, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return p, f
}

// TestSourceReadsAndViews: a file read through any mix of Read and View
// calls, at offsets on and off page boundaries, gives back its bytes in
// order, counts every byte once, and ends with io.EOF, again on every
// call after the end.
func TestSourceReadsAndViews(t *testing.T) {
	data := make([]byte, 3<<20+123)
	rand.Read(data)
	_, f := writeTemp(t, data)
	s, err := NewSource(f)
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", s.Size(), len(data))
	}
	var counted int64
	s.SetProgress(func(n int64) { counted += n })
	var got []byte
	buf := make([]byte, 777)
	for i := 0; ; i++ {
		var piece []byte
		var err error
		if i%3 == 0 {
			var n int
			n, err = s.Read(buf)
			piece = append([]byte(nil), buf[:n]...)
		} else {
			var v []byte
			var release func()
			v, release, err = s.View(1<<20 + 5)
			if len(v) > 0 {
				piece = append([]byte(nil), v...)
				release()
			} else if release != nil {
				t.Fatal("an empty view came with a release")
			}
		}
		got = append(got, piece...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes that differ from the file's %d", len(got), len(data))
	}
	if counted != int64(len(data)) {
		t.Fatalf("progress counted %d bytes, want %d", counted, len(data))
	}
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the end: %d, %v", n, err)
	}
	if v, _, err := s.View(10); len(v) != 0 || err != io.EOF {
		t.Fatalf("view after the end: %d bytes, %v", len(v), err)
	}
}

// TestSourceChanged: a file that grows, shrinks or is rewritten (same
// size, new modification time) after NewSource saw it ends with
// ErrChanged, through Read and through View; the same file left alone
// (the control) ends with io.EOF.
func TestSourceChanged(t *testing.T) {
	data := make([]byte, 100000)
	rand.Read(data)
	for _, c := range []struct {
		name   string
		change func(t *testing.T, p string)
	}{
		{"unchanged", nil},
		{"grown", func(t *testing.T, p string) { appendTo(t, p, []byte("more")) }},
		{"shrunk", func(t *testing.T, p string) {
			if err := os.Truncate(p, 5000); err != nil {
				t.Fatal(err)
			}
		}},
		{"mode changed", func(t *testing.T, p string) {
			// Only the change time moves; wait for it to (the
			// file system's clock may be coarse), so the test
			// never races it.
			var st0 unix.Stat_t
			if err := unix.Stat(p, &st0); err != nil {
				t.Fatal(err)
			}
			for mode := uint32(0o400); ; mode ^= 0o200 {
				if err := os.Chmod(p, os.FileMode(mode)); err != nil {
					t.Fatal(err)
				}
				var st unix.Stat_t
				if err := unix.Stat(p, &st); err != nil {
					t.Fatal(err)
				}
				if st.Ctim != st0.Ctim {
					return
				}
			}
		}},
		{"rewritten", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte("x"), 10)
			f.Close()
			// The modification time moves on however coarse the
			// file system's clock.
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		for _, views := range []bool{false, true} {
			p, f := writeTemp(t, data)
			s, err := NewSource(f)
			if err != nil {
				t.Fatal(err)
			}
			if c.change != nil {
				c.change(t, p)
			}
			var end error
			if views {
				for end == nil {
					var v []byte
					var release func()
					v, release, end = s.View(4096)
					if len(v) > 0 {
						release() // not read: the shrunk file's pages are gone
					}
				}
			} else {
				_, end = io.Copy(io.Discard, onlyReader{s})
				if end == nil {
					end = io.EOF // io.Copy's way of saying so
				}
			}
			want := ErrChanged
			if c.change == nil {
				want = io.EOF
			}
			if !errors.Is(end, want) {
				t.Errorf("%s (views %v): ended with %v, want %v", c.name, views, end, want)
			}
		}
	}
}

type onlyReader struct{ io.Reader }

func appendTo(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestSourceNeedsARegularFile: a directory and a FIFO are refused; a
// regular file beside them (the control) is taken.
func TestSourceNeedsARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(dir, "reg")
	if err := os.WriteFile(reg, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		flag int
		ok   bool
	}{{dir, os.O_RDONLY, false}, {fifo, os.O_RDONLY | unix.O_NONBLOCK, false}, {reg, os.O_RDONLY, true}} {
		f, err := os.OpenFile(c.path, c.flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewSource(f)
		f.Close()
		if (err == nil) != c.ok {
			t.Errorf("%s: NewSource: %v", c.path, err)
		}
	}
}

// TestSourceAfterClose: a Source whose file was closed fails its views
// and its check with an error, rather than use a descriptor number the
// process may have given to another file; before the close (the
// control) the same calls succeed.
func TestSourceAfterClose(t *testing.T) {
	data := make([]byte, 3*4096)
	_, f := writeTemp(t, data)
	s, err := NewSource(f)
	if err != nil {
		t.Fatal(err)
	}
	v, release, err := s.View(4096)
	if err != nil || len(v) != 4096 {
		t.Fatalf("control view: %d bytes, %v", len(v), err)
	}
	release()
	if err := s.Unchanged(); err != nil {
		t.Fatalf("control check: %v", err)
	}
	f.Close()
	if v, _, err := s.View(4096); err == nil || len(v) != 0 {
		t.Fatalf("view after close: %d bytes, %v", len(v), err)
	}
	if err := s.Unchanged(); err == nil || errors.Is(err, ErrChanged) {
		t.Fatalf("check after close: %v, want an error that is not ErrChanged", err)
	}
}

// TestMapRefusesWhatCannotBeMapped: a /proc file, which its file system
// cannot map, gives ErrNotMappable; a regular file on disk (the control)
// maps, at an offset that is not a page boundary too.
func TestMapRefusesWhatCannotBeMapped(t *testing.T) {
	data := make([]byte, 3*4096)
	rand.Read(data)
	_, f := writeTemp(t, data)
	v, release, err := Map(f, 5000, 3000)
	if err != nil || !bytes.Equal(v, data[5000:8000]) {
		t.Fatalf("control: %v", err)
	}
	release()
	p, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, _, err := Map(p, 0, 100); !errors.Is(err, ErrNotMappable) {
		t.Fatalf("/proc/self/status: got %v, want ErrNotMappable", err)
	}
}
