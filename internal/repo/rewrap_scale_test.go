package repo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// rewrapObjects is how many objects TestRewrapScale rewraps: 10,000 in
// CI; bench/rewrap.sh sets HOLDFAST_REWRAP_OBJECTS=100000.
func rewrapObjects(t *testing.T) int {
	n := 10_000
	if s := os.Getenv("HOLDFAST_REWRAP_OBJECTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("HOLDFAST_REWRAP_OBJECTS=%q", s)
		}
		n = v
	}
	return n
}

// TestRewrapScale: a bucket key rotation and rewrap of 10,000 objects on
// the local store and on versitygw, counted at the store boundary: every
// object moves to the new version, the store receives at most 1 KiB per
// object and no object body, and objects read. Time and bytes are logged
// (bench/rewrap.sh records them for 100,000).
func TestRewrapScale(t *testing.T) {
	n := rewrapObjects(t)
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			var cnt *storetest.Counting
			hooks := &Hooks{WrapStore: func(s store.Store) store.Store { cnt = storetest.NewCounting(s); return cnt }}
			home := filepath.Join(t.TempDir(), "home")
			o := InitOptions{Home: home, Passphrase: pass, KDF: keyring.Calibrate(0), Hooks: hooks}
			if kind == "s3" {
				srv := startS3(t, "rewrap")
				o.S3 = &S3Config{Bucket: "rewrap", Prefix: "vault/", Endpoint: srv.Endpoint, PathStyle: true, AllowHTTP: true}
			}
			r, err := Init(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			items := make([]PutItem, n)
			for i := range items {
				body := []byte(fmt.Sprintf("object %d", i))
				items[i] = PutItem{Key: fmt.Sprintf("d%03d/f%06d", i%500, i), Open: func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(body)), nil
				}}
			}
			start := time.Now()
			if err := r.PutMany(ctx, "bkt", items, nil); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: put %d objects: %s", kind, n, time.Since(start).Round(time.Millisecond))
			if _, err := r.RotateBucketKey(ctx, "bkt"); err != nil {
				t.Fatal(err)
			}
			cnt.Reset()
			start = time.Now()
			rep, err := r.RewrapBucket(ctx, "bkt", nil)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			written, puts, read := cnt.BytesWritten.Load(), cnt.Puts.Load(), cnt.BytesRead.Load()
			t.Logf("%s: rewrap of %d objects: %s (%.0f objects/s), %d bytes written in %d store writes (%.0f bytes per object), %d bytes read",
				kind, rep.Objects, took.Round(time.Millisecond), float64(rep.Objects)/took.Seconds(), written, puts, float64(written)/float64(n), read)
			if rep.Objects != n || rep.Skipped != 0 {
				t.Fatalf("rewrapped %+v, want %d objects", rep, n)
			}
			if written > int64(n)*1024 || written == 0 {
				t.Errorf("%d bytes written for %d objects: more than 1 KiB each", written, n)
			}
			// No body was read either: the rewrap needs only the catalog.
			if read != 0 {
				t.Errorf("the rewrap read %d bytes from the store", read)
			}
			counts, err := r.cat.CountByKeyVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if counts["bkt"][2] != int64(n) || counts["bkt"][1] != 0 {
				t.Errorf("objects by key version after the rewrap: %v", counts["bkt"])
			}
			for i := 0; i < n; i += max(n/20, 1) {
				rd, err := r.OpenObject(ctx, "bkt", items[i].Key)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				_, err = rd.WriteTo(ctx, &b)
				rd.Close()
				if err != nil || b.String() != fmt.Sprintf("object %d", i) {
					t.Fatalf("%s after the rewrap: %q, %v", items[i].Key, b.String(), err)
				}
			}
		})
	}
}
