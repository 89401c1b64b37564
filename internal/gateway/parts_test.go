package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestPartNumber: a GET or HEAD with partNumber is answered as S3 does.
// For an object completed from a multipart upload, part N's bytes (206,
// Content-Range) and the parts count; a part beyond the last is
// InvalidPartNumber (416). Any other object is one part: partNumber=1 is
// all of it, with no parts count. With a Range too, the request is
// refused. The SDK's transfer manager, which downloads by part by
// default, then gets the object byte-exact. Control: the same GETs
// without partNumber return the whole object.
func TestPartNumber(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("parts")}); err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{random(t, 5<<20), random(t, 5<<20), random(t, 123457)}
	var whole []byte
	for _, p := range parts {
		whole = append(whole, p...)
	}
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	for i, p := range parts {
		n := int32(i + 1)
		o, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("parts"), Key: aws.String("mp"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(p), ContentLength: aws.Int64(int64(len(p)))})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(n), ETag: o.ETag})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("mp"),
		UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	single := random(t, 300000)
	if _, err := put(t, c, "parts", "single", single, nil); err != nil {
		t.Fatal(err)
	}

	getPart := func(key string, pn int32) ([]byte, *s3.GetObjectOutput, error) {
		in := &s3.GetObjectInput{Bucket: aws.String("parts"), Key: aws.String(key)}
		if pn > 0 {
			in.PartNumber = aws.Int32(pn)
		}
		out, err := c.GetObject(ctx, in)
		if err != nil {
			return nil, nil, err
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		return b, out, err
	}
	headPart := func(key string, pn int32) (*s3.HeadObjectOutput, error) {
		return c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("parts"), Key: aws.String(key), PartNumber: aws.Int32(pn)})
	}

	// Control: no partNumber, the whole object, no parts count.
	if b, out, err := getPart("mp", 0); err != nil || !bytes.Equal(b, whole) || out.PartsCount != nil || out.ContentRange != nil {
		t.Fatalf("control: whole GET: %d bytes %v, parts count %v, range %v", len(b), err, out.PartsCount, out.ContentRange)
	}
	off := 0
	for i, p := range parts {
		pn := int32(i + 1)
		b, out, err := getPart("mp", pn)
		wantRange := fmt.Sprintf("bytes %d-%d/%d", off, off+len(p)-1, len(whole))
		if err != nil || !bytes.Equal(b, p) || aws.ToInt32(out.PartsCount) != 3 || aws.ToString(out.ContentRange) != wantRange {
			t.Errorf("GET part %d: %d bytes (want %d, equal %v) %v, parts count %v, range %q (want %q)",
				pn, len(b), len(p), bytes.Equal(b, p), err, out.PartsCount, aws.ToString(out.ContentRange), wantRange)
		}
		h, err := headPart("mp", pn)
		if err != nil || aws.ToInt64(h.ContentLength) != int64(len(p)) || aws.ToInt32(h.PartsCount) != 3 || aws.ToString(h.ContentRange) != wantRange {
			t.Errorf("HEAD part %d: %v %+v", pn, err, h)
		}
		off += len(p)
	}
	if _, _, err := getPart("mp", 4); errCode(err) != "InvalidPartNumber" {
		t.Errorf("GET part 4 of 3: %v", err)
	}
	if _, err := headPart("mp", 4); httpStatus(err) != 416 {
		t.Errorf("HEAD part 4 of 3: %v", err)
	}
	// Not multipart: one part.
	if b, out, err := getPart("single", 1); err != nil || !bytes.Equal(b, single) || out.PartsCount != nil {
		t.Errorf("GET part 1 of a single PUT: %d bytes %v, parts count %v", len(b), err, out.PartsCount)
	}
	if _, _, err := getPart("single", 2); errCode(err) != "InvalidPartNumber" {
		t.Errorf("GET part 2 of a single PUT: %v", err)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("parts"), Key: aws.String("mp"), PartNumber: aws.Int32(1),
		Range: aws.String("bytes=0-9")}); errCode(err) != "InvalidRequest" {
		t.Errorf("GET with partNumber and Range: %v", err)
	}

	// A real client that downloads by part (the transfer manager's default).
	tm := transfermanager.New(c, func(o *transfermanager.Options) { o.GetObjectType = tmtypes.GetObjectParts })
	for key, want := range map[string][]byte{"mp": whole, "single": single} {
		f, err := os.CreateTemp(t.TempDir(), "dl")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.DownloadObject(ctx, &transfermanager.DownloadObjectInput{Bucket: aws.String("parts"), Key: aws.String(key), WriterAt: f}); err != nil {
			t.Fatalf("transfer manager download of %s: %v", key, err)
		}
		got, err := os.ReadFile(f.Name())
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("transfer manager download of %s: %d bytes, want %d (equal %v)", key, len(got), len(want), bytes.Equal(got, want))
		}
	}
}
