package gateway

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// tagsOf returns bucket/key's tags as GetObjectTagging answers them.
func tagsOf(t *testing.T, c *s3.Client, bucket, key string) map[string]string {
	t.Helper()
	out, err := c.GetObjectTagging(context.Background(), &s3.GetObjectTaggingInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("get tagging of %s/%s: %v", bucket, key, err)
	}
	m := map[string]string{}
	for _, tg := range out.TagSet {
		m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return m
}

func tagSet(m map[string]string) *types.Tagging {
	tg := &types.Tagging{TagSet: []types.Tag{}}
	for k, v := range m {
		tg.TagSet = append(tg.TagSet, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return tg
}

// header is m in x-amz-tagging's form.
func header(m map[string]string) string {
	q := url.Values{}
	for k, v := range m {
		q.Set(k, v)
	}
	return q.Encode()
}

// TestObjectTagging: tags set with an upload (PutObject, a multipart
// upload) are answered by GetObjectTagging and counted in GET and HEAD
// (x-amz-tagging-count); PutObjectTagging replaces them and
// DeleteObjectTagging removes them, leaving the object's bytes, ETag,
// Last-Modified, checksum and parts as they were. A copy keeps its
// source's tags, or takes the request's with the REPLACE directive. A key
// that may only read gets the tags and may not change them (control: the
// admin may).
func TestObjectTagging(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	data := random(t, 300000)
	first := map[string]string{"project": "holdfast", "stage": "dev one", "path": "a/b=c+d@e:f"}
	if _, err := put(t, c, "docs", "obj", data, func(in *s3.PutObjectInput) {
		in.Tagging = aws.String(header(first))
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
	}); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(t, c, "docs", "obj"); !maps.Equal(got, first) {
		t.Errorf("tags after put: %v, want %v", got, first)
	}
	head := func() *s3.HeadObjectOutput {
		t.Helper()
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("docs"), Key: aws.String("obj"), ChecksumMode: types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := head()
	if aws.ToInt32(before.TagCount) != 3 {
		t.Errorf("HEAD tag count %v, want 3", before.TagCount)
	}
	if got, out, err := get(c, "docs", "obj", ""); err != nil || !bytes.Equal(got, data) || aws.ToInt32(out.TagCount) != 3 {
		t.Errorf("GET: %d bytes, tag count %v, %v", len(got), out.TagCount, err)
	}

	// Replace: the object is the same but for its tags.
	second := map[string]string{"only": "this"}
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("obj"), Tagging: tagSet(second)}); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(t, c, "docs", "obj"); !maps.Equal(got, second) {
		t.Errorf("tags after PutObjectTagging: %v, want %v", got, second)
	}
	after := head()
	if aws.ToString(after.ETag) != aws.ToString(before.ETag) || !after.LastModified.Equal(*before.LastModified) ||
		aws.ToString(after.ChecksumCRC32C) == "" || aws.ToString(after.ChecksumCRC32C) != aws.ToString(before.ChecksumCRC32C) ||
		aws.ToInt32(after.TagCount) != 1 {
		t.Errorf("after PutObjectTagging: etag %s→%s, modified %v→%v, crc32c %q→%q, tag count %v", aws.ToString(before.ETag), aws.ToString(after.ETag),
			before.LastModified, after.LastModified, aws.ToString(before.ChecksumCRC32C), aws.ToString(after.ChecksumCRC32C), after.TagCount)
	}
	if got, _, err := get(c, "docs", "obj", ""); err != nil || !bytes.Equal(got, data) {
		t.Errorf("GET after PutObjectTagging: %d bytes, %v", len(got), err)
	}
	// The version "null" is the object's one version; any other is refused.
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("obj"),
		VersionId: aws.String("null"), Tagging: tagSet(second)}); err != nil {
		t.Errorf("PutObjectTagging of version null: %v", err)
	}
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("obj"),
		VersionId: aws.String("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"), Tagging: tagSet(first)}); errCode(err) != "InvalidArgument" {
		t.Errorf("PutObjectTagging of another version: %v", err)
	}
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("missing"),
		Tagging: tagSet(second)}); errCode(err) != "NoSuchKey" {
		t.Errorf("PutObjectTagging of a missing key: %v", err)
	}

	// A reader reads tags and may not change them; the admin may.
	rk := g.acc.keys[1]
	reader := g.client(rk.id, rk.secret, nil)
	if got := tagsOf(t, reader, "docs", "obj"); !maps.Equal(got, second) {
		t.Errorf("the reader's tags: %v", got)
	}
	for _, cl := range []struct {
		name string
		c    *s3.Client
		want string
	}{{"reader", reader, "AccessDenied"}, {"admin", c, ""}} {
		_, err := cl.c.DeleteObjectTagging(ctx, &s3.DeleteObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("obj")})
		if errCode(err) != cl.want {
			t.Errorf("%s: DeleteObjectTagging: %v", cl.name, err)
		}
	}
	if got := tagsOf(t, c, "docs", "obj"); len(got) != 0 {
		t.Errorf("tags after DeleteObjectTagging: %v", got)
	}
	if h := head(); h.TagCount != nil || aws.ToString(h.ETag) != aws.ToString(before.ETag) {
		t.Errorf("HEAD after DeleteObjectTagging: tag count %v, etag %s", h.TagCount, aws.ToString(h.ETag))
	}

	// Copies: COPY (the default) keeps the source's tags; REPLACE takes
	// the request's, none included.
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("obj"), Tagging: tagSet(first)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key       string
		directive types.TaggingDirective
		tagging   *string
		want      map[string]string
	}{
		{"copy-default", "", aws.String("ignored=1"), first},
		{"copy-copy", types.TaggingDirectiveCopy, nil, first},
		{"copy-replace", types.TaggingDirectiveReplace, aws.String("new=tag"), map[string]string{"new": "tag"}},
		{"copy-replace-none", types.TaggingDirectiveReplace, nil, map[string]string{}},
	} {
		if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("docs"), Key: aws.String(tc.key), CopySource: aws.String("docs/obj"),
			TaggingDirective: tc.directive, Tagging: tc.tagging}); err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if got := tagsOf(t, c, "docs", tc.key); !maps.Equal(got, tc.want) {
			t.Errorf("%s: tags %v, want %v", tc.key, got, tc.want)
		}
	}

	// A multipart upload's tags are the completed object's; retagging it
	// keeps its parts.
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("docs"), Key: aws.String("mp"), Tagging: aws.String("kind=multipart")})
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := random(t, 5<<20), random(t, 1000)
	var done []types.CompletedPart
	for i, p := range [][]byte{p1, p2} {
		o, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("docs"), Key: aws.String("mp"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: o.ETag})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("docs"), Key: aws.String("mp"),
		UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(t, c, "docs", "mp"); !maps.Equal(got, map[string]string{"kind": "multipart"}) {
		t.Errorf("multipart object's tags: %v", got)
	}
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("mp"), Tagging: tagSet(second)}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("docs"), Key: aws.String("mp"), PartNumber: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(out.Body)
	out.Body.Close()
	if !bytes.Equal(b.Bytes(), p2) || aws.ToInt32(out.PartsCount) != 2 {
		t.Errorf("part 2 after retagging: %d bytes, parts count %v", b.Len(), out.PartsCount)
	}
}

