package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/posture"
)

// TestAuditScripts runs testdata/audit: audit init, verify and show on a
// log of key operations, and tampering with it.
func TestAuditScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/audit",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOLDFAST_HOME", filepath.Join(e.WorkDir, "home"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"code": cmdCode, "flipnamed": cmdFlipNamed},
	})
}

// cmdFlipNamed flips one bit of the byte at OFFSET of the file whose path
// is the first line of NAMEFILE: an edit that always changes the file
// (writing a fixed byte there left it as it was when that byte was
// already there, one time in 256).
//
//	flipnamed NAMEFILE OFFSET
func cmdFlipNamed(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipnamed NAMEFILE OFFSET")
	}
	name, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	p := strings.TrimSpace(strings.SplitN(string(name), "\n", 2)[0])
	off, err := strconv.Atoi(args[1])
	ts.Check(err)
	b, err := os.ReadFile(p)
	ts.Check(err)
	if off >= len(b) {
		ts.Fatalf("%s has %d bytes, no byte %d", p, len(b), off)
	}
	b[off] ^= 1
	ts.Check(os.WriteFile(p, b, 0o600))
}

// TestAuditParseSince: --since takes a time or a duration back from now.
func TestAuditParseSince(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"2026-01-02T03:04:05Z": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"90m":                  now.Add(-90 * time.Minute),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "2026-01-02"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}

