package gateway

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/minio/minio-go/v7"
)

// urlEncodeName against what S3 answers under encoding-type=url (its API
// reference's example, and listings of real buckets), and every byte
// decoded back by url.QueryUnescape, the decoder minio-go and rclone use.
func TestURLEncodeName(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"test_file(3).png", "test_file%283%29.png"}, // the S3 API reference's example
		{"a b.txt", "a+b.txt"},
		{"a+b.txt", "a%2Bb.txt"},
		{"a+ b.txt", "a%2B+b.txt"},
		{"100%.csv", "100%25.csv"},
		{"한글/x.txt", "%ED%95%9C%EA%B8%80/x.txt"},
		{"run books/x+y%z", "run+books/x%2By%25z"},
		{"ctl\x01\x7f", "ctl%01%7F"},
		{"a-b_c.d*e/f~g", "a-b_c.d*e/f%7Eg"},
		{"", ""},
	} {
		if got := urlEncodeName(c.name); got != c.want {
			t.Errorf("urlEncodeName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	for i := 1; i < 256; i++ {
		s := "k" + string(rune(i)) + "k"
		enc := urlEncodeName(s)
		if dec, err := url.QueryUnescape(enc); err != nil || dec != s {
			t.Errorf("%q encoded %q decodes to %q, %v", s, enc, dec, err)
		}
		if strings.Trim(enc, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.*/%+") != "" {
			t.Errorf("%q encoded %q holds a character that is not URL-safe", s, enc)
		}
	}
}

// listingKeys are names a listing must carry exactly. A client that asks
// for encoding-type=url decodes what it gets, so "+" and " " must not come
// back alike and "%" must not start an escape; a control character, which
// XML 1.0 cannot carry, reaches the client only encoded.
var listingKeys = []string{"100%", "a b", "a+b", "ctl\x01char", "dir one/k 2", "dir one/k+1", "naïve-日本", "x&y"}

func keysOf(objs []types.Object) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, aws.ToString(o.Key))
	}
	return ks
}

func prefixesOf(cps []types.CommonPrefix) []string {
	var ps []string
	for _, p := range cps {
		ps = append(ps, aws.ToString(p.Prefix))
	}
	return ps
}

