package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
)

func items(n int, fail int) ([]PutItem, map[string][]byte) {
	want := map[string][]byte{}
	var its []PutItem
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("many/%05d", i)
		data := random(100 + i%5000)
		want[k] = data
		i := i
		its = append(its, PutItem{Key: k, Open: func() (io.ReadCloser, error) {
			if i == fail {
				return nil, errors.New("cannot open this one")
			}
			return io.NopCloser(bytes.NewReader(data)), nil
		}})
	}
	return its, want
}

func smallBatches(t *testing.T) {
	old := putBatch
	putBatch = 16
	t.Cleanup(func() { putBatch = old })
}

func TestPutMany(t *testing.T) {
	smallBatches(t)
	ctx := context.Background()
	e := newEnv(t)
	its, want := items(putBatch+10, -1)
	n := 0
	if err := e.r.PutMany(ctx, "bulk", its, func(catalog.Entry) { n++ }); err != nil {
		t.Fatal(err)
	}
	if n != len(its) {
		t.Fatalf("done called %d times for %d items", n, len(its))
	}
	e.reopen()
	for k, v := range want {
		e.mustGet("bulk", k, v)
	}
	// Overwrite them all in one more call: versions go to 2, old ones go.
	if err := e.r.PutMany(ctx, "bulk", its, nil); err != nil {
		t.Fatal(err)
	}
	ent, _ := e.r.Stat(ctx, "bulk", "many/00007")
	if ent.Version != 2 {
		t.Fatalf("version %d after overwrite", ent.Version)
	}
	e.mustVerifyClean()
}

// TestPutManyFailure: a failure inside the second batch commits the first
// batch only and leaves nothing of the second behind.
func TestPutManyFailure(t *testing.T) {
	smallBatches(t)
	ctx := context.Background()
	e := newEnv(t)
	its, want := items(putBatch+8, putBatch+3)
	err := e.r.PutMany(ctx, "bulk", its, nil)
	if err == nil {
		t.Fatal("a failing item did not fail PutMany")
	}
	cnt, _ := e.r.Catalog().Count(ctx)
	if cnt != int64(putBatch) {
		t.Fatalf("%d objects committed, want the first batch of %d", cnt, putBatch)
	}
	e.mustGet("bulk", "many/00000", want["many/00000"])
	if _, err := e.get("bulk", fmt.Sprintf("many/%05d", putBatch+1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("object of the failed batch visible: %v", err)
	}
	e.mustVerifyClean()
	// Control: without the failing item everything lands.
	its, _ = items(putBatch+8, -1)
	if err := e.r.PutMany(ctx, "bulk", its, nil); err != nil {
		t.Fatal(err)
	}
	if cnt, _ := e.r.Catalog().Count(ctx); cnt != int64(len(its)) {
		t.Fatalf("%d objects after the rerun", cnt)
	}
}
