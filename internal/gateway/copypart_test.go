package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/versity/versitygw/auth"
)

// TestUploadPartCopy: parts made from ranges of stored objects (and from
// a whole one) join an upload with an ordinary part, and the completed
// object is byte-exact; each copied part's ETag is the MD5 of its bytes.
// Refused, each beside a control that differs only in the thing tested:
// a range past the source's end, a range without its last byte, a source
// the key may not read, a failing x-amz-copy-source-if-match, an upload
// that does not exist, and a source the provider altered.
func TestUploadPartCopy(t *testing.T) {
	g := startGW(t, nil)
	g.acc.keys = append(g.acc.keys, testKey{id: "COPIERKEY00000000001", secret: "copier-secret-000000000000000000000000001",
		ops: map[string][]Op{"dst1": {OpWrite}, "src1": {OpRead}}, role: auth.RoleUser})
	ctx := context.Background()
	c := g.admin()
	for _, b := range []string{"src1", "src2", "dst1"} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	big, small, plain := random(t, 11<<20+3), random(t, 100<<10), random(t, 5<<20)
	for _, o := range []struct {
		bucket, key string
		data        []byte
	}{{"src1", "big", big}, {"src1", "small", small}, {"src2", "big", big}, {"src1", "damaged", big}} {
		if _, err := put(t, c, o.bucket, o.key, o.data, nil); err != nil {
			t.Fatal(err)
		}
	}
	k := g.acc.keys[len(g.acc.keys)-1]
	copier := g.client(k.id, k.secret, nil)
	cu, err := copier.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("dst1"), Key: aws.String("joined")})
	if err != nil {
		t.Fatal(err)
	}
	copyPart := func(n int32, source, rng string, mod func(*s3.UploadPartCopyInput)) (*s3.UploadPartCopyOutput, error) {
		in := &s3.UploadPartCopyInput{Bucket: aws.String("dst1"), Key: aws.String("joined"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(n), CopySource: aws.String(source)}
		if rng != "" {
			in.CopySourceRange = aws.String(rng)
		}
		if mod != nil {
			mod(in)
		}
		return copier.UploadPartCopy(ctx, in)
	}
	md5hex := func(b []byte) string { s := md5.Sum(b); return `"` + hex.EncodeToString(s[:]) + `"` }

	// Part 1: 5 MiB from the middle of big, across a segment boundary.
	const off = 1<<20 + 5
	p1, err := copyPart(1, "src1/big", "bytes=1048581-6291460", nil)
	if err != nil {
		t.Fatalf("part 1 (a range): %v", err)
	}
	want1 := big[off : off+5<<20]
	if got := aws.ToString(p1.CopyPartResult.ETag); got != md5hex(want1) {
		t.Errorf("part 1's ETag %s, want the MD5 of its bytes %s", got, md5hex(want1))
	}
	// Part 2: an ordinary part.
	p2, err := copier.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("dst1"), Key: aws.String("joined"), UploadId: cu.UploadId,
		PartNumber: aws.Int32(2), Body: bytes.NewReader(plain), ContentLength: aws.Int64(int64(len(plain)))})
	if err != nil {
		t.Fatal(err)
	}
	// Part 3: the whole of small (no range), its ETag a matching condition.
	small0, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("src1"), Key: aws.String("small")})
	if err != nil {
		t.Fatal(err)
	}
	p3, err := copyPart(3, "src1/small", "", func(in *s3.UploadPartCopyInput) { in.CopySourceIfMatch = small0.ETag })
	if err != nil {
		t.Fatalf("part 3 (a whole object, if-match its ETag): %v", err)
	}

	// The refusals, each beside its control (parts 4 to 9 are left out of
	// the completion).
	last := len(big) - 1
	refusals := []struct {
		name, source, rng, code string
		mod                     func(*s3.UploadPartCopyInput)
		uploadID                *string
	}{
		{name: "range past the end", source: "src1/big", rng: "bytes=0-" + strconv.Itoa(last+1), code: "InvalidArgument"},
		{name: "range to the end (control)", source: "src1/big", rng: "bytes=0-" + strconv.Itoa(last)},
		{name: "range without a last byte", source: "src1/big", rng: "bytes=5-", code: "InvalidArgument"},
		{name: "range with a last byte (control)", source: "src1/big", rng: "bytes=5-6"},
		{name: "a source the key may not read", source: "src2/big", rng: "bytes=0-9", code: "AccessDenied"},
		{name: "a source the key may read (control)", source: "src1/big", rng: "bytes=0-9"},
		{name: "if-match another ETag", source: "src1/small", code: "PreconditionFailed",
			mod: func(in *s3.UploadPartCopyInput) { in.CopySourceIfMatch = aws.String(md5hex(big)) }},
		{name: "no such upload", source: "src1/small", code: "NoSuchUpload", uploadID: aws.String("0123456789abcdef0123456789abcdef")},
	}
	for i, r := range refusals {
		mod := r.mod
		if r.uploadID != nil {
			mod = func(in *s3.UploadPartCopyInput) { in.UploadId = r.uploadID }
		}
		_, err := copyPart(int32(4+i), r.source, r.rng, mod)
		if got := errCode(err); got != r.code {
			t.Errorf("%s: error code %q, want %q (%v)", r.name, got, r.code, err)
		}
	}

	// A source altered by the provider is refused; the intact copy of
	// the same bytes (part 1, from src1/big) was the control.
	flipByte(t, g.storePath("src1", "damaged"), 7<<20)
	if _, err := copyPart(20, "src1/damaged", "bytes=1048581-6291460", nil); err != nil {
		t.Errorf("a range before the damage: %v", err)
	}
	if _, err := copyPart(21, "src1/damaged", "bytes=6291461-8388608", nil); errCode(err) != "InternalError" {
		t.Errorf("a range over the damage: %v", err)
	}
	if _, err := copyPart(22, "src1/damaged", "", nil); errCode(err) != "InternalError" {
		t.Errorf("the whole damaged object: %v", err)
	}

	done := []types.CompletedPart{
		{PartNumber: aws.Int32(1), ETag: p1.CopyPartResult.ETag},
		{PartNumber: aws.Int32(2), ETag: p2.ETag},
		{PartNumber: aws.Int32(3), ETag: p3.CopyPartResult.ETag},
	}
	if _, err := copier.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("dst1"), Key: aws.String("joined"),
		UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, want1...), plain...), small...)
	got, out, err := get(c, "dst1", "joined", "")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the completed object: %d bytes (want %d), %v", len(got), len(want), err)
	}
	if !strings.HasSuffix(aws.ToString(out.ETag), `-3"`) {
		t.Errorf("the completed object's ETag %s, want one of 3 parts", aws.ToString(out.ETag))
	}
}

