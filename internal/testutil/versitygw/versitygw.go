// Package versitygw starts the real S3 server the tests use — versitygw,
// built by scripts/versitygw.sh into .ci/bin — on 127.0.0.1, over HTTPS
// with a fresh self-signed certificate or over plain HTTP, and stops it.
// It is for tests only; nothing in the holdfast binary imports it.
package versitygw

import (
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
	"runtime"
	"time"
)

// Credentials the servers accept.
const (
	AccessKey = "holdfast-test"
	SecretKey = "holdfast-test-secret"
)

// Server is a running versitygw.
type Server struct {
	Endpoint string // https://127.0.0.1:PORT or http://…
	CAFile   string // PEM of the self-signed certificate (HTTPS only)
	SPKI     string // base64 SHA-256 of its public key (HTTPS only)
	Stop     func()
}

// Binary finds the versitygw binary: $HOLDFAST_VERSITYGW, else .ci/bin in
// the repository.
func Binary() (string, error) {
	if b := os.Getenv("HOLDFAST_VERSITYGW"); b != "" {
		return b, nil
	}
	_, file, _, _ := runtime.Caller(0)
	b := filepath.Join(filepath.Dir(file), "..", "..", "..", ".ci", "bin", "versitygw")
	if _, err := os.Stat(b); err != nil {
		return "", fmt.Errorf("versitygw not built (%v): run `make test` or scripts/versitygw.sh", err)
	}
	return b, nil
}

// Start runs versitygw with a posix backend in a new directory under dir.
func Start(dir string, useTLS bool) (*Server, error) {
	return StartWith(dir, Options{TLS: useTLS})
}

// Options configure StartWith.
type Options struct {
	TLS bool
	// VirtualDomain, if set, makes the server also accept virtual-host
	// addressing: bucket.VirtualDomain names bucket. The certificate
	// covers *.localhost, so "localhost" works with a resolver that maps
	// its subdomains to 127.0.0.1.
	VirtualDomain string
	// KeepAlive keeps connections open between requests, as cloud
	// providers do (versitygw closes each one after its answer by
	// default).
	KeepAlive bool
}

// StartWith runs versitygw as Start does, with more options.
func StartWith(dir string, o Options) (*Server, error) {
	useTLS := o.TLS
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	data, err := os.MkdirTemp(dir, "versitygw-")
	if err != nil {
		return nil, err
	}
	srv := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port)}
	args := []string{"--port", fmt.Sprintf("127.0.0.1:%d", port), "--access", AccessKey, "--secret", SecretKey,
		"--region", "us-east-1", "--health", "/health", "--quiet"}
	if o.VirtualDomain != "" {
		args = append(args, "--virtual-domain", o.VirtualDomain)
	}
	if o.KeepAlive {
		args = append(args, "--keep-alive")
	}
	if useTLS {
		crt, key, spki, err := selfSigned(data)
		if err != nil {
			return nil, err
		}
		args = append(args, "--cert", crt, "--key", key)
		srv.Endpoint, srv.CAFile, srv.SPKI = fmt.Sprintf("https://127.0.0.1:%d", port), crt, spki
	}
	store := filepath.Join(data, "posix")
	if err := os.Mkdir(store, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append(args, "posix", store)...)
	logf, err := os.Create(filepath.Join(data, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	srv.Stop = func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	// Ready when /health answers 200.
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		if resp, err := hc.Get(srv.Endpoint + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return srv, nil
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(data, "server.log"))
			return nil, fmt.Errorf("versitygw exited: %s", b)
		case <-deadline:
			srv.Stop()
			return nil, errors.New("versitygw did not become ready in 20 s")
		case <-tick.C:
		}
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost.
func selfSigned(dir string) (crtFile, keyFile, spki string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", "*.localhost"},
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
