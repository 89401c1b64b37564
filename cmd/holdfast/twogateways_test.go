package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/testutil/pgtest"
)

// TestTwoGatewaysSharedCatalog: two `holdfast serve` gateways on
// different ports — each its own home, process and key server client —
// serve one repository: one store, one catalog on a real PostgreSQL
// reached over mutual TLS, one key server. The gateway battery passes
// against either; what one writes the other reads, a multipart upload
// moves between them part by part; neither gateway's memory nor home
// holds a root or bucket key, nor their homes a logical name; putting a
// gateway's home and the store back to a snapshot leaves reads and verify
// reporting the missing objects, and putting the database back is
// refused for its catalog head.
func TestTwoGatewaysSharedCatalog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test reads the gateways' memory through /proc/PID/mem and drops CAP_IPC_LOCK with setpriv: run it as root (CI does)")
	}
	defer keyring.SetInsecureTestParamsForTesting()()
	k := newKSEnv(t)
	pass := []byte("key server test passphrase") // newKSEnv's HOLDFAST_PASSPHRASE
	pg := startCatalogDB(t)

	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	var bundles [2]string
	for i := range bundles {
		bundles[i] = filepath.Join(k.dir, fmt.Sprintf("gw%d-bundle", i+1))
		k.ok("keyserver", "enroll", fmt.Sprintf("gw%d", i+1), "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", bundles[i])
	}
	p := k.serve(ks, "127.0.0.1:0")
	store := filepath.Join(k.dir, "store")
	homes := [2]string{filepath.Join(k.dir, "home1"), filepath.Join(k.dir, "home2")}
	catFlags := []string{"--catalog-url", pg.URL, "--catalog-ca", pg.CA, "--catalog-cert", pg.Cert, "--catalog-key", pg.Key}
	join := func(home, bundle string, extra ...string) (int, string) {
		args := append([]string{"keyserver", "join", "--url", p.url, "--client-dir", bundle, "--store", store}, catFlags...)
		code, _, stderr := k.run([]string{"HOLDFAST_HOME=" + home}, append(args, extra...)...)
		return code, stderr
	}
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	// Attaching to a database that holds no repository yet is refused;
	// the same command after the first home created it, the control,
	// succeeds (below).
	if code, stderr := join(homes[1], bundles[1], "--attach"); code == 0 || !strings.Contains(stderr, "holds no repository") {
		t.Fatalf("attach before any repository: exit %d, %s", code, stderr)
	}
	os.RemoveAll(homes[1])
	if code, stderr := join(homes[0], bundles[0]); code != 0 {
		t.Fatalf("join creating the repository: exit %d, %s", code, stderr)
	}
	// Creating the repository again (a second catalog, in an empty store)
	// is refused: the key server already records its catalog.
	other := filepath.Join(k.dir, "home-other")
	if code, stderr := join(other, bundles[1], "--store", filepath.Join(k.dir, "other-store")); code != exitRefused || !strings.Contains(stderr, "already records a catalog") {
		t.Fatalf("a second repository in one catalog: exit %d, %s", code, stderr)
	}
	if code, stderr := join(homes[1], bundles[1], "--attach"); code != 0 {
		t.Fatalf("join --attach: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(homes[1], "catalog.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an attached home has a catalog file: %v", err)
	}

	seed := filepath.Join(k.dir, "seed.bin")
	os.WriteFile(seed, []byte("seed"), 0o600)
	k.okIn(homes[0], "put", seed, "photos/seed")
	var gws [2]*gwProc
	for i := range gws {
		gws[i] = k.startGateway(t, homes[i])
	}
	// An access key made on one home is the other's too: the access
	// table is in the shared catalog.
	for i, g := range gws {
		t.Run(fmt.Sprintf("battery-gw%d", i+1), func(t *testing.T) { gatewayBattery(t, g, fmt.Sprintf("battery%d", i+1)) })
		t.Run(fmt.Sprintf("awscli-gw%d", i+1), func(t *testing.T) { awsCLIRoundTrip(t, k, g, fmt.Sprintf("battery%d", i+1)) })
		t.Run(fmt.Sprintf("s3cmd-rclone-gw%d", i+1), func(t *testing.T) { s3cmdRcloneRoundTrip(t, k, g, fmt.Sprintf("battery%d", i+1)) })
	}
	t.Run("cross", func(t *testing.T) { crossGateways(t, gws[0], gws[1]) })

	// Memory and disk: no root or bucket key in either gateway; no
	// logical name in their homes.
	cat, err := catalog.OpenPostgres(context.Background(), catalog.PostgresConfig{URL: pg.URL, CAFile: pg.CA, CertFile: pg.Cert, KeyFile: pg.Key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	rk := learnKeysFrom(t, filepath.Join(ks, "keyring"), pass, cat)
	if len(rk.bucket) < 3 || len(rk.root) == 0 {
		t.Fatalf("learnt %d bucket keys and %d root keys", len(rk.bucket), len(rk.root))
	}
	gws[0].get(t, "battery1", "copy.txt")
	dataKey := rk.dataKey(t, "battery1", "copy.txt")
	names := map[string][]byte{}
	for _, n := range []string{"photos", "battery1", "battery2", "cross-bucket", "dir/sub/deep.txt", "cross-from-1", "moved-upload"} {
		names["name "+n] = []byte(n)
	}
	for i, g := range gws {
		hits := scanProcess(t, g.pid(), rk.all(map[string][]byte{"data key of battery1/copy.txt": dataKey}))
		if i == 0 && len(hits["data key of battery1/copy.txt"]) == 0 {
			t.Error("control: the data key gateway 1 just used is not in its memory; the scan proves nothing")
		}
		for name := range rk.all(nil) {
			if a := hits[name]; len(a) > 0 {
				t.Errorf("gateway %d's memory holds %s (at %x)", i+1, name, a)
			}
		}
		fileHits := scanFiles(t, homes[i], rk.all(names))
		for name := range rk.all(names) {
			if f := fileHits[name]; len(f) > 0 {
				t.Errorf("gateway %d's home holds %s in %v", i+1, name, f)
			}
		}
	}
	// Control for the disk scan: a joined home keeping its catalog in
	// the home (differing only in that) holds the logical names.
	sqliteHome := filepath.Join(k.dir, "home-sqlite")
	ks2 := filepath.Join(k.dir, "ks2")
	k.ok("keyserver", "init", "--dir", ks2, "--host", "127.0.0.1")
	b3 := filepath.Join(k.dir, "gw3-bundle")
	k.ok("keyserver", "enroll", "gw3", "--dir", ks2, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", b3)
	p2 := k.serve(ks2, "127.0.0.1:0")
	k.okIn(sqliteHome, "keyserver", "join", "--url", p2.url, "--client-dir", b3, "--store", filepath.Join(k.dir, "store-sqlite"))
	k.okIn(sqliteHome, "put", seed, "photos/dir/sub/deep.txt")
	if h := scanFiles(t, sqliteHome, names); len(h["name photos"]) == 0 || len(h["name dir/sub/deep.txt"]) == 0 {
		t.Errorf("control: a home with its catalog in it does not show the logical names to the scan (%v); it proves nothing", h)
	}

	cat.Close() // the database is copied below while nothing uses it
	t.Run("rollback", func(t *testing.T) { twoGatewayRollback(t, k, pg, gws, homes, store, seed) })
}

// twoGatewayRollback: the owner of gateway 2's host puts its home and the
// store back to a snapshot after more writes: the catalog, on premises,
// still names what was written, and reads and verify report it missing.
// Then the database itself is put back: refused for its catalog head.
func twoGatewayRollback(t *testing.T, k *ksEnv, pg catalogDB, gws [2]*gwProc, homes [2]string, store, seed string) {
	for _, g := range gws {
		g.stop(t)
	}
	snapHome, snapStore := filepath.Join(k.dir, "snap-home2"), filepath.Join(k.dir, "snap-store")
	for _, c := range [][2]string{{homes[1], snapHome}, {store, snapStore}} {
		if err := os.CopyFS(c[1], os.DirFS(c[0])); err != nil {
			t.Fatal(err)
		}
	}
	k.okIn(homes[1], "put", seed, "photos/after-snapshot")
	if out := k.okIn(homes[1], "verify"); !strings.Contains(out, "clean") {
		t.Fatalf("control: verify before the snapshot is put back: %s", out)
	}
	for _, c := range [][2]string{{snapHome, homes[1]}, {snapStore, store}} {
		if err := os.RemoveAll(c[1]); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(c[0], c[1]); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr := k.run([]string{"HOLDFAST_HOME=" + homes[1]}, "get", "photos/after-snapshot", filepath.Join(k.dir, "got"))
	if code == 0 || !strings.Contains(stderr, "photos/after-snapshot") {
		t.Fatalf("a get of an object the put-back store lost: exit %d, %s", code, stderr)
	}
	code, out, _ := k.run([]string{"HOLDFAST_HOME=" + homes[1]}, "verify")
	if code == 0 || !strings.Contains(out, "missing") {
		t.Fatalf("verify after the snapshot was put back: exit %d, %s", code, out)
	}

	// The database put back: copy it while nothing uses it, write more,
	// put the copy in its place.
	pg.snapshot(t)
	k.okIn(homes[0], "put", seed, "photos/after-db-snapshot")
	k.okIn(homes[0], "ls", "photos") // the control: the current database opens
	pg.restore(t)
	code, _, stderr = k.run([]string{"HOLDFAST_HOME=" + homes[0]}, "ls", "photos")
	if code != exitRefused || !strings.Contains(stderr, "records catalog commit") {
		t.Fatalf("a database put back: exit %d, %s", code, stderr)
	}
}

// gatewayBattery is the gateway's S3 behaviour, through one gateway:
// buckets, put and get with metadata and ranges, head, listings with
// prefix and delimiter, copy, delete-multiple, a multipart upload with
// parts out of order and one re-sent with other bytes, and a wrong
// secret refused beside the right one.
func gatewayBattery(t *testing.T, g *gwProc, bucket string) {
	ctx := context.Background()
	c := g.s3
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v\n%s", err, g.stderr.String())
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("head bucket: %v", err)
	}
	body := randomBytes(t, 200_000)
	keysPut := []string{"a.txt", "dir/b.txt", "dir/sub/deep.txt", "dir2/c.txt"}
	for _, key := range keysPut {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
			ContentType: aws.String("text/x-battery"), Metadata: map[string]string{"owner": "battery"}}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("dir/b.txt"), Range: aws.String("bytes=1000-1999")})
	if err != nil {
		t.Fatalf("ranged get: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body[1000:2000]) {
		t.Fatalf("ranged get: %d bytes differ", len(got))
	}
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("a.txt")})
	if err != nil || aws.ToInt64(h.ContentLength) != int64(len(body)) || aws.ToString(h.ContentType) != "text/x-battery" || h.Metadata["owner"] != "battery" {
		t.Fatalf("head: %+v %v", h, err)
	}
	l, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("dir"), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []string
	for _, p := range l.CommonPrefixes {
		prefixes = append(prefixes, aws.ToString(p.Prefix))
	}
	sort.Strings(prefixes)
	if strings.Join(prefixes, ",") != "dir/,dir2/" || len(l.Contents) != 0 {
		t.Fatalf("list with delimiter: prefixes %v, %d objects", prefixes, len(l.Contents))
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String("copy.txt"),
		CopySource: aws.String(bucket + "/a.txt")}); err != nil {
		t.Fatalf("copy: %v", err)
	}
	g.bodies[bucket+"/copy.txt"] = body
	g.get(t, bucket, "copy.txt")

	// Multipart: part 2 first, part 1, then part 2 again with other bytes.
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	p1, p2a, p2b := randomBytes(t, 5<<20), randomBytes(t, 70_000), randomBytes(t, 90_000)
	etags := map[int32]*string{}
	for _, part := range []struct {
		n int32
		b []byte
	}{{2, p2a}, {1, p1}, {2, p2b}} {
		r, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String("mp"), UploadId: up.UploadId,
			PartNumber: aws.Int32(part.n), Body: bytes.NewReader(part.b)})
		if err != nil {
			t.Fatalf("part %d: %v", part.n, err)
		}
		etags[part.n] = r.ETag
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("mp"), UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: etags[1]}, {PartNumber: aws.Int32(2), ETag: etags[2]}}}}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	g.bodies[bucket+"/mp"] = append(append([]byte(nil), p1...), p2b...)
	g.get(t, bucket, "mp")

	var objs []types.ObjectIdentifier
	for _, key := range keysPut {
		objs = append(objs, types.ObjectIdentifier{Key: aws.String(key)})
	}
	d, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: objs}})
	if err != nil || len(d.Errors) != 0 || len(d.Deleted) != len(keysPut) {
		t.Fatalf("delete-multiple: %+v %v", d, err)
	}
	l, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil || len(l.Contents) != 2 {
		t.Fatalf("after delete: %d objects, %v", len(l.Contents), err)
	}

	// A wrong secret, beside the right one (the requests above).
	creds, err := c.Options().Credentials.Retrieve(ctx)
	if err != nil || creds.SecretAccessKey == "" {
		t.Fatalf("the gateway client's credentials: %+v %v", creds, err)
	}
	bad := s3.New(s3.Options{BaseEndpoint: c.Options().BaseEndpoint, Region: "us-east-1", UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, "wrong-"+creds.SecretAccessKey, "")})
	_, err = bad.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("mp")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "SignatureDoesNotMatch" {
		t.Fatalf("a wrong secret: %v", err)
	}
}