// TestGetObjectTagging: an object stored without tags has an empty tag
// set (beside one stored with tags, which has them); a missing object is
// NoSuchKey; a key that may not read the bucket is refused.
func TestGetObjectTagging(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, "docs", "tagged", []byte("x"), func(in *s3.PutObjectInput) { in.Tagging = aws.String("team=a") }); err != nil {
		t.Fatalf("an upload with tags: %v", err)
	}
	if _, err := put(t, c, "docs", "plain", []byte("x"), nil); err != nil {
		t.Fatalf("the same upload without tags: %v", err)
	}
	k := g.acc.keys[1] // the reader of docs
	reader := g.client(k.id, k.secret, nil)
	out, err := reader.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("plain")})
	if err != nil || out.TagSet == nil || len(out.TagSet) != 0 {
		t.Fatalf("tags of an object stored without: %+v, %v", out, err)
	}
	out, err = reader.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("tagged")})
	if err != nil || len(out.TagSet) != 1 || aws.ToString(out.TagSet[0].Key) != "team" || aws.ToString(out.TagSet[0].Value) != "a" {
		t.Fatalf("tags of an object stored with tags: %+v, %v", out, err)
	}
	if _, err := reader.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("missing")}); errCode(err) != "NoSuchKey" {
		t.Errorf("tags of a missing object: %v", err)
	}
	k = g.acc.keys[2] // the inbox key: may not read
	inbox := g.client(k.id, k.secret, nil)
	if _, err := inbox.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("plain")}); errCode(err) != "AccessDenied" {
		t.Errorf("tags asked by a key that may not read: %v", err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
