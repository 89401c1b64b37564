package gateway

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestCreateOnlyRaces: a write that may not replace — an inbox key's, or
// one sent with If-None-Match: * — is checked with the commit, not only
// before the body is read. Two such uploads of one new key, both past the
// early check, end with exactly one stored and the other refused (inbox:
// AccessDenied; If-None-Match: 412), and the stored bytes are the winner's.
// Control: the same race between two plain admin PUTs: each either
// succeeds or is told to retry (503 SlowDown: a concurrent write committed
// first), at least one succeeds, and what is stored is a successful one.
func TestCreateOnlyRaces(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	adm := g.admin()
	inbox := g.client(g.acc.keys[2].id, g.acc.keys[2].secret, nil)
	if _, err := adm.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("drop")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key   string
		c           *s3.Client
		ifNoneMatch bool
		wantLoser   string
	}{
		{"inbox", "inbox-race", inbox, false, "AccessDenied"},
		{"if-none-match", "inm-race", adm, true, "PreconditionFailed"},
		{"control: plain overwrite", "plain-race", adm, false, "SlowDown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs, bodies := g.raceUploads(t, tc.c, "drop", tc.key, tc.ifNoneMatch)
			got, _, err := get(adm, "drop", tc.key, "")
			if err != nil {
				t.Fatal(err)
			}
			var won []int
			for i, err := range errs {
				switch {
				case err == nil:
					won = append(won, i)
				case !strings.Contains(err.Error(), tc.wantLoser):
					t.Errorf("upload %d: %v, want success or %s", i, err, tc.wantLoser)
				}
			}
			if !tc.ifNoneMatch && tc.c != inbox {
				if len(won) == 0 || !slices.ContainsFunc(won, func(i int) bool { return bytes.Equal(got, bodies[i]) }) {
					t.Errorf("plain race: uploads %v succeeded, the stored %d bytes are none of theirs", won, len(got))
				}
				return
			}
			if len(won) != 1 {
				t.Fatalf("%d of 2 create-only uploads succeeded (errors %v), want exactly 1", len(won), errs)
			}
			if !bytes.Equal(got, bodies[won[0]]) {
				t.Error("the stored object is not the successful upload's")
			}
		})
	}
}

// raceUploads sends two 32 MiB PUTs of bucket/key at once, holding each
// after its first 16 MiB — by then both handlers are reading their bodies,
// past every check made before the body — then lets both finish. It
// returns each upload's error and body.
func (g *gw) raceUploads(t *testing.T, c *s3.Client, bucket, key string, ifNoneMatch bool) ([2]error, [2][]byte) {
	t.Helper()
	const size, half = 32 << 20, 16 << 20
	var bodies [2][]byte
	var writers [2]*io.PipeWriter
	done := make(chan struct {
		i   int
		err error
	}, 2)
	for i := range 2 {
		bodies[i] = random(t, size)
		pr, pw := io.Pipe()
		writers[i] = pw
		go func() {
			err := g.presignedPut(c, bucket, key, pr, size, ifNoneMatch)
			pr.CloseWithError(io.ErrClosedPipe)
			done <- struct {
				i   int
				err error
			}{i, err}
		}()
	}
	for i := range 2 {
		if _, err := writers[i].Write(bodies[i][:half]); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	for i := range 2 {
		go func() {
			_, _ = writers[i].Write(bodies[i][half:])
			writers[i].Close()
		}()
	}
	var errs [2]error
	for range 2 {
		r := <-done
		errs[r.i] = r.err
	}
	return errs, bodies
}
