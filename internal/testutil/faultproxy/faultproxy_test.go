package faultproxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// outcomes sends n GETs one at a time and says how each ended.
func outcomes(t *testing.T, s Schedule, n int) ([]string, Counts) {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the body of "+r.URL.Path)
	}))
	defer up.Close()
	p, err := Start(Options{Upstream: up.URL, StallFor: 50 * time.Millisecond, Schedule: s})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := &http.Client{Timeout: time.Second}
	var out []string
	for i := range n {
		path := fmt.Sprintf("/o%d", i)
		resp, err := c.Get(p.URL + path)
		if err != nil {
			out = append(out, "error")
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			out = append(out, "cut")
		case resp.StatusCode != http.StatusOK:
			out = append(out, fmt.Sprint(resp.StatusCode))
		case string(b) != "the body of "+path:
			t.Fatalf("%s: body %q", path, b)
		default:
			out = append(out, "ok")
		}
	}
	if got := p.Requests(); got < int64(n) {
		t.Fatalf("proxy saw %d requests, want at least %d", got, n)
	}
	return out, p.Faults()
}

// The same seed gives the same faults on the same requests, another seed
// others, rate 0 none; every fault counted is one the client saw.
func TestScheduleIsReproducible(t *testing.T) {
	mix := []Kind{ResetBefore, ResetAfter, InternalError, SlowDown, ShortBody, Stall}
	a, ca := outcomes(t, Schedule{Seed: 1, Rate: 0.3, Mix: mix}, 100)
	b, cb := outcomes(t, Schedule{Seed: 1, Rate: 0.3, Mix: mix}, 100)
	c, _ := outcomes(t, Schedule{Seed: 2, Rate: 0.3, Mix: mix}, 100)
	healthy, ch := outcomes(t, Schedule{Seed: 1, Rate: 0, Mix: mix}, 100)
	// net/http resends a GET whose kept-alive connection was reset, and
	// the resend draws again: compare the counts and the client's view,
	// both of which the seed fixes.
	if strings.Join(a, " ") != strings.Join(b, " ") || ca.String() != cb.String() {
		t.Fatalf("same seed, different faults:\n%v %v\n%v %v", a, ca, b, cb)
	}
	if strings.Join(a, " ") == strings.Join(c, " ") {
		t.Fatalf("another seed, same faults: %v", a)
	}
	for _, k := range mix {
		if ca[k] == 0 {
			t.Errorf("no %s fault in %v", k, ca)
		}
	}
	failed := 0
	for _, o := range a {
		if o != "ok" {
			failed++
		}
	}
	if failed == 0 || failed > ca.Total() {
		t.Fatalf("%d requests failed for %d faults", failed, ca.Total())
	}
	if ch.Total() != 0 || strings.Count(strings.Join(healthy, " "), "ok") != 100 {
		t.Fatalf("rate 0: %v, %v", ch, healthy)
	}
}