// TestTagLimits: S3's limits on an object's tags, for a PutObjectTagging
// body (checked by the front end and the backend) and for x-amz-tagging
// on an upload (the backend), each beside a control that differs only in
// the thing tested and is accepted. A refused upload stores nothing.
func TestTagLimits(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	if _, err := put(t, c, "docs", "obj", []byte("tagged"), nil); err != nil {
		t.Fatal(err)
	}
	n := func(k int) map[string]string {
		m := map[string]string{}
		for i := range k {
			m[fmt.Sprintf("k%d", i)] = "v"
		}
		return m
	}
	long := func(k int) map[string]string { // k tags of the longest key and value
		m := map[string]string{}
		for i := range k {
			m[fmt.Sprintf("%03d", i)+strings.Repeat("k", 125)] = strings.Repeat("v", 256)
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		bad, good map[string]string
		xml, hdr  string // the error codes for the body and the header
	}{
		{"count", n(11), n(10), "BadRequest", "BadRequest"},
		{"key length", map[string]string{strings.Repeat("é", 129): "v"}, map[string]string{strings.Repeat("é", 64): "v"}, "InvalidTag", "InvalidTag"},
		{"key length ascii", map[string]string{strings.Repeat("k", 129): "v"}, map[string]string{strings.Repeat("k", 128): "v"}, "InvalidTag", "InvalidTag"},
		{"value length", map[string]string{"k": strings.Repeat("v", 257)}, map[string]string{"k": strings.Repeat("v", 256)}, "InvalidTag", "InvalidTag"},
		{"aws: prefix", map[string]string{"aws:owner": "me"}, map[string]string{"awsowner": "me"}, "InvalidTag", "InvalidTag"},
		{"AWS: prefix", map[string]string{"AWS:owner": "me"}, map[string]string{"owner:AWS": "me"}, "InvalidTag", "InvalidTag"},
		{"character", map[string]string{"k": "a#b"}, map[string]string{"k": "a-b"}, "InvalidTag", "InvalidTag"},
		{"empty key", map[string]string{"": "v"}, map[string]string{"k": "v"}, "InvalidTag", "InvalidArgument"},
		{"too large for the manifest", long(6), long(4), "MetadataTooLarge", "MetadataTooLarge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, set := range []struct {
				tags map[string]string
				xml  string
				hdr  string
			}{{tc.bad, tc.xml, tc.hdr}, {tc.good, "", ""}} {
				_, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("obj"), Tagging: tagSet(set.tags)})
				if errCode(err) != set.xml {
					t.Errorf("PutObjectTagging of %d tags: %v, want %q", len(set.tags), err, set.xml)
				}
				key := "hdr-" + strings.ReplaceAll(tc.name, " ", "-") + fmt.Sprint(len(set.xml))
				_, err = put(t, c, "docs", key, []byte("x"), func(in *s3.PutObjectInput) { in.Tagging = aws.String(header(set.tags)) })
				if errCode(err) != set.hdr {
					t.Errorf("PutObject with x-amz-tagging of %d tags: %v, want %q", len(set.tags), err, set.hdr)
				}
				_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("docs"), Key: aws.String(key)})
				if stored := err == nil; stored != (set.hdr == "") {
					t.Errorf("PutObject refused %q: stored %v", set.hdr, stored)
				}
			}
		})
	}
	// Duplicate keys: the body says InvalidTag, the header InvalidArgument.
	dup := &types.Tagging{TagSet: []types.Tag{{Key: aws.String("k"), Value: aws.String("1")}, {Key: aws.String("k"), Value: aws.String("2")}}}
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("docs"), Key: aws.String("obj"), Tagging: dup}); errCode(err) != "InvalidTag" {
		t.Errorf("PutObjectTagging with a key twice: %v", err)
	}
	for hdr, want := range map[string]string{"k=1&k=2": "InvalidArgument", "k=1&j=2": "", "=v": "InvalidArgument", "%zz=v": "InvalidArgument"} {
		if _, err := put(t, c, "docs", "dup", []byte("x"), func(in *s3.PutObjectInput) { in.Tagging = aws.String(hdr) }); errCode(err) != want {
			t.Errorf("PutObject with x-amz-tagging %q: %v, want %q", hdr, err, want)
		}
	}
	// S3's header form: a name alone is a tag with an empty value, and
	// empty pieces count for nothing.
	if _, err := put(t, c, "docs", "bare", []byte("x"), func(in *s3.PutObjectInput) { in.Tagging = aws.String("key&&other=") }); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(t, c, "docs", "bare"); !maps.Equal(got, map[string]string{"key": "", "other": ""}) {
		t.Errorf("tags of %q: %v", "key&&other=", got)
	}
}
