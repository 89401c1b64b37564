package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
)

// The key server's client offers the repository its data-key operations
// and makes its bucket keys.
var (
	_ repo.DataKeySource  = (*remote.Source)(nil)
	_ repo.BucketKeyMaker = (*remote.Source)(nil)
)

// TestKeyServerGatewayHoldsDataKeysOnly: a `holdfast serve` gateway on a
// home joined to a key server takes S3 puts, a multipart upload and gets,
// and then neither its memory nor its home holds any bucket key or root
// key of the repository — only data keys — not even the key of a bucket
// it created itself (the key server made it). The keys are learnt the
// way an auditor on premises would: the key server's keyring opened with
// the passphrase, the catalog's bucket key records unwrapped with it.
//
// Both gateways run with keys in readable pages (no CAP_IPC_LOCK,
// RLIMIT_MEMLOCK 0: neither memfd_secret nor mlock, as `holdfast posture`
// reports), so that the scan sees what the process holds. Controls, on
// the same scanner: in the key server gateway, the data key of the object
// it has just served (in its key cache); in a gateway on a keyring home,
// that repository's bucket keys and root keys.
func TestKeyServerGatewayHoldsDataKeysOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test reads a gateway's memory through /proc/PID/mem and drops CAP_IPC_LOCK with setpriv: run it as root (CI does)")
	}
	for _, tool := range []string{"setpriv", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (util-linux) is needed: %v", tool, err)
		}
	}
	defer keyring.SetInsecureTestParamsForTesting()()
	k := newKSEnv(t)
	pass := []byte("key server test passphrase") // newKSEnv's HOLDFAST_PASSPHRASE

	// The key server, and a home joined to it with the data operation.
	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	bundleDir := filepath.Join(k.dir, "gw-bundle")
	k.ok("keyserver", "enroll", "gw", "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", bundleDir)
	p := k.serve(ks, "127.0.0.1:0")
	home := filepath.Join(k.dir, "home")
	k.ok("keyserver", "join", "--url", p.url, "--client-dir", bundleDir)
	// The bucket is made on premises (its key is made where it is wrapped).
	seed := filepath.Join(k.dir, "seed.bin")
	os.WriteFile(seed, []byte("seed"), 0o600)
	k.ok("put", seed, "photos/seed")
	remoteGW := k.startGateway(t, home)
	remoteGW.workload(t, "photos")
	// A bucket the gateway makes itself: the key server makes its key.
	remoteGW.workload(t, "made-by-gateway")

	ksKeys := learnKeys(t, filepath.Join(ks, "keyring"), pass, home)
	if len(ksKeys.bucket) < 2 || len(ksKeys.root) == 0 {
		t.Fatalf("learnt %d bucket keys and %d root keys of the key server repository", len(ksKeys.bucket), len(ksKeys.root))
	}
	dataKey := ksKeys.dataKey(t, "photos", "small")
	// Serve it again just before the scan: the data key is in the
	// gateway's key cache (30 s).
	remoteGW.get(t, "photos", "small")
	hits := scanProcess(t, remoteGW.pid(), ksKeys.all(map[string][]byte{"data key of photos/small": dataKey}))
	if len(hits["data key of photos/small"]) == 0 {
		t.Error("control: the data key the gateway just used is not found in its memory; the scan proves nothing")
	}
	if _, ok := ksKeys.bucket["bucket key v1 of made-by-gateway"]; !ok {
		t.Error("control: the key of the bucket the gateway created was not learnt; the scan proves nothing for it")
	}
	for name := range ksKeys.all(nil) {
		if a := hits[name]; len(a) > 0 {
			t.Errorf("the key server gateway's memory holds %s (at %x)", name, a)
		}
	}
	checkMadeOnServer(t, ks, ksKeys.bucketIDs["made-by-gateway"])
	fileHits := scanFiles(t, home, ksKeys.all(map[string][]byte{"bucket id of photos": ksKeys.bucketIDs["photos"]}))
	if len(fileHits["bucket id of photos"]) == 0 {
		t.Error("control: the home scan does not find the bucket id in the catalog; it proves nothing")
	}
	for name := range ksKeys.all(nil) {
		if f := fileHits[name]; len(f) > 0 {
			t.Errorf("the key server home holds %s in %v", name, f)
		}
	}

	// Control: the same gateway and workload on a keyring home, scanned
	// the same way, holds its repository's bucket keys and root keys.
	krHome := filepath.Join(k.dir, "krhome")
	k.okIn(krHome, "init")
	k.okIn(krHome, "put", seed, "photos/seed")
	localGW := k.startGateway(t, krHome)
	localGW.workload(t, "photos")
	krKeys := learnKeys(t, filepath.Join(krHome, "keyring"), pass, krHome)
	hits = scanProcess(t, localGW.pid(), krKeys.all(nil))
	for name := range krKeys.bucket {
		if len(hits[name]) == 0 {
			t.Errorf("control: %s not found in the keyring gateway's memory", name)
		}
	}
	for name := range krKeys.root {
		if len(hits[name]) == 0 {
			t.Errorf("control: %s not found in the keyring gateway's memory", name)
		}
	}
}

