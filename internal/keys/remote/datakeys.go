package remote

import (
	"context"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// The repository asks for data-key operations in terms of the catalog's
// bucket key records (repo.DataKeySource), so that it need not know the
// wire types; these adapt them.

// WrapDataKeyUnder is WrapDataKey for the catalog's record of the bucket
// key version.
func (s *Source) WrapDataKeyUnder(ctx context.Context, bk catalog.BucketKey, ad keys.AD, k secret.Key) (keys.Alg, []byte, error) {
	return s.WrapDataKey(ctx, wireBucketKey(bk), ad, k)
}

// UnwrapDataKeyUnder is UnwrapDataKey for the catalog's record of the
// bucket key version.
func (s *Source) UnwrapDataKeyUnder(ctx context.Context, bk catalog.BucketKey, ad keys.AD, alg keys.Alg, data []byte) (secret.Key, error) {
	return s.UnwrapDataKey(ctx, wireBucketKey(bk), ad, alg, data)
}

// wireBucketKey is what the server needs of a bucket key record to open
// it: its wrap under a root key and its key check.
func wireBucketKey(bk catalog.BucketKey) BucketKey {
	return BucketKey{Bucket: bk.BucketID, Version: bk.Version, Wrapped: bk.Wrapped, KeyCheck: bk.KeyCheck}
}
