package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestVirtualHostedStyle: with a virtual domain, a client that addresses
// buckets as BUCKET.DOMAIN (the SDK without path style) creates, writes,
// lists and reads through the certificate made for the domain, and
// path-style requests to the same gateway still work. Control: the same
// virtual-hosted client against a gateway without the domain fails.
func TestVirtualHostedStyle(t *testing.T) {
	const domain = "s3.holdfast.test"
	cert, pool := domainCert(t, domain)
	if !CoversVirtualDomain(cert.Leaf, domain) {
		t.Fatal("the certificate made for the domain does not cover it")
	}
	if plain, _, _, err := LoadOrCreateCert(filepath.Join(t.TempDir(), "plain"), nil); err != nil || CoversVirtualDomain(plain.Leaf, domain) {
		t.Fatalf("a certificate made without the domain covers it (%v)", err)
	}
	for _, withDomain := range []bool{true, false} {
		t.Run(strconv.FormatBool(withDomain), func(t *testing.T) {
			g := startGW(t, func(o *Options) {
				o.Certificate = cert
				if withDomain {
					o.VirtualDomain = domain
				}
			})
			// Every name under the domain resolves to the gateway.
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
			client := func(pathStyle bool) *s3.Client {
				return s3.New(s3.Options{
					BaseEndpoint: aws.String("https://" + domain + ":" + port), Region: "us-east-1", UsePathStyle: pathStyle,
					HTTPClient: hc, RetryMaxAttempts: 1,
					Credentials: credentials.NewStaticCredentialsProvider(k.id, k.secret, ""),
				})
			}
			ctx := context.Background()
			vh := client(false)
			_, err := vh.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("vhost")})
			if !withDomain {
				if err == nil {
					t.Fatal("a virtual-hosted request to a gateway without the domain succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("create bucket, virtual-hosted: %v", err)
			}
			data := random(t, 100000)
			if _, err := put(t, vh, "vhost", "dir/obj", data, nil); err != nil {
				t.Fatalf("put, virtual-hosted: %v", err)
			}
			lo, err := vh.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("vhost")})
			if err != nil || len(lo.Contents) != 1 || aws.ToString(lo.Contents[0].Key) != "dir/obj" {
				t.Fatalf("list, virtual-hosted: %+v, %v", lo, err)
			}
			for name, c := range map[string]*s3.Client{"virtual-hosted": vh, "path style": client(true)} {
				if got, _, err := get(c, "vhost", "dir/obj", ""); err != nil || !bytes.Equal(got, data) {
					t.Errorf("get, %s: %d bytes, %v", name, len(got), err)
				}
			}
		})
	}
}

// domainCert makes a self-signed certificate for domain and every bucket
// under it, and a pool that trusts it.
func domainCert(t *testing.T, domain string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, leaf, _, err := LoadOrCreateCert(filepath.Join(t.TempDir(), "tls"), VirtualDomainHosts(domain))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return cert, pool
}
