package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestUploadPartCopyBoundaries: a part copied from a range at chunk
// (64 KiB) and segment (4 MiB) boundaries, the last byte, one byte, and
// the whole of an empty and a one-byte object, is byte-exact and its
// ETag is the MD5 of its bytes.
func TestUploadPartCopyBoundaries(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	for _, b := range []string{"src", "dst"} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	const chunk, seg = 64 << 10, 4 << 20
	big := random(t, 2*seg+chunk+17)
	srcs := map[string][]byte{"big": big, "empty": {}, "one": {42}, "chunk": random(t, chunk)}
	for k, v := range srcs {
		if _, err := put(t, c, "src", k, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	last := len(big) - 1
	cases := []struct {
		src      string
		from, to int // -1: no range
	}{
		{"big", 0, 0}, {"big", last, last}, {"big", chunk - 1, chunk}, {"big", chunk, 2*chunk - 1},
		{"big", seg - 1, seg}, {"big", seg - chunk, seg + chunk - 1}, {"big", seg, 2*seg - 1}, {"big", 2 * seg, last},
		{"big", 0, last}, {"big", 1, last - 1}, {"big", -1, -1},
		{"empty", -1, -1}, {"one", -1, -1}, {"one", 0, 0}, {"chunk", -1, -1}, {"chunk", 0, chunk - 1}, {"chunk", chunk - 1, chunk - 1},
	}
	for i, cs := range cases {
		name := fmt.Sprintf("%s[%d-%d]", cs.src, cs.from, cs.to)
		key := fmt.Sprintf("out%d", i)
		want := srcs[cs.src]
		in := &s3.UploadPartCopyInput{Bucket: aws.String("dst"), Key: aws.String(key), PartNumber: aws.Int32(1),
			CopySource: aws.String("src/" + cs.src)}
		if cs.from >= 0 {
			in.CopySourceRange = aws.String(fmt.Sprintf("bytes=%d-%d", cs.from, cs.to))
			want = want[cs.from : cs.to+1]
		}
		cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("dst"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		in.UploadId = cu.UploadId
		p, err := c.UploadPartCopy(ctx, in)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		sum := md5.Sum(want)
		if got := aws.ToString(p.CopyPartResult.ETag); got != `"`+hex.EncodeToString(sum[:])+`"` {
			t.Errorf("%s: ETag %s, want the MD5 of %d bytes", name, got, len(want))
		}
		if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("dst"), Key: aws.String(key),
			UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
				{PartNumber: aws.Int32(1), ETag: p.CopyPartResult.ETag}}}}); err != nil {
			t.Errorf("%s: complete: %v", name, err)
			continue
		}
		if got, _, err := get(c, "dst", key, ""); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: the object: %d bytes (want %d), %v", name, len(got), len(want), err)
		}
	}
}
