package repo

import "sync/atomic"

// KeyUse counts a repository's uses of its keys since it was opened, for
// the key-operation log's "unwrap-counts" record (docs/keys.md).
type KeyUse struct {
	// RootUnwraps counts the calls to the key source's Unwrap: of bucket
	// keys, and of system objects' data keys (one per root key version
	// tried).
	RootUnwraps uint64
	// BucketKeyCacheHits counts bucket keys found already unwrapped in the
	// process's cache.
	BucketKeyCacheHits uint64
}

type keyUseCounters struct{ rootUnwraps, bucketKeyHits atomic.Uint64 }

func (r *Repo) countRootUnwrap()        { r.uses.rootUnwraps.Add(1) }
func (r *Repo) countBucketKeyCacheHit() { r.uses.bucketKeyHits.Add(1) }

// KeyUseCounts returns the repository's key use so far. It may be called
// after Close.
func (r *Repo) KeyUseCounts() KeyUse {
	return KeyUse{RootUnwraps: r.uses.rootUnwraps.Load(), BucketKeyCacheHits: r.uses.bucketKeyHits.Load()}
}
