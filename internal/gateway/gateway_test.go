package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/big"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/versity/versitygw/auth"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
)

// The front end allows one gateway per process: these tests run one at a
// time, each with its own repository, server and clients.

func TestMain(m *testing.M) {
	restore := keyring.SetInsecureTestParamsForTesting()
	code := m.Run()
	restore()
	os.Exit(code)
}

// testKey is an access key of the static table the tests use in place of
// package access.
type testKey struct {
	id, secret string
	ops        map[string][]Op // bucket ("*": all) → allowed
	inbox      bool
	role       auth.Role
}

type testAccess struct{ keys []testKey }

func (a *testAccess) find(id string) (testKey, bool) {
	for _, k := range a.keys {
		if k.id == id {
			return k, true
		}
	}
	return testKey{}, false
}

func (a *testAccess) Allowed(id, bucket string, op Op) bool {
	k, ok := a.find(id)
	if !ok {
		return false
	}
	for _, b := range []string{bucket, "*"} {
		for _, o := range k.ops[b] {
			if o == op {
				return true
			}
		}
	}
	return false
}

func (a *testAccess) Visible(id, bucket string) bool {
	k, ok := a.find(id)
	return ok && !k.inbox && (a.Allowed(id, bucket, OpRead) || a.Allowed(id, bucket, OpList) || a.Allowed(id, bucket, OpAdmin))
}

func (a *testAccess) Suspended(string) bool { return false }

func (a *testAccess) MayOverwrite(id, bucket string) bool {
	k, ok := a.find(id)
	return ok && !k.inbox && a.Allowed(id, bucket, OpWrite)
}

var opActions = map[Op][]string{
	OpRead: {"s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectAttributes", "s3:GetObjectVersion", "s3:GetObjectVersionAttributes", "s3:GetObjectVersionTagging"},
	OpWrite: {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObjectTagging",
		"s3:PutObjectVersionTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"},
	OpList:   {"s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:ListBucketVersions"},
	OpDelete: {"s3:DeleteObject", "s3:DeleteObjectVersion"},
	OpAdmin:  {"s3:DeleteBucket"},
}

func (a *testAccess) BucketPolicy(bucket, key string) ([]byte, error) {
	var st []string
	for _, k := range a.keys {
		if k.id != key {
			continue
		}
		var acts []string
		for _, op := range all {
			if a.Allowed(k.id, bucket, op) {
				acts = append(acts, opActions[op]...)
			}
		}
		if len(acts) > 0 {
			st = append(st, `{"Effect":"Allow","Principal":{"AWS":["`+k.id+`"]},"Action":["`+strings.Join(acts, `","`)+
				`"],"Resource":["arn:aws:s3:::`+bucket+`","arn:aws:s3:::`+bucket+`/*"]}`)
		}
	}
	return []byte(`{"Version":"2012-10-17","Statement":[` + strings.Join(st, ",") + `]}`), nil
}

// The IAM side of the static table (package access has the real one).
func (a *testAccess) CreateAccount(auth.Account) error { return errors.New("read-only") }
func (a *testAccess) GetUserAccount(id string) (auth.Account, error) {
	k, ok := a.find(id)
	if !ok {
		return auth.Account{}, auth.ErrNoSuchUser
	}
	return auth.Account{Access: k.id, Secret: k.secret, Role: k.role}, nil
}
func (a *testAccess) ResolveAccounts(ids []string) ([]string, error) {
	var missing []string
	for _, id := range ids {
		if _, ok := a.find(id); !ok {
			missing = append(missing, id)
		}
	}
	return missing, nil
}
func (a *testAccess) UpdateUserAccount(string, auth.MutableProps) error {
	return errors.New("read-only")
}
func (a *testAccess) DeleteUserAccount(string) error            { return errors.New("read-only") }
func (a *testAccess) ListUserAccounts() ([]auth.Account, error) { return nil, nil }
func (a *testAccess) Shutdown() error                           { return nil }

var all = []Op{OpRead, OpWrite, OpList, OpDelete, OpAdmin}

func defaultKeys() []testKey {
	return []testKey{
		{id: "ADMINKEY000000000001", secret: "admin-secret-0000000000000000000000000001", ops: map[string][]Op{"*": all}, role: auth.RoleUserPlus},
		{id: "READERKEY00000000001", secret: "reader-secret-000000000000000000000000001", ops: map[string][]Op{"docs": {OpRead, OpList}}, role: auth.RoleUser},
		{id: "INBOXKEY000000000001", secret: "inbox-secret-0000000000000000000000000001", ops: map[string][]Op{"drop": {OpWrite}}, inbox: true, role: auth.RoleUser},
	}
}

type gw struct {
	t     *testing.T
	r     *repo.Repo
	store string
	srv   *Server
	url   string
	pool  *x509.CertPool
	acc   *testAccess
}

func startGW(t *testing.T, mod func(*Options)) *gw {
	t.Helper()
	return startGWWith(t, mod, nil)
}

