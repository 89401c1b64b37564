package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestVirtualHostAbsoluteForm: a presigned URL for docs/report, virtual-
// hosted style, must not be turned into a read of other/report by sending
// it in absolute form (GET https://other.DOMAIN/report) with the signed
// Host header docs.DOMAIN: the signature covers the Host header, but the
// bucket is taken from the request URI's host.
func TestVirtualHostAbsoluteForm(t *testing.T) {
	const domain = "s3.holdfast.test"
	cert, pool := domainCert(t, domain)
	g := startGW(t, func(o *Options) { o.Certificate = cert; o.VirtualDomain = domain })
	addr := g.srv.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	dialer := &net.Dialer{}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}}
	k := g.acc.keys[0]
	vh := s3.New(s3.Options{BaseEndpoint: aws.String("https://" + domain + ":" + port), Region: "us-east-1",
		HTTPClient: hc, RetryMaxAttempts: 1, Credentials: credentials.NewStaticCredentialsProvider(k.id, k.secret, "")})
	ctx := context.Background()
	for _, b := range []string{"docs", "other"} {
		if _, err := vh.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
		if _, err := put(t, vh, b, "report", []byte("contents of "+b), nil); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := s3.NewPresignClient(vh).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("docs"), Key: aws.String("report")},
		s3.WithPresignExpires(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// raw sends the presigned request with the given request-target and
	// the Host header the URL was signed for.
	raw := func(target string) (int, []byte) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "docs." + domain})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := "GET " + target + " HTTP/1.1\r\nHost: docs." + domain + ":" + port + "\r\nConnection: close\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	u := ps.URL[len("https://docs."+domain+":"+port):] // "/report?X-Amz-..."
	// Control: the presigned URL, in origin form, reads docs/report.
	if code, b := raw(u); code != 200 || !bytes.Equal(b, []byte("contents of docs")) {
		t.Fatalf("control: presigned GET in origin form: %d %q", code, b)
	}
	// Control: in absolute form naming the signed host, the same.
	if code, b := raw("https://docs." + domain + ":" + port + u); code != 200 || !bytes.Equal(b, []byte("contents of docs")) {
		t.Fatalf("control: presigned GET in absolute form: %d %q", code, b)
	}
	// The attack: absolute form naming another bucket's host.
	if code, b := raw("https://other." + domain + ":" + port + u); code == 200 || bytes.Contains(b, []byte("contents of other")) {
		t.Errorf("a presigned URL for docs/report read another bucket: %d %q", code, b)
	}
}
