package logtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	if got := Clip("short", 10); got != "short" {
		t.Fatalf("a short text changed: %q", got)
	}
	long := strings.Repeat("é", 100) // 200 bytes
	got := Clip(long, 15)
	if !utf8.ValidString(got) || !strings.HasPrefix(got, strings.Repeat("é", 7)) || !strings.HasSuffix(got, "…[200 bytes]") {
		t.Fatalf("clipped: %q", got)
	}
	if len(got) > 15+len("…[200 bytes]") {
		t.Fatalf("clipped to %d bytes", len(got))
	}
}