// awsCLIRoundTrip: the AWS CLI, unchanged, through one gateway: a file up
// and down byte-exact, a listing, and a presigned URL read by curl (the
// same URL with its signature changed is refused: the control).
func awsCLIRoundTrip(t *testing.T, k *ksEnv, g *gwProc, bucket string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "cli.bin")
	body := randomBytes(t, 300_000)
	os.WriteFile(src, body, 0o600)
	env := append(append([]string(nil), k.env...), "AWS_ACCESS_KEY_ID="+g.id, "AWS_SECRET_ACCESS_KEY="+g.secret,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	aws := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("/usr/bin/aws", append([]string{"--endpoint-url", g.url}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	aws("s3", "cp", src, "s3://"+bucket+"/cli/file.bin", "--only-show-errors")
	got := filepath.Join(dir, "got.bin")
	aws("s3", "cp", "s3://"+bucket+"/cli/file.bin", got, "--only-show-errors")
	if b, _ := os.ReadFile(got); !bytes.Equal(b, body) {
		t.Fatal("aws s3 cp down: the bytes differ")
	}
	if out := aws("s3", "ls", "--recursive", "s3://"+bucket+"/cli/"); !strings.Contains(out, "cli/file.bin") {
		t.Fatalf("aws s3 ls: %s", out)
	}
	url := strings.TrimSpace(aws("s3", "presign", "s3://"+bucket+"/cli/file.bin", "--expires-in", "300"))
	curl := func(u string) ([]byte, error) {
		return exec.Command("curl", "-sS", "--fail", u).Output()
	}
	if b, err := curl(url); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("curl of a presigned URL: %v", err)
	}
	i := strings.Index(url, "X-Amz-Signature=") + len("X-Amz-Signature=")
	bad := url[:i] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", url[i])+1)%16]) + url[i+1:]
	if _, err := curl(bad); err == nil {
		t.Fatal("a presigned URL with its signature changed was served")
	}
}

// s3cmdRcloneRoundTrip: s3cmd and rclone, unchanged, through one gateway:
// a file above their multipart thresholds up (in parts), listed, down
// byte-exact, deleted.
func s3cmdRcloneRoundTrip(t *testing.T, k *ksEnv, g *gwProc, bucket string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "big.bin")
	body := randomBytes(t, 12_000_000)
	os.WriteFile(src, body, 0o600)
	host := strings.TrimPrefix(g.url, "http://")
	cfg := filepath.Join(dir, "s3cfg")
	os.WriteFile(cfg, []byte("[default]\naccess_key = "+g.id+"\nsecret_key = "+g.secret+"\nhost_base = "+host+"\nhost_bucket = "+host+
		"\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\nmultipart_chunk_size_mb = 5\nprogress_meter = True\n"), 0o600)
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(append([]string(nil), k.env...), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	if out := run(nil, "/usr/bin/s3cmd", "-c", cfg, "--multipart-chunk-size-mb=5", "put", src, "s3://"+bucket+"/s3cmd/big.bin"); !strings.Contains(out, "part 3 of 3") {
		t.Fatalf("s3cmd put did not send parts: %s", out)
	}
	if out := run(nil, "/usr/bin/s3cmd", "-c", cfg, "ls", "s3://"+bucket+"/s3cmd/"); !strings.Contains(out, "s3cmd/big.bin") {
		t.Fatalf("s3cmd ls: %s", out)
	}
	got := filepath.Join(dir, "s3cmd.out")
	run(nil, "/usr/bin/s3cmd", "-c", cfg, "get", "s3://"+bucket+"/s3cmd/big.bin", got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, body) {
		t.Fatal("s3cmd get: the bytes differ")
	}
	run(nil, "/usr/bin/s3cmd", "-c", cfg, "del", "s3://"+bucket+"/s3cmd/big.bin")

	rc := []string{"RCLONE_CONFIG=" + filepath.Join(dir, "rclone.conf"), "RCLONE_CONFIG_GW_TYPE=s3", "RCLONE_CONFIG_GW_PROVIDER=Other",
		"RCLONE_CONFIG_GW_ENDPOINT=" + g.url, "RCLONE_CONFIG_GW_REGION=us-east-1", "RCLONE_CONFIG_GW_ACCESS_KEY_ID=" + g.id,
		"RCLONE_CONFIG_GW_SECRET_ACCESS_KEY=" + g.secret, "RCLONE_S3_UPLOAD_CUTOFF=5M", "RCLONE_S3_CHUNK_SIZE=5M"}
	if out := run(rc, "/usr/bin/rclone", "-vv", "copyto", src, "gw:"+bucket+"/rclone/big.bin"); !strings.Contains(out, "multipart upload starting chunk 3") {
		t.Fatalf("rclone did not send parts: %s", out)
	}
	if out := run(rc, "/usr/bin/rclone", "lsl", "gw:"+bucket+"/rclone"); !strings.Contains(out, " 12000000 ") {
		t.Fatalf("rclone lsl: %s", out)
	}
	got = filepath.Join(dir, "rclone.out")
	run(rc, "/usr/bin/rclone", "copyto", "gw:"+bucket+"/rclone/big.bin", got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, body) {
		t.Fatal("rclone copyto down: the bytes differ")
	}
	run(rc, "/usr/bin/rclone", "deletefile", "gw:"+bucket+"/rclone/big.bin")
}

// crossGateways: what one gateway writes the other reads, and one
// multipart upload moves between them.
func crossGateways(t *testing.T, g1, g2 *gwProc) {
	ctx := context.Background()
	if _, err := g1.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("cross-bucket")}); err != nil {
		t.Fatal(err)
	}
	b1 := randomBytes(t, 300_000)
	if _, err := g1.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("cross-bucket"), Key: aws.String("cross-from-1"), Body: bytes.NewReader(b1)}); err != nil {
		t.Fatal(err)
	}
	g2.bodies["cross-bucket/cross-from-1"] = b1
	g2.get(t, "cross-bucket", "cross-from-1")
	// An overwrite through the other gateway: the newer version wins on both.
	b2 := randomBytes(t, 1234)
	if _, err := g2.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("cross-bucket"), Key: aws.String("cross-from-1"), Body: bytes.NewReader(b2)}); err != nil {
		t.Fatal(err)
	}
	g1.bodies["cross-bucket/cross-from-1"] = b2
	g1.get(t, "cross-bucket", "cross-from-1")

	up, err := g1.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("cross-bucket"), Key: aws.String("moved-upload")})
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := randomBytes(t, 5<<20), randomBytes(t, 10_000)
	ra, err := g2.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("cross-bucket"), Key: aws.String("moved-upload"), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(pa)})
	if err != nil {
		t.Fatalf("part 1 through gateway 2: %v\n%s", err, g2.stderr.String())
	}
	rb, err := g1.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("cross-bucket"), Key: aws.String("moved-upload"), UploadId: up.UploadId,
		PartNumber: aws.Int32(2), Body: bytes.NewReader(pb)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g2.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("cross-bucket"), Key: aws.String("moved-upload"),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{PartNumber: aws.Int32(1), ETag: ra.ETag}, {PartNumber: aws.Int32(2), ETag: rb.ETag}}}}); err != nil {
		t.Fatalf("complete through gateway 2: %v\n%s", err, g2.stderr.String())
	}
	g1.bodies["cross-bucket/moved-upload"] = append(append([]byte(nil), pa...), pb...)
	g1.get(t, "cross-bucket", "moved-upload")
}