func startGWWith(t *testing.T, mod func(*Options), ev Events) *gw {
	t.Helper()
	d := t.TempDir()
	ctx := context.Background()
	g := &gw{t: t, store: filepath.Join(d, "store"), acc: &testAccess{keys: defaultKeys()}}
	r, err := repo.Init(ctx, repo.InitOptions{Home: filepath.Join(d, "home"), StorePath: g.store,
		Passphrase: []byte("gateway test"), KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	g.r = r
	t.Cleanup(func() { r.Close() })
	cert, leaf, created, err := LoadOrCreateCert(filepath.Join(d, "tls"), nil)
	if err != nil || !created {
		t.Fatalf("certificate: created %v, %v", created, err)
	}
	g.pool = x509.NewCertPool()
	g.pool.AddCert(leaf)
	opts := Options{Addr: "127.0.0.1:0", Certificate: cert, IAM: g.acc}
	if mod != nil {
		mod(&opts)
	}
	srv, err := Start(ctx, NewBackend(r, g.acc, ev), opts)
	if err != nil {
		t.Fatal(err)
	}
	g.srv = srv
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping the gateway: %v", err)
		}
	})
	scheme := "https://"
	if opts.PlainHTTP {
		scheme = "http://"
	}
	g.url = scheme + srv.Addr().String()
	return g
}

func (g *gw) client(id, secret string, tlsCfg *tls.Config) *s3.Client {
	if tlsCfg == nil {
		tlsCfg = &tls.Config{RootCAs: g.pool}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(g.url), Region: "us-east-1", UsePathStyle: true, HTTPClient: hc,
		RetryMaxAttempts: 1, // each request once: what the gateway answers, not what a retry gets
		Credentials:      credentials.NewStaticCredentialsProvider(id, secret, ""),
	})
}

// storePath is where the local store keeps the current object of
// bucket/key, for tests that play the provider.
func (g *gw) storePath(bucket, key string) string {
	g.t.Helper()
	e, err := g.r.Stat(context.Background(), bucket, key)
	if err != nil {
		g.t.Fatal(err)
	}
	name := format.StoreName(e.ObjectID)
	return filepath.Join(g.store, name[:2], name)
}

func (g *gw) admin() *s3.Client {
	k := g.acc.keys[0]
	return g.client(k.id, k.secret, nil)
}

func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return "non-API error: " + err.Error()
	}
	return ""
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, c *s3.Client, bucket, key string, data []byte, mod func(*s3.PutObjectInput)) (*s3.PutObjectOutput, error) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))}
	if mod != nil {
		mod(in)
	}
	return c.PutObject(context.Background(), in)
}

func get(c *s3.Client, bucket, key, rng string) ([]byte, *s3.GetObjectOutput, error) {
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	if rng != "" {
		in.Range = &rng
	}
	out, err := c.GetObject(context.Background(), in)
	if err != nil {
		return nil, nil, err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return b, out, err
}

func TestObjectRoundTrips(t *testing.T) {
	g := startGW(t, nil)
	c := g.admin()
	ctx := context.Background()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("docs")}); errCode(err) != "BucketAlreadyOwnedByYou" {
		t.Fatalf("second create: %v", err)
	}
	for _, n := range []int{0, 1, 65535, 65536, 65537, 9 << 20} {
		data := random(t, n)
		key := "sizes/" + strings.Repeat("x", n%7) + hex.EncodeToString(data[:min(n, 4)])
		out, err := put(t, c, "docs", key, data, func(in *s3.PutObjectInput) {
			in.ContentType = aws.String("text/plain")
			in.Metadata = map[string]string{"colour": "blue"}
			in.CacheControl = aws.String("max-age=60")
		})
		if err != nil {
			t.Fatalf("put %d bytes: %v", n, err)
		}
		sum := md5.Sum(data)
		if want := `"` + hex.EncodeToString(sum[:]) + `"`; aws.ToString(out.ETag) != want {
			t.Errorf("ETag %s, want the MD5 %s", aws.ToString(out.ETag), want)
		}
		got, gout, err := get(c, "docs", key, "")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get %d bytes: %d bytes, %v", n, len(got), err)
		}
		if aws.ToString(gout.ContentType) != "text/plain" || gout.Metadata["colour"] != "blue" ||
			aws.ToString(gout.CacheControl) != "max-age=60" || aws.ToString(gout.ETag) != aws.ToString(out.ETag) {
			t.Errorf("get headers: type %q meta %v cache %q etag %q", aws.ToString(gout.ContentType), gout.Metadata,
				aws.ToString(gout.CacheControl), aws.ToString(gout.ETag))
		}
		if n > 100 {
			got, rout, err := get(c, "docs", key, "bytes=10-99")
			if err != nil || !bytes.Equal(got, data[10:100]) {
				t.Fatalf("range of %d bytes: %d bytes, %v", n, len(got), err)
			}
			if cr := aws.ToString(rout.ContentRange); !strings.HasPrefix(cr, "bytes 10-99/") {
				t.Errorf("Content-Range %q", cr)
			}
		}
	}
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("docs"), Key: aws.String("sizes/x")})
	if errCode(err) != "NotFound" {
		t.Errorf("head of a missing key: %v (%+v)", err, h)
	}
	if _, _, err := get(c, "docs", "no/such/key", ""); errCode(err) != "NoSuchKey" {
		t.Errorf("get of a missing key: %v", err)
	}

	// Listings: prefix, delimiter, pagination.
	for _, k := range []string{"a/1", "a/2", "a/b/3", "b/4", "c"} {
		if _, err := put(t, c, "docs", "tree/"+k, []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	lo, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("docs"), Prefix: aws.String("tree/"), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	var keys, prefixes []string
	for _, o := range lo.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	for _, p := range lo.CommonPrefixes {
		prefixes = append(prefixes, aws.ToString(p.Prefix))
	}
	if strings.Join(keys, ",") != "tree/c" || strings.Join(prefixes, ",") != "tree/a/,tree/b/" {
		t.Errorf("delimited listing: keys %v prefixes %v", keys, prefixes)
	}
	var paged []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String("docs"), Prefix: aws.String("tree/"), MaxKeys: aws.Int32(2)})
	pages := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range page.Contents {
			paged = append(paged, strings.TrimPrefix(aws.ToString(o.Key), "tree/"))
		}
	}
	if strings.Join(paged, ",") != "a/1,a/2,a/b/3,b/4,c" || pages != 3 {
		t.Errorf("paged listing in %d pages: %v", pages, paged)
	}
	v1, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("docs"), Prefix: aws.String("tree/a/"), Marker: aws.String("tree/a/1")})
	if err != nil || len(v1.Contents) != 2 || aws.ToString(v1.Contents[0].Key) != "tree/a/2" {
		t.Errorf("ListObjects v1 after a marker: %v %+v", err, v1)
	}

	// Copy is a re-encryption; the copy reads back the same.
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("docs"), Key: aws.String("copy"), CopySource: aws.String("docs/tree/c")}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := get(c, "docs", "copy", ""); err != nil || string(got) != "c" {
		t.Errorf("copy reads %q, %v", got, err)
	}

	// A bucket with objects cannot be deleted; emptied, it can.
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("docs")}); errCode(err) != "BucketNotEmpty" {
		t.Fatalf("delete of a full bucket: %v", err)
	}
	all, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("docs")})
	if err != nil {
		t.Fatal(err)
	}
	var ids []types.ObjectIdentifier
	for _, o := range all.Contents {
		ids = append(ids, types.ObjectIdentifier{Key: o.Key})
	}
	dout, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("docs"), Delete: &types.Delete{Objects: ids}})
	if err != nil || len(dout.Deleted) != len(ids) || len(dout.Errors) != 0 {
		t.Fatalf("delete objects: %v, %d deleted, errors %v", err, len(dout.Deleted), dout.Errors)
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("docs")}); err != nil {
		t.Fatalf("delete of the emptied bucket: %v", err)
	}
}

