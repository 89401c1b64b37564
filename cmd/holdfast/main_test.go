package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"holdfast": func() {
			// Scripts get cheap Argon2 parameters; this hook exists only in
			// test binaries.
			keyring.SetInsecureTestParamsForTesting()
			takeSecretsFromEnv() // as main does
			var hooks *repo.Hooks
			if n, err := strconv.ParseInt(os.Getenv("HOLDFAST_TEST_KILL_AFTER_BYTES"), 10, 64); err == nil {
				hooks = &repo.Hooks{WrapStore: func(s store.Store) store.Store { return killAfter{s, n} }}
			}
			if p := os.Getenv("HOLDFAST_TEST_KILL_AT"); p != "" {
				hooks = killAt(hooks, p)
			}
			os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, hooks))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOLDFAST_HOME", filepath.Join(e.WorkDir, "home"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"code":     cmdCode,
			"provider": cmdProvider,
			"mkrandom": cmdMkrandom,
			"jsonget":  cmdJSONGet,
			"storeobj": cmdStoreObj,
			"chtime":   cmdChtime,
			"mtime":    cmdMtime,
			"badname":  cmdBadname,
		},
	})
}

// TestScriptsS3 runs testdata/s3 against a real S3 server (versitygw over
// HTTPS with a self-signed CA) started for the test.
func TestScriptsS3(t *testing.T) {
	srv, err := versitygw.Start(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	var n atomic.Int64 // scripts run in parallel
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/s3",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			bucket := fmt.Sprintf("hf-cli-%d", n.Add(1))
			if err := srv.MakeBucket(context.Background(), bucket); err != nil {
				return err
			}
			e.Setenv("HOLDFAST_HOME", filepath.Join(e.WorkDir, "home"))
			e.Setenv("S3_BUCKET", bucket)
			e.Setenv("S3_ENDPOINT", srv.Endpoint)
			e.Setenv("S3_CA", srv.CAFile)
			e.Setenv("S3_PIN", srv.SPKI)
			e.Setenv("S3_ACCESS", versitygw.AccessKey) // for scripts that give credentials another way
			e.Setenv("S3_SECRET", versitygw.SecretKey)
			e.Setenv("AWS_ACCESS_KEY_ID", versitygw.AccessKey)
			e.Setenv("AWS_SECRET_ACCESS_KEY", versitygw.SecretKey)
			e.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			e.Setenv("AWS_CONFIG_FILE", os.DevNull)
			e.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
			e.Values["s3"] = srv
			e.Values["serve"] = &serveState{}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"code":      cmdCode,
			"mkrandom":  cmdMkrandom,
			"chtime":    cmdChtime,
			"mtime":     cmdMtime,
			"s3keys":    cmdS3Keys,
			"awsheads":  cmdAWSHeads,
			"s3uploads": cmdS3Uploads,
			"jsonget":   cmdJSONGet,
			"s3obj":     cmdS3Obj,
			"serve":     cmdServe,
			"servehup":  cmdServeHUP,
			"s3setmeta": cmdS3SetMeta,
		},
	})
}

// s3keys BUCKET lists every key in the bucket with its size and any user
// metadata, content type and tags the provider holds for it, one per
// line, as the provider sees them.
func cmdS3Keys(ts *testscript.TestScript, neg bool, args []string) {
	srv := ts.Value("s3").(*versitygw.Server)
	c, err := srv.Client()
	ts.Check(err)
	ctx := context.Background()
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(args[0])})
	ts.Check(err)
	for _, o := range out.Contents {
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(args[0]), Key: o.Key})
		ts.Check(err)
		tg, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(args[0]), Key: o.Key})
		ts.Check(err)
		tags := map[string]string{}
		for _, t := range tg.TagSet {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		fmt.Fprintf(ts.Stdout(), "%s %d meta=%v type=%s tags=%v\n", aws.ToString(o.Key), aws.ToInt64(o.Size), h.Metadata, aws.ToString(h.ContentType), tags)
	}
}

