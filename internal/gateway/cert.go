package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// Certificate files in the home's gateway directory, made on first run
// when no certificate is configured.
const (
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding, as
// colon-separated hex (what `openssl x509 -fingerprint -sha256` prints).
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// LoadOrCreateCert returns the certificate in dir, creating a self-signed
// one (ECDSA P-256, valid for two years, for localhost, 127.0.0.1, ::1
// and hosts) if there is none. created says whether it was just made.
func LoadOrCreateCert(dir string, hosts []string) (c tls.Certificate, leaf *x509.Certificate, created bool, err error) {
	cp, kp := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if _, err := os.Stat(cp); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return c, nil, false, err
		}
		if err := writeSelfSigned(cp, kp, hosts); err != nil {
			return c, nil, false, fmt.Errorf("creating a self-signed certificate: %w", err)
		}
		created = true
	}
	c, leaf, err = LoadCert(cp, kp)
	return c, leaf, created, err
}

// LoadCert loads a PEM certificate chain and key.
func LoadCert(certFile, keyFile string) (tls.Certificate, *x509.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return c, nil, fmt.Errorf("loading the TLS certificate: %w", err)
	}
	return c, c.Leaf, nil
}

func writeSelfSigned(certPath, keyPath string, hosts []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "holdfast gateway"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(2, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so clients can trust it directly as a CA bundle
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	kpem := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	defer clear(kpem)
	clear(kder)
	// The key first: a certificate without its key is never left behind.
	if err := atomicfile.WriteFile(keyPath, kpem, atomicfile.Options{Mode: 0o600}); err != nil {
		return err
	}
	return atomicfile.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), atomicfile.Options{Mode: 0o644})
}

// VirtualDomainHosts are the names a certificate for virtual-hosted-style
// requests under domain must cover: the domain itself (path style) and
// every bucket name under it.
func VirtualDomainHosts(domain string) []string { return []string{domain, "*." + domain} }

// CoversVirtualDomain reports whether leaf is valid for domain and for a
// bucket under it (a one-label bucket name: a wildcard covers one label,
// so, as with S3, a bucket whose name has dots is reached path style).
func CoversVirtualDomain(leaf *x509.Certificate, domain string) bool {
	return leaf.VerifyHostname(domain) == nil && leaf.VerifyHostname("bucket."+domain) == nil
}