// What each key may do, each refusal beside the same request by a key
// that may.
func TestAccessControl(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	adm := g.admin()
	reader := g.client(g.acc.keys[1].id, g.acc.keys[1].secret, nil)
	inbox := g.client(g.acc.keys[2].id, g.acc.keys[2].secret, nil)
	for _, b := range []string{"docs", "drop", "other"} {
		if _, err := adm.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reader.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("mine")}); errCode(err) != "AccessDenied" {
		t.Errorf("reader creates a bucket: %v", err)
	}
	if _, err := put(t, adm, "docs", "a", []byte("hello"), nil); err != nil {
		t.Fatal(err)
	}
	// Reader: reads and lists docs; cannot write it or see other buckets.
	if got, _, err := get(reader, "docs", "a", ""); err != nil || string(got) != "hello" {
		t.Errorf("reader get: %q %v", got, err)
	}
	if _, err := reader.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("docs")}); err != nil {
		t.Errorf("reader list: %v", err)
	}
	if _, err := put(t, reader, "docs", "b", []byte("x"), nil); errCode(err) != "AccessDenied" {
		t.Errorf("reader put: %v", err)
	}
	if _, err := reader.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("docs"), Key: aws.String("a")}); errCode(err) != "AccessDenied" {
		t.Errorf("reader delete: %v", err)
	}
	if _, _, err := get(reader, "other", "a", ""); errCode(err) != "AccessDenied" {
		t.Errorf("reader get in another bucket: %v", err)
	}
	if _, _, err := get(reader, "nosuchbucket", "a", ""); errCode(err) != "AccessDenied" {
		t.Errorf("reader get in a missing bucket (existence must not leak): %v", err)
	}
	lb, err := reader.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(lb.Buckets) != 1 || aws.ToString(lb.Buckets[0].Name) != "docs" {
		t.Errorf("reader sees buckets %+v, %v; want only docs", lb, err)
	}
	// Inbox: puts new objects into drop; no overwrite, get or list.
	if _, err := put(t, inbox, "drop", "report", []byte("v1"), nil); err != nil {
		t.Fatalf("inbox put: %v", err)
	}
	if _, err := put(t, inbox, "drop", "report", []byte("v2"), nil); errCode(err) != "AccessDenied" {
		t.Errorf("inbox overwrite: %v", err)
	}
	if _, err := put(t, adm, "drop", "report", []byte("v2"), nil); err != nil {
		t.Errorf("admin overwrite (control): %v", err)
	}
	if _, _, err := get(inbox, "drop", "report", ""); errCode(err) != "AccessDenied" {
		t.Errorf("inbox get: %v", err)
	}
	if _, err := inbox.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("drop"), Key: aws.String("report")}); err == nil {
		t.Errorf("inbox head allowed")
	}
	if _, err := inbox.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("drop")}); errCode(err) != "AccessDenied" {
		t.Errorf("inbox list: %v", err)
	}
	if got, _, err := get(adm, "drop", "report", ""); err != nil || string(got) != "v2" {
		t.Errorf("admin get (control): %q %v", got, err)
	}
	// A wrong secret and an unknown key are refused; anonymous too.
	if _, _, err := get(g.client(g.acc.keys[1].id, "wrong-secret-00000000000000000000000000000", nil), "docs", "a", ""); errCode(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v", err)
	}
	if _, _, err := get(g.client("NOSUCHKEY00000000001", "x", nil), "docs", "a", ""); errCode(err) != "InvalidAccessKeyId" {
		t.Errorf("unknown key: %v", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}}
	for _, path := range []string{"/docs/a", "/nosuchbucket/a", "/docs", "/"} {
		resp, err := hc.Get(g.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("hello")) {
			t.Errorf("anonymous GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
}

// A tampered object is refused before a byte of it is released; what the
// provider stores holds no name, metadata, tag or plaintext.
func TestTamperAndWhatTheProviderSees(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("secretbucket")}); err != nil {
		t.Fatal(err)
	}
	secretText := bytes.Repeat([]byte("PLAINTEXT-MARKER "), 600<<10) // 10.2 MiB: three segments
	for _, k := range []string{"tampered-head", "tampered-first", "tampered-later", "intact"} {
		if _, err := put(t, c, "secretbucket", "confidential/"+k, secretText, func(in *s3.PutObjectInput) {
			in.Metadata = map[string]string{"project": "METADATA-MARKER"}
			in.ContentType = aws.String("application/x-marker-type")
			in.Tagging = aws.String("TAGKEY-MARKER=TAGVALUE-MARKER")
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Tags changed afterwards (the object is sealed again) are as hidden.
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("secretbucket"), Key: aws.String("confidential/intact"),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("RETAG-MARKER"), Value: aws.String("RETAGVALUE-MARKER")}}}}); err != nil {
		t.Fatal(err)
	}
	// (They are stored: the grep below is not vacuous.)
	if got := tagsOf(t, c, "secretbucket", "confidential/intact"); got["RETAG-MARKER"] != "RETAGVALUE-MARKER" {
		t.Fatalf("tags of the retagged object: %v", got)
	}
	if got := tagsOf(t, c, "secretbucket", "confidential/tampered-later"); got["TAGKEY-MARKER"] != "TAGVALUE-MARKER" {
		t.Fatalf("tags of an object: %v", got)
	}
	// Nothing identifying in the store. (A version replaced by the tag
	// change may leave it during the walk: its removal runs in the
	// background.)
	err := filepath.WalkDir(g.store, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		for _, s := range []string{"secretbucket", "confidential", "tampered", "PLAINTEXT-MARKER", "METADATA-MARKER", "x-marker-type"} {
			if strings.Contains(p, s) {
				t.Errorf("store path %s names %q", p, s)
			}
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, s := range []string{"secretbucket", "confidential", "PLAINTEXT-MARKER", "METADATA-MARKER", "x-marker-type",
			"TAGKEY-MARKER", "TAGVALUE-MARKER", "RETAG-MARKER", "RETAGVALUE-MARKER"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("store file %s holds %q", p, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(key string, off int64) { flipByte(t, g.storePath("secretbucket", "confidential/"+key), off) }
	const later = 9 << 20             // in the third segment
	flip("tampered-head", 10)         // the header
	flip("tampered-first", 600<<10+7) // the first segment
	flip("tampered-later", later)     // the third segment
	if got, _, err := get(c, "secretbucket", "confidential/intact", ""); err != nil || !bytes.Equal(got, secretText) {
		t.Fatalf("intact object (control): %d bytes, %v", len(got), err)
	}
	// Damage before the first byte: a clean S3 error, nothing released.
	for _, k := range []string{"tampered-head", "tampered-first"} {
		if _, _, err := get(c, "secretbucket", "confidential/"+k, ""); errCode(err) != "InternalError" {
			t.Errorf("%s: %v", k, err)
		}
	}
	// Damage further in: the response starts and is cut before the damaged
	// chunk; every byte released is genuine.
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("secretbucket"), Key: aws.String("confidential/tampered-later")})
	if err != nil {
		t.Fatalf("tampered later: the response should start: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err == nil {
		t.Errorf("tampered later: the whole response read without error (%d bytes)", len(got))
	}
	if int64(len(got)) >= later || !bytes.Equal(got, secretText[:len(got)]) {
		t.Errorf("tampered later: %d bytes released, want fewer than the damage's offset %d, all genuine", len(got), later)
	}
	// A range read inside the intact part of the damaged object works
	// (only the chunks it covers are read); one over the damage fails.
	if got, _, err := get(c, "secretbucket", "confidential/tampered-later", "bytes=0-99"); err != nil || !bytes.Equal(got, secretText[:100]) {
		t.Errorf("range before the damage: %v", err)
	}
	if _, _, err := get(c, "secretbucket", "confidential/tampered-later", "bytes=9437000-9437999"); err == nil {
		t.Errorf("range over the damage read without error")
	}
}

// TLS 1.3 only by default; a TLS 1.2 client is refused, and accepted by a
// gateway configured to allow it.
func TestTLSVersions(t *testing.T) {
	tls12 := func(g *gw) error {
		_, err := g.client(g.acc.keys[0].id, g.acc.keys[0].secret, &tls.Config{RootCAs: g.pool, MaxVersion: tls.VersionTLS12}).
			ListBuckets(context.Background(), &s3.ListBucketsInput{})
		return err
	}
	g := startGW(t, nil)
	if _, err := g.admin().ListBuckets(context.Background(), &s3.ListBucketsInput{}); err != nil {
		t.Fatalf("TLS 1.3 client: %v", err)
	}
	if err := tls12(g); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.2 client accepted by default: %v", err)
	}
	if err := g.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	g2 := startGW(t, func(o *Options) { o.AllowTLS12 = true })
	if err := tls12(g2); err != nil {
		t.Errorf("TLS 1.2 client with AllowTLS12: %v", err)
	}
}

// The ops listener: health, readiness (with a failing control) and
// metrics that count operations, bytes and integrity failures.
func TestOpsAndMetrics(t *testing.T) {
	m := NewMetrics(nil)
	g := startGWWith(t, nil, m)
	ctx := context.Background()
	var notReady atomic.Bool
	addr, err := OpsServer(ctx, "127.0.0.1:0", m, func() error {
		if notReady.Load() {
			return errors.New("keys sealed")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := fetch("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, _ := fetch("/readyz"); code != 200 {
		t.Errorf("/readyz while ready: %d", code)
	}
	notReady.Store(true)
	if code, body := fetch("/readyz"); code != 503 || !strings.Contains(body, "keys sealed") {
		t.Errorf("/readyz while not ready: %d %q", code, body)
	}
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("metrics")}); err != nil {
		t.Fatal(err)
	}
	data := random(t, 100000)
	if _, err := put(t, c, "metrics", "k", data, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(c, "metrics", "k", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(c, "metrics", "missing", ""); errCode(err) != "NoSuchKey" {
		t.Fatal(err)
	}
	e, err := g.r.Stat(ctx, "metrics", "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.storePath("metrics", "k"), random(t, int(e.StoredLen)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(c, "metrics", "k", ""); errCode(err) != "InternalError" {
		t.Fatalf("get of a replaced object: %v", err)
	}
	_, body := fetch("/metrics")
	for _, want := range []string{
		`holdfast_gateway_requests_total{code="ok",op="PutObject"} 1`,
		`holdfast_gateway_requests_total{code="ok",op="GetObject"} 1`,
		`holdfast_gateway_requests_total{code="NoSuchKey",op="GetObject"} 1`,
		`holdfast_gateway_requests_total{code="InternalError",op="GetObject"} 1`,
		`holdfast_gateway_received_bytes_total 100000`,
		`holdfast_gateway_sent_bytes_total 100000`,
		`holdfast_gateway_integrity_failures_total 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(body, "holdfast_"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The periodic sample check finds a deleted and an altered object, counts
// them, and reports nothing on the same objects before the damage.
func TestSampler(t *testing.T) {
	d := t.TempDir()
	ctx := context.Background()
	store := filepath.Join(d, "store")
	r, err := repo.Init(ctx, repo.InitOptions{Home: filepath.Join(d, "home"), StorePath: store,
		Passphrase: []byte("sampler test"), KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 6 {
		if _, err := r.Put(ctx, "data", fmt.Sprint("k", i), bytes.NewReader(random(t, 70000+i)), repo.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMetrics(nil)
	s := &Sampler{Repo: r, Count: 100, Metrics: m}
	if n, bad, err := s.Round(ctx); err != nil || n != 6 || bad != 0 {
		t.Fatalf("clean round: %d checked, %d damaged, %v", n, bad, err)
	}
	path := func(key string) string {
		e, err := r.Stat(ctx, "data", key)
		if err != nil {
			t.Fatal(err)
		}
		name := format.StoreName(e.ObjectID)
		return filepath.Join(store, name[:2], name)
	}
	if err := os.Remove(path("k1")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path("k2"))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x80
	if err := os.WriteFile(path("k2"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if n, bad, err := s.Round(ctx); err != nil || n != 6 || bad != 2 {
		t.Fatalf("round after damage: %d checked, %d damaged, %v", n, bad, err)
	}
	var out strings.Builder
	if err := testutilGather(m, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`holdfast_gateway_sample_checks_total{status="ok"} 10`,
		`holdfast_gateway_sample_checks_total{status="missing"} 1`, `holdfast_gateway_sample_checks_total{status="altered"} 1`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(out.String(), "sample"))
		}
	}
	// A sample smaller than the catalog picks that many.
	s.Count = 2
	if n, _, err := s.Round(ctx); err != nil || n != 2 {
		t.Fatalf("a round of 2: %d checked, %v", n, err)
	}
}

func testutilGather(m *Metrics, w io.Writer) error {
	mfs, err := m.reg.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		if err := writeText(w, mf); err != nil {
			return err
		}
	}
	return nil
}

func writeText(w io.Writer, mf *dto.MetricFamily) error {
	_, err := expfmt.MetricFamilyToText(w, mf)
	return err
}

func TestContentEncoding(t *testing.T) {
	for in, want := range map[string]string{"": "", "aws-chunked": "", "gzip": "gzip", "aws-chunked,gzip": "gzip", "gzip, AWS-Chunked, br": "gzip,br"} {
		if got := contentEncoding(in); got != want {
			t.Errorf("contentEncoding(%q) = %q, want %q", in, got, want)
		}
	}
}

// Mutual TLS: with client CAs configured, a client without a certificate,
// or with one from another CA, is refused; one with a certificate from the
// configured CA is served.
func TestMutualTLS(t *testing.T) {
	ca := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k
	}
	client := func(caCert *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	goodCA, goodKey := ca("clients")
	otherCA, otherKey := ca("someone else")
	pool := x509.NewCertPool()
	pool.AddCert(goodCA)
	g := startGW(t, func(o *Options) { o.ClientCAs = pool })
	k := g.acc.keys[0]
	list := func(cert *tls.Certificate) error {
		cfg := &tls.Config{RootCAs: g.pool}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		_, err := g.client(k.id, k.secret, cfg).ListBuckets(context.Background(), &s3.ListBucketsInput{})
		return err
	}
	good, other := client(goodCA, goodKey), client(otherCA, otherKey)
	if err := list(&good); err != nil {
		t.Fatalf("a client certificate from the configured CA: %v", err)
	}
	if err := list(nil); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := list(&other); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
}

// Multipart through the gateway: parts out of order, a part re-sent with
// other bytes, listing parts and uploads, a wrong ETag refused beside the
// right one, abort.
func TestMultipart(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("parts")}); err != nil {
		t.Fatal(err)
	}
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("big"),
		ContentType: aws.String("video/x-test"), Metadata: map[string]string{"take": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	id := cu.UploadId
	p1a, p1b, p2 := random(t, 5<<20), random(t, 5<<20), random(t, 1234567)
	up := func(n int32, b []byte) string {
		t.Helper()
		o, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("parts"), Key: aws.String("big"), UploadId: id,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))})
		if err != nil {
			t.Fatalf("part %d: %v", n, err)
		}
		return aws.ToString(o.ETag)
	}
	e2 := up(2, p2)
	up(1, p1a)
	e1 := up(1, p1b) // re-sent with other bytes: this one counts
	lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("parts"), Key: aws.String("big"), UploadId: id})
	if err != nil || len(lp.Parts) != 2 || aws.ToString(lp.Parts[0].ETag) != e1 || aws.ToInt64(lp.Parts[1].Size) != int64(len(p2)) {
		t.Fatalf("list parts: %v %+v", err, lp)
	}
	lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("parts")})
	if err != nil || len(lu.Uploads) != 1 || aws.ToString(lu.Uploads[0].UploadId) != aws.ToString(id) {
		t.Fatalf("list uploads: %v %+v", err, lu)
	}
	complete := func(etag1 string) error {
		_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("big"), UploadId: id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
				{PartNumber: aws.Int32(1), ETag: aws.String(etag1)}, {PartNumber: aws.Int32(2), ETag: aws.String(e2)}}}})
		return err
	}
	sum := md5.Sum(p1a)
	if err := complete(`"` + hex.EncodeToString(sum[:]) + `"`); errCode(err) != "InvalidPart" {
		t.Fatalf("completion with the replaced part's ETag: %v", err)
	}
	if err := complete(e1); err != nil {
		t.Fatalf("completion: %v", err)
	}
	want := append(append([]byte{}, p1b...), p2...)
	got, out, err := get(c, "parts", "big", "")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("get after completion: %d bytes, %v", len(got), err)
	}
	if !strings.HasSuffix(aws.ToString(out.ETag), `-2"`) || aws.ToString(out.ContentType) != "video/x-test" || out.Metadata["take"] != "2" {
		t.Errorf("completed object: etag %s type %s meta %v", aws.ToString(out.ETag), aws.ToString(out.ContentType), out.Metadata)
	}
	if got, _, err := get(c, "parts", "big", fmt.Sprintf("bytes=%d-%d", 5<<20-10, 5<<20+9)); err != nil || !bytes.Equal(got, want[5<<20-10:5<<20+10]) {
		t.Errorf("range across the part boundary: %v", err)
	}

	// Abort: the upload is gone.
	cu2, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("dropped")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("parts"), Key: aws.String("dropped"), UploadId: cu2.UploadId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("parts"), Key: aws.String("dropped"), UploadId: cu2.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("x")), ContentLength: aws.Int64(1)}); errCode(err) != "NoSuchUpload" {
		t.Errorf("part for an aborted upload: %v", err)
	}
}

// A checksum header that does not match the body stores nothing; the same
// put with the right checksum is stored.
func TestChecksumHeaders(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("sums")}); err != nil {
		t.Fatal(err)
	}
	data := []byte("checksummed body")
	sum := crc32.ChecksumIEEE(data)
	right := base64.StdEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
	wrong := base64.StdEncoding.EncodeToString([]byte{byte(sum>>24) ^ 1, byte(sum >> 16), byte(sum >> 8), byte(sum)})
	if _, err := put(t, c, "sums", "k", data, func(in *s3.PutObjectInput) { in.ChecksumCRC32 = aws.String(wrong) }); errCode(err) != "BadDigest" {
		t.Fatalf("a wrong CRC32 header: %v", err)
	}
	if _, _, err := get(c, "sums", "k", ""); errCode(err) != "NoSuchKey" {
		t.Fatalf("after the refused put: %v", err)
	}
	if _, err := put(t, c, "sums", "k", data, func(in *s3.PutObjectInput) { in.ChecksumCRC32 = aws.String(right) }); err != nil {
		t.Fatalf("the right CRC32 header: %v", err)
	}
	if got, _, err := get(c, "sums", "k", ""); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the accepted put: %q %v", got, err)
	}
}

