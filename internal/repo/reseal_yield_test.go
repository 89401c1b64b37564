package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// gatedReader gives its bytes only once gate is closed, and closes opened
// when it is first read (the PUT reading it has its pending record and
// version by then).
type gatedReader struct {
	r            *bytes.Reader
	gate, opened chan struct{}
	started      bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if !g.started {
		g.started = true
		close(g.opened)
		<-g.gate
	}
	return g.r.Read(p)
}

// TestResealYieldsToAWriteInFlight: a tag change (Reseal) of an object
// while a PUT of the same key is in flight gives way (ErrReplaced, as
// when the object was replaced) instead of committing first and failing
// the PUT as stale; the PUT then commits its bytes. Control: the same
// reseal once nothing else writes the key commits.
func TestResealYieldsToAWriteInFlight(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.put("photos", "k", random(1000))
	body := random(2000)
	g := &gatedReader{r: bytes.NewReader(body), gate: make(chan struct{}), opened: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := e.r.Put(ctx, "photos", "k", g, PutOptions{})
		done <- err
	}()
	<-g.opened
	rd, err := e.r.OpenObject(ctx, "photos", "k")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.r.Reseal(ctx, rd, map[string]string{"tagging": "a=b"})
	rd.Close()
	if !errors.Is(err, ErrReplaced) {
		t.Errorf("reseal while a PUT of the key is in flight: %v, want ErrReplaced", err)
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatalf("the PUT in flight: %v", err)
	}
	e.mustGet("photos", "k", body)

	rd, err = e.r.OpenObject(ctx, "photos", "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if _, err := e.r.Reseal(ctx, rd, map[string]string{"tagging": "a=b"}); err != nil {
		t.Fatalf("control: reseal with nothing else writing: %v", err)
	}
	e.mustGet("photos", "k", body)
	e.mustVerifyClean()
}
