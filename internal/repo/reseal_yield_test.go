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

// TestResealDoesNotBringBackABucket: a reseal of an object whose bucket
// was emptied and deleted after the object was opened stores nothing and
// does not make the bucket again (ErrReplaced). Control: the same reseal
// with the bucket there commits.
func TestResealDoesNotBringBackABucket(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.put("gone-soon", "k", random(100))
	e.put("stays", "k", random(100))
	rdGone, err := e.r.OpenObject(ctx, "gone-soon", "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rdGone.Close()
	rdStays, err := e.r.OpenObject(ctx, "stays", "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rdStays.Close()
	if _, err := e.r.Delete(ctx, "gone-soon", "k"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.DeleteBucket(ctx, "gone-soon"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Reseal(ctx, rdGone, map[string]string{"tagging": "a=b"}); !errors.Is(err, ErrReplaced) {
		t.Errorf("reseal after its bucket was deleted: %v, want ErrReplaced", err)
	}
	if _, err := e.r.cat.GetBucket(ctx, "gone-soon"); err == nil {
		t.Error("the reseal made the deleted bucket again")
	}
	if _, err := e.r.Reseal(ctx, rdStays, map[string]string{"tagging": "a=b"}); err != nil {
		t.Errorf("control: reseal in a bucket that is there: %v", err)
	}
}