// TestContentMD5: a PutObject or UploadPart whose Content-MD5 does not
// match its body is refused with BadDigest and stores nothing; with the
// right Content-MD5, or none, it is stored and its ETag is the body's MD5.
// The gateway takes a checked Content-MD5 as the ETag instead of hashing
// the body again (contentMD5): this holds the front end to checking it.
func TestContentMD5(t *testing.T) {
	g := startGW(t, nil)
	ctx := context.Background()
	c := g.admin()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("digests")}); err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { s := md5.Sum(b); return base64.StdEncoding.EncodeToString(s[:]) }
	quoted := func(b []byte) string { s := md5.Sum(b); return `"` + hex.EncodeToString(s[:]) + `"` }
	data, other := random(t, 100<<10), random(t, 100<<10)
	withMD5 := func(sum string) func(*s3.PutObjectInput) {
		return func(in *s3.PutObjectInput) { in.ContentMD5 = aws.String(sum) }
	}
	if _, err := put(t, c, "digests", "k", data, withMD5(b64(other))); errCode(err) != "BadDigest" {
		t.Fatalf("put with a wrong Content-MD5: %v", err)
	}
	if _, _, err := get(c, "digests", "k", ""); errCode(err) != "NoSuchKey" {
		t.Fatalf("after the refused put: %v", err)
	}
	for _, mod := range []func(*s3.PutObjectInput){withMD5(b64(data)), nil} {
		out, err := put(t, c, "digests", "k", data, mod)
		if err != nil || aws.ToString(out.ETag) != quoted(data) {
			t.Fatalf("put (Content-MD5 sent: %v): %v %+v", mod != nil, err, out)
		}
		got, gout, err := get(c, "digests", "k", "")
		if err != nil || !bytes.Equal(got, data) || aws.ToString(gout.ETag) != quoted(data) {
			t.Fatalf("get after the put (Content-MD5 sent: %v): %v", mod != nil, err)
		}
	}

	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("digests"), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := random(t, 5<<20), random(t, 1<<20)
	part := func(n int32, b []byte, sum string) (string, error) {
		in := &s3.UploadPartInput{Bucket: aws.String("digests"), Key: aws.String("mp"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))}
		if sum != "" {
			in.ContentMD5 = aws.String(sum)
		}
		o, err := c.UploadPart(ctx, in)
		if err != nil {
			return "", err
		}
		return aws.ToString(o.ETag), nil
	}
	for _, p := range []struct {
		n int32
		b []byte
	}{{1, p1}, {2, p2}} {
		if _, err := part(p.n, p.b, b64(other)); errCode(err) != "BadDigest" {
			t.Fatalf("part %d with a wrong Content-MD5: %v", p.n, err)
		}
	}
	if lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("digests"), Key: aws.String("mp"), UploadId: cu.UploadId}); err != nil || len(lp.Parts) != 0 {
		t.Fatalf("parts after the refused ones: %v %+v", err, lp)
	}
	e1, err := part(1, p1, b64(p1))
	if err != nil || e1 != quoted(p1) {
		t.Fatalf("part 1 with the right Content-MD5: %q %v", e1, err)
	}
	e2, err := part(2, p2, "")
	if err != nil || e2 != quoted(p2) {
		t.Fatalf("part 2 without Content-MD5: %q %v", e2, err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("digests"), Key: aws.String("mp"), UploadId: cu.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{PartNumber: aws.Int32(1), ETag: aws.String(e1)}, {PartNumber: aws.Int32(2), ETag: aws.String(e2)}}}}); err != nil {
		t.Fatalf("completion: %v", err)
	}
	if got, _, err := get(c, "digests", "mp", ""); err != nil || !bytes.Equal(got, append(append([]byte{}, p1...), p2...)) {
		t.Fatalf("get after completion: %d bytes, %v", len(got), err)
	}

	// A POST Object (a browser form) may carry a Content-MD5 header too,
	// but its file is a form part the header does not describe and the
	// front end checks nothing: its ETag must still be the file's MD5,
	// with a wrong header as with the right one (the control).
	for _, sum := range []string{b64(data), b64(other)} {
		status, err := postObject(g, "digests", "posted", data, sum)
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("POST Object with Content-MD5 %s: %d %v", sum, status, err)
		}
		got, out, err := get(c, "digests", "posted", "")
		if err != nil || !bytes.Equal(got, data) || aws.ToString(out.ETag) != quoted(data) {
			t.Fatalf("after a POST Object with Content-MD5 %s (right: %v): ETag %s, want %s (%v)",
				sum, sum == b64(data), aws.ToString(out.ETag), quoted(data), err)
		}
	}
}

