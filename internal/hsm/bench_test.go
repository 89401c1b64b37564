package hsm

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast/internal/secret"
)

// BenchmarkUnwrap measures unwraps per second through the PKCS#11 source
// (SoftHSM2): "nocache" asks the token every time, "cache" repeats one
// record within the TTL, as a gateway does for a hot bucket. Wrap is one
// token operation each time.
func BenchmarkUnwrap(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  Options
	}{{"nocache", Options{CacheTTL: -1}}, {"cache", Options{}}} {
		b.Run(bc.name, func(b *testing.B) {
			s, _, _ := testSource(b, bc.ttl)
			ctx := context.Background()
			k, _ := secret.New()
			w, err := s.Wrap(ctx, 1, bucketAD(1), k)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				got, err := s.Unwrap(ctx, w, bucketAD(1))
				if err != nil {
					b.Fatal(err)
				}
				got.Wipe()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

func BenchmarkWrap(b *testing.B) {
	s, _, _ := testSource(b, Options{CacheTTL: -1})
	ctx := context.Background()
	k, _ := secret.New()
	for b.Loop() {
		if _, err := s.Wrap(ctx, 1, bucketAD(1), k); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
