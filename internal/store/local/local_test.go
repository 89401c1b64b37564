package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := local.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func open(t *testing.T, dir string) *local.Store {
	t.Helper()
	s, err := local.Open(dir)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(t *testing.T, s store.Store, name string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put(%q): %v", name, err)
	}
}

func readAll(t *testing.T, s store.Store, name string) []byte {
	t.Helper()
	rc, err := s.ReadRange(t.Context(), name, 0, -1)
	if err != nil {
		t.Fatalf("ReadRange(%q): %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", name, err)
	}
	return b
}

func listNames(t *testing.T, s store.Store) []string {
	t.Helper()
	var names []string
	if err := s.List(t.Context(), "", func(oi store.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	return names
}

// tmpEntries returns the names in dir/.tmp.
func tmpEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, ".tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (fs.ModePerm | fs.ModeDir); got != want {
		t.Fatalf("%s has mode %v, want %v", path, got, want)
	}
}

func TestLayoutAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "store")
	s := open(t, dir)
	put(t, s, "abcdef", []byte("hello"))
	put(t, s, "a", []byte("x"))

	wantMode(t, dir, fs.ModeDir|0o700)
	wantMode(t, filepath.Join(dir, ".tmp"), fs.ModeDir|0o700)
	wantMode(t, filepath.Join(dir, "ab"), fs.ModeDir|0o700)
	wantMode(t, filepath.Join(dir, "ab", "abcdef"), 0o600)
	wantMode(t, filepath.Join(dir, "a", "a"), 0o600)
	if b, err := os.ReadFile(filepath.Join(dir, "ab", "abcdef")); err != nil || string(b) != "hello" {
		t.Fatalf("ab/abcdef = %q, %v", b, err)
	}
	if got := tmpEntries(t, dir); len(got) != 0 {
		t.Fatalf(".tmp holds %q after successful Puts", got)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := local.Open(""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Open(file); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", file)) {
		t.Fatalf("Open of a regular file: %v; want an error quoting the path", err)
	}
	// Positive control: an existing empty directory opens.
	open(t, t.TempDir())
}

