package attacks

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
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/repo"
)

// The certificate a TLS endpoint presents (A2).
const (
	certGenuine  = iota // the trusted CA's certificate for the pinned key
	certOtherCA         // the pinned key, certified by another CA
	certOtherKey        // the trusted CA, another key
)

// tlsEndpoint stands where the S3 endpoint is, terminates TLS with the
// certificate chosen by mode and passes requests on to versitygw. It
// counts handshakes and every byte of application data that reached it
// after a handshake: a client that refuses the certificate sends none.
type tlsEndpoint struct {
	url    string
	caFile string // the CA the client trusts
	pin    string // base64 SHA-256 of the genuine key's SubjectPublicKeyInfo

	mode       atomic.Int32
	certs      [3]tls.Certificate
	handshakes atomic.Int64
	appBytes   atomic.Int64
	srv        *http.Server
}

// countingConn counts the plaintext read from a TLS connection.
type countingConn struct {
	*tls.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type tlsListener struct {
	net.Listener
	cfg *tls.Config
	n   *atomic.Int64
}

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{tls.Server(c, l.cfg), l.n}, nil
}

// startTLSEndpoint makes two CAs and two keys, writes the trusted CA for
// the client, and serves in front of the shared versitygw.
func startTLSEndpoint(t *testing.T, dir string) *tlsEndpoint {
	t.Helper()
	env := sharedS3(t)
	caA, caAKey := newCA(t, "holdfast attack suite trusted CA")
	caB, caBKey := newCA(t, "holdfast attack suite other CA")
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e := &tlsEndpoint{caFile: filepath.Join(dir, "ca.pem")}
	e.certs[certGenuine] = leaf(t, caA, caAKey, k1)
	e.certs[certOtherCA] = leaf(t, caB, caBKey, k1)
	e.certs[certOtherKey] = leaf(t, caA, caAKey, k2)
	spki, _ := x509.MarshalPKIXPublicKey(&k1.PublicKey)
	sum := sha256.Sum256(spki)
	e.pin = base64.StdEncoding.EncodeToString(sum[:])
	if err := os.WriteFile(e.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caA.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(env.srv.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(up)
	caPEM, err := os.ReadFile(env.srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	rp.ErrorLog = quiet
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: true, // every connection shows its certificate
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			e.handshakes.Add(1)
			c := e.certs[e.mode.Load()]
			return &c, nil
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "https://" + l.Addr().String()
	e.srv = &http.Server{Handler: rp, ErrorLog: quiet} // refused handshakes are the test
	e.srv.SetKeepAlivesEnabled(false)                  // a new handshake for every request
	go e.srv.Serve(tlsListener{l, cfg, &e.appBytes})
	tlsEndpoints = append(tlsEndpoints, e)
	return e
}

// tlsEndpoints stay up until the suite ends: A4 harvests keys from the
// repository behind them.
var tlsEndpoints []*tlsEndpoint

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

func leaf(t *testing.T, ca *x509.Certificate, caKey, k *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: k}
}

// A2: the S3 endpoint presents a certificate from another CA (for the
// pinned key), or one from the trusted CA for another key. Holdfast is
// configured with the trusted CA (--s3-ca-bundle) and the key's pin
// (--s3-pin): both checks must hold. Every reader — put, get, cat,
// verify, and the gateway on that repository — refuses during the
// handshake: the endpoint sees handshakes and not one byte of a request.
// The genuine certificate works before and after. Local stores have no
// endpoint: the row is S3 only.
func a2(t *testing.T, w0 *world) {
	dir, err := os.MkdirTemp(suiteDir, "a2-certs-") // the CA file outlives the row: A4 reopens the repository
	if err != nil {
		t.Fatal(err)
	}
	e := startTLSEndpoint(t, dir)
	w := newWorldWith(t, "s3", "row-a2-tls", func(c *repo.S3Config) {
		c.Endpoint, c.AllowHTTP, c.CABundle, c.PinSPKI = e.url, false, e.caFile, []string{e.pin}
	})
	o := newObj("row-a2", "o", 5000)
	w.put(t, o.bucket, o.key, o.truth)
	w.expectIntact(t, allReaders, *o)
	w.expectVerify(t, nil)
	for _, c := range []struct {
		name string
		mode int32
		says string
	}{
		{"certificate from another CA", certOtherCA, "certificate signed by unknown authority"},
		{"certificate for another key", certOtherKey, "does not match the pinned key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.mode.Store(c.mode)
			defer e.mode.Store(certGenuine)
			hs, app := e.handshakes.Load(), e.appBytes.Load()
			r := w.cliIn(t, randBytes(3000), "put", "-", "row-a2/new")
			if r.code != 6 || !strings.Contains(string(r.stderr), c.says) || !strings.Contains(string(r.stderr), "row-a2/new") {
				t.Fatalf("put through a %s: %v; want a failure naming the object and saying %q", c.name, r, c.says)
			}
			w.expectRefused(t, allReaders, *o, exitCouldNotRead, 0)
			if code, _, _ := w.verify(t); code != 6 {
				t.Fatalf("verify through a %s: exit %d, want 6", c.name, code)
			}
			if e.handshakes.Load() == hs {
				t.Fatal("no handshake reached the endpoint: the test proved nothing")
			}
			if got := e.appBytes.Load() - app; got != 0 {
				t.Fatalf("%d bytes of requests reached an endpoint with a %s", got, c.name)
			}
		})
	}
	// Control after: the genuine certificate works again, nothing was put.
	w.expectIntact(t, allReaders, *o)
	if r := w.cli(t, "stat", "row-a2/new"); r.code != 3 {
		t.Fatalf("stat a2/new: %v; the refused put stored something", r)
	}
	w.expectVerify(t, nil)
}
