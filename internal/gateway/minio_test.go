package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// minio-go, a second real SDK besides aws-sdk-go-v2, through the gateway
// over TLS: buckets, small and multipart puts read back byte-exact, stat,
// listing, copy, presigned GET, a low-level multipart upload with parts out
// of order and one re-sent with other bytes, and removal.

func (g *gw) minio(id, secret string) *minio.Client {
	g.t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}
	c, err := minio.New(strings.TrimPrefix(g.url, "https://"), &minio.Options{
		Creds: credentials.NewStaticV4(id, secret, ""), Secure: true, Transport: tr,
		Region: "us-east-1", BucketLookup: minio.BucketLookupPath,
		MaxRetries: 1, // each request once: what the gateway answers, not what a retry gets
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}

func (g *gw) minioAdmin() *minio.Client {
	k := g.acc.keys[0]
	return g.minio(k.id, k.secret)
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func minioCode(err error) string {
	if err == nil {
		return ""
	}
	if c := minio.ToErrorResponse(err).Code; c != "" {
		return c
	}
	return "non-API error: " + err.Error()
}

func minioGet(t *testing.T, c *minio.Client, bucket, key string, opts minio.GetObjectOptions) []byte {
	t.Helper()
	o, err := c.GetObject(context.Background(), bucket, key, opts)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	return b
}

// minioList returns the keys (and common prefixes, ending in "/") listed
// under prefix.
func minioList(t *testing.T, c *minio.Client, bucket, prefix string, recursive bool) []string {
	t.Helper()
	var keys []string
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive}) {
		if o.Err != nil {
			t.Fatalf("list %s prefix %q: %v", bucket, prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

func TestMinioRoundTrips(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.minioAdmin()

	// Buckets: one that does not exist beside one just made.
	if err := c.MakeBucket(ctx, "minio", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	if ok, err := c.BucketExists(ctx, "minio"); !ok || err != nil {
		t.Fatalf("bucket exists: %v %v", ok, err)
	}
	if ok, err := c.BucketExists(ctx, "no-such-bucket"); ok || err != nil {
		t.Fatalf("missing bucket exists: %v %v", ok, err)
	}
	bs, err := c.ListBuckets(ctx)
	if err != nil || len(bs) != 1 || bs[0].Name != "minio" {
		t.Fatalf("list buckets: %v %+v", err, bs)
	}

	// A small object with a content type and user metadata; the ETag is
	// the MD5 of what was sent.
	small := []byte("a small object, sent by minio-go\n")
	ui, err := c.PutObject(ctx, "minio", "docs/small.txt", bytes.NewReader(small), int64(len(small)), minio.PutObjectOptions{
		ContentType: "text/x-minio", UserMetadata: map[string]string{"origin": "minio-go"}})
	if err != nil {
		t.Fatalf("put small: %v", err)
	}
	if ui.ETag != md5hex(small) || ui.Size != int64(len(small)) {
		t.Errorf("put small: etag %q size %d, want %q %d", ui.ETag, ui.Size, md5hex(small), len(small))
	}
	if got := minioGet(t, c, "minio", "docs/small.txt", minio.GetObjectOptions{}); !bytes.Equal(got, small) {
		t.Fatalf("get small: %q", got)
	}
	var rng minio.GetObjectOptions
	if err := rng.SetRange(2, 6); err != nil {
		t.Fatal(err)
	}
	if got := minioGet(t, c, "minio", "docs/small.txt", rng); !bytes.Equal(got, small[2:7]) {
		t.Errorf("get range 2-6: %q, want %q", got, small[2:7])
	}
	st, err := c.StatObject(ctx, "minio", "docs/small.txt", minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat small: %v", err)
	}
	if st.ETag != md5hex(small) || st.Size != int64(len(small)) || st.ContentType != "text/x-minio" || st.UserMetadata["Origin"] != "minio-go" {
		t.Errorf("stat small: etag %q size %d type %q meta %v", st.ETag, st.Size, st.ContentType, st.UserMetadata)
	}
	if time.Since(st.LastModified) > time.Hour || st.LastModified.After(time.Now().Add(time.Minute)) {
		t.Errorf("stat small: last modified %v", st.LastModified)
	}
	if _, err := c.StatObject(ctx, "minio", "docs/absent.txt", minio.StatObjectOptions{}); minioCode(err) != "NoSuchKey" {
		t.Errorf("stat of a missing key: %v", err)
	}

	// Above the part size minio-go uploads in parts, several at once.
	big := random(t, 12<<20+12345)
	ui, err = c.PutObject(ctx, "minio", "docs/sub/big.bin", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{
		PartSize: 5 << 20, NumThreads: 3, ContentType: "application/x-big"})
	if err != nil {
		t.Fatalf("put big: %v", err)
	}
	if got := minioGet(t, c, "minio", "docs/sub/big.bin", minio.GetObjectOptions{}); !bytes.Equal(got, big) {
		t.Fatalf("get big: %d bytes, not what was sent", len(got))
	}
	st, err = c.StatObject(ctx, "minio", "docs/sub/big.bin", minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat big: %v", err)
	}
	if !strings.HasSuffix(st.ETag, "-3") || st.ETag != ui.ETag || st.Size != int64(len(big)) || st.ContentType != "application/x-big" {
		t.Errorf("stat big: etag %q (put said %q) size %d type %q", st.ETag, ui.ETag, st.Size, st.ContentType)
	}

	// Copy: a new object with the same bytes.
	if _, err := c.CopyObject(ctx, minio.CopyDestOptions{Bucket: "minio", Object: "copies/small.txt"},
		minio.CopySrcOptions{Bucket: "minio", Object: "docs/small.txt"}); err != nil {
		t.Fatalf("copy: %v", err)
	}
	if got := minioGet(t, c, "minio", "copies/small.txt", minio.GetObjectOptions{}); !bytes.Equal(got, small) {
		t.Errorf("get copy: %q", got)
	}

	// Listing: with a prefix, one level and recursive.
	if got, want := minioList(t, c, "minio", "docs/", false), []string{"docs/small.txt", "docs/sub/"}; !slices.Equal(got, want) {
		t.Errorf("list docs/: %q, want %q", got, want)
	}
	if got, want := minioList(t, c, "minio", "docs/", true), []string{"docs/small.txt", "docs/sub/big.bin"}; !slices.Equal(got, want) {
		t.Errorf("list docs/ recursive: %q, want %q", got, want)
	}
	if got, want := minioList(t, c, "minio", "", true), []string{"copies/small.txt", "docs/small.txt", "docs/sub/big.bin"}; !slices.Equal(got, want) {
		t.Errorf("list all: %q, want %q", got, want)
	}
	if got := minioList(t, c, "minio", "nothing/", true); len(got) != 0 {
		t.Errorf("list nothing/: %q", got)
	}

	// A presigned GET works with a plain HTTP client; the same URL with
	// its signature changed is refused.
	u, err := c.PresignedGetObject(ctx, "minio", "docs/small.txt", 5*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}}
	fetch := func(url string) (int, []byte) {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("presigned get: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("presigned get: %v", err)
		}
		return resp.StatusCode, b
	}
	if code, b := fetch(u.String()); code != http.StatusOK || !bytes.Equal(b, small) {
		t.Errorf("presigned get: %d %q", code, b)
	}
	q := u.Query()
	sig := []byte(q.Get("X-Amz-Signature"))
	if sig[0] == '0' {
		sig[0] = '1'
	} else {
		sig[0] = '0'
	}
	q.Set("X-Amz-Signature", string(sig))
	u.RawQuery = q.Encode()
	if code, b := fetch(u.String()); code != http.StatusForbidden || !bytes.Contains(b, []byte("SignatureDoesNotMatch")) {
		t.Errorf("tampered presigned get: %d %q", code, b)
	}

	// A wrong secret is refused and changes nothing; the right one (above
	// and below) works.
	bad := g.minio(g.acc.keys[0].id, "not-the-secret-0000000000000000000000000")
	if _, err := bad.PutObject(ctx, "minio", "docs/small.txt", strings.NewReader("overwritten"), 11, minio.PutObjectOptions{}); minioCode(err) != "SignatureDoesNotMatch" {
		t.Errorf("put with a wrong secret: %v", err)
	}
	if got := minioGet(t, c, "minio", "docs/small.txt", minio.GetObjectOptions{}); !bytes.Equal(got, small) {
		t.Errorf("after the refused put: %q", got)
	}

	// Removal, one and several; then the bucket.
	if err := c.RemoveObject(ctx, "minio", "copies/small.txt", minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := c.StatObject(ctx, "minio", "copies/small.txt", minio.StatObjectOptions{}); minioCode(err) != "NoSuchKey" {
		t.Errorf("stat after remove: %v", err)
	}
	if err := c.RemoveBucket(ctx, "minio"); minioCode(err) != "BucketNotEmpty" {
		t.Errorf("remove a bucket that is not empty: %v", err)
	}
	objs := make(chan minio.ObjectInfo, 2)
	objs <- minio.ObjectInfo{Key: "docs/small.txt"}
	objs <- minio.ObjectInfo{Key: "docs/sub/big.bin"}
	close(objs)
	for e := range c.RemoveObjects(ctx, "minio", objs, minio.RemoveObjectsOptions{}) {
		t.Errorf("remove objects: %s: %v", e.ObjectName, e.Err)
	}
	if got := minioList(t, c, "minio", "", true); len(got) != 0 {
		t.Errorf("list after removal: %q", got)
	}
	if err := c.RemoveBucket(ctx, "minio"); err != nil {
		t.Fatalf("remove bucket: %v", err)
	}
	if ok, err := c.BucketExists(ctx, "minio"); ok || err != nil {
		t.Errorf("removed bucket exists: %v %v", ok, err)
	}
}

// The low-level multipart API: parts sent out of order, part 1 sent twice
// with different bytes (the second counts), completion with the replaced
// part's ETag refused beside the right one, abort.
func TestMinioCoreMultipart(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := minio.Core{Client: g.minioAdmin()}
	if err := c.MakeBucket(ctx, "parts", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	id, err := c.NewMultipartUpload(ctx, "parts", "movie.bin", minio.PutObjectOptions{
		ContentType: "video/x-minio", UserMetadata: map[string]string{"take": "3"}})
	if err != nil {
		t.Fatalf("new multipart upload: %v", err)
	}
	p1a, p1b, p2, p3 := random(t, 5<<20), random(t, 5<<20), random(t, 5<<20), random(t, 777777)
	up := func(n int, b []byte) minio.ObjectPart {
		t.Helper()
		p, err := c.PutObjectPart(ctx, "parts", "movie.bin", id, n, bytes.NewReader(b), int64(len(b)), minio.PutObjectPartOptions{})
		if err != nil {
			t.Fatalf("part %d: %v", n, err)
		}
		if p.ETag != md5hex(b) {
			t.Errorf("part %d: etag %q, want the MD5 %q", n, p.ETag, md5hex(b))
		}
		return p
	}
	e3 := up(3, p3)
	up(1, p1a)
	e2 := up(2, p2)
	e1 := up(1, p1b) // re-sent with other bytes: this one counts

	// ListParts answers ETags in quotes, as S3 does; minio-go passes them
	// on as they are.
	lp, err := c.ListObjectParts(ctx, "parts", "movie.bin", id, 0, 0)
	if err != nil {
		t.Fatalf("list parts: %v", err)
	}
	if len(lp.ObjectParts) != 3 || lp.ObjectParts[0].PartNumber != 1 || strings.Trim(lp.ObjectParts[0].ETag, `"`) != e1.ETag ||
		lp.ObjectParts[2].Size != int64(len(p3)) {
		t.Fatalf("list parts: %+v", lp.ObjectParts)
	}
	lu, err := c.ListMultipartUploads(ctx, "parts", "", "", "", "", 0)
	if err != nil || len(lu.Uploads) != 1 || lu.Uploads[0].UploadID != id || lu.Uploads[0].Key != "movie.bin" {
		t.Fatalf("list uploads: %v %+v", err, lu.Uploads)
	}

	complete := func(etag1 string) (minio.UploadInfo, error) {
		return c.CompleteMultipartUpload(ctx, "parts", "movie.bin", id, []minio.CompletePart{
			{PartNumber: 1, ETag: etag1}, {PartNumber: 2, ETag: e2.ETag}, {PartNumber: 3, ETag: e3.ETag}}, minio.PutObjectOptions{})
	}
	if _, err := complete(md5hex(p1a)); minioCode(err) != "InvalidPart" {
		t.Fatalf("completion with the replaced part's ETag: %v", err)
	}
	if _, err := c.StatObject(ctx, "parts", "movie.bin", minio.StatObjectOptions{}); minioCode(err) != "NoSuchKey" {
		t.Fatalf("after the refused completion: %v", err)
	}
	ui, err := complete(e1.ETag)
	if err != nil {
		t.Fatalf("completion: %v", err)
	}
	want := bytes.Join([][]byte{p1b, p2, p3}, nil)
	if got := minioGet(t, c.Client, "parts", "movie.bin", minio.GetObjectOptions{}); !bytes.Equal(got, want) {
		t.Fatalf("get after completion: %d bytes, not what was sent", len(got))
	}
	var rng minio.GetObjectOptions
	if err := rng.SetRange(5<<20-10, 10<<20+9); err != nil {
		t.Fatal(err)
	}
	if got := minioGet(t, c.Client, "parts", "movie.bin", rng); !bytes.Equal(got, want[5<<20-10:10<<20+10]) {
		t.Errorf("range across two part boundaries: %d bytes, not what was sent", len(got))
	}
	st, err := c.StatObject(ctx, "parts", "movie.bin", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag != ui.ETag || !strings.HasSuffix(st.ETag, "-3") || st.Size != int64(len(want)) ||
		st.ContentType != "video/x-minio" || st.UserMetadata["Take"] != "3" {
		t.Errorf("completed object: etag %q (complete said %q) size %d type %q meta %v", st.ETag, ui.ETag, st.Size, st.ContentType, st.UserMetadata)
	}
	if lu, err := c.ListMultipartUploads(ctx, "parts", "", "", "", "", 0); err != nil || len(lu.Uploads) != 0 {
		t.Errorf("uploads after completion: %v %+v", err, lu.Uploads)
	}

	// Abort: the upload is gone and its parts are refused; the object
	// under that key is unchanged.
	id2, err := c.NewMultipartUpload(ctx, "parts", "movie.bin", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	up2 := func() error {
		_, err := c.PutObjectPart(ctx, "parts", "movie.bin", id2, 1, strings.NewReader("x"), 1, minio.PutObjectPartOptions{})
		return err
	}
	if err := up2(); err != nil {
		t.Fatalf("part before abort: %v", err)
	}
	if err := c.AbortMultipartUpload(ctx, "parts", "movie.bin", id2); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if err := up2(); minioCode(err) != "NoSuchUpload" {
		t.Errorf("part for an aborted upload: %v", err)
	}
	if got := minioGet(t, c.Client, "parts", "movie.bin", minio.GetObjectOptions{}); !bytes.Equal(got, want) {
		t.Errorf("object after the aborted upload: %d bytes, not what was completed", len(got))
	}
}