// encoding-type=url in ListObjectsV2, ListObjects and ListMultipartUploads
// through aws-sdk-go-v2 (which sends what it is given and decodes nothing:
// the encoded names are checked as they came), each beside the same
// listing without it, and minio-go (which asks for url encoding in every
// listing and decodes what the answer says is encoded); any other
// encoding-type is refused.
func TestEncodingType(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("names")}); err != nil {
		t.Fatal(err)
	}
	for _, k := range listingKeys {
		if _, err := put(t, c, "names", k, []byte(k), nil); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	bucket, urlEnc := aws.String("names"), types.EncodingTypeUrl

	// ListObjectsV2: keys and common prefixes encoded; without
	// encoding-type the same listing has them as they are, except the
	// control character, which XML cannot carry.
	lo, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, Delimiter: aws.String("/"), EncodingType: urlEnc})
	if err != nil {
		t.Fatal(err)
	}
	wantDecoded := []string{"100%", "a b", "a+b", "ctl\x01char", "naïve-日本", "x&y"}
	wantKeys := []string{"100%25", "a+b", "a%2Bb", "ctl%01char", "na%C3%AFve-%E6%97%A5%E6%9C%AC", "x%26y"}
	if lo.EncodingType != urlEnc || !slices.Equal(keysOf(lo.Contents), wantKeys) || !slices.Equal(prefixesOf(lo.CommonPrefixes), []string{"dir+one/"}) ||
		aws.ToString(lo.Delimiter) != "/" {
		t.Errorf("url-encoded listing: type %q keys %q prefixes %q delimiter %q", lo.EncodingType, keysOf(lo.Contents),
			prefixesOf(lo.CommonPrefixes), aws.ToString(lo.Delimiter))
	}
	for i, k := range keysOf(lo.Contents) {
		if d, err := url.QueryUnescape(k); err != nil || i >= len(wantDecoded) || d != wantDecoded[i] {
			t.Errorf("listed %q decodes to %q, %v", k, d, err)
		}
	}
	plain, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	wantPlain := []string{"100%", "a b", "a+b", "ctl\uFFFDchar", "naïve-日本", "x&y"}
	if plain.EncodingType != "" || !slices.Equal(keysOf(plain.Contents), wantPlain) || !slices.Equal(prefixesOf(plain.CommonPrefixes), []string{"dir one/"}) {
		t.Errorf("plain listing: type %q keys %q prefixes %q", plain.EncodingType, keysOf(plain.Contents), prefixesOf(plain.CommonPrefixes))
	}

	// Prefix, StartAfter and Delimiter are given back encoded too.
	lo, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, Prefix: aws.String("dir one/"),
		StartAfter: aws.String("dir one/ "), Delimiter: aws.String("+"), EncodingType: urlEnc})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(lo.Prefix) != "dir+one/" || aws.ToString(lo.StartAfter) != "dir+one/+" || aws.ToString(lo.Delimiter) != "%2B" ||
		!slices.Equal(keysOf(lo.Contents), []string{"dir+one/k+2"}) || !slices.Equal(prefixesOf(lo.CommonPrefixes), []string{"dir+one/k%2B"}) {
		t.Errorf("url-encoded listing under a prefix: prefix %q start-after %q delimiter %q keys %q prefixes %q", aws.ToString(lo.Prefix),
			aws.ToString(lo.StartAfter), aws.ToString(lo.Delimiter), keysOf(lo.Contents), prefixesOf(lo.CommonPrefixes))
	}

	// Pages: the continuation token is opaque and passes unencoded; the
	// keys of all pages, decoded, are every key once.
	var paged []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: bucket, MaxKeys: aws.Int32(3), EncodingType: urlEnc})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keysOf(page.Contents) {
			d, err := url.QueryUnescape(k)
			if err != nil {
				t.Fatalf("listed %q: %v", k, err)
			}
			paged = append(paged, d)
		}
	}
	if !slices.Equal(paged, listingKeys) {
		t.Errorf("paged url-encoded listing: %q", paged)
	}

	// ListObjects: Marker and NextMarker too.
	v1, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: bucket, Marker: aws.String("a b"), MaxKeys: aws.Int32(1), EncodingType: urlEnc})
	if err != nil || v1.EncodingType != urlEnc || aws.ToString(v1.Marker) != "a+b" || !slices.Equal(keysOf(v1.Contents), []string{"a%2Bb"}) ||
		aws.ToString(v1.NextMarker) != "a%2Bb" {
		t.Errorf("ListObjects, url-encoded: %v, type %q marker %q keys %q next %q", err, v1.EncodingType, aws.ToString(v1.Marker),
			keysOf(v1.Contents), aws.ToString(v1.NextMarker))
	}
	v1, err = c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: bucket, Marker: aws.String("a b"), MaxKeys: aws.Int32(1)})
	if err != nil || v1.EncodingType != "" || aws.ToString(v1.Marker) != "a b" || !slices.Equal(keysOf(v1.Contents), []string{"a+b"}) ||
		aws.ToString(v1.NextMarker) != "a+b" {
		t.Errorf("ListObjects, plain: %v, type %q marker %q keys %q next %q", err, v1.EncodingType, aws.ToString(v1.Marker),
			keysOf(v1.Contents), aws.ToString(v1.NextMarker))
	}

	// ListMultipartUploads: KeyMarker, keys and NextKeyMarker.
	for _, k := range []string{"a b", "a+b"} {
		if _, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: aws.String(k)}); err != nil {
			t.Fatal(err)
		}
	}
	lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket, KeyMarker: aws.String("a b"), EncodingType: urlEnc})
	if err != nil || lu.EncodingType != urlEnc || aws.ToString(lu.KeyMarker) != "a+b" || len(lu.Uploads) != 1 ||
		aws.ToString(lu.Uploads[0].Key) != "a%2Bb" || aws.ToString(lu.NextKeyMarker) != "a%2Bb" {
		t.Errorf("ListMultipartUploads, url-encoded: %v %+v", err, lu)
	}
	lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket, KeyMarker: aws.String("a b")})
	if err != nil || lu.EncodingType != "" || aws.ToString(lu.KeyMarker) != "a b" || len(lu.Uploads) != 1 ||
		aws.ToString(lu.Uploads[0].Key) != "a+b" {
		t.Errorf("ListMultipartUploads, plain: %v %+v", err, lu)
	}

	// Any other encoding-type is refused, as S3 refuses it.
	bad := types.EncodingType("base64")
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, EncodingType: bad}); errCode(err) != "InvalidArgument" {
		t.Errorf("ListObjectsV2 with encoding-type %q: %v", bad, err)
	}
	if _, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: bucket, EncodingType: bad}); errCode(err) != "InvalidArgument" {
		t.Errorf("ListObjects with encoding-type %q: %v", bad, err)
	}
	if _, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket, EncodingType: bad}); errCode(err) != "InvalidArgument" {
		t.Errorf("ListMultipartUploads with encoding-type %q: %v", bad, err)
	}

	// minio-go asks for encoding-type=url in every listing and decodes the
	// names with url.QueryUnescape when the answer says they are encoded:
	// it gets them back exactly, the control character included, in both
	// listing versions and in the multipart uploads.
	m := g.minioAdmin()
	if got := minioList(t, m, "names", "", true); !slices.Equal(got, listingKeys) {
		t.Errorf("minio-go listing: %q", got)
	}
	if got := minioList(t, m, "names", "dir one/", true); !slices.Equal(got, []string{"dir one/k 2", "dir one/k+1"}) {
		t.Errorf("minio-go listing under a prefix: %q", got)
	}
	var v1keys []string
	for o := range m.ListObjects(ctx, "names", minio.ListObjectsOptions{Recursive: true, UseV1: true}) {
		if o.Err != nil {
			t.Fatalf("minio-go ListObjects v1: %v", o.Err)
		}
		v1keys = append(v1keys, o.Key)
	}
	if !slices.Equal(v1keys, listingKeys) {
		t.Errorf("minio-go ListObjects v1: %q", v1keys)
	}
	var upkeys []string
	for u := range m.ListIncompleteUploads(ctx, "names", "", true) {
		if u.Err != nil {
			t.Fatalf("minio-go incomplete uploads: %v", u.Err)
		}
		upkeys = append(upkeys, u.Key)
	}
	if !slices.Equal(upkeys, []string{"a b", "a+b"}) {
		t.Errorf("minio-go incomplete uploads: %q", upkeys)
	}
}