// TestAuditServe: under serve every S3 operation is an entry naming the
// access key, the operation and its bucket and key; an access key over
// its rate limit is logged as an anomaly and (with a cut-off) refused,
// the refusal recorded too; and the log verifies after serve stops.
// Control: the requests before the limit succeed.
func TestAuditServe(t *testing.T) {
	c := newCLI(t)
	c.must("init")
	var key struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(c.must("--json", "access", "add", "client", "--admin")), &key); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, serveFlags{addr: "127.0.0.1:0", insecureHTTP: true, region: "us-east-1", maxConns: 4, maxReqs: 4,
		opsAddr: "127.0.0.1:0", logFormat: "text", logLevel: "error", postureEvery: posture.DefaultInterval,
		audit: auditFlags{create: true, every: 100, queue: 1000,
			rate: audit.RateConfig{Window: time.Hour, Floor: 1, Factor: 3, CutOff: time.Hour}}})
	ctx, url := context.Background(), srv.URL
	cl := s3.New(s3.Options{BaseEndpoint: aws.String(url), Region: "us-east-1", UsePathStyle: true, RetryMaxAttempts: 1,
		HTTPClient: &http.Client{}, Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")})
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("photos")}); err != nil {
		t.Fatal(err)
	}
	// Control for the refused ListBuckets below: before the cut-off it
	// answers (it uses no key, so the rate watch does not count it; it is
	// audited as any S3 operation is).
	if lb, err := cl.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil || len(lb.Buckets) != 1 {
		t.Fatalf("control: list buckets: %v %+v", err, lb)
	}
	// Three key-using operations: within the limit (3 × floor 1).
	for _, k := range []string{"a.jpg", "b.jpg"} {
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("photos"), Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
			t.Fatalf("control: put %s: %v", k, err)
		}
	}
	g, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("photos"), Key: aws.String("a.jpg")})
	if err != nil {
		t.Fatalf("control: get: %v", err)
	}
	io.Copy(io.Discard, g.Body)
	g.Body.Close()
	// The fourth is over: done, then the key is cut off.
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("photos"), Key: aws.String("c.jpg"), Body: strings.NewReader("x")}); err != nil {
		t.Fatalf("put c.jpg: %v", err)
	}
	_, err = cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("photos"), Key: aws.String("a.jpg")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Fatalf("get after the anomaly: %v, want AccessDenied", err)
	}
	// ListBuckets asks about no bucket, and is refused too.
	if lb, err := cl.ListBuckets(ctx, &s3.ListBucketsInput{}); !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Fatalf("list buckets after the anomaly: %v %+v, want AccessDenied", err, lb)
	}
	// The anomaly and the refusal are counted; no write failed.
	if srv.Ops == "" {
		t.Fatalf("no ops address:\n%s", srv.out.String())
	}
	resp, err := http.Get("http://" + srv.Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`holdfast_audit_rate_anomalies_total 1\n`, `holdfast_audit_rate_refused_checks_total [1-9]\d*\n`, `holdfast_audit_write_failures_total 0\n`,
		`holdfast_audit_store_checkpoint_failures_total 0\n`} {
		if !regexp.MustCompile(m).Match(mb) {
			t.Errorf("metrics lack %q", m)
		}
	}
	srv.stop()

	var es []audit.Entry
	if err := json.Unmarshal([]byte(c.must("--json", "audit", "show")), &es); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range es {
		if en.Kind != audit.KindCheckpoint && en.Kind != audit.KindKey {
			got = append(got, strings.Join([]string{string(en.Kind), en.Actor, en.Op, en.Subject, en.Status}, " "))
		}
	}
	want := []string{
		"object " + key.ID + " CreateBucket photos ok",
		"object " + key.ID + " ListBuckets  ok",
		"object " + key.ID + " PutObject photos/a.jpg ok",
		"object " + key.ID + " PutObject photos/b.jpg ok",
		"object " + key.ID + " GetObject photos/a.jpg ok",
		"object " + key.ID + " PutObject photos/c.jpg ok",
		"anomaly " + key.ID + " rate  anomaly",
		"refusal " + key.ID + " cut-off photos AccessDenied",
		"refusal " + key.ID + " ListBuckets  AccessDenied",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if last := es[len(es)-1]; last.Kind != audit.KindCheckpoint {
		t.Fatalf("the log ends with %q, want serve's last checkpoint", last.Kind)
	}
	// serve's last checkpoint (after serve-stop) is in the store too.
	var stopCheckpoint uint64
	for i, en := range es {
		if en.Op == "serve-stop" && i+1 < len(es) && es[i+1].Kind == audit.KindCheckpoint {
			stopCheckpoint = es[i+1].Seq
		}
	}
	out := c.must("audit", "verify")
	if !regexp.MustCompile(`intact, \d+ entries`).MatchString(out) {
		t.Fatalf("verify: %s", out)
	}
	// (Commands after serve — this verify's own key use — end with
	// checkpoints of their own, in the store too: the newest is at least
	// serve's.)
	m := regexp.MustCompile(`store checkpoints: \d+, newest seq (\d+), all reached`).FindStringSubmatch(out)
	if stopCheckpoint == 0 || m == nil {
		t.Fatalf("verify: want serve's last checkpoint (seq %d) in the store:\n%s", stopCheckpoint, out)
	}
	if newest, _ := strconv.ParseUint(m[1], 10, 64); newest < stopCheckpoint {
		t.Fatalf("verify: the store's newest checkpoint is seq %d, older than serve's last (%d):\n%s", newest, stopCheckpoint, out)
	}
	// The tail cut by one line (serve's last checkpoint): detected.
	logPath := filepath.Join(audit.Dir(c.home), audit.LogName)
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	if err := os.WriteFile(logPath, []byte(strings.Join(lines[:len(lines)-1], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := c.run("audit", "verify"); code != exitDamaged || !strings.Contains(errs, "does not reach checkpoint") {
		t.Fatalf("verify after a cut: exit %d %s", code, errs)
	}
}

// TestAuditRateCountsEveryKeyUse: every operation that unwraps a data
// key counts towards an access key's rate, UploadPartCopy (which opens
// its source object) as CopyObject does: a key that copies objects part
// by part into one upload is cut off like one that copies them whole,
// and so is one that changes tags (each change opens the object and seals
// it again) or asks HeadObject for a part (which opens the manifest).
// Controls: the same number of CopyObjects is counted; plain HeadObjects,
// answered from the catalog, are not.
func TestAuditRateCountsEveryKeyUse(t *testing.T) {
	for _, op := range []string{"CopyObject", "UploadPartCopy", "PutObjectTagging", "HeadObjectPart", "HeadObject"} {
		t.Run(op, func(t *testing.T) {
			c := newCLI(t)
			c.must("init")
			var key struct{ ID, Secret string }
			if err := json.Unmarshal([]byte(c.must("--json", "access", "add", "client", "--admin")), &key); err != nil {
				t.Fatal(err)
			}
			srv := startServe(t, serveFlags{addr: "127.0.0.1:0", insecureHTTP: true, region: "us-east-1", maxConns: 4, maxReqs: 4,
				logFormat: "text", logLevel: "error", postureEvery: posture.DefaultInterval,
				audit: auditFlags{create: true, every: 100, queue: 1000,
					rate: audit.RateConfig{Window: time.Hour, Floor: 1, Factor: 4, CutOff: time.Hour}}})
			ctx := context.Background()
			cl := s3.New(s3.Options{BaseEndpoint: aws.String(srv.URL), Region: "us-east-1", UsePathStyle: true, RetryMaxAttempts: 1,
				HTTPClient: &http.Client{}, Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")})
			b := aws.String("photos")
			if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: b}); err != nil {
				t.Fatal(err)
			}
			// Key use 1 and 2: within the limit (4 × floor 1).
			if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: aws.String("a.jpg"), Body: strings.NewReader("x")}); err != nil {
				t.Fatal(err)
			}
			up, err := cl.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("all")})
			if err != nil {
				t.Fatal(err)
			}
			// Key use 3 to 5: the fifth is over the limit.
			for i := int32(1); i <= 3; i++ {
				switch op {
				case "CopyObject":
					_, err = cl.CopyObject(ctx, &s3.CopyObjectInput{Bucket: b, Key: aws.String(fmt.Sprintf("copy%d", i)), CopySource: aws.String("photos/a.jpg")})
				case "HeadObjectPart":
					_, err = cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String("a.jpg"), PartNumber: aws.Int32(1)})
				case "HeadObject":
					_, err = cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String("a.jpg")})
				case "PutObjectTagging":
					_, err = cl.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: b, Key: aws.String("a.jpg"),
						Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("n"), Value: aws.String(fmt.Sprint(i))}}}})
				default:
					_, err = cl.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: b, Key: aws.String("all"), UploadId: up.UploadId,
						PartNumber: aws.Int32(i), CopySource: aws.String("photos/a.jpg")})
				}
				if err != nil {
					t.Fatalf("%s %d: %v", op, i, err)
				}
			}
			_, err = cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String("a.jpg")})
			if op == "HeadObject" {
				if err != nil {
					t.Fatalf("head after two key uses and three plain heads: %v, want an answer", err)
				}
			} else {
				var ae smithy.APIError
				if !errors.As(err, &ae) || (ae.ErrorCode() != "AccessDenied" && ae.ErrorCode() != "Forbidden") {
					t.Fatalf("head after five key uses (%s): %v, want the key cut off", op, err)
				}
			}
			srv.stop()
		})
	}
}
