package spread

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
)

// heldMember holds the first Put it gets until gate is closed, then fails
// it (fail) or lets it through; later Puts (repair's) go through.
type heldMember struct {
	*member
	gate  chan struct{}
	fail  bool
	calls atomic.Int32
}

func (h *heldMember) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if h.calls.Add(1) > 1 {
		return h.member.Put(ctx, name, r, size)
	}
	<-h.gate
	if h.fail {
		io.Copy(io.Discard, r)
		return errDown
	}
	return h.member.Put(ctx, name, r, size)
}

// doneMember counts the Puts that have returned, and closes all when n
// have.
type doneMember struct {
	*member
	count *atomic.Int32
	n     int32
	all   chan struct{}
}

func (d doneMember) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	err := d.member.Put(ctx, name, r, size)
	if d.count.Add(1) == d.n {
		close(d.all)
	}
	return err
}

// TestRepairLeavesOldWhileOverwriteRuns: a repair that runs while an
// overwrite has reached exactly K members of a 3-of-5 store must not
// remove the old generation: the overwrite then fails below its write
// quorum and removes what it wrote, and the old contents must still read
// (the failed Put promises it). They used to be gone. Control: the same
// repair while the overwrite goes on to succeed — the new contents read.
func TestRepairLeavesOldWhileOverwriteRuns(t *testing.T) {
	for _, fail := range []bool{true, false} {
		r := newRig(t, 1000)
		old, nb := body(1, 5000), body(2, 5000)
		put(t, r.s, "x", old)
		gate, first := make(chan struct{}), make(chan struct{})
		var count atomic.Int32
		for j := range 3 {
			r.s.cfg.Members[j].Store = doneMember{r.members[j], &count, 3, first}
		}
		for _, j := range []int{3, 4} {
			r.s.cfg.Members[j].Store = &heldMember{member: r.members[j], gate: gate, fail: fail}
		}
		perr := make(chan error, 1)
		go func() { perr <- r.s.Put(context.Background(), "x", bytes.NewReader(nb), int64(len(nb))) }()
		<-first // members 0..2 hold the new generation; 3 and 4 wait
		if _, err := r.s.Repair(t.Context(), RepairOptions{}); err != nil {
			t.Fatalf("repair: %v", err)
		}
		close(gate)
		err := <-perr
		for j := range 5 {
			r.s.cfg.Members[j].Store = r.members[j]
		}
		want := nb
		if fail {
			want = old
			if err == nil {
				t.Fatal("the overwrite succeeded with two members failing")
			}
		} else if err != nil {
			t.Fatalf("control: the overwrite failed: %v", err)
		}
		if got, err := get(t.Context(), r.s, "x", 0, -1); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("overwrite failing %v: x reads %d bytes (old %v, new %v), %v", fail, len(got), bytes.Equal(got, old), bytes.Equal(got, nb), err)
		}
	}
}