// postObject uploads body as bucket/key with a browser-form POST signed
// by the gateway's first access key (a POST policy naming the bucket and
// key), sending the given Content-MD5 header, and returns the status.
func postObject(g *gw, bucket, key string, body []byte, contentMD5 string) (int, error) {
	k := g.acc.keys[0]
	now := time.Now().UTC()
	day, stamp := now.Format("20060102"), now.Format("20060102T150405Z")
	cred := k.id + "/" + day + "/us-east-1/s3/aws4_request"
	policy, err := json.Marshal(map[string]any{
		"expiration": now.Add(time.Hour).Format(time.RFC3339),
		"conditions": []any{map[string]string{"bucket": bucket}, map[string]string{"key": key},
			map[string]string{"x-amz-algorithm": "AWS4-HMAC-SHA256"}, map[string]string{"x-amz-credential": cred},
			map[string]string{"x-amz-date": stamp}},
	})
	if err != nil {
		return 0, err
	}
	encoded := base64.StdEncoding.EncodeToString(policy)
	mac := func(key []byte, s string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(s))
		return h.Sum(nil)
	}
	signing := mac(mac(mac(mac([]byte("AWS4"+k.secret), day), "us-east-1"), "s3"), "aws4_request")
	var form bytes.Buffer
	w := multipart.NewWriter(&form)
	for _, f := range [][2]string{{"key", key}, {"x-amz-algorithm", "AWS4-HMAC-SHA256"}, {"x-amz-credential", cred},
		{"x-amz-date", stamp}, {"policy", encoded}, {"x-amz-signature", hex.EncodeToString(mac(signing, encoded))}} {
		if err := w.WriteField(f[0], f[1]); err != nil {
			return 0, err
		}
	}
	fw, err := w.CreateFormFile("file", key)
	if err == nil {
		_, err = fw.Write(body)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodPost, g.url+"/"+bucket, &form)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Content-MD5", contentMD5)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// A gateway restart in the middle of a client's multipart upload: the