// checkMadeOnServer: the key server's log records that it made the key
// of bucket id for the gateway's client.
func checkMadeOnServer(t *testing.T, ks string, id []byte) {
	t.Helper()
	ch, err := oplog.Read(oplog.Path(ks))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ch.Records {
		if r.Op == "make" && strings.Contains(r.Detail, `client "gw"`) && strings.Contains(r.Detail, fmt.Sprintf("bucket=%x", id)) {
			return
		}
	}
	t.Errorf("the key server's log has no make record for bucket %x by the gateway", id)
}

// okIn runs holdfast with HOLDFAST_HOME=home.
func (k *ksEnv) okIn(home string, args ...string) string {
	k.t.Helper()
	code, out, errs := k.run([]string{"HOLDFAST_HOME=" + home}, args...)
	if code != 0 {
		k.t.Fatalf("holdfast %v in %s: exit %d\n%s%s", args, home, code, out, errs)
	}
	return out
}

// gwProc is a running `holdfast serve` and an S3 client of it.
type gwProc struct {
	cmd    *exec.Cmd
	url    string // the S3 endpoint (plain HTTP on 127.0.0.1)
	id     string // its admin access key
	secret string
	s3     *s3.Client
	stderr *lockedBuffer
	bodies map[string][]byte
}

func (g *gwProc) pid() int { return g.cmd.Process.Pid }

