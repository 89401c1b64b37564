package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/internal/catalog"
)

// ErrBucketNotEmpty: a bucket that still holds objects cannot be deleted.
var ErrBucketNotEmpty = errors.New("bucket is not empty")

// CreateBucket creates an empty bucket, with its first bucket key, and
// fails with ErrExists if it exists. (Put creates a missing bucket on its
// own; the gateway, like S3, creates buckets explicitly.)
func (r *Repo) CreateBucket(ctx context.Context, name string) (catalog.Bucket, error) {
	if err := ValidateNewBucket(name); err != nil {
		return catalog.Bucket{}, err
	}
	if _, err := r.cat.GetBucket(ctx, name); err == nil {
		return catalog.Bucket{}, fmt.Errorf("bucket %q: %w", name, ErrExists)
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return catalog.Bucket{}, err
	}
	b, _, err := r.ensureBucket(ctx, name)
	return b, err
}

// Bucket returns the bucket's catalog record, or ErrNotFound.
func (r *Repo) Bucket(ctx context.Context, name string) (catalog.Bucket, error) {
	b, err := r.cat.GetBucket(ctx, name)
	if errors.Is(err, catalog.ErrNotFound) {
		return b, fmt.Errorf("bucket %q: %w", name, ErrNotFound)
	}
	return b, err
}

// Buckets lists the buckets, sorted by name.
func (r *Repo) Buckets(ctx context.Context) ([]catalog.Bucket, error) {
	return r.cat.Buckets(ctx)
}

// DeleteBucket deletes an empty bucket: ErrNotFound if there is none,
// ErrBucketNotEmpty if it holds objects. Its bucket keys stay in the
// catalog and the store's key journal (older catalog backups name them).
func (r *Repo) DeleteBucket(ctx context.Context, name string) error {
	err := r.cat.DeleteBucket(ctx, name)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		return fmt.Errorf("bucket %q: %w", name, ErrNotFound)
	case errors.Is(err, catalog.ErrNotEmpty):
		return fmt.Errorf("bucket %q: %w", name, ErrBucketNotEmpty)
	}
	return err
}