// awsheads FILE runs `aws s3api head-object` on every key listed in FILE
// (in $S3_BUCKET, through $S3_ENDPOINT) and prints each answer, then a line
// "heads: N objects, M with metadata" counting answers with user metadata.
func cmdAWSHeads(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: awsheads FILE")
	}
	keys := strings.Fields(ts.ReadFile(args[0]))
	if len(keys) == 0 {
		ts.Fatalf("awsheads: no keys in %s", args[0])
	}
	withMeta := 0
	for _, k := range keys {
		cmd := exec.Command("/usr/bin/aws", "s3api", "head-object", "--bucket", ts.Getenv("S3_BUCKET"), "--key", k,
			"--endpoint-url", ts.Getenv("S3_ENDPOINT"), "--ca-bundle", ts.Getenv("S3_CA"), "--output", "json")
		cmd.Env = os.Environ()
		for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED"} {
			cmd.Env = append(cmd.Env, v+"="+ts.Getenv(v))
		}
		out, err := cmd.Output()
		if err != nil {
			ts.Fatalf("aws s3api head-object %s: %v\n%s", k, err, out)
		}
		var h struct{ Metadata map[string]string }
		ts.Check(json.Unmarshal(out, &h))
		if len(h.Metadata) > 0 {
			withMeta++
		}
		fmt.Fprintf(ts.Stdout(), "%s\n", out)
	}
	fmt.Fprintf(ts.Stdout(), "heads: %d objects, %d with metadata\n", len(keys), withMeta)
}

// code N CMD ARGS... runs CMD and requires exit code N.
func cmdCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: code N command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("bad exit code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%v", err)
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// mkrandom FILE SIZE writes SIZE random bytes.
func cmdMkrandom(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mkrandom file size")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	b := make([]byte, n)
	rand.Read(b)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
}

// provider edits the local store as a malicious provider would:
//
//	provider flip BUCKET/KEY OFFSET   flip one bit
//	provider cut BUCKET/KEY LEN       truncate
//	provider rm BUCKET/KEY            delete
//	provider save BUCKET/KEY FILE     copy the stored bytes out
//	provider restore BUCKET/KEY FILE  put saved bytes back in its place
//	provider swap BUCKET/KEY BUCKET/KEY2
//	provider inject BUCKET/KEY NAME   copy its stored bytes to a new name
func cmdProvider(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: provider ACTION BUCKET/KEY [ARG]")
	}
	p := storedPath(ts, args[1])
	arg := ""
	if len(args) > 2 {
		arg = args[2]
	}
	b, err := os.ReadFile(p)
	ts.Check(err)
	switch args[0] {
	case "flip", "cut":
		n, err := strconv.Atoi(arg)
		ts.Check(err)
		if args[0] == "flip" {
			b[n] ^= 1
		} else {
			b = b[:n]
		}
		ts.Check(os.WriteFile(p, b, 0o600))
	case "rm":
		ts.Check(os.Remove(p))
	case "save":
		ts.Check(os.WriteFile(ts.MkAbs(arg), b, 0o600))
	case "restore":
		saved, err := os.ReadFile(ts.MkAbs(arg))
		ts.Check(err)
		ts.Check(os.WriteFile(p, saved, 0o600))
	case "swap":
		q := storedPath(ts, arg)
		other, err := os.ReadFile(q)
		ts.Check(err)
		ts.Check(os.WriteFile(p, other, 0o600))
		ts.Check(os.WriteFile(q, b, 0o600))
	case "inject":
		q := filepath.Join(ts.Getenv("HOLDFAST_HOME"), "store", arg[:2], arg)
		ts.Check(os.MkdirAll(filepath.Dir(q), 0o700))
		ts.Check(os.WriteFile(q, b, 0o600))
	default:
		ts.Fatalf("unknown provider action %q", args[0])
	}
}

// storedPath is the local store file behind BUCKET/KEY.
func storedPath(ts *testscript.TestScript, obj string) string {
	ts.Check(ts.Exec("holdfast", "stat", "--json", obj))
	var st struct{ Object string }
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &st))
	return filepath.Join(ts.Getenv("HOLDFAST_HOME"), "store", st.Object[:2], st.Object)
}

// killAfter is a store whose Put kills the process (SIGKILL) once n bytes
// of a body have been read: a crash in the middle of an upload.
type killAfter struct {
	store.Store
	n int64
}

func (k killAfter) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return k.Store.Put(ctx, name, &killReader{r: r, left: k.n}, size)
}

type killReader struct {
	r    io.Reader
	left int64
}

func (k *killReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if k.left -= int64(n); k.left < 0 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return n, err
}

// s3uploads BUCKET prints the bucket's incomplete multipart uploads.
func cmdS3Uploads(ts *testscript.TestScript, neg bool, args []string) {
	srv := ts.Value("s3").(*versitygw.Server)
	c, err := srv.Client()
	ts.Check(err)
	out, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(args[0])})
	ts.Check(err)
	for _, u := range out.Uploads {
		fmt.Fprintf(ts.Stdout(), "upload %s\n", aws.ToString(u.Key))
	}
}

