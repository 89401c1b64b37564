package repo

import (
	"context"
	"errors"
	"testing"
)

func TestBuckets(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.r.CreateBucket(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.CreateBucket(ctx, "alpha"); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := e.r.CreateBucket(ctx, "No_Such Name"); err == nil {
		t.Fatal("an invalid bucket name was accepted")
	}
	if b, err := e.r.Bucket(ctx, "alpha"); err != nil || b.Name != "alpha" {
		t.Fatalf("Bucket: %+v %v", b, err)
	}
	if _, err := e.r.Bucket(ctx, "beta"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Bucket of a missing one: %v", err)
	}
	e.put("alpha", "k", []byte("v"))
	if err := e.r.DeleteBucket(ctx, "alpha"); !errors.Is(err, ErrBucketNotEmpty) {
		t.Fatalf("delete of a bucket with an object: %v", err)
	}
	if err := e.r.DeleteBucket(ctx, "beta"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of a missing bucket: %v", err)
	}
	if _, err := e.r.Delete(ctx, "alpha", "k"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.DeleteBucket(ctx, "alpha"); err != nil {
		t.Fatalf("delete of the emptied bucket: %v", err)
	}
	bs, err := e.r.Buckets(ctx)
	if err != nil || len(bs) != 0 {
		t.Fatalf("buckets after delete: %v %v", bs, err)
	}
	// Recreated, it is a new bucket that works.
	if _, err := e.r.CreateBucket(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	e.put("alpha", "k2", []byte("v2"))
	e.mustGet("alpha", "k2", []byte("v2"))
	e.mustVerifyClean()
}
