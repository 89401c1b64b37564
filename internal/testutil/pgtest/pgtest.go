// Package pgtest starts throwaway PostgreSQL clusters for tests: Debian's
// postgresql package (any version under /usr/lib/postgresql), on
// 127.0.0.1 at a free port, reachable only over TLS with a client
// certificate (pg_hba.conf: hostssl ... cert), with a fresh test CA that
// issues the server's certificate and the clients'. Test setup (roles,
// databases) goes through a Unix socket in the cluster's directory.
//
// When the tests run as root, the cluster runs as the postgres system
// user, since PostgreSQL refuses to run as root. Missing binaries fail
// the test ("install postgresql"): a test that needs PostgreSQL never
// passes by skipping.
//
// It returns plain strings, so that the packages it serves (the catalog)
// can import it from their tests without an import cycle. It is for tests
// only; nothing in the holdfast binary imports it.
package pgtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options change the cluster Start makes; the zero value is the normal one.
type Options struct {
	// ServerNames are the names on the server's certificate (IP addresses
	// or DNS names). Default: 127.0.0.1 and localhost.
	ServerNames []string
	// OnlyTLS12 limits the server to TLS 1.2 (normally: 1.3 at least).
	OnlyTLS12 bool
}

// Server is a running cluster.
type Server struct {
	Host   string // 127.0.0.1
	Port   int
	CAFile string // PEM of the CA that issued the server's and clients' certificates

	dir, data, sock string
	cred            *syscall.Credential // nil: run as the current user
	ca              *issuer
	cmd             *exec.Cmd
	exited          chan struct{}
	logFile         string

	mu      sync.Mutex
	stopped bool
	certs   map[string][2]string
}

// Database is what a client needs to reach one database of a cluster as
// its owner (the fields of catalog.PostgresConfig).
type Database struct {
	Name     string
	User     string
	URL      string // postgres://user@127.0.0.1:port/name
	CAFile   string
	CertFile string
	KeyFile  string
}

// Launch starts a cluster outside a test (bench/pgserve); the caller
// stops it.
func Launch(o Options) (*Server, error) { return start(o) }

// Start starts a cluster for tb and stops it when tb's test ends.
func Start(tb testing.TB) *Server { return StartWith(tb, Options{}) }

// StartWith is Start with options.
func StartWith(tb testing.TB, o Options) *Server {
	tb.Helper()
	s, err := start(o)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return s
}

var shared struct {
	mu  sync.Mutex
	s   *Server
	err error
}

// Shared returns the package's shared cluster, starting it on first use.
// A package that uses it stops it from TestMain with StopShared.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.s, shared.err = start(Options{})
	}
	if shared.err != nil {
		tb.Fatalf("pgtest: %v", shared.err)
	}
	return shared.s
}

// StopShared stops the shared cluster, if one was started.
func StopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil {
		return nil
	}
	err := shared.s.Stop()
	shared.s, shared.err = nil, errors.New("the shared cluster was stopped")
	return err
}

// binDir finds the newest installed PostgreSQL's binaries.
func binDir() (string, error) {
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(ms) == 0 {
		return "", errors.New("no PostgreSQL server in /usr/lib/postgresql/*/bin: install postgresql (apt-get install postgresql)")
	}
	sort.Slice(ms, func(i, j int) bool { return pgVersion(ms[i]) < pgVersion(ms[j]) })
	return filepath.Dir(ms[len(ms)-1]), nil
}

func pgVersion(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return n
}

