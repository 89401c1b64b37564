package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestChecksumKept: an object stored with a checksum (computed by the SDK
// and sent in a trailer, or given in a header) is returned with it by a
// whole-object GET or HEAD in checksum mode, and by its copy; the SDK
// checks the body against it. None is returned for a range, without
// checksum mode, or for an object stored without one (multipart objects:
// TestMultipartChecksums).
func TestChecksumKept(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("sums")}); err != nil {
		t.Fatal(err)
	}
	data := random(t, 300000)
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	wantCRC := base64.StdEncoding.EncodeToString(crc[:])
	sha := sha256.Sum256(data)
	wantSHA := base64.StdEncoding.EncodeToString(sha[:])

	if _, err := put(t, c, "sums", "crc", data, func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c }); err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, "sums", "sha", data, func(in *s3.PutObjectInput) { in.ChecksumSHA256 = aws.String(wantSHA) }); err != nil {
		t.Fatal(err)
	}
	none := func(o *s3.Options) { o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired }
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("sums"), Key: aws.String("none"), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data)))}, none); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("sums"), Key: aws.String("crc-copy"), CopySource: aws.String("sums/crc")}); err != nil {
		t.Fatal(err)
	}

	getSum := func(key, rng string, mode bool) (crc32c, sha256 string) {
		t.Helper()
		in := &s3.GetObjectInput{Bucket: aws.String("sums"), Key: aws.String(key)}
		if rng != "" {
			in.Range = aws.String(rng)
		}
		if mode {
			in.ChecksumMode = types.ChecksumModeEnabled
		}
		out, err := c.GetObject(ctx, in, func(o *s3.Options) {
			if !mode {
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		})
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		defer out.Body.Close()
		got, err := io.ReadAll(out.Body) // the SDK checks the checksum here
		if err != nil || (rng == "" && !bytes.Equal(got, data)) {
			t.Fatalf("get %s: %d bytes, %v", key, len(got), err)
		}
		return aws.ToString(out.ChecksumCRC32C), aws.ToString(out.ChecksumSHA256)
	}
	for _, tc := range []struct {
		key, rng         string
		mode             bool
		wantCRC, wantSHA string
	}{
		{"crc", "", true, wantCRC, ""},
		{"sha", "", true, "", wantSHA},
		{"crc-copy", "", true, wantCRC, ""},
		{"crc", "bytes=0-99", true, "", ""},
		{"crc", "", false, "", ""},
		{"none", "", true, "", ""},
	} {
		gotCRC, gotSHA := getSum(tc.key, tc.rng, tc.mode)
		if gotCRC != tc.wantCRC || gotSHA != tc.wantSHA {
			t.Errorf("get %s range %q mode %v: crc32c %q sha256 %q, want %q %q", tc.key, tc.rng, tc.mode, gotCRC, gotSHA, tc.wantCRC, tc.wantSHA)
		}
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("sums"), Key: aws.String("crc"), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || aws.ToString(head.ChecksumCRC32C) != wantCRC || head.ChecksumType != types.ChecksumTypeFullObject {
		t.Errorf("head in checksum mode: %q %q, %v", aws.ToString(head.ChecksumCRC32C), head.ChecksumType, err)
	}
	head, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("sums"), Key: aws.String("crc")})
	if err != nil || head.ChecksumCRC32C != nil {
		t.Errorf("head without checksum mode: %q, %v", aws.ToString(head.ChecksumCRC32C), err)
	}
}
