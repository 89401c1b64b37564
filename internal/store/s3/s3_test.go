package s3

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// These tests run against a real S3 server, versitygw, started here on
// 127.0.0.1 twice: over HTTPS with a self-signed CA, and over plain HTTP
// (allowed for loopback only). `make test` builds the binary into
// .ci/bin; HOLDFAST_VERSITYGW may name another.

type server = versitygw.Server

var httpsSrv, httpSrv *server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "holdfast-s3-test-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		var err error
		if httpsSrv, err = versitygw.Start(dir, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer httpsSrv.Stop()
		if httpSrv, err = versitygw.Start(dir, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer httpSrv.Stop()
		os.Setenv("AWS_ACCESS_KEY_ID", versitygw.AccessKey)
		os.Setenv("AWS_SECRET_ACCESS_KEY", versitygw.SecretKey)
		os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		os.Unsetenv("AWS_PROFILE")
		os.Setenv("AWS_CONFIG_FILE", os.DevNull)
		os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
		return m.Run()
	}()
	os.Exit(code)
}

var bucketN int

// newBucket creates a fresh bucket on srv and returns a store in it.
func newStore(t *testing.T, srv *server, mod func(*Config)) *Store {
	t.Helper()
	bucketN++
	c := Config{Bucket: fmt.Sprintf("hf-test-%d-%d", os.Getpid(), bucketN), Prefix: "repo/", Endpoint: srv.Endpoint,
		PathStyle: true, CABundle: srv.CAFile, AllowHTTP: strings.HasPrefix(srv.Endpoint, "http:"), PartSize: 5 << 20, Concurrency: 2}
	if mod != nil {
		mod(&c)
	}
	s, err := New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(c.Bucket)}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceHTTPS(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, httpsSrv, nil) })
}

func TestConformanceLoopbackHTTP(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, httpSrv, nil) })
}
