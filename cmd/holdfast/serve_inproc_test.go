package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/posture"
)

// inProcServe is `holdfast serve` run in the test's process on the home
// the environment names (newCLI), with its output captured.
type inProcServe struct {
	t      *testing.T
	out    lockedBuffer
	done   chan error
	cancel context.CancelFunc
	URL    string // the S3 endpoint
	Ops    string // the ops address (host:port), if f.opsAddr was set
}

// startServe runs serve with f and waits for its banner.
func startServe(t *testing.T, f serveFlags) *inProcServe {
	t.Helper()
	s := &inProcServe{t: t, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	t.Cleanup(cancel)
	e := &env{stdin: strings.NewReader(""), stdout: &s.out, stderr: &s.out}
	go func() { s.done <- e.serve(ctx, f) }()
	endpoint := regexp.MustCompile(`S3 endpoint (https?://[0-9.:]+)`)
	s.waitFor("serve to start", func() bool {
		m := endpoint.FindStringSubmatch(s.out.String())
		if m != nil {
			s.URL = m[1]
		}
		return m != nil
	})
	if m := regexp.MustCompile(`health and metrics: http://(\S+)/healthz`).FindStringSubmatch(s.out.String()); m != nil {
		s.Ops = m[1]
	}
	return s
}

// waitFor polls cond until it holds; the test fails if 30 s pass first or
// serve exits meanwhile.
func (s *inProcServe) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("waited 30 s for %s:\n%s", what, s.out.String())
		}
		select {
		case err := <-s.done:
			s.t.Fatalf("serve: %v\n%s", err, s.out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop cancels serve and waits for it to return, without error.
func (s *inProcServe) stop() {
	s.t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("serve: %v\n%s", err, s.out.String())
		}
	case <-time.After(30 * time.Second):
		s.t.Fatal("serve did not stop")
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeBanner: what serve prints for the AWS CLI works without an AWS
// configuration: the region the gateway signs for (the CLI asks for
// bucket location "aws-global" without one, which it refuses), and, when
// it made no key (its output is no terminal), how to make one.
func TestServeBanner(t *testing.T) {
	c := newCLI(t)
	c.must("init")
	srv := startServe(t, serveFlags{addr: "127.0.0.1:0", insecureHTTP: true, region: "eu-test-1", maxConns: 4, maxReqs: 4,
		logFormat: "text", logLevel: "error", postureEvery: posture.DefaultInterval})
	srv.stop()
	out := srv.out.String()
	for _, want := range []string{"export AWS_DEFAULT_REGION=eu-test-1\n", "holdfast access add NAME --admin", "aws --endpoint-url " + srv.URL} {
		if !strings.Contains(out, want) {
			t.Errorf("serve's banner lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "created the first access key") {
		t.Errorf("serve made a key with its output going to no terminal:\n%s", out)
	}
}
