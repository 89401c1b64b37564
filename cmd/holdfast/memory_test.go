package main

import (
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
// so nothing can be sized in advance) takes no more peak memory than a
// 256 MiB one, give or take 8 MiB: memory is bounded by configuration
// (segments in flight, part size × concurrency), not by object size.
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
	env := append(os.Environ(), "HOLDFAST_HOME="+home, "HOLDFAST_PASSPHRASE=memory test",
		"AWS_ACCESS_KEY_ID="+versitygw.AccessKey, "AWS_SECRET_ACCESS_KEY="+versitygw.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
	run := func(stdin io.Reader, args ...string) int64 {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Stdin = env, stdin
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("holdfast %v: %v\n%s", args, err, out)
		}
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	}
	run(nil, "init", "-q", "--store", "s3://hf-mem/repo", "--s3-endpoint", srv.Endpoint, "--s3-ca-bundle", srv.CAFile, "--s3-path-style")
	rss := map[int64]int64{}
	for _, size := range []int64{256 << 20, 2 << 30} {
		src := io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
		rss[size] = run(src, "put", "-q", "-", fmt.Sprintf("mem/obj-%d", size))
		t.Logf("put of %d MiB from a pipe: peak RSS %d KiB", size>>20, rss[size])
	}
	if d := rss[2<<30] - rss[256<<20]; d > 8<<10 {
		t.Fatalf("peak RSS grew by %d KiB from 256 MiB to 2 GiB (limit 8 MiB)", d)
	}
	// Control: the 2 GiB object is really there, whole.
	cmd := exec.Command(bin, "stat", "mem/obj-2147483648")
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), fmt.Sprintf("size:         %d\n", int64(2<<30))) {
		t.Fatalf("2 GiB object not stored: %v\n%s", err, b)
	}
}
