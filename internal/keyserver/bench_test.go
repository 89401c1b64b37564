package keyserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/secret"
)

// BenchmarkDataKeyUnwrap: data-key unwraps over mutual TLS on loopback,
// each a request the server authorizes, logs (fsync) and answers — and
// with the client's cache, the repeat unwraps a gateway makes of a hot
// object. Each op is one unwrap; ns/op inverted is unwraps per second.
func BenchmarkDataKeyUnwrap(b *testing.B) {
	for _, c := range []struct {
		name string
		ttl  time.Duration
	}{{"nocache", -1}, {"cache", time.Minute}} {
		b.Run(c.name, func(b *testing.B) {
			dir, url := start(b)
			admin, err := open(b, url, enroll(b, dir, "admin", keyserver.Grant{Buckets: []string{"*"}, Ops: []string{"wrap", "unwrap"}}))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			bucket := keys.ID{7}
			bkKey, _ := secret.New()
			defer bkKey.Wipe()
			w, err := admin.Wrap(ctx, 1, keys.AD{Purpose: keys.PurposeBucketKey, Repo: admin.Repo(), Bucket: bucket, KEKVersion: 1, KeyVersion: 1}, bkKey)
			if err != nil {
				b.Fatal(err)
			}
			kc, _ := keys.KeyCheck(bkKey)
			bk := remote.BucketKey{Bucket: bucket, Version: 1, Wrapped: w, KeyCheck: kc}
			cfg := enroll(b, dir, "gateway", keyserver.Grant{Buckets: []string{"07000000000000000000000000000000"}, Ops: []string{"data"}})
			cfg.CacheTTL = c.ttl
			gw, err := open(b, url, cfg)
			if err != nil {
				b.Fatal(err)
			}
			dk, _ := secret.New()
			defer dk.Wipe()
			ad := keys.AD{Purpose: keys.PurposeDataKey, Repo: admin.Repo(), Bucket: bucket, KEKVersion: 1, Object: keys.ID{9}}
			alg, data, err := gw.WrapDataKey(ctx, bk, ad, dk)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				k, err := gw.UnwrapDataKey(ctx, bk, ad, alg, data)
				if err != nil {
					b.Fatal(err)
				}
				k.Wipe()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
		})
	}
}