// stop ends the gateway (SIGTERM) and waits for it.
func (g *gwProc) stop(t *testing.T) {
	t.Helper()
	if g.cmd.ProcessState != nil {
		return
	}
	g.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		g.cmd.Process.Kill()
		<-done
		t.Errorf("gateway did not stop on SIGINT within 30 s; stderr:\n%s", g.stderr.String())
	}
}

// catalogDB is a database on a real PostgreSQL (pgtest) holding a
// catalog, as a home names it.
type catalogDB struct {
	URL, CA, Cert, Key string
	srv                *pgtest.Server
	name               string
}

func startCatalogDB(t *testing.T) catalogDB {
	t.Helper()
	s := pgtest.Start(t)
	d := s.NewDatabase(t, "holdfast")
	return catalogDB{URL: d.URL, CA: d.CAFile, Cert: d.CertFile, Key: d.KeyFile, srv: s, name: d.Name}
}

// snapshot copies the database (nothing may be connected to it).
func (d catalogDB) snapshot(t *testing.T) {
	t.Helper()
	d.srv.Exec(t, "postgres", "CREATE DATABASE "+d.name+"_snap TEMPLATE "+d.name+" OWNER "+d.name)
}

// restore puts the snapshot in the database's place.
func (d catalogDB) restore(t *testing.T) {
	t.Helper()
	d.srv.Exec(t, "postgres", "DROP DATABASE "+d.name+" WITH (FORCE)")
	d.srv.Exec(t, "postgres", "ALTER DATABASE "+d.name+"_snap RENAME TO "+d.name)
}