// startGateway runs `holdfast serve` on home, with an admin access key,
// where keys cannot be locked: without CAP_IPC_LOCK and with
// RLIMIT_MEMLOCK 0 the process holds its keys in ordinary pages.
func (k *ksEnv) startGateway(t *testing.T, home string) *gwProc {
	t.Helper()
	var key struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(k.okIn(home, "--json", "access", "add", "scan-"+filepath.Base(home), "--admin")), &key); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("prlimit", "--memlock=0:0", "setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", "--",
		k.bin, "serve", "--addr", "127.0.0.1:0", "--ops-addr", "", "--insecure-http", "--sample-interval", "0", "--log-level", "warn")
	cmd.Env = append(append([]string(nil), k.env...), "HOLDFAST_HOME="+home)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &gwProc{cmd: cmd, stderr: &lockedBuffer{}, bodies: map[string][]byte{}}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := regexp.MustCompile(`S3 endpoint (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
		}
		if strings.HasPrefix(sc.Text(), "  stop with") {
			break
		}
	}
	go io.Copy(io.Discard, out)
	if url == "" {
		t.Fatalf("serve printed no endpoint; stderr:\n%s", g.stderr.String())
	}
	g.url, g.id, g.secret = url, key.ID, key.Secret
	g.s3 = s3.New(s3.Options{BaseEndpoint: aws.String(url), Region: "us-east-1", UsePathStyle: true, RetryMaxAttempts: 1,
		HTTPClient: &http.Client{}, Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")})
	return g
}

// workload puts a small object and a multipart one in bucket (made if
// missing) and reads both back byte-exact.
func (g *gwProc) workload(t *testing.T, bucket string) {
	t.Helper()
	ctx := context.Background()
	if _, err := g.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		if _, err := g.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Fatalf("create bucket %s: %v\n%s", bucket, err, g.stderr.String())
		}
	}
	small := make([]byte, 70_000)
	rand.Read(small)
	if _, err := g.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("small"), Body: bytes.NewReader(small)}); err != nil {
		t.Fatalf("put %s/small: %v\n%s", bucket, err, g.stderr.String())
	}
	g.bodies[bucket+"/small"] = small
	up, err := g.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("parts")})
	if err != nil {
		t.Fatalf("create upload: %v", err)
	}
	var whole []byte
	var done []types.CompletedPart
	for i, n := range []int{5 << 20, 100_000} {
		b := make([]byte, n)
		rand.Read(b)
		whole = append(whole, b...)
		pr, err := g.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String("parts"), UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(b)})
		if err != nil {
			t.Fatalf("upload part %d: %v\n%s", i+1, err, g.stderr.String())
		}
		done = append(done, types.CompletedPart{ETag: pr.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	if _, err := g.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("parts"),
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatalf("complete upload: %v\n%s", err, g.stderr.String())
	}
	g.bodies[bucket+"/parts"] = whole
	g.get(t, bucket, "small")
	g.get(t, bucket, "parts")
}

func (g *gwProc) get(t *testing.T, bucket, key string) {
	t.Helper()
	out, err := g.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s/%s: %v\n%s", bucket, key, err, g.stderr.String())
	}
	b, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || !bytes.Equal(b, g.bodies[bucket+"/"+key]) {
		t.Fatalf("get %s/%s: %d bytes (%v) differ from the %d put", bucket, key, len(b), err, len(g.bodies[bucket+"/"+key]))
	}
}

// repoKeys are a repository's keys as its keyring and catalog give them.
type repoKeys struct {
	repo      keys.ID
	root      map[string][]byte // by "root key vN"
	bucket    map[string][]byte // by "bucket key vN of BUCKET"
	bucketIDs map[string][]byte
	bk        map[string]secret.Key // bucket/version → the key, for data keys
	cat       catalog.Catalog
}

// learnKeys opens the keyring file with the passphrase and unwraps every
// live bucket key record of home's catalog with it. A key server's
// records (source kind 3) are the keyring's wraps.
func learnKeys(t *testing.T, keyringPath string, pass []byte, home string) *repoKeys {
	t.Helper()
	cat, err := catalog.Open(context.Background(), filepath.Join(home, repo.CatalogFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return learnKeysFrom(t, keyringPath, pass, cat)
}

// learnKeysFrom is learnKeys with the catalog given.
func learnKeysFrom(t *testing.T, keyringPath string, pass []byte, cat catalog.Catalog) *repoKeys {
	t.Helper()
	ctx := context.Background()
	kr, err := keyring.Open(keyringPath, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Close() })
	m, err := kr.Export()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wipe()
	rk := &repoKeys{repo: kr.Repo(), root: map[string][]byte{}, bucket: map[string][]byte{}, bucketIDs: map[string][]byte{}, bk: map[string]secret.Key{}}
	for _, r := range m.Roots {
		if r.Key.Valid() {
			r.Key.Use(func(b []byte) error {
				rk.root[fmt.Sprintf("root key v%d", r.Info.Version)] = bytes.Clone(b)
				return nil
			})
		}
	}
	rk.cat = cat
	bl, err := cat.Buckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bl {
		rk.bucketIDs[b.Name] = bytes.Clone(b.ID[:])
		bks, err := cat.BucketKeys(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, bk := range bks {
			if bk.State == catalog.KeyDestroyed {
				continue
			}
			w := bk.Wrapped
			w.Source = keys.SourceKeyring
			ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: rk.repo, Bucket: b.ID, KEKVersion: w.KEKVersion, KeyVersion: bk.Version}
			key, err := kr.Unwrap(ctx, w, ad)
			if err != nil {
				t.Fatalf("unwrapping bucket key v%d of %s with the keyring: %v", bk.Version, b.Name, err)
			}
			t.Cleanup(key.Wipe)
			key.Use(func(kb []byte) error {
				rk.bucket[fmt.Sprintf("bucket key v%d of %s", bk.Version, b.Name)] = bytes.Clone(kb)
				return nil
			})
			rk.bk[fmt.Sprintf("%s/%d", b.Name, bk.Version)] = key
		}
	}
	return rk
}

// dataKey unwraps bucket/key's data key from the catalog's record.
func (rk *repoKeys) dataKey(t *testing.T, bucket, key string) []byte {
	t.Helper()
	ctx := context.Background()
	e, err := rk.cat.Get(ctx, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rk.cat.GetBucket(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	ad := keys.AD{Purpose: keys.PurposeDataKey, Repo: rk.repo, Bucket: b.ID, KEKVersion: e.KeyVersion, Object: e.ObjectID}
	dek, err := keys.UnwrapSoftware(rk.bk[fmt.Sprintf("%s/%d", bucket, e.KeyVersion)], ad, e.Wrapped)
	if err != nil {
		t.Fatalf("unwrapping the data key of %s/%s: %v", bucket, key, err)
	}
	defer dek.Wipe()
	var out []byte
	dek.Use(func(b []byte) error { out = bytes.Clone(b); return nil })
	return out
}

// all returns the root and bucket keys by name, with extra.
func (rk *repoKeys) all(extra map[string][]byte) map[string][]byte {
	m := map[string][]byte{}
	for n, b := range rk.root {
		m[n] = b
	}
	for n, b := range rk.bucket {
		m[n] = b
	}
	for n, b := range extra {
		m[n] = b
	}
	return m
}

// scanProcess reads every readable mapping of pid through /proc/PID/mem
// and returns where each needle was found. A readable mapping it cannot
// read fails the test (a blind spot), except the vDSO's data pages and
// memfd_secret mappings, which the kernel keeps from every reader.
func scanProcess(t *testing.T, pid int, needles map[string][]byte) map[string][]uint64 {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	hits := map[string][]uint64{}
	var read int64
	for l := range strings.Lines(string(maps)) {
		f := strings.Fields(l)
		var lo, hi uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
			t.Fatalf("maps line %q: %v", l, err)
		}
		if f[1][0] != 'r' {
			continue
		}
		buf := make([]byte, hi-lo)
		if n, err := mem.ReadAt(buf, int64(lo)); err != nil || n != len(buf) {
			name := strings.Join(f[5:], " ")
			if !strings.HasPrefix(name, "[vvar") && !strings.Contains(name, "secretmem") {
				t.Errorf("cannot read %s of the gateway: %v", strings.TrimSpace(l), err)
			}
			continue
		}
		read += int64(len(buf))
		for name, nd := range needles {
			for i := 0; ; {
				j := bytes.Index(buf[i:], nd)
				if j < 0 {
					break
				}
				hits[name] = append(hits[name], lo+uint64(i+j))
				i += j + 1
			}
		}
	}
	t.Logf("scanned %d bytes of process %d", read, pid)
	return hits
}

// scanFiles returns the files under dir that hold each needle.
func scanFiles(t *testing.T, dir string, needles map[string][]byte) map[string][]string {
	t.Helper()
	hits := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for name, nd := range needles {
			if bytes.Contains(b, nd) {
				hits[name] = append(hits[name], p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestKeyServerGatewaySealUnseal: a gateway on a home joined to a key
// server seals its keys when the posture policy fails (SIGHUP re-checks)
// and, the policy put back, unseals by opening the key server source
// again with the home's client certificate — no PIN, no passphrase. The
// control for the sealed refusal is the same GET before and after.
func TestKeyServerGatewaySealUnseal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("startGateway drops CAP_IPC_LOCK with setpriv: run it as root (CI does)")
	}
	k := newKSEnv(t)
	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	bundleDir := filepath.Join(k.dir, "gw-bundle")
	k.ok("keyserver", "enroll", "gw", "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", bundleDir)
	p := k.serve(ks, "127.0.0.1:0")
	home := filepath.Join(k.dir, "home")
	k.ok("keyserver", "join", "--url", p.url, "--client-dir", bundleDir)
	policy := func(text string) {
		if err := os.WriteFile(filepath.Join(home, "policy"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	policy("profile baseline\n")
	g := k.startGateway(t, home)
	g.workload(t, "vault")
	get := func() error {
		out, err := g.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("vault"), Key: aws.String("small")})
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, out.Body)
		out.Body.Close()
		return err
	}
	policy("profile baseline\ncvm.type require\n")
	g.cmd.Process.Signal(syscall.SIGHUP)
	if !waitUntil(30*time.Second, func() bool { return strings.Contains(g.stderr.String(), "keys sealed") }) {
		t.Fatalf("the gateway did not seal; stderr:\n%s", g.stderr.String())
	}
	if err := get(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a GET while sealed: %v", err)
	}
	policy("profile baseline\n")
	g.cmd.Process.Signal(syscall.SIGHUP)
	if !waitUntil(30*time.Second, func() bool { return get() == nil }) {
		t.Fatalf("the gateway did not unseal; stderr:\n%s", g.stderr.String())
	}
	g.get(t, "vault", "small")
}