// TestNoWritesOutsideDir runs every operation with the working directory
// and TMPDIR pointed into a sandbox, then checks that nothing but the store
// directory changed.
func TestNoWritesOutsideDir(t *testing.T) {
	sandbox := t.TempDir()
	dir := filepath.Join(sandbox, "store")
	for _, d := range []string{"cwd", "tmp"} {
		if err := os.Mkdir(filepath.Join(sandbox, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(filepath.Join(sandbox, "cwd"))
	t.Setenv("TMPDIR", filepath.Join(sandbox, "tmp"))

	s := open(t, dir)
	ctx := t.Context()
	put(t, s, "obj1", bytes.Repeat([]byte("a"), 3<<20))
	put(t, s, "x", nil)
	if err := s.Put(ctx, "short", bytes.NewReader([]byte("abc")), 4); !errors.Is(err, store.ErrShortWrite) {
		t.Fatalf("short Put: %v", err)
	}
	if err := s.Put(ctx, "../escape", bytes.NewReader([]byte("abc")), 3); !errors.Is(err, store.ErrInvalidName) {
		t.Fatalf("Put(../escape): %v", err)
	}
	readAll(t, s, "obj1")
	listNames(t, s)
	if err := s.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if got := listNames(t, s); !slices.Equal(got, []string{"obj1"}) {
		t.Fatalf("List = %q, want [obj1]", got)
	}

	var outside, inside []string
	err := filepath.WalkDir(sandbox, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(sandbox, p)
		switch {
		case rel == "." || rel == "cwd" || rel == "tmp" || rel == "store":
		case strings.HasPrefix(rel, "store"+string(filepath.Separator)):
			inside = append(inside, filepath.ToSlash(rel))
		default:
			outside = append(outside, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(outside) > 0 {
		t.Fatalf("files written outside the store directory: %q", outside)
	}
	// Positive control: the walk does see what the store wrote.
	if !slices.Contains(inside, "store/ob/obj1") {
		t.Fatalf("walk saw %q, not store/ob/obj1", inside)
	}
}

func TestStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	put(t, s, "keep", []byte("kept"))
	stale := filepath.Join(dir, ".tmp", "put-leftoverfromacrash")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	staleDir := filepath.Join(dir, ".tmp", "put-strangedir")
	if err := os.MkdirAll(filepath.Join(staleDir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := listNames(t, s); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("List with stale temp files = %q, want [keep]", got)
	}
	s.Close()

	s = open(t, dir)
	if got := tmpEntries(t, dir); len(got) != 0 {
		t.Fatalf(".tmp after Open = %q, want empty", got)
	}
	if got := listNames(t, s); !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("List after Open = %q, want [keep]", got)
	}
	if got := readAll(t, s, "keep"); string(got) != "kept" {
		t.Fatalf("keep = %q after Open", got)
	}
}

func TestListIgnoresStrangers(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	put(t, s, "abc", []byte("1"))
	put(t, s, "b", []byte("2"))
	for _, p := range []string{
		"README",        // file at the top
		"ab/zzz",        // object in the wrong fan-out directory
		"ab/Abc",        // invalid name
		"toolong/tooly", // not a fan-out directory
	} {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("?"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "ab", "abd"), 0o700); err != nil { // not a regular file
		t.Fatal(err)
	}
	if got := listNames(t, s); !slices.Equal(got, []string{"abc", "b"}) {
		t.Fatalf("List = %q, want [abc b]", got)
	}
}

// TestBeforeRenameHook checks, from inside the hook, the state a crash at
// that point would leave: the body complete in .tmp, nothing under the name.
func TestBeforeRenameHook(t *testing.T) {
	dir := t.TempDir()
	body := bytes.Repeat([]byte("q"), 12345)
	var s *local.Store
	var calls []string
	hook := func(name string) {
		calls = append(calls, name)
		if _, err := s.Stat(t.Context(), name); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("in hook: Stat(%q): %v; want ErrNotExist", name, err)
		}
		tmps := tmpEntries(t, dir)
		if len(tmps) != 1 {
			t.Errorf("in hook: .tmp holds %q, want one file", tmps)
			return
		}
		if b, err := os.ReadFile(filepath.Join(dir, ".tmp", tmps[0])); err != nil || !bytes.Equal(b, body) {
			t.Errorf("in hook: temp file holds %d bytes (%v), want the whole body", len(b), err)
		}
	}
	var err error
	s, err = local.OpenWithOptions(dir, local.Options{TestHookBeforeRename: hook})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(t, s, "hooked", body)
	if !slices.Equal(calls, []string{"hooked"}) {
		t.Fatalf("hook calls = %q, want [hooked]", calls)
	}
	if got := readAll(t, s, "hooked"); !bytes.Equal(got, body) {
		t.Fatal("object differs after the hook returned")
	}
	// The hook does not fire for a Put that fails before the rename.
	if err := s.Put(t.Context(), "short", bytes.NewReader(body), int64(len(body))+1); !errors.Is(err, store.ErrShortWrite) {
		t.Fatalf("short Put: %v", err)
	}
	if len(calls) != 1 {
		t.Fatalf("hook fired for a failed Put: %q", calls)
	}
}

const (
	crashDirEnv  = "HOLDFAST_LOCAL_CRASH_DIR"
	crashNameEnv = "HOLDFAST_LOCAL_CRASH_NAME"
	crashExit    = 3
)

// TestCrashBeforeRename kills a child process (this test binary) in the
// BeforeRename hook, then checks what the next Open sees.
func TestCrashBeforeRename(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir, os.Getenv(crashNameEnv))
		return
	}
	dir := t.TempDir()
	old := []byte("the old object")
	s := open(t, dir)
	put(t, s, "obj", old)
	s.Close()

	for _, name := range []string{"obj", "new"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashBeforeRename$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashNameEnv+"="+name)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != crashExit {
			t.Fatalf("child putting %q: %v, want exit status %d\n%s", name, err, crashExit, out)
		}
		// The child died after writing the whole body to .tmp.
		tmps := tmpEntries(t, dir)
		if len(tmps) != 1 {
			t.Fatalf("after the crash .tmp holds %q, want one file", tmps)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, ".tmp", tmps[0])); string(b) != crashBody(name) {
			t.Fatalf("temp file holds %q, want the whole body", b)
		}
	}
	// Before any Open: the on-disk state has only the old object.
	if b, err := os.ReadFile(filepath.Join(dir, "ob", "obj")); err != nil || !bytes.Equal(b, old) {
		t.Fatalf("ob/obj = %q, %v; want the old object", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ne", "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ne/new exists after a crash before rename: %v", err)
	}

	s = open(t, dir)
	if got := tmpEntries(t, dir); len(got) != 0 {
		t.Fatalf(".tmp after Open = %q, want empty", got)
	}
	if _, err := s.Stat(t.Context(), "new"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat(new): %v; want ErrNotExist", err)
	}
	if got := readAll(t, s, "obj"); !bytes.Equal(got, old) {
		t.Fatalf("obj = %q, want the old object", got)
	}
	if got := listNames(t, s); !slices.Equal(got, []string{"obj"}) {
		t.Fatalf("List = %q, want [obj]", got)
	}
}

func crashBody(name string) string { return "the new body of " + name }

func crashChild(t *testing.T, dir, name string) {
	s, err := local.OpenWithOptions(dir, local.Options{TestHookBeforeRename: func(string) {
		os.Exit(crashExit)
	}})
	if err != nil {
		t.Fatal(err)
	}
	body := crashBody(name)
	err = s.Put(context.Background(), name, strings.NewReader(body), int64(len(body)))
	t.Fatalf("Put returned (%v) instead of dying in the hook", err)
}

// TestPutSources covers each copy path of Put: an io.WriterTo, a bare
// io.Reader, a regular file and a pipe.
func TestPutSources(t *testing.T) {
	s := open(t, t.TempDir())
	body := make([]byte, 3<<20+11)
	for i := range body {
		body[i] = byte(i * 7)
	}
	sources := map[string]func(t *testing.T, b []byte) io.Reader{
		"bytes.Reader": func(t *testing.T, b []byte) io.Reader { return bytes.NewReader(b) },
		"bare reader":  func(t *testing.T, b []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(b)} },
		"file": func(t *testing.T, b []byte) io.Reader {
			p := filepath.Join(t.TempDir(), "src")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		},
		"pipe": func(t *testing.T, b []byte) io.Reader {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				w.Write(b)
				w.Close()
			}()
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
	for kind, src := range sources {
		t.Run(kind, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				body []byte
				size int64
				want error
			}{
				{"exact", body, int64(len(body)), nil},
				{"empty", nil, 0, nil},
				{"one short", body[:len(body)-1], int64(len(body)), store.ErrShortWrite},
				{"one long", body, int64(len(body)) - 1, store.ErrShortWrite},
				{"block long", body, 2 << 20, store.ErrShortWrite},
			} {
				err := s.Put(t.Context(), "src", src(t, tc.body), tc.size)
				if tc.want == nil {
					if err != nil {
						t.Fatalf("%s: Put: %v", tc.name, err)
					}
					if got := readAll(t, s, "src"); !bytes.Equal(got, tc.body) {
						t.Fatalf("%s: stored %d bytes, want %d (contents differ)", tc.name, len(got), len(tc.body))
					}
					if err := s.Delete(t.Context(), "src"); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("%s: Put: %v; want %v", tc.name, err, tc.want)
				}
				if _, err := s.Stat(t.Context(), "src"); !errors.Is(err, store.ErrNotExist) {
					t.Fatalf("%s: Stat after failed Put: %v", tc.name, err)
				}
			}
		})
	}
}

