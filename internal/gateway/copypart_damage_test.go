package gateway

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestUploadPartCopyDamageAnywhere: a bit flipped anywhere in the
// stored source (header, chunks, padding, manifest, footer) makes a whole
// UploadPartCopy fail and leaves no part; the intact source copies
// (control). (A range, like a ranged GET, checks only what it covers.)
func TestUploadPartCopyDamageAnywhere(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	for _, b := range []string{"src", "dst"} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := put(t, c, "src", "obj", random(t, 100000), nil); err != nil {
		t.Fatal(err)
	}
	path := g.storePath("src", "obj")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("dst"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	part := int32(0)
	copyPart := func(rng string) error {
		part++
		in := &s3.UploadPartCopyInput{Bucket: aws.String("dst"), Key: aws.String("k"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(part), CopySource: aws.String("src/obj")}
		if rng != "" {
			in.CopySourceRange = aws.String(rng)
		}
		_, err := c.UploadPartCopy(ctx, in)
		return err
	}
	if err := copyPart(""); err != nil {
		t.Fatalf("control: intact source: %v", err)
	}
	good := part
	step := len(orig) / 97
	for off := 0; off < len(orig); off += step {
		for _, last := range []bool{false, true} {
			off := off
			if last {
				off = len(orig) - 1 - off/step
			}
			b := append([]byte(nil), orig...)
			b[off] ^= 0x80
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := copyPart(""); err == nil {
				t.Errorf("a flipped byte at %d of %d: UploadPartCopy of the whole source succeeded", off, len(orig))
			}
		}
	}
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("dst"), Key: aws.String("k"), UploadId: cu.UploadId})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Parts) != 1 || aws.ToInt32(ps.Parts[0].PartNumber) != good {
		t.Errorf("parts after the damaged copies: %d", len(ps.Parts))
	}
}
