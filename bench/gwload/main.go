// Command gwload is the load generator of bench/gateway.sh: it drives an
// S3 endpoint (the gateway, or the server behind it) from many concurrent
// clients in one process, with the AWS SDK, and prints requests per
// second. Credentials come from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint URL")
	caFile := flag.String("ca", "", "CA certificate (PEM) of the endpoint")
	bucket := flag.String("bucket", "load", "bucket (created if missing)")
	op := flag.String("op", "put", "put, get (small objects for -duration) or big (one upload of -size per client)")
	clients := flag.Int("clients", 16, "concurrent clients")
	size := flag.Int64("size", 4096, "object size in bytes")
	dur := flag.Duration("duration", 5*time.Second, "how long put and get run")
	objects := flag.Int("objects", 256, "objects that get reads, in turn (put first)")
	flag.Parse()
	if err := run(*endpoint, *caFile, *bucket, *op, *clients, *objects, *size, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "gwload:", err)
		os.Exit(1)
	}
}

func run(endpoint, caFile, bucket, op string, clients, objects int, size int64, dur time.Duration) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: clients * 2}
	c := s3.New(s3.Options{BaseEndpoint: aws.String(endpoint), Region: "us-east-1", UsePathStyle: true,
		HTTPClient: &http.Client{Transport: tr}, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), "")})
	ctx := context.Background()
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); err != nil {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
			return fmt.Errorf("creating bucket: %w", err)
		}
	}
	body := make([]byte, size)
	if op != "big" {
		if _, err := rand.Read(body); err != nil {
			return err
		}
	}
	if op == "get" {
		for i := range objects {
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(fmt.Sprint("get/", i)),
				Body: bytes.NewReader(body), ContentLength: aws.Int64(size)}); err != nil {
				return err
			}
		}
	}
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				var err error
				switch op {
				case "put":
					if time.Now().After(deadline) {
						return
					}
					_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(fmt.Sprintf("put/%d/%d", w, i)),
						Body: bytes.NewReader(body), ContentLength: aws.Int64(size)})
				case "get":
					if time.Now().After(deadline) {
						return
					}
					var out *s3.GetObjectOutput
					out, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(fmt.Sprint("get/", (w*31+i)%objects))})
					if err == nil {
						_, err = io.Copy(io.Discard, out.Body)
						out.Body.Close()
					}
				case "big":
					if i > 0 {
						return
					}
					_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(fmt.Sprint("big/", w)),
						Body: io.LimitReader(zeros{}, size), ContentLength: aws.Int64(size)})
				default:
					err = fmt.Errorf("unknown op %q", op)
				}
				if err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "gwload:", err)
					if op == "big" {
						return
					}
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("op=%s clients=%d size=%d requests=%d failed=%d seconds=%.2f rps=%.0f MBps=%.1f\n",
		op, clients, size, done.Load(), failed.Load(), el, float64(done.Load())/el, float64(done.Load())*float64(size)/el/1e6)
	if failed.Load() > 0 {
		return fmt.Errorf("%d requests failed", failed.Load())
	}
	return nil
}

// zeros is an endless stream of zero bytes (the big uploads' bodies: what
// is measured is the gateway's memory, not the data).
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