func TestErrorsQuoteName(t *testing.T) {
	s := open(t, t.TempDir())
	_, err := s.Stat(t.Context(), "missing")
	if !errors.Is(err, store.ErrNotExist) || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("Stat(missing): %v; want ErrNotExist quoting the name", err)
	}
	err = s.Put(t.Context(), "Bad\nName", bytes.NewReader(nil), 0)
	if !errors.Is(err, store.ErrInvalidName) || !strings.Contains(err.Error(), `"Bad\nName"`) {
		t.Fatalf("Put(Bad\\nName): %v; want ErrInvalidName quoting the name", err)
	}
}

func TestReadCancelled(t *testing.T) {
	s := open(t, t.TempDir())
	put(t, s, "obj", bytes.Repeat([]byte("r"), 100))
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := s.ReadRange(ctx, "obj", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatalf("Read before cancel: %v", err)
	}
	cancel()
	if _, err := rc.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v; want context.Canceled", err)
	}
	if err := s.List(ctx, "", func(store.ObjectInfo) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a cancelled context: %v", err)
	}
}

func TestClosed(t *testing.T) {
	s := open(t, t.TempDir())
	put(t, s, "obj", []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Put(t.Context(), "obj2", bytes.NewReader(nil), 0); err == nil {
		t.Fatal("Put after Close succeeded")
	}
	if _, err := s.Stat(t.Context(), "obj"); err == nil {
		t.Fatal("Stat after Close succeeded")
	}
	if err := s.List(t.Context(), "", func(store.ObjectInfo) error { return nil }); err == nil {
		t.Fatal("List after Close succeeded")
	}
}

// stream yields n bytes cycled from a 1 MiB block without holding them all.
type stream struct {
	block []byte
	left  int64
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.left)]
	n := 0
	for n < len(p) {
		n += copy(p[n:], s.block[(s.left-int64(n))%int64(len(s.block)):])
	}
	s.left -= int64(n)
	return n, nil
}

