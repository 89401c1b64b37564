package gateway

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestListObjectVersions: a bucket lists as S3 lists one that never had
// versioning: every object one version, "null", the latest, with the
// ETag and size ListObjectsV2 gives; a delimiter folds keys into common
// prefixes; paging one entry at a time by key-marker and
// version-id-marker sees each entry once. A version-id marker that was
// never listed, or one without a key marker, is InvalidArgument beside
// "null", which pages; a key that may not list is refused beside the
// reader, which may.
func TestListObjectVersions(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b/1", "b/2", "c"} {
		if _, err := put(t, c, "docs", k, []byte("contents of "+k), nil); err != nil {
			t.Fatal(err)
		}
	}
	k := g.acc.keys[1] // may read and list docs
	reader := g.client(k.id, k.secret, nil)
	lv := func(mod func(*s3.ListObjectVersionsInput)) (*s3.ListObjectVersionsOutput, error) {
		in := &s3.ListObjectVersionsInput{Bucket: aws.String("docs")}
		if mod != nil {
			mod(in)
		}
		return reader.ListObjectVersions(ctx, in)
	}
	objs, err := reader.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("docs")})
	if err != nil {
		t.Fatal(err)
	}
	out, err := lv(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Versions) != len(objs.Contents) || len(out.DeleteMarkers) != 0 || aws.ToBool(out.IsTruncated) {
		t.Fatalf("versions %d (objects %d), delete markers %d", len(out.Versions), len(objs.Contents), len(out.DeleteMarkers))
	}
	for i, v := range out.Versions {
		o := objs.Contents[i]
		if aws.ToString(v.Key) != aws.ToString(o.Key) || aws.ToString(v.VersionId) != "null" || !aws.ToBool(v.IsLatest) ||
			aws.ToString(v.ETag) != aws.ToString(o.ETag) || aws.ToInt64(v.Size) != aws.ToInt64(o.Size) {
			t.Errorf("version %d: %s %s latest %v etag %s size %d; object %s etag %s size %d", i, aws.ToString(v.Key),
				aws.ToString(v.VersionId), aws.ToBool(v.IsLatest), aws.ToString(v.ETag), aws.ToInt64(v.Size),
				aws.ToString(o.Key), aws.ToString(o.ETag), aws.ToInt64(o.Size))
		}
	}
	folded, err := lv(func(in *s3.ListObjectVersionsInput) { in.Delimiter = aws.String("/") })
	if err != nil || len(folded.Versions) != 2 || len(folded.CommonPrefixes) != 1 || aws.ToString(folded.CommonPrefixes[0].Prefix) != "b/" {
		t.Errorf("with a delimiter: %d versions, %d prefixes, %v", len(folded.Versions), len(folded.CommonPrefixes), err)
	}

	// One entry a page, with the delimiter: a, b/, c.
	var seen []string
	var km, vm *string
	for range 10 {
		page, err := lv(func(in *s3.ListObjectVersionsInput) {
			in.Delimiter, in.MaxKeys, in.KeyMarker, in.VersionIdMarker = aws.String("/"), aws.Int32(1), km, vm
		})
		if err != nil {
			t.Fatalf("page after %v: %v", seen, err)
		}
		for _, v := range page.Versions {
			seen = append(seen, aws.ToString(v.Key))
		}
		for _, p := range page.CommonPrefixes {
			seen = append(seen, aws.ToString(p.Prefix))
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		km, vm = page.NextKeyMarker, page.NextVersionIdMarker
	}
	if want := []string{"a", "b/", "c"}; len(seen) != len(want) || seen[0] != want[0] || seen[1] != want[1] || seen[2] != want[2] {
		t.Errorf("paged one at a time: %v, want %v", seen, want)
	}

	for _, m := range []struct {
		name, key, version, code string
	}{
		{"a version id never listed", "a", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd", "InvalidArgument"},
		{"a version-id marker without a key marker", "", "null", "InvalidArgument"},
		{"the null version (control)", "a", "null", ""},
	} {
		_, err := lv(func(in *s3.ListObjectVersionsInput) {
			if m.key != "" {
				in.KeyMarker = aws.String(m.key)
			}
			in.VersionIdMarker = aws.String(m.version)
		})
		if got := errCode(err); got != m.code {
			t.Errorf("%s: %q, want %q (%v)", m.name, got, m.code, err)
		}
	}
	k = g.acc.keys[2] // the inbox key: may not list
	if _, err := g.client(k.id, k.secret, nil).ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String("docs")}); errCode(err) != "AccessDenied" {
		t.Errorf("a key that may not list: %v", err)
	}
}