func start(o Options) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	var lastErr error
	// A free port found by listening can be taken by someone else before
	// the server binds it; try a few.
	for range 3 {
		s, err := startOnce(bin, o)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

func startOnce(bin string, o Options) (s *Server, err error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s = &Server{Host: "127.0.0.1", dir: dir, data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "sock"),
		logFile: filepath.Join(dir, "postgres.log"), certs: map[string][2]string{}, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and PostgreSQL refuses to: no postgres user to run it as (install postgresql): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if err := os.Mkdir(s.sock, 0o700); err != nil {
		return nil, err
	}
	if err := s.chown(dir, s.sock); err != nil {
		return nil, err
	}

	if out, err := s.command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "--auth=trust",
		"--locale=C", "--encoding=UTF8", "--no-sync", "--no-instructions").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}

	s.ca, err = newIssuer("pgtest CA")
	if err != nil {
		return nil, err
	}
	s.CAFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(s.CAFile, s.ca.certPEM, 0o644); err != nil {
		return nil, err
	}
	names := o.ServerNames
	if len(names) == 0 {
		names = []string{"127.0.0.1", "localhost"}
	}
	certPEM, keyPEM, err := s.ca.issue("pgtest server", names, false)
	if err != nil {
		return nil, err
	}
	serverCrt, serverKey := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(serverCrt, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(serverKey, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := s.chown(serverCrt, serverKey, s.CAFile); err != nil {
		return nil, err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()

	tlsMin, tlsMax := "TLSv1.3", ""
	if o.OnlyTLS12 {
		tlsMin, tlsMax = "TLSv1.2", "TLSv1.2"
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
ssl_ca_file = '%s'
ssl_min_protocol_version = '%s'
ssl_max_protocol_version = '%s'
# A throwaway cluster: commits still wait for the WAL write, but nothing
# is flushed to disk.
fsync = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 200
log_min_messages = warning
`, s.Port, s.sock, serverCrt, serverKey, s.CAFile, tlsMin, tlsMax)
	if err := appendFile(filepath.Join(s.data, "postgresql.conf"), conf); err != nil {
		return nil, err
	}
	// Only client certificates over TLS from 127.0.0.1; the socket is for
	// the setup, as the superuser.
	hba := "local all postgres trust\nhostssl all all 127.0.0.1/32 cert\n"
	if err := os.WriteFile(filepath.Join(s.data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, err
	}
	if err := s.chown(filepath.Join(s.data, "pg_hba.conf")); err != nil {
		return nil, err
	}

	log, err := os.Create(s.logFile)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	s.cmd = s.command(filepath.Join(bin, "postgres"), "-D", s.data)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	// The cluster dies with the test binary even if cleanup never runs.
	s.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(bin); err != nil {
		return nil, err
	}
	return s, nil
}

// waitReady polls the server with pg_isready until it accepts
// connections, the server exits, or a minute passes.
func (s *Server) waitReady(bin string) error {
	deadline := time.Now().Add(time.Minute)
	delay := 5 * time.Millisecond
	for {
		err := exec.Command(filepath.Join(bin, "pg_isready"), "-q", "-h", s.sock, "-p", strconv.Itoa(s.Port),
			"-U", "postgres", "-d", "postgres").Run()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after a minute:\n%s", s.log())
		}
		t := time.NewTimer(delay)
		select {
		case <-s.exited:
			t.Stop()
			return fmt.Errorf("postgres exited at start:\n%s", s.log())
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// command makes a command run as the cluster's user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func (s *Server) chown(paths ...string) error {
	if s.cred == nil {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return err
		}
	}
	return nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Stop stops the cluster (a fast shutdown: SIGINT) and removes its files.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		t := time.NewTimer(30 * time.Second)
		select {
		case <-s.exited:
			t.Stop()
		case <-t.C:
			s.cmd.Process.Kill()
			<-s.exited
			err = errors.New("postgres did not stop within 30s of SIGINT; killed")
		}
	}
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// Exec runs sql as the superuser in database db (psql -c: one
// transaction unless sql is a statement that cannot run in one).
func (s *Server) Exec(tb testing.TB, db, sql string) string {
	tb.Helper()
	out, err := s.psql(db, sql)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return out
}

func (s *Server) psql(db string, sqls ...string) (string, error) {
	bin, err := binDir()
	if err != nil {
		return "", err
	}
	args := []string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", s.sock, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-d", db}
	for _, q := range sqls {
		args = append(args, "-c", q)
	}
	cmd := exec.Command(filepath.Join(bin, "psql"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("psql %q: %v: %s", sqls, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// NewDatabase creates database name, owned by a new role of the same name
// that logs in with a client certificate from the cluster's CA, in the
// encoding the catalog needs (SQL_ASCII, collation C), and returns how to
// reach it as that role. name must be a lower-case SQL identifier, new in
// the cluster.
func (s *Server) NewDatabase(tb testing.TB, name string) Database {
	tb.Helper()
	d, err := s.CreateDatabase(name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return d
}

// CreateDatabase is NewDatabase outside a test (bench/pgserve).
func (s *Server) CreateDatabase(name string) (Database, error) {
	if !identifier.MatchString(name) {
		return Database{}, fmt.Errorf("database name %q is not a lower-case identifier", name)
	}
	if _, err := s.psql("postgres", "CREATE ROLE "+name+" LOGIN",
		"CREATE DATABASE "+name+" OWNER "+name+" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 STRATEGY FILE_COPY"); err != nil {
		return Database{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.certs[name]
	if !ok {
		cert, key, err := writeClientCert(s.ca, s.dir, name)
		if err != nil {
			return Database{}, err
		}
		f = [2]string{cert, key}
		s.certs[name] = f
	}
	return Database{Name: name, User: name, URL: s.URL(name, name), CAFile: s.CAFile, CertFile: f[0], KeyFile: f[1]}, nil
}

// URL is the URL of database db as user.
func (s *Server) URL(user, db string) string {
	return (&url.URL{Scheme: "postgres", User: url.User(user), Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + db}).String()
}

// ClientCert returns the files of a client certificate and key for user
// (the certificate's common name), issued by the cluster's CA; the same
// files for the same user.
func (s *Server) ClientCert(tb testing.TB, user string) (certFile, keyFile string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.certs[user]; ok {
		return f[0], f[1]
	}
	certFile, keyFile, err := writeClientCert(s.ca, s.dir, user)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	s.certs[user] = [2]string{certFile, keyFile}
	return certFile, keyFile
}

// ForeignClientCert returns a client certificate and key for user issued
// by a CA of its own, which no cluster trusts, in tb's temporary
// directory.
func ForeignClientCert(tb testing.TB, user string) (certFile, keyFile string) {
	tb.Helper()
	ca, err := newIssuer("pgtest foreign CA")
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	certFile, keyFile, err = writeClientCert(ca, tb.TempDir(), user)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return certFile, keyFile
}

func writeClientCert(ca *issuer, dir, user string) (string, string, error) {
	certPEM, keyPEM, err := ca.issue(user, nil, true)
	if err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(dir, "client-*.crt")
	if err != nil {
		return "", "", err
	}
	f.Close()
	certFile := f.Name()
	keyFile := strings.TrimSuffix(certFile, ".crt") + ".key"
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// issuer is a test CA.
type issuer struct {
	key     *ecdsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
}

func newIssuer(name string) (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issuer{key: key, cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// issue makes a certificate for cn (and names, as IP or DNS SANs), for a
// client or a server, with a fresh P-256 key; both PEM.
func (ca *issuer) issue(cn string, names []string, client bool) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
