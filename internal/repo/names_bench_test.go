package repo

import "testing"

// Name handling runs for every object of every command: splitting
// BUCKET/KEY and checking bucket and key.

func BenchmarkSplitPath(b *testing.B) {
	for b.Loop() {
		if _, _, err := SplitPath("photos/2026/holiday/IMG_0001.jpg", false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateKey(b *testing.B) {
	k := "projects/apollo/reports/2026-11-27/quarterly summary (final).pdf"
	for b.Loop() {
		if err := ValidateKey(k); err != nil {
			b.Fatal(err)
		}
	}
}
