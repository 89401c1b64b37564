package catalog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast/internal/testutil/pgtest"
)

// The concurrency tests write from several goroutines, several handles and
// a second process (this test binary re-executed in writer mode) to one
// catalog file, and check that every write succeeds (no SQLITE_BUSY) and
// that versions stay consistent.

const (
	writerEnvPath   = "HOLDFAST_CATALOG_TEST_WRITER_PATH"
	writerEnvPrefix = "HOLDFAST_CATALOG_TEST_WRITER_PREFIX"
	sharedKey       = "shared"
	keysPerWorker   = 40
	workersPerProc  = 4
)

func TestMain(m *testing.M) {
	if path := os.Getenv(writerEnvPath); path != "" {
		os.Exit(writerProcess(path, os.Getenv(writerEnvPrefix)))
	}
	code := m.Run()
	if err := pgtest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// writerProcess is the second process: it opens the catalog, says "ready",
// waits for a line on stdin, writes, and reports its shared-key commits.
func writerProcess(path, prefix string) int {
	ctx := context.Background()
	c, err := openLocation(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "waiting for go:", err)
		return 1
	}
	n, err := writeConcurrently(ctx, []Catalog{c}, prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("shared %d\n", n)
	return 0
}

// writeConcurrently runs workersPerProc goroutines per handle. Each writes
// two versions of each of its own keys (half of them with the single
// calls, half in batches), then commits once to the shared key, retrying
// when another writer got a version first. It returns the number of
// shared-key commits.
func writeConcurrently(ctx context.Context, cs []Catalog, prefix string) (int, error) {
	var wg sync.WaitGroup
	errs := make(chan error, len(cs)*workersPerProc)
	for h, c := range cs {
		for w := range workersPerProc {
			wg.Go(func() {
				errs <- writeWorker(ctx, c, fmt.Sprintf("%s/h%d/w%d", prefix, h, w), w%2 == 1)
			})
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return len(cs) * workersPerProc, errors.Join(all...)
}

func writeWorker(ctx context.Context, c Catalog, prefix string, batched bool) error {
	if batched {
		if err := writeBatches(ctx, c, prefix); err != nil {
			return err
		}
		return writeShared(ctx, c, prefix)
	}
	for i := range keysPerWorker {
		key := fmt.Sprintf("%s/%03d", prefix, i)
		for want := uint64(1); want <= 2; want++ {
			v, err := c.NextVersion(ctx, "b", key)
			if err != nil {
				return err
			}
			if v != want {
				return fmt.Errorf("%s: NextVersion = %d, want %d", key, v, want)
			}
			e := mkEntry("b", key, v)
			if err := c.BeginPut(ctx, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: "b", Key: key, Version: v, Owner: prefix}); err != nil {
				return err
			}
			old, err := c.CommitPut(ctx, e)
			if err != nil {
				return err
			}
			if (old != nil) != (want == 2) || old != nil && old.Version != 1 {
				return fmt.Errorf("%s v%d replaced %+v", key, want, old)
			}
		}
	}
	return writeShared(ctx, c, prefix)
}

// writeBatches writes two versions of the worker's keys in batches of 10,
// letting BeginPutBatch assign the versions.
func writeBatches(ctx context.Context, c Catalog, prefix string) error {
	for want := uint64(1); want <= 2; want++ {
		for start := 0; start < keysPerWorker; start += 10 {
			var ps []Pending
			for i := start; i < min(start+10, keysPerWorker); i++ {
				ps = append(ps, Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: fmt.Sprintf("%s/%03d", prefix, i), Owner: prefix})
			}
			if err := c.BeginPutBatch(ctx, ps); err != nil {
				return err
			}
			var es []Entry
			for _, p := range ps {
				if p.Version != want {
					return fmt.Errorf("%s: assigned version %d, want %d", p.Key, p.Version, want)
				}
				e := mkEntry("b", p.Key, p.Version)
				e.ObjectID, e.Pin = p.ObjectID, pinOf(p.ObjectID)
				es = append(es, e)
			}
			replaced, err := c.CommitPutBatch(ctx, es)
			if err != nil {
				return err
			}
			for i, old := range replaced {
				if (old != nil) != (want == 2) {
					return fmt.Errorf("%s v%d replaced %+v", es[i].Key, want, old)
				}
			}
		}
	}
	return nil
}

// writeShared commits once to the shared key, which every worker
// contends for; stale versions are expected and retried.
func writeShared(ctx context.Context, c Catalog, prefix string) error {
	for {
		v, err := c.NextVersion(ctx, "b", sharedKey)
		if err != nil {
			return err
		}
		e := mkEntry("b", sharedKey, v)
		err = c.BeginPut(ctx, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: "b", Key: sharedKey, Version: v, Owner: prefix})
		if errors.Is(err, ErrStaleVersion) {
			continue
		}
		if err != nil {
			return err
		}
		_, err = c.CommitPut(ctx, e)
		if errors.Is(err, ErrStaleVersion) {
			if err := c.AbortPut(ctx, e.ObjectID); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// checkWrites checks the catalog after writers with the given prefixes ran
// with handles handles each and made shared commits to the shared key.
func checkWrites(t *testing.T, c Catalog, prefixes []string, handles, shared int) {
	t.Helper()
	ctx := context.Background()
	perPrefix := handles * workersPerProc * keysPerWorker
	for _, p := range prefixes {
		n := 0
		err := c.List(ctx, "b", p+"/", "", func(e Entry) error {
			n++
			if e.Version != 2 {
				return fmt.Errorf("%s: version %d, want 2", e.Key, e.Version)
			}
			return nil
		})
		mustNot(t, "List", err)
		if n != perPrefix {
			t.Errorf("prefix %q: %d keys, want %d", p, n, perPrefix)
		}
	}
	s := mustGet(t, c, "b", sharedKey)
	if s.Version < uint64(shared) {
		t.Errorf("shared key at version %d after %d commits", s.Version, shared)
	}
	// Every replaced version is garbage exactly once: one per own key, and
	// all shared commits but the last.
	g, err := c.Garbage(ctx)
	mustNot(t, "Garbage", err)
	if want := len(prefixes)*perPrefix + shared - 1; len(g) != want {
		t.Errorf("garbage: %d ids, want %d", len(g), want)
	}
	var versions []uint64
	for _, id := range g {
		h, err := c.HistoryByObjectID(ctx, id)
		mustNot(t, "HistoryByObjectID", err)
		if h.Key == sharedKey {
			versions = append(versions, h.Version)
		}
	}
	seen := map[uint64]bool{s.Version: true}
	for _, v := range versions {
		if seen[v] || v > s.Version {
			t.Errorf("shared key: version %d committed twice or after the current %d", v, s.Version)
		}
		seen[v] = true
	}
	if ps, _ := c.ListPending(ctx); len(ps) != 0 {
		t.Errorf("%d pending rows left", len(ps))
	}
}

func TestConcurrentHandles(t *testing.T) {
	ctx := context.Background()
	c1, path := newCatalog(t)
	c2 := openAt(t, path) // a second handle, as another process would have
	n, err := writeConcurrently(ctx, []Catalog{c1, c2}, "p")
	if err != nil {
		t.Fatal(err)
	}
	checkWrites(t, c1, []string{"p"}, 2, n)
	checkWrites(t, c2, []string{"p"}, 2, n)
}

func TestConcurrentProcesses(t *testing.T) {
	ctx := context.Background()
	c, path := newCatalog(t)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerEnvPath+"="+path, writerEnvPrefix+"=child")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	mustNot(t, "stdin", err)
	stdout, err := cmd.StdoutPipe()
	mustNot(t, "stdout", err)
	mustNot(t, "start writer process", cmd.Start())
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer process: %q, %v; stderr: %s", line, err, stderr.String())
	}

	// Both processes start writing at once.
	fmt.Fprintln(stdin, "go")
	n, werr := writeConcurrently(ctx, []Catalog{c}, "parent")
	rest, _ := out.ReadString('\n')
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer process: %v; stderr: %s", err, stderr.String())
	}
	if werr != nil {
		t.Fatal(werr)
	}
	childN, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(rest, "shared ")))
	if err != nil {
		t.Fatalf("writer process said %q", rest)
	}
	checkWrites(t, c, []string{"parent", "child"}, 1, n+childN)
	if onPostgres(t) {
		return
	}
	// The child's file mode survived its writes.
	fi, err := os.Stat(filepath.Clean(path))
	mustNot(t, "stat", err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
}
