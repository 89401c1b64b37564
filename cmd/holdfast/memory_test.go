package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// TestMemoryFlatOverS3: streaming a 2 GiB object to S3 (through a pipe,
// so nothing can be sized in advance) and back takes no more peak memory
// than a 256 MiB one, give or take 8 MiB: memory is bounded by
// configuration (segments in flight, part size × concurrency, kept outside
// the Go heap), not by object size.
func TestMemoryFlatOverS3(t *testing.T) {
	srv, err := versitygw.Start(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if err := srv.MakeBucket(context.Background(), "hf-mem"); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "holdfast")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "home")
	env := append(os.Environ(), "HOLDFAST_HOME="+home, "HOLDFAST_PASSPHRASE=memory test passphrase",
		"AWS_ACCESS_KEY_ID="+versitygw.AccessKey, "AWS_SECRET_ACCESS_KEY="+versitygw.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
	run := func(stdin io.Reader, stdout io.Writer, args ...string) int64 {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var errb strings.Builder
		cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, stdin, stdout, &errb
		err := cmd.Run()
		out := errb.String()
		if err != nil {
			t.Fatalf("holdfast %v: %v\n%s", args, err, out)
		}
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	}
	run(nil, nil, "init", "-q", "--store", "s3://hf-mem/repo", "--s3-endpoint", srv.Endpoint, "--s3-ca-bundle", srv.CAFile, "--s3-path-style")
	sizes := []int64{256 << 20, 2 << 30}
	putRSS, getRSS := map[int64]int64{}, map[int64]int64{}
	for _, size := range sizes {
		src := io.LimitReader(rand.NewChaCha8([32]byte{byte(size >> 20)}), size)
		putRSS[size] = run(src, nil, "put", "-q", "-", fmt.Sprintf("mem/obj-%d", size))
		// Read it back through a pipe, checking every byte.
		check := &compareWriter{want: rand.NewChaCha8([32]byte{byte(size >> 20)})}
		getRSS[size] = run(nil, check, "get", fmt.Sprintf("mem/obj-%d", size), "-")
		if check.n != size || check.bad {
			t.Fatalf("get of %d bytes returned %d bytes, differing: %v", size, check.n, check.bad)
		}
		t.Logf("%d MiB through a pipe: peak RSS put %d KiB, get %d KiB", size>>20, putRSS[size], getRSS[size])
	}
	for what, rss := range map[string]map[int64]int64{"put": putRSS, "get": getRSS} {
		if d := rss[sizes[1]] - rss[sizes[0]]; d > 8<<10 {
			t.Errorf("%s: peak RSS grew by %d KiB from 256 MiB to 2 GiB (limit 8 MiB)", what, d)
		}
	}
}

// compareWriter checks what it is given against the stream want.
type compareWriter struct {
	want io.Reader
	n    int64
	bad  bool
	buf  []byte
}

func (c *compareWriter) Write(p []byte) (int, error) {
	if len(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	io.ReadFull(c.want, c.buf[:len(p)])
	if !bytes.Equal(p, c.buf[:len(p)]) {
		c.bad = true
	}
	c.n += int64(len(p))
	return len(p), nil
}

// TestMemoryFlatFromAFile: putting a regular file, which is sealed through
// views of its mapped pages rather than copies, takes no more peak memory
// for 2 GiB than for 256 MiB, give or take 8 MiB: a view is released once
// its segment is sealed, so the mapped pages never add up; and so does
// getting it back from the local store, whose ciphertext is mapped too. The files are
// sparse (their pages read as zeros), and the 256 MiB one is read back
// whole.
func TestMemoryFlatFromAFile(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "holdfast")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := append(os.Environ(), "HOLDFAST_HOME="+filepath.Join(dir, "home"), "HOLDFAST_PASSPHRASE=memory test passphrase")
	run := func(args ...string) int64 {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var errb strings.Builder
		cmd.Env, cmd.Stderr = env, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("holdfast %v: %v\n%s", args, err, errb.String())
		}
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	}
	run("init", "-q")
	sizes := []int64{256 << 20, 2 << 30}
	rss, getRSS := map[int64]int64{}, map[int64]int64{}
	for _, size := range sizes {
		in := filepath.Join(dir, fmt.Sprintf("in-%d", size))
		if err := os.WriteFile(in, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(in, size); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("mem/file-%d", size)
		rss[size] = run("put", "-q", in, key)
		// Read back from the local store, whose ciphertext is mapped
		// too (to standard output: the discarded output of run).
		getRSS[size] = run("get", "-q", key, "-")
		t.Logf("%d MiB from a file: peak RSS put %d KiB, get %d KiB", size>>20, rss[size], getRSS[size])
		if size == sizes[0] {
			out := filepath.Join(dir, "out")
			run("get", "-q", key, out)
			if !sameFile(t, in, out) {
				t.Fatalf("%s came back different", key)
			}
			os.Remove(out)
		}
		run("rm", "-q", key)
		os.Remove(in)
	}
	if d := rss[sizes[1]] - rss[sizes[0]]; d > 8<<10 {
		t.Errorf("put from a file: peak RSS grew by %d KiB from 256 MiB to 2 GiB (limit 8 MiB)", d)
	}
	if d := getRSS[sizes[1]] - getRSS[sizes[0]]; d > 8<<10 {
		t.Errorf("get from the local store: peak RSS grew by %d KiB from 256 MiB to 2 GiB (limit 8 MiB)", d)
	}
}

// sameFile reports whether the files at a and b hold the same bytes.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return ea == eb || (ea == io.ErrUnexpectedEOF && eb == io.ErrUnexpectedEOF) || (ea == io.EOF && eb == io.EOF)
		}
	}
}