// TestVersionIDs: every object's one version is "null". A GET, HEAD,
// DELETE, DeleteObjects entry, copy source or part copy source naming
// another version is InvalidArgument and leaves the object as it was —
// never carried out on the current object — beside the same request
// naming "null" (or no version), which is.
func TestVersionIDs(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, err := put(t, c, "docs", k, []byte("contents of "+k), nil); err != nil {
			t.Fatal(err)
		}
	}
	const other = "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"
	for _, v := range []string{other, "null"} {
		want := ""
		if v == other {
			want = "InvalidArgument"
		}
		_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("docs"), Key: aws.String("a"), VersionId: aws.String(v)})
		if errCode(err) != want {
			t.Errorf("GET version %s: %v", v, err)
		}
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("docs"), Key: aws.String("a"), VersionId: aws.String(v)})
		if want == "" && err != nil || want != "" && err == nil {
			t.Errorf("HEAD version %s: %v", v, err)
		}
		_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("docs"), Key: aws.String("copy-" + v),
			CopySource: aws.String("docs/a?versionId=" + v)})
		if errCode(err) != want {
			t.Errorf("copy of version %s: %v", v, err)
		}
	}
	// DELETE: another version leaves b; "null" deletes it.
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("docs"), Key: aws.String("b"), VersionId: aws.String(other)}); errCode(err) != "InvalidArgument" {
		t.Errorf("DELETE of another version: %v", err)
	}
	if _, _, err := get(c, "docs", "b", ""); err != nil {
		t.Fatalf("b after a refused DELETE of another version: %v", err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("docs"), Key: aws.String("b"), VersionId: aws.String("null")}); err != nil {
		t.Errorf("DELETE of the null version: %v", err)
	}
	if _, _, err := get(c, "docs", "b", ""); errCode(err) != "NoSuchKey" {
		t.Errorf("b after a DELETE of its null version: %v", err)
	}
	// DeleteObjects: the entry naming another version fails alone.
	if _, err := put(t, c, "docs", "d", []byte("contents of d"), nil); err != nil {
		t.Fatal(err)
	}
	out, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("docs"), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
		{Key: aws.String("a"), VersionId: aws.String(other)}, {Key: aws.String("c")}, {Key: aws.String("d"), VersionId: aws.String("null")}}}})
	var deleted []string
	for _, d := range out.Deleted {
		deleted = append(deleted, aws.ToString(d.Key)+"@"+aws.ToString(d.VersionId))
	}
	if err != nil || len(out.Errors) != 1 || aws.ToString(out.Errors[0].Key) != "a" || aws.ToString(out.Errors[0].Code) != "InvalidArgument" ||
		len(deleted) != 2 || deleted[0] != "c@" || deleted[1] != "d@null" {
		t.Errorf("DeleteObjects: deleted %v, errors %d, %v", deleted, len(out.Errors), err)
	}
	if _, _, err := get(c, "docs", "d", ""); errCode(err) != "NoSuchKey" {
		t.Errorf("d after DeleteObjects named its null version: %v", err)
	}
	if _, _, err := get(c, "docs", "a", ""); err != nil {
		t.Errorf("a after a refused delete of another version: %v", err)
	}
}