// uploadEntries names what a ListMultipartUploads page lists: "upload KEY"
// and "prefix PREFIX".
func uploadEntries(out *s3.ListMultipartUploadsOutput) []string {
	var es []string
	for _, u := range out.Uploads {
		es = append(es, "upload "+aws.ToString(u.Key))
	}
	for _, p := range out.CommonPrefixes {
		es = append(es, "prefix "+aws.ToString(p.Prefix))
	}
	return es
}

// ListMultipartUploads folds uploads into common prefixes under a
// delimiter, as ListObjects folds keys, beside the same listings without
// one; paged by one entry or two, every upload and prefix comes once.
func TestListMultipartUploadsDelimiter(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	bucket := aws.String("parts")
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
		t.Fatal(err)
	}
	keys := []string{"other/x", "photos/2026/a", "photos/2026/a", "photos/2026/b", "photos/2027/c", "photos/2028 x/d", "photos/top"}
	for _, k := range keys {
		if _, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: aws.String(k)}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(delim string, maxUploads int32, enc types.EncodingType) (entries []string, pages int) {
		t.Helper()
		in := &s3.ListMultipartUploadsInput{Bucket: bucket, Prefix: aws.String("photos/"), EncodingType: enc}
		if delim != "" {
			in.Delimiter = aws.String(delim)
		}
		if maxUploads > 0 {
			in.MaxUploads = aws.Int32(maxUploads)
		}
		p := s3.NewListMultipartUploadsPaginator(c, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("delimiter %q, max %d: %v", delim, maxUploads, err)
			}
			if aws.ToString(page.Delimiter) != delim || aws.ToString(page.Prefix) != "photos/" {
				t.Errorf("delimiter %q, max %d: page says delimiter %q prefix %q", delim, maxUploads,
					aws.ToString(page.Delimiter), aws.ToString(page.Prefix))
			}
			pages++
			entries = append(entries, uploadEntries(page)...)
		}
		return entries, pages
	}
	folded := []string{"prefix photos/2026/", "prefix photos/2027/", "prefix photos/2028 x/", "upload photos/top"}
	all := []string{"upload photos/2026/a", "upload photos/2026/a", "upload photos/2026/b", "upload photos/2027/c",
		"upload photos/2028 x/d", "upload photos/top"}

	got, pages := list("/", 0, "")
	slices.Sort(got)
	if !slices.Equal(got, folded) || pages != 1 {
		t.Errorf("with a delimiter: %q in %d pages", got, pages)
	}
	if got, pages := list("", 0, ""); !slices.Equal(got, all) || pages != 1 {
		t.Errorf("without a delimiter: %q in %d pages", got, pages)
	}
	for _, max := range []int32{1, 2} {
		got, pages := list("/", max, "")
		if slices.Sort(got); !slices.Equal(got, folded) || pages != (len(folded)+int(max)-1)/int(max) {
			t.Errorf("with a delimiter, %d a page: %q in %d pages", max, got, pages)
		}
		if got, pages := list("", max, ""); !slices.Equal(got, all) || pages != (len(all)+int(max)-1)/int(max) {
			t.Errorf("without a delimiter, %d a page: %q in %d pages", max, got, pages)
		}
	}

	// Under encoding-type=url the common prefixes are encoded too.
	lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket, Prefix: aws.String("photos/2028 x"),
		Delimiter: aws.String("/"), EncodingType: types.EncodingTypeUrl})
	if err != nil || !slices.Equal(uploadEntries(lu), []string{"prefix photos/2028+x/"}) || aws.ToString(lu.Prefix) != "photos/2028+x" {
		t.Errorf("url-encoded, with a delimiter: %v, %q, prefix %q", err, uploadEntries(lu), aws.ToString(lu.Prefix))
	}

	// minio-go lists incomplete uploads with the delimiter "/" unless asked
	// for a recursive listing, and gives the common prefixes as keys.
	minioUploads := func(recursive bool) []string {
		var ks []string
		for u := range g.minioAdmin().ListIncompleteUploads(ctx, "parts", "photos/", recursive) {
			if u.Err != nil {
				t.Fatalf("minio-go incomplete uploads: %v", u.Err)
			}
			ks = append(ks, u.Key)
		}
		slices.Sort(ks)
		return ks
	}
	if got := minioUploads(false); !slices.Equal(got, []string{"photos/2026/", "photos/2027/", "photos/2028 x/", "photos/top"}) {
		t.Errorf("minio-go, not recursive: %q", got)
	}
	if got := minioUploads(true); !slices.Equal(got, []string{"photos/2026/a", "photos/2026/a", "photos/2026/b", "photos/2027/c",
		"photos/2028 x/d", "photos/top"}) {
		t.Errorf("minio-go, recursive: %q", got)
	}
}