// BenchmarkPut measures Put of a streamed body against a plain buffered
// copy of the same stream into a file. Run with TMPDIR on tmpfs to see the
// store's own overhead.
func BenchmarkPut(b *testing.B) {
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i)
	}
	for _, size := range []int64{1 << 20, 64 << 20, 1 << 30} {
		b.Run(fmt.Sprintf("put/%dMiB", size>>20), func(b *testing.B) {
			s, err := local.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(size)
			for b.Loop() {
				if err := s.Put(b.Context(), "bench", &stream{block, size}, size); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The baseline also writes a new file and renames it over the old
		// one, so both hold the same amount of page cache or tmpfs memory.
		b.Run(fmt.Sprintf("copy/%dMiB", size>>20), func(b *testing.B) {
			dir := b.TempDir()
			buf := make([]byte, 1<<20)
			b.SetBytes(size)
			for b.Loop() {
				f, err := os.Create(filepath.Join(dir, "new"))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(struct{ io.Writer }{f}, &stream{block, size}, buf); err != nil {
					b.Fatal(err)
				}
				f.Close()
				if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "copy")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPutCancelledFromPipe cancels a Put whose body comes from a pipe (the
// splice path) after the first MiB.
func TestPutCancelledFromPipe(t *testing.T) {
	s := open(t, t.TempDir())
	const size = 3 << 20
	body := bytes.Repeat([]byte("p"), size)
	for _, cancelAt := range []int{1 << 20, -1} {
		ctx, cancel := context.WithCancel(t.Context())
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer w.Close()
			if cancelAt < 0 {
				w.Write(body)
				return
			}
			w.Write(body[:cancelAt])
			cancel()
			w.Write(body[cancelAt:])
		}()
		err = s.Put(ctx, "piped", r, size)
		r.Close()
		cancel()
		if cancelAt < 0 { // positive control
			if err != nil {
				t.Fatalf("Put from a pipe: %v", err)
			}
			if got := readAll(t, s, "piped"); !bytes.Equal(got, body) {
				t.Fatal("piped object differs")
			}
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put cancelled after %d bytes: %v; want context.Canceled", cancelAt, err)
		}
		if _, err := s.Stat(t.Context(), "piped"); !errors.Is(err, store.ErrNotExist) {
			t.Fatalf("Stat after cancelled Put: %v", err)
		}
	}
}

func TestPutNoSyncThenSync(t *testing.T) {
	ctx := t.Context()
	s, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bodies := map[string][]byte{}
	for i, name := range []string{"aa01", "aa02", "bb01", "cc01"} {
		b := bytes.Repeat([]byte{byte(i)}, 1000*(i+1))
		bodies[name] = b
		if err := s.PutNoSync(ctx, name, bytes.NewReader(b), store.UnknownSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for name, b := range bodies {
		rc, err := s.ReadRange(ctx, name, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, b) {
			t.Fatalf("%s differs", name)
		}
	}
	// A short body is refused by PutNoSync as by Put, and nothing shows.
	if err := s.PutNoSync(ctx, "dd01", bytes.NewReader(make([]byte, 10)), 11); !errors.Is(err, store.ErrShortWrite) {
		t.Fatalf("short PutNoSync: %v", err)
	}
	if _, err := s.Stat(ctx, "dd01"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("failed PutNoSync left an object: %v", err)
	}
	if err := s.Sync(ctx); err != nil { // nothing to do
		t.Fatal(err)
	}
}

// TestStaleTempsOfLiveWritersKept: Open removes the temporary files of
// writers that are gone and keeps those of live ones (another process
// using the same store, or this one).
func TestStaleTempsOfLiveWritersKept(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.Close()
	gone := exec.Command(os.Args[0], "-test.run=^$")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, ".tmp", fmt.Sprintf("put-%d-abc", os.Getppid()))
	mine := filepath.Join(dir, ".tmp", fmt.Sprintf("put-%d-def", os.Getpid()))
	dead := filepath.Join(dir, ".tmp", fmt.Sprintf("put-%d-ghi", gone.Process.Pid))
	for _, p := range []string{live, mine, dead} {
		if err := os.WriteFile(p, []byte("in flight"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir)
	defer s.Close()
	for _, p := range []string{live, mine} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a live writer's temporary file was removed: %v", err)
		}
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("a dead writer's temporary file was kept: %v", err)
	}
}

// TestViewsAndFaults: a range reader hands out views of the object file
// that hold its bytes and move it along as reads do; asked why a view
// faulted, it says the object was cut short only when the file now ends
// before the view did (the control: the same question with the file
// whole names an I/O error instead).
func TestViewsAndFaults(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := s.Put(ctx, "obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	rc, err := s.ReadRange(ctx, "obj", 100, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	v, ok := rc.(interface {
		View(n int) ([]byte, func(), error)
		Faulted(end int64) error
	})
	if !ok {
		t.Fatal("the range reader hands out no views")
	}
	view, release, err := v.View(1 << 20)
	if err != nil || !bytes.Equal(view, data[100:100+1<<20]) {
		t.Fatalf("view: %d bytes, %v", len(view), err)
	}
	release()
	next := make([]byte, 10)
	if _, err := io.ReadFull(rc, next); err != nil || !bytes.Equal(next, data[100+1<<20:][:10]) {
		t.Fatalf("read after a view does not follow it: %v", err)
	}
	if err := v.Faulted(1 << 20); errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("fault on a whole file: %v, want an I/O error", err)
	}
	var path string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != "" {
			if fi, _ := d.Info(); fi != nil && fi.Size() == int64(len(data)) {
				path = p
			}
		}
		return nil
	})
	if path == "" {
		t.Fatal("object file not found")
	}
	if err := os.Truncate(path, 1<<19); err != nil {
		t.Fatal(err)
	}
	if err := v.Faulted(1 << 20); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("fault on a file cut short: %v, want io.ErrUnexpectedEOF", err)
	}
}
