package catalog

import (
	"context"
	"fmt"
	"testing"
)

// Benchmarks report files/s: the per-file catalog cost of a put, which the
// CLI's recursive put of many small files pays once per file.

func reportFiles(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkCommitPut is one CommitPut of a new key per op; the pending
// rows a commit requires are recorded before the timer starts.
func BenchmarkCommitPut(b *testing.B) {
	ctx := context.Background()
	c, _ := newCatalog(b)
	ps := make([]Pending, b.N)
	for i := range ps {
		ps[i] = Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: fmt.Sprintf("dir/file-%08d", i), Owner: "bench"}
	}
	if err := c.BeginPutBatch(ctx, ps); err != nil {
		b.Fatal(err)
	}
	es := make([]Entry, b.N)
	for i, p := range ps {
		es[i] = mkEntry(p.Bucket, p.Key, p.Version)
		es[i].ObjectID, es[i].Pin = p.ObjectID, pinOf(p.ObjectID)
	}
	b.ResetTimer()
	for i := range es {
		if _, err := c.CommitPut(ctx, es[i]); err != nil {
			b.Fatal(err)
		}
	}
	reportFiles(b)
}

// BenchmarkPut is the whole catalog side of a put, one file at a time
// (NextVersion, BeginPut, CommitPut) or in batches (BeginPutBatch assigning
// versions, CommitPutBatch).
func BenchmarkPut(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		name := "single"
		if batch > 1 {
			name = fmt.Sprintf("batch=%d", batch)
		}
		b.Run(name, func(b *testing.B) {
			benchPut(b, batch)
		})
	}
}

func benchPut(b *testing.B, batch int) {
	ctx := context.Background()
	c, _ := newCatalog(b)
	es := make([]Entry, 0, batch)
	ps := make([]Pending, 0, batch)
	b.ResetTimer()
	for i := 0; i < b.N; {
		es, ps = es[:0], ps[:0]
		if batch == 1 {
			key := fmt.Sprintf("dir/file-%08d", i)
			i++
			v, err := c.NextVersion(ctx, "b", key)
			if err != nil {
				b.Fatal(err)
			}
			e := mkEntry("b", key, v)
			if err := c.BeginPut(ctx, Pending{ObjectID: e.ObjectID, Kind: KindObject, Bucket: "b", Key: key, Version: v, Owner: "bench"}); err != nil {
				b.Fatal(err)
			}
			if _, err := c.CommitPut(ctx, e); err != nil {
				b.Fatal(err)
			}
			continue
		}
		// A batch needs no NextVersion: BeginPutBatch assigns versions.
		for ; len(ps) < batch && i < b.N; i++ {
			id := newID()
			ps = append(ps, Pending{ObjectID: id, Kind: KindObject, Bucket: "b", Key: fmt.Sprintf("dir/file-%08d", i), Owner: "bench"})
		}
		if err := c.BeginPutBatch(ctx, ps); err != nil {
			b.Fatal(err)
		}
		for _, p := range ps {
			e := mkEntry("b", p.Key, p.Version)
			e.ObjectID, e.Pin = p.ObjectID, pinOf(p.ObjectID)
			es = append(es, e)
		}
		if _, err := c.CommitPutBatch(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
	reportFiles(b)
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	c, _ := newCatalog(b)
	const n = 10000
	es := committedEntries(b, c, n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Get(ctx, "b", es[(i*7919)%n].Key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	c, _ := newCatalog(b)
	const n = 10000
	committedEntries(b, c, n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.List(ctx, "b", "dir/", "", func(Entry) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "entries/s")
}

// committedEntries records n entries of bucket "b" the way writers do:
// pending first, then committed in one batch.
func committedEntries(b *testing.B, c Catalog, n int) []Entry {
	ctx := context.Background()
	ps := make([]Pending, n)
	for i := range ps {
		ps[i] = Pending{ObjectID: newID(), Kind: KindObject, Bucket: "b", Key: fmt.Sprintf("dir/file-%08d", i), Owner: "bench"}
	}
	if err := c.BeginPutBatch(ctx, ps); err != nil {
		b.Fatal(err)
	}
	es := make([]Entry, n)
	for i, p := range ps {
		es[i] = mkEntry(p.Bucket, p.Key, p.Version)
		es[i].ObjectID, es[i].Pin = p.ObjectID, pinOf(p.ObjectID)
	}
	if _, err := c.CommitPutBatch(ctx, es); err != nil {
		b.Fatal(err)
	}
	return es
}