// serve [FLAGS...] starts `holdfast serve` in the background on free
// loopback ports with the script's environment, waits until it prints its
// endpoint, and sets GW_URL (the S3 endpoint), GW_OPS (the ops address)
// and GW_CA (its certificate). At the end of the script the server gets
// SIGTERM and must exit 0.
func cmdServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("serve does not take !")
	}
	bin, err := lookPathIn("holdfast", ts.Getenv("PATH"))
	if err != nil {
		ts.Fatalf("no holdfast on the script's PATH: %v", err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"}, args...)...)
	cmd.Dir = ts.Getenv("WORK")
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "HOLDFAST_HOME", "HOLDFAST_PASSPHRASE", "HOLDFAST_POLICY",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
		"AWS_EC2_METADATA_DISABLED", "AWS_REGION"} {
		if v := ts.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		ts.Fatalf("%v", err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		ts.Fatalf("%v", err)
	}
	st := &serveState{cmd: cmd, changed: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		ts.Fatalf("starting holdfast serve: %v", err)
	}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		st.follow(errPipe)
	}()
	if v, ok := ts.Value("serve").(*serveState); ok {
		v.set(st) // a second serve in one script: the newest is the one servehup signals
	}
	sc := bufio.NewScanner(out)
	var url, ops string
	for sc.Scan() {
		l := sc.Text()
		ts.Logf("serve: %s", l)
		if m := regexp.MustCompile(`S3 endpoint (\S+)`).FindStringSubmatch(l); m != nil {
			url = m[1]
		}
		if m := regexp.MustCompile(`health and metrics: http://(\S+)/healthz`).FindStringSubmatch(l); m != nil {
			ops = m[1]
		}
		if strings.HasPrefix(l, "  stop with") {
			break
		}
	}
	if url == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		<-stderrDone
		ts.Fatalf("holdfast serve printed no endpoint; stderr:\n%s", st.text())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	ts.Setenv("GW_URL", url)
	ts.Setenv("GW_OPS", ops)
	ts.Setenv("GW_CA", filepath.Join(ts.Getenv("HOLDFAST_HOME"), "gateway", "cert.pem"))
	ts.Defer(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-stderrDone
		if err := cmd.Wait(); err != nil {
			ts.Logf("holdfast serve exited: %v; stderr:\n%s", err, st.text())
			ts.Fatalf("holdfast serve did not stop cleanly on SIGTERM")
		}
	})
}

// serveState follows a running serve's log (its stderr).
type serveState struct {
	mu      sync.Mutex
	cmd     *exec.Cmd
	lines   []string
	changed chan struct{} // closed and replaced at every new line
	target  *serveState   // in the script's value: the serve started last
}

func (s *serveState) set(t *serveState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.target = t
}

func (s *serveState) current() *serveState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.target
}

func (s *serveState) follow(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.mu.Lock()
		s.lines = append(s.lines, sc.Text())
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

func (s *serveState) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// waitLine waits until a log line from index from on matches re.
func (s *serveState) waitLine(re *regexp.Regexp, from int, timeout <-chan time.Time) (string, bool) {
	for {
		s.mu.Lock()
		for _, l := range s.lines[from:] {
			if re.MatchString(l) {
				s.mu.Unlock()
				return l, true
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			return "", false
		}
	}
}

// servehup REGEXP sends SIGHUP to the running serve (a posture re-check,
// with the policy read anew) and waits until it logs a line matching
// REGEXP.
func cmdServeHUP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: servehup REGEXP")
	}
	v, _ := ts.Value("serve").(*serveState)
	var st *serveState
	if v != nil {
		st = v.current()
	}
	if st == nil {
		ts.Fatalf("servehup: no serve running")
	}
	re := regexp.MustCompile(args[0])
	st.mu.Lock()
	from := len(st.lines)
	st.mu.Unlock()
	ts.Check(st.cmd.Process.Signal(syscall.SIGHUP))
	l, ok := st.waitLine(re, from, time.After(60*time.Second))
	if !ok {
		ts.Fatalf("serve logged no line matching %q after SIGHUP; its log:\n%s", args[0], st.text())
	}
	ts.Logf("serve: %s", l)
}

func lookPathIn(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, path)
}
