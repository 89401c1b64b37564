package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
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
	g, adm, inbox := dropBox(t)
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

// TestInboxLearnsNothing: an inbox key cannot tell whether a name in its
// bucket is taken without uploading to it. Every probe that stores
// nothing — a precondition, a wrong Content-MD5, an invalid tag, a
// completion of no upload — answers the same for a taken name and a free
// one, and with the answer that says what was checked (the digest, the
// tag, the upload id), not a blanket refusal; tagging an existing object
// is refused outright. Control: the admin key's If-Match and
// PutObjectTagging tell the two names apart (412 or success, and
// NoSuchKey), so they differ as the test means. The one answer that does
// differ (a plain upload, with tags or without: refused on the taken
// name, stored on the free one) is no-overwrite itself.
func TestInboxLearnsNothing(t *testing.T) {
	_, adm, inbox := dropBox(t)
	ctx := context.Background()
	if _, err := put(t, adm, "drop", "taken", []byte("original"), nil); err != nil {
		t.Fatal(err)
	}
	wrongMD5 := base64.StdEncoding.EncodeToString(make([]byte, 16))
	probes := []struct {
		name, want string
		run        func(c *s3.Client, key string) error
	}{
		{"PUT If-Match", "AccessDenied", func(c *s3.Client, key string) error {
			_, err := put(t, c, "drop", key, []byte("probe"), func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"0"`) })
			return err
		}},
		{"PUT If-None-Match etag", "AccessDenied", func(c *s3.Client, key string) error {
			_, err := put(t, c, "drop", key, []byte("probe"), func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String(`"0"`) })
			return err
		}},
		{"PUT wrong Content-MD5", "BadDigest", func(c *s3.Client, key string) error {
			_, err := put(t, c, "drop", key, []byte("probe"), func(in *s3.PutObjectInput) { in.ContentMD5 = aws.String(wrongMD5) })
			return err
		}},
		{"PUT with an invalid tag", "InvalidTag", func(c *s3.Client, key string) error {
			_, err := put(t, c, "drop", key, []byte("probe"), func(in *s3.PutObjectInput) { in.Tagging = aws.String("aws:probe=1") })
			return err
		}},
		{"PutObjectTagging", "AccessDenied", func(c *s3.Client, key string) error {
			_, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("drop"), Key: aws.String(key),
				Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("probe"), Value: aws.String("1")}}}})
			return err
		}},
		{"DeleteObjectTagging", "AccessDenied", func(c *s3.Client, key string) error {
			_, err := c.DeleteObjectTagging(ctx, &s3.DeleteObjectTaggingInput{Bucket: aws.String("drop"), Key: aws.String(key)})
			return err
		}},
		{"complete no upload", "NoSuchUpload", func(c *s3.Client, key string) error {
			_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("drop"), Key: aws.String(key),
				UploadId: aws.String("bm8tc3VjaC11cGxvYWQ"), MultipartUpload: &types.CompletedMultipartUpload{
					Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: aws.String(`"0"`)}}}})
			return err
		}},
	}
	for _, p := range probes {
		for _, key := range []string{"taken", "free"} {
			if got := errCode(p.run(inbox, key)); got != p.want {
				t.Errorf("inbox %s on the %s name: %q, want %q", p.name, key, got, p.want)
			}
		}
	}
	if a, b := errCode(probes[0].run(adm, "taken")), errCode(probes[0].run(adm, "free")); a != "PreconditionFailed" || b != "NoSuchKey" {
		t.Errorf("control: the admin key's If-Match on the taken and free names: %q, %q", a, b)
	}
	if a, b := errCode(probes[4].run(adm, "taken")), errCode(probes[4].run(adm, "free")); a != "" || b != "NoSuchKey" {
		t.Errorf("control: the admin key's PutObjectTagging on the taken and free names: %q, %q", a, b)
	}
	if _, err := adm.DeleteObjectTagging(ctx, &s3.DeleteObjectTaggingInput{Bucket: aws.String("drop"), Key: aws.String("taken")}); err != nil {
		t.Fatal(err)
	}
	// Nothing the probes sent was stored.
	if got, _, err := get(adm, "drop", "taken", ""); err != nil || string(got) != "original" {
		t.Fatalf("the taken name after the probes: %q %v", got, err)
	}
	if _, _, err := get(adm, "drop", "free", ""); errCode(err) != "NoSuchKey" {
		t.Fatalf("the free name after the probes: %v", err)
	}
	// A multipart upload to a taken name is refused only at completion,
	// like a PUT, and leaves the object as it was; to a free name it
	// completes.
	for _, key := range []string{"taken", "free"} {
		cu, err := inbox.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("drop"), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("inbox create upload of %s: %v", key, err)
		}
		up, err := inbox.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("drop"), Key: aws.String(key), UploadId: cu.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("multipart " + key))})
		if err != nil {
			t.Fatalf("inbox part of %s: %v", key, err)
		}
		_, err = inbox.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("drop"), Key: aws.String(key),
			UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{
				Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: up.ETag}}}})
		want := map[string]string{"taken": "original", "free": "multipart free"}[key]
		if key == "taken" && errCode(err) != "AccessDenied" || key == "free" && err != nil {
			t.Errorf("inbox completion of %s: %v", key, err)
		}
		if got, _, err := get(adm, "drop", key, ""); err != nil || string(got) != want {
			t.Errorf("%s after the inbox multipart upload: %q %v, want %q", key, got, err, want)
		}
	}
	// Tags on its own upload: stored with a new name; the taken name is
	// refused as without tags, and its object and tags stay as they were.
	for _, key := range []string{"taken", "tagged-new"} {
		_, err := put(t, inbox, "drop", key, []byte("with tags"), func(in *s3.PutObjectInput) { in.Tagging = aws.String("from=inbox") })
		if key == "taken" && errCode(err) != "AccessDenied" || key != "taken" && err != nil {
			t.Errorf("inbox put with tags of %s: %v", key, err)
		}
	}
	if got := tagsOf(t, adm, "drop", "tagged-new"); len(got) != 1 || got["from"] != "inbox" {
		t.Errorf("tags of the inbox's new object: %v", got)
	}
	if got := tagsOf(t, adm, "drop", "taken"); len(got) != 0 {
		t.Errorf("tags of the taken name after the inbox's refused put: %v", got)
	}
	// The plain upload: no overwrite, and a new name is stored, also with
	// If-None-Match: *, the one condition an inbox key may send.
	if _, err := put(t, inbox, "drop", "taken", []byte("overwrite"), nil); errCode(err) != "AccessDenied" {
		t.Errorf("inbox overwrite: %v", err)
	}
	if _, err := put(t, inbox, "drop", "new", []byte("new"), func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); err != nil {
		t.Errorf("inbox put of a new name with If-None-Match: *: %v", err)
	}
	if got, _, err := get(adm, "drop", "taken", ""); err != nil || string(got) != "original" {
		t.Errorf("the taken name after the refused overwrite: %q %v", got, err)
	}
}

// dropBox starts a gateway with a bucket "drop" and returns its admin
// client and an inbox key's client.
func dropBox(t *testing.T) (*gw, *s3.Client, *s3.Client) {
	t.Helper()
	g := startGW(t, nil)
	adm := g.admin()
	if _, err := adm.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("drop")}); err != nil {
		t.Fatal(err)
	}
	return g, adm, g.client(g.acc.keys[2].id, g.acc.keys[2].secret, nil)
}
