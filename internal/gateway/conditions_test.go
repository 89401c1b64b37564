package gateway

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// TestConditions: conditional requests answer as HTTP and S3 define them.
//   - If-Unmodified-Since equal to the object's Last-Modified holds (a
//     client sending back the Last-Modified it was given): GET, HEAD and
//     a copy source answer; a second earlier, the control, is 412.
//   - A copy source's failing If-None-Match or If-Modified-Since is 412,
//     not a GET's 304.
//   - CompleteMultipartUpload with an If-Match that does not name the
//     current object is 412 and leaves it; with the right one it
//     completes.
func TestConditions(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("cond")}); err != nil {
		t.Fatal(err)
	}
	data := []byte("conditional")
	if _, err := put(t, c, "cond", "k", data, nil); err != nil {
		t.Fatal(err)
	}
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("cond"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	lm, et := aws.ToTime(h.LastModified), aws.ToString(h.ETag)
	for _, tc := range []struct {
		at   time.Time
		want int
	}{{lm, 200}, {lm.Add(-time.Second), 412}} {
		out, gerr := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("cond"), Key: aws.String("k"), IfUnmodifiedSince: aws.Time(tc.at)})
		if gerr == nil {
			out.Body.Close()
		}
		_, herr := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("cond"), Key: aws.String("k"), IfUnmodifiedSince: aws.Time(tc.at)})
		_, cerr := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("cond"), Key: aws.String("copy"), CopySource: aws.String("cond/k"),
			CopySourceIfUnmodifiedSince: aws.Time(tc.at)})
		for name, err := range map[string]error{"GET": gerr, "HEAD": herr, "copy": cerr} {
			if got := map[bool]int{true: 200, false: httpStatus(err)}[err == nil]; got != tc.want {
				t.Errorf("%s If-Unmodified-Since %v (Last-Modified %v): %d %v, want %d", name, tc.at, lm, got, err, tc.want)
			}
		}
	}
	for name, in := range map[string]*s3.CopyObjectInput{
		"If-None-Match":     {CopySourceIfNoneMatch: aws.String(et)},
		"If-Modified-Since": {CopySourceIfModifiedSince: aws.Time(lm)},
	} {
		in.Bucket, in.Key, in.CopySource = aws.String("cond"), aws.String("copy2"), aws.String("cond/k")
		if _, err := c.CopyObject(ctx, in); httpStatus(err) != 412 {
			t.Errorf("copy source %s failing: %v, want 412", name, err)
		}
	}

	complete := func(ifMatch string) error {
		cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("cond"), Key: aws.String("k")})
		if err != nil {
			return err
		}
		up, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("cond"), Key: aws.String("k"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("multipart"))})
		if err != nil {
			return err
		}
		_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("cond"), Key: aws.String("k"),
			UploadId: cu.UploadId, IfMatch: aws.String(ifMatch),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: up.ETag}}}})
		return err
	}
	if err := complete(`"00000000000000000000000000000000"`); httpStatus(err) != 412 {
		t.Errorf("completion with a wrong If-Match: %v, want 412", err)
	}
	if got, _, err := get(c, "cond", "k", ""); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after the refused completion: %q %v", got, err)
	}
	if err := complete(et); err != nil {
		t.Errorf("control: completion with the right If-Match: %v", err)
	}
	if got, _, err := get(c, "cond", "k", ""); err != nil || string(got) != "multipart" {
		t.Errorf("after the completion: %q %v", got, err)
	}
}

// TestStopWithBodyUnread: a client that got an object and stopped reading
// its body, without closing the connection, does not hold the gateway's
// Stop for ever (it did: the response's writes blocked on the client, the
// front end waited for the response, and the relay for the client). Stop
// returns once the grace for requests in flight (stopGrace) is over.
func TestStopWithBodyUnread(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("held")}); err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, "held", "big", random(t, 32<<20), nil); err != nil { // more than the sockets buffer
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("held"), Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	if _, err := out.Body.Read(make([]byte, 10)); err != nil { // started, then left unread
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- g.srv.Stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop still waiting 30 s after it was called, with a body left unread")
	}
}

// httpStatus is the HTTP status of an S3 client's error, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