// repository is closed and opened again (a new process would), and the
// client goes on with the same upload id and completes it; the object
// reads back byte-exact.
func TestRestartDuringMultipart(t *testing.T) {
	d := t.TempDir()
	ctx := context.Background()
	home, store := filepath.Join(d, "home"), filepath.Join(d, "store")
	pass := []byte("restart test")
	r, err := repo.Init(ctx, repo.InitOptions{Home: home, StorePath: store, Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	acc := &testAccess{keys: defaultKeys()}
	cert, leaf, _, err := LoadOrCreateCert(filepath.Join(d, "tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	start := func(r *repo.Repo) (*Server, *s3.Client) {
		srv, err := Start(ctx, NewBackend(r, acc, nil), Options{Addr: "127.0.0.1:0", Certificate: cert, IAM: acc})
		if err != nil {
			t.Fatal(err)
		}
		g := &gw{url: "https://" + srv.Addr().String(), pool: pool, acc: acc}
		return srv, g.admin()
	}
	srv, c := start(r)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("media")}); err != nil {
		t.Fatal(err)
	}
	cu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("media"), Key: aws.String("film")})
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := random(t, 5<<20), random(t, 777777)
	part := func(c *s3.Client, n int32, b []byte) string {
		t.Helper()
		o, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("media"), Key: aws.String("film"), UploadId: cu.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b)))})
		if err != nil {
			t.Fatalf("part %d: %v", n, err)
		}
		return aws.ToString(o.ETag)
	}
	e1 := part(c, 1, p1)

	// Restart: gateway stopped, repository closed and opened again.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err = repo.Open(ctx, repo.OpenOptions{Home: home, Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	srv, c = start(r)
	defer srv.Stop()

	// Nothing is readable before completion.
	if _, _, err := get(c, "media", "film", ""); errCode(err) != "NoSuchKey" {
		t.Fatalf("the object before completion: %v", err)
	}
	lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("media"), Key: aws.String("film"), UploadId: cu.UploadId})
	if err != nil || len(lp.Parts) != 1 || aws.ToString(lp.Parts[0].ETag) != e1 {
		t.Fatalf("parts after the restart: %v %+v", err, lp)
	}
	e2 := part(c, 2, p2)
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("media"), Key: aws.String("film"),
		UploadId: cu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{PartNumber: aws.Int32(1), ETag: aws.String(e1)}, {PartNumber: aws.Int32(2), ETag: aws.String(e2)}}}}); err != nil {
		t.Fatalf("completion after the restart: %v", err)
	}
	if got, _, err := get(c, "media", "film", ""); err != nil || !bytes.Equal(got, append(append([]byte{}, p1...), p2...)) {
		t.Fatalf("the completed object: %d bytes, %v", len(got), err)
	}
	sum, err := r.Verify(ctx, repo.VerifyOptions{}, func(repo.Finding) {})
	if err != nil || sum.Damaged() {
		t.Fatalf("verify after the restart: %+v %v", sum, err)
	}
}
