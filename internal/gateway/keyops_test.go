package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
)

// TestKeyCommandsWhileServing: while S3 clients write and read through
// the gateway, another process of the same repository rotates the root
// and a bucket key, rewraps, retires the old versions and backs up. No
// request fails, no acknowledged write is lost (the last content
// acknowledged for every key reads back, through the gateway and in a new
// process), verify is clean, and the old versions are gone.
func TestKeyCommandsWhileServing(t *testing.T) {
	ctx := context.Background()
	g := startGW(t, nil)
	c := g.admin()
	for _, b := range []string{"live", "other"} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if _, err := put(t, c, "live", fmt.Sprintf("seed/%02d", i), random(t, 3000+i), nil); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu       sync.Mutex
		acked    = map[string][32]byte{} // bucket/key → SHA-256 of the last acknowledged content
		failures []string
		stop     = make(chan struct{})
		underway = make(chan struct{}) // closed at the 30th key written
		wg       sync.WaitGroup
	)
	fail := func(f string, a ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			made := map[string]bool{}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Now and then a new bucket: a new bucket key, wrapped
				// under whatever root key version this process takes for
				// primary.
				bucket := []string{"live", "other", fmt.Sprintf("made-%d-%d", w, i/30)}[i%3]
				if i%3 == 2 && !made[bucket] {
					if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
						fail("create bucket %s: %v", bucket, err)
						continue
					}
					made[bucket] = true
				}
				// Keys repeat, so that overwrites race the key commands too.
				key := fmt.Sprintf("w%d/%03d", w, i%25)
				data := random(t, 500+i%7*1000)
				if _, err := put(t, c, bucket, key, data, nil); err != nil {
					fail("put %s/%s: %v", bucket, key, err)
					continue
				}
				mu.Lock()
				acked[bucket+"/"+key] = sha256.Sum256(data)
				if len(acked) == 30 {
					close(underway)
				}
				mu.Unlock()
				got, _, err := get(c, bucket, key, "")
				if err != nil {
					fail("get %s/%s: %v", bucket, key, err)
					continue
				}
				// Only this writer writes key: what it reads is what it wrote.
				if !bytes.Equal(got, data) {
					fail("get %s/%s: not the content just written", bucket, key)
				}
			}
		}()
	}

	// The key commands, as another process of the same repository runs them.
	other, err := repo.Open(ctx, repo.OpenOptions{Home: filepath.Join(filepath.Dir(g.store), "home"), Passphrase: []byte("gateway test")})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	step := func(what string, fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	written := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	select {
	case <-underway:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the writers never got under way: %v", failures)
	}
	before := written()
	// An operator retries a retire refused while writes begun under the
	// old version were still in flight: rewrap again, retire again.
	retry := func(what string, retire func() error) {
		t.Helper()
		for attempt := 1; ; attempt++ {
			_, err := other.RewrapRoot(ctx)
			for _, b := range []string{"live", "other"} {
				if err == nil {
					_, err = other.RewrapBucket(ctx, b, nil)
				}
			}
			if err == nil {
				err = retire()
			}
			if err == nil {
				t.Logf("%s: done at attempt %d", what, attempt)
				return
			}
			if !errors.Is(err, repo.ErrKeyInUse) || attempt == 50 {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	// Three rounds: each rotates, rewraps and retires the versions the
	// last one made primary.
	for v := uint32(1); v <= 3; v++ {
		step("rotate the root key", func() error { _, err := other.RotateRootKey(); return err })
		for _, b := range []string{"live", "other"} {
			step("rotate "+b+"'s key", func() error { _, err := other.RotateBucketKey(ctx, b); return err })
			retry(fmt.Sprintf("retire %s's key v%d", b, v), func() error { _, err := other.RetireBucketKey(ctx, b, v); return err })
		}
		step("backup", func() error { _, err := other.Backup(ctx); return err })
		retry(fmt.Sprintf("retire root key v%d", v), func() error { return other.RetireRootKey(ctx, v) })
	}
	during := written() - before
	close(stop)
	wg.Wait()
	t.Logf("%d new keys acknowledged while the key commands ran", during)
	if during == 0 {
		t.Fatal("no write was acknowledged while the key commands ran")
	}

	if len(failures) > 0 {
		t.Fatalf("%d requests failed beside the key commands, first: %s", len(failures), failures[0])
	}
	if len(acked) < 20 {
		t.Fatalf("only %d keys written: the writers did not run beside the key commands", len(acked))
	}
	check := func(r *repo.Repo, through string) {
		t.Helper()
		for bk, sum := range acked {
			bucket, key, _ := repo.SplitPath(bk, false)
			var got []byte
			if r == nil {
				got, _, err = get(c, bucket, key, "")
			} else {
				var rd *repo.Reader
				if rd, err = r.OpenObject(ctx, bucket, key); err == nil {
					var b bytes.Buffer
					_, err = rd.WriteTo(ctx, &b)
					rd.Close()
					got = b.Bytes()
				}
			}
			if err != nil || sha256.Sum256(got) != sum {
				t.Errorf("%s: %s is not the last acknowledged content (%v)", through, bk, err)
			}
		}
	}
	check(nil, "gateway")
	fresh, err := repo.Open(ctx, repo.OpenOptions{Home: filepath.Join(filepath.Dir(g.store), "home"), Passphrase: []byte("gateway test")})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	check(fresh, "a new process")
	var findings []repo.Finding
	sum, err := fresh.Verify(ctx, repo.VerifyOptions{}, func(f repo.Finding) { findings = append(findings, f) })
	if err != nil || sum.Damaged() || len(findings) > 0 {
		t.Errorf("verify: %v %+v", err, findings)
	}
	for _, v := range fresh.RootKeyVersions() {
		if v.Version <= 3 && v.State != keyring.StateDestroyed {
			t.Errorf("root key v%d is %v", v.Version, v.State)
		}
	}
	bks, err := fresh.Catalog().AllBucketKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := fresh.Catalog().GetBucket(ctx, "live")
	for _, bk := range bks {
		if bk.BucketID == live.ID && bk.Version <= 3 && bk.State != catalog.KeyDestroyed {
			t.Errorf("live's key v%d is in state %d", bk.Version, bk.State)
		}
		if bk.State != catalog.KeyDestroyed && bk.Wrapped.KEKVersion != 4 {
			t.Errorf("bucket key %x v%d is under root v%d, not the primary v4", bk.BucketID, bk.Version, bk.Wrapped.KEKVersion)
		}
	}
	t.Logf("%d keys written and read back beside the key commands", len(acked))
}
