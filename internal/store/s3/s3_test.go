package s3

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// These tests run against a real S3 server, versitygw, started here on
// 127.0.0.1 twice: over HTTPS with a self-signed CA, and over plain HTTP
// (allowed for loopback only). `make test` builds the binary into
// .ci/bin; HOLDFAST_VERSITYGW may name another.

const (
	accessKey = "holdfast-test"
	secretKey = "holdfast-test-secret"
)

type server struct {
	endpoint string
	caFile   string
	spki     string // base64 SHA-256 of the server's public key
}

var httpsSrv, httpSrv server

func TestMain(m *testing.M) {
	bin := os.Getenv("HOLDFAST_VERSITYGW")
	if bin == "" {
		bin, _ = filepath.Abs("../../../.ci/bin/versitygw")
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(os.Stderr, "the S3 store tests need versitygw (%v): run `make test`, or scripts/versitygw.sh to build it\n", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "holdfast-s3-test-")
	if err != nil {
		panic(err)
	}
	var stops []func()
	code := func() int {
		defer func() {
			for _, s := range stops {
				s()
			}
			os.RemoveAll(dir)
		}()
		crt, key, spki, err := selfSigned(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, tlsOn := range []bool{true, false} {
			srv, stop, err := startVersitygw(bin, dir, tlsOn, crt, key)
			if stop != nil {
				stops = append(stops, stop)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if tlsOn {
				srv.caFile, srv.spki = crt, spki
				httpsSrv = srv
			} else {
				httpSrv = srv
			}
		}
		os.Setenv("AWS_ACCESS_KEY_ID", accessKey)
		os.Setenv("AWS_SECRET_ACCESS_KEY", secretKey)
		os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		os.Unsetenv("AWS_PROFILE")
		os.Setenv("AWS_CONFIG_FILE", os.DevNull)
		os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
		return m.Run()
	}()
	os.Exit(code)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startVersitygw(bin, dir string, tlsOn bool, crt, key string) (server, func(), error) {
	port, err := freePort()
	if err != nil {
		return server{}, nil, err
	}
	data, err := os.MkdirTemp(dir, "data-")
	if err != nil {
		return server{}, nil, err
	}
	args := []string{"--port", fmt.Sprintf("127.0.0.1:%d", port), "--access", accessKey, "--secret", secretKey,
		"--region", "us-east-1", "--health", "/health", "--quiet"}
	scheme := "http"
	if tlsOn {
		args = append(args, "--cert", crt, "--key", key)
		scheme = "https"
	}
	args = append(args, "posix", data)
	cmd := exec.Command(bin, args...)
	log, _ := os.Create(data + ".log")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return server{}, nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	srv := server{endpoint: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)}
	// Ready when /health answers.
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		if resp, err := hc.Get(srv.endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(data + ".log")
			return srv, stop, fmt.Errorf("versitygw exited: %s", b)
		case <-deadline:
			return srv, stop, errors.New("versitygw did not become ready")
		case <-tick.C:
		}
	}
	return srv, stop, nil
}

// selfSigned writes a self-signed certificate for 127.0.0.1.
func selfSigned(dir string) (crtFile, keyFile, spki string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return
	}
	crtFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err = os.WriteFile(crtFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return
	}
	if err = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return
	}
	cert, _ := x509.ParseCertificate(der)
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return crtFile, keyFile, base64.StdEncoding.EncodeToString(sum[:]), nil
}

var bucketN int

// newBucket creates a fresh bucket on srv and returns a store in it.
func newStore(t *testing.T, srv server, mod func(*Config)) *Store {
	t.Helper()
	bucketN++
	c := Config{Bucket: fmt.Sprintf("hf-test-%d-%d", os.Getpid(), bucketN), Prefix: "repo/", Endpoint: srv.endpoint,
		PathStyle: true, CABundle: srv.caFile, AllowHTTP: strings.HasPrefix(srv.endpoint, "http:"), PartSize: 5 << 20, Concurrency: 2}
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
