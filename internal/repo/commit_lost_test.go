package repo

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/catalog"
)

// lostAnswer commits but loses the answer, as a PostgreSQL COMMIT whose
// connection breaks after the server committed; refuse instead fails
// without committing anything.
type lostAnswer struct {
	catalog.Catalog
	refuse bool
}

var errReset = errors.New("read tcp: connection reset by peer")

func (c lostAnswer) CommitPut(ctx context.Context, e catalog.Entry) (*catalog.Entry, error) {
	if c.refuse {
		return nil, errReset
	}
	if _, err := c.Catalog.CommitPut(ctx, e); err != nil {
		return nil, err
	}
	return nil, errReset
}

func (c lostAnswer) CommitPutBatch(ctx context.Context, es []catalog.Entry) ([]*catalog.Entry, error) {
	if c.refuse {
		return nil, errReset
	}
	if _, err := c.Catalog.CommitPutBatch(ctx, es); err != nil {
		return nil, err
	}
	return nil, errReset
}

// TestCommitAnswerLost: a commit that reaches the database but whose
// answer is lost is a write that stands: Put and PutMany report it stored
// and it reads back (they used to take any commit error for "not
// committed" and delete the object the catalog now pointed at). Control:
// a commit that fails before the database (refused) fails the write,
// removes its object and leaves the previous version readable.
func TestCommitAnswerLost(t *testing.T) {
	ctx := context.Background()
	for _, refuse := range []bool{false, true} {
		e := newEnv(t)
		e.put("bkt", "k", []byte("old"))
		e.put("bkt", "m", []byte("old m"))
		real := e.r.cat
		e.r.cat = lostAnswer{real, refuse}
		_, err := e.r.Put(ctx, "bkt", "k", strings.NewReader("new"), PutOptions{})
		perr := e.r.PutMany(ctx, "bkt", []PutItem{{Key: "m", Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("new m")), nil
		}}}, nil)
		e.r.cat = real
		want := map[string]string{"k": "new", "m": "new m"}
		if refuse {
			want = map[string]string{"k": "old", "m": "old m"}
			if !errors.Is(err, errReset) || !errors.Is(perr, errReset) {
				t.Errorf("control: a refused commit: put %v, put many %v; want the error", err, perr)
			}
		} else if err != nil || perr != nil {
			t.Errorf("answer lost: put %v, put many %v; want the writes reported stored", err, perr)
		}
		for k, v := range want {
			if got, err := e.get("bkt", k); err != nil || string(got) != v {
				t.Errorf("refused %v: %s reads %q %v, want %q", refuse, k, got, err, v)
			}
		}
		// Nothing is left over either way: Cleanup finds the store and
		// the catalog agree.
		if _, err := e.r.Verify(ctx, VerifyOptions{}, func(f Finding) { t.Errorf("refused %v: verify: %+v", refuse, f) }); err != nil {
			t.Fatal(err)
		}
	}
}
