package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestGetObjectAttributes: an object's ETag (unquoted, as S3 gives it
// here), size, storage class and the checksum it was stored with; for an object completed from a multipart
// upload, its parts and their sizes, paged by max-parts and
// part-number-marker. A missing object is NoSuchKey, and a key that may
// not read is refused beside the reader, which may.
func TestGetObjectAttributes(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	sizes := []int{5 << 20, 5 << 20, 123457}
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("docs"), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	for i, n := range sizes {
		o, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("docs"), Key: aws.String("mp"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(random(t, n)), ContentLength: aws.Int64(int64(n))})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: o.ETag})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("docs"), Key: aws.String("mp"),
		UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	single := random(t, 4096)
	if _, err := put(t, c, "docs", "single", single, func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32 }); err != nil {
		t.Fatal(err)
	}
	all := []types.ObjectAttributes{types.ObjectAttributesEtag, types.ObjectAttributesObjectSize,
		types.ObjectAttributesObjectParts, types.ObjectAttributesStorageClass}
	k := g.acc.keys[1] // may read docs
	reader := g.client(k.id, k.secret, nil)
	attrs := func(cl *s3.Client, key string, mod func(*s3.GetObjectAttributesInput)) (*s3.GetObjectAttributesOutput, error) {
		in := &s3.GetObjectAttributesInput{Bucket: aws.String("docs"), Key: aws.String(key), ObjectAttributes: all}
		if mod != nil {
			mod(in)
		}
		return cl.GetObjectAttributes(ctx, in)
	}

	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("docs"), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	out, err := attrs(reader, "mp", nil)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(sizes[0] + sizes[1] + sizes[2])
	if aws.ToString(out.ETag) != strings.Trim(aws.ToString(head.ETag), `"`) || aws.ToInt64(out.ObjectSize) != total || out.StorageClass != types.StorageClassStandard {
		t.Errorf("multipart object: etag %s (head %s), size %d, class %s", aws.ToString(out.ETag), aws.ToString(head.ETag), aws.ToInt64(out.ObjectSize), out.StorageClass)
	}
	partSizes := func(o *s3.GetObjectAttributesOutput) []int {
		var s []int
		if o.ObjectParts != nil {
			for _, p := range o.ObjectParts.Parts {
				s = append(s, int(aws.ToInt64(p.Size)))
			}
		}
		return s
	}
	if got := partSizes(out); len(got) != 3 || got[0] != sizes[0] || got[2] != sizes[2] || aws.ToBool(out.ObjectParts.IsTruncated) {
		t.Errorf("multipart object's parts: %v, truncated %v", got, out.ObjectParts != nil && aws.ToBool(out.ObjectParts.IsTruncated))
	}
	page1, err := attrs(reader, "mp", func(in *s3.GetObjectAttributesInput) { in.MaxParts = aws.Int32(2) })
	if err != nil || len(partSizes(page1)) != 2 || !aws.ToBool(page1.ObjectParts.IsTruncated) || aws.ToString(page1.ObjectParts.NextPartNumberMarker) != "2" {
		t.Fatalf("first page of two parts: %+v, %v", page1.ObjectParts, err)
	}
	page2, err := attrs(reader, "mp", func(in *s3.GetObjectAttributesInput) {
		in.MaxParts, in.PartNumberMarker = aws.Int32(2), page1.ObjectParts.NextPartNumberMarker
	})
	if got := partSizes(page2); err != nil || len(got) != 1 || got[0] != sizes[2] || aws.ToBool(page2.ObjectParts.IsTruncated) ||
		aws.ToInt32(page2.ObjectParts.Parts[0].PartNumber) != 3 {
		t.Fatalf("second page: %v, %v", got, err)
	}

	out, err = attrs(reader, "single", func(in *s3.GetObjectAttributesInput) {
		in.ObjectAttributes = append(in.ObjectAttributes, types.ObjectAttributesChecksum)
	})
	sum := md5.Sum(single)
	if err != nil || aws.ToString(out.ETag) != hex.EncodeToString(sum[:]) || aws.ToInt64(out.ObjectSize) != int64(len(single)) || len(partSizes(out)) != 0 {
		t.Errorf("single object: %+v, %v", out, err)
	}
	// The CRC32 the SDK sent with the upload is kept.
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], crc32.ChecksumIEEE(single))
	if out.Checksum == nil || aws.ToString(out.Checksum.ChecksumCRC32) != base64.StdEncoding.EncodeToString(crc[:]) {
		t.Errorf("single object's checksum: %+v", out.Checksum)
	}
	if _, err := attrs(reader, "missing", nil); errCode(err) != "NoSuchKey" {
		t.Errorf("missing object: %v", err)
	}
	k = g.acc.keys[2] // the inbox key
	if _, err := attrs(g.client(k.id, k.secret, nil), "single", nil); errCode(err) != "AccessDenied" {
		t.Errorf("a key that may not read: %v", err)
	}
}
