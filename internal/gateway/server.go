// Package gateway is `holdfast serve`: an S3-compatible HTTPS endpoint
// whose objects live, encrypted, in a Holdfast repository. versitygw's
// front end (package embedgw) speaks S3 — SigV4 in headers and presigned
// URLs, aws-chunked bodies, trailing checksums, XML — and calls Backend;
// Holdfast terminates TLS itself (TLS 1.3 only unless told otherwise,
// optional client certificates) and hands the plain connection to the
// front end over a private UNIX socket.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/embedgw"
	"github.com/versity/versitygw/s3api"
)

// Options configure a Server.
type Options struct {
	// Addr is the TCP address clients connect to ("127.0.0.1:9000";
	// port 0 picks a free one, see Server.Addr).
	Addr string
	// Certificate is the server's TLS certificate.
	Certificate tls.Certificate
	// ClientCAs, if set, turns on mutual TLS: clients must present a
	// certificate issued by one of them.
	ClientCAs *x509.CertPool
	// AllowTLS12 accepts TLS 1.2 clients too (TLS 1.3 only otherwise).
	AllowTLS12 bool
	// PlainHTTP serves without TLS; Addr must then be a loopback address.
	PlainHTTP bool
	// Region is the region clients sign for (default us-east-1).
	Region string
	// MaxConnections and MaxRequests bound concurrent connections and
	// in-flight requests (beyond MaxRequests: 503 SlowDown).
	MaxConnections, MaxRequests int
	// SocketDir holds the front end's private UNIX socket (default: a new
	// directory under the system's temporary directory, mode 0700).
	SocketDir string
	// VirtualDomain, if set, also serves virtual-hosted-style requests:
	// a request to BUCKET.VirtualDomain addresses BUCKET (as S3's
	// BUCKET.s3.amazonaws.com does). Path-style requests work either way.
	// The certificate must cover *.VirtualDomain (CoversVirtualDomain).
	VirtualDomain string
	// IAM resolves access keys (see package access).
	IAM auth.IAMService
	// Logger receives the server's own log lines (never secrets).
	Logger *slog.Logger
}

// Server is a running gateway.
type Server struct {
	ln     net.Listener
	sock   string
	dir    string
	ready  chan struct{}
	done   chan struct{}
	err    error
	log    *slog.Logger
	conns  sync.WaitGroup
	cancel context.CancelFunc

	mu      sync.Mutex
	clients map[net.Conn]struct{} // the client connections being relayed
}

// stopGrace is how long Stop lets requests in flight finish before it
// closes the connections still open: a client that stopped reading a
// response must not hold the gateway up.
const stopGrace = 10 * time.Second

// track registers (add) or forgets c among the relayed connections.
func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients == nil {
		s.clients = map[net.Conn]struct{}{}
	}
	if add {
		s.clients[c] = struct{}{}
	} else {
		delete(s.clients, c)
	}
}

// closeClients closes every relayed client connection.
func (s *Server) closeClients() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		c.Close()
	}
}

// ErrNotLoopback: plain HTTP was asked for on an address other than
// loopback.
var ErrNotLoopback = errors.New("plain HTTP is allowed only on a loopback address")

// Start binds opts.Addr and starts serving be. Only one Server may run in
// a process (a limit of the front end). Stop it by cancelling ctx, then
// Wait.
func Start(ctx context.Context, be *Backend, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = 256
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = min(128, opts.MaxConnections)
	}
	if opts.PlainHTTP {
		host, _, err := net.SplitHostPort(opts.Addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("%w (not %s)", ErrNotLoopback, opts.Addr)
		}
	}
	dir := opts.SocketDir
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "holdfast-gw-"); err != nil {
			return nil, err
		}
	}
	s := &Server{dir: dir, sock: filepath.Join(dir, "s3.sock"), ready: make(chan struct{}), done: make(chan struct{}), log: opts.Logger}

	var ln net.Listener
	if opts.PlainHTTP {
		ln, err = net.Listen("tcp", opts.Addr)
	} else {
		cfg := &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{opts.Certificate},
		}
		if opts.AllowTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		if opts.ClientCAs != nil {
			cfg.ClientCAs, cfg.ClientAuth = opts.ClientCAs, tls.RequireAndVerifyClientCert
		}
		ln, err = tls.Listen("tcp", opts.Addr, cfg)
	}
	if err != nil {
		s.cleanup()
		return nil, err
	}
	s.ln = ln

	// The root account: random, never printed or stored; nobody is root.
	// Its secret shares no bytes with the names (its access id, the admin
	// socket's name), which others can see.
	var root, names [32]byte
	if _, err = rand.Read(root[:]); err == nil {
		_, err = rand.Read(names[:])
	}
	if err != nil {
		ln.Close()
		s.cleanup()
		return nil, err
	}
	be.owner = "holdfast-root-" + hex.EncodeToString(names[:6])
	region := opts.Region
	if region == "" {
		region = "us-east-1"
	}
	cfg := &embedgw.Config{
		RootUserAccess:      be.owner,
		RootUserSecret:      hex.EncodeToString(root[:]),
		Region:              region,
		Ports:               []string{s.sock},
		SocketPerm:          "0600",
		AdminPorts:          []string{"@holdfast-admin-" + hex.EncodeToString(names[6:14])},
		AdminMaxConnections: 1,
		AdminMaxRequests:    1,
		MaxConnections:      opts.MaxConnections,
		MaxRequests:         opts.MaxRequests,
		MultipartMaxParts:   10000,
		Quiet:               true,
		KeepAlive:           true,
		DisableACLs:         true,
		VirtualDomain:       opts.VirtualDomain,
		IAMService:          opts.IAM,
		S3Options: []s3api.Option{
			s3api.WithOnListen(func() { close(s.ready) }),
			s3api.WithMiddleware("/", rememberBucket),
			s3api.WithMiddleware("/", keepOptions),
		},
	}
	if opts.VirtualDomain != "" {
		// The bucket is then read from the request URI's host, the
		// signature covers the Host header: they must be one name.
		cfg.S3Options = append(cfg.S3Options, s3api.WithMiddleware("/", sameHost))
	}
	if be.guard != nil {
		// First of the S3 routes' middlewares, before authentication:
		// while sealed the access secrets are wiped too.
		cfg.S3Options = append(cfg.S3Options, s3api.WithMiddleware("/", be.gate))
	}
	gctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go func() {
		// Stopping: what is still open after the grace is closed.
		<-gctx.Done()
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-t.C:
			s.closeClients()
		case <-s.done:
		}
	}()
	go func() {
		s.err = embedgw.RunVersityGW(gctx, be, cfg)
		ln.Close()
		s.conns.Wait()
		s.cleanup()
		close(s.done)
	}()
	select {
	case <-s.ready:
	case <-s.done:
		cancel()
		if s.err == nil {
			s.err = errors.New("the S3 front end stopped before it was ready")
		}
		return nil, s.err
	case <-ctx.Done():
		cancel()
		<-s.done
		return nil, ctx.Err()
	}
	go s.accept(gctx)
	return s, nil
}

// Addr is the address clients connect to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Wait waits until the server has stopped (its context was cancelled and
// in-flight requests finished) and returns why it stopped.
func (s *Server) Wait() error {
	<-s.done
	if errors.Is(s.err, context.Canceled) {
		return nil
	}
	return s.err
}

// Stop stops the server and waits for it.
func (s *Server) Stop() error {
	s.cancel()
	return s.Wait()
}

func (s *Server) cleanup() {
	os.Remove(s.sock)
	os.Remove(s.dir)
}

// accept hands each client connection, after its TLS handshake, to the
// front end's socket.
func (s *Server) accept(ctx context.Context) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.track(c, true)
		go func() {
			defer s.conns.Done()
			defer s.track(c, false)
			s.relay(ctx, c)
		}()
	}
}

func (s *Server) relay(ctx context.Context, c net.Conn) {
	defer c.Close()
	if tc, ok := c.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			s.log.Info("TLS handshake refused", "remote", c.RemoteAddr().String(), "error", err.Error())
			return
		}
	}
	u, err := net.Dial("unix", s.sock)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(u, c)
		_ = u.(*net.UnixConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, u)
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	} else if t, ok := c.(*net.TCPConn); ok {
		_ = t.CloseWrite()
	}
	// The front end has closed its side (idle, shut down, or done with a
	// request it refused): nothing the client sends now can be answered.
	// A client that keeps the connection open without sending — one that
	// never read a body to its end — must not hold the relay, and with it
	// Stop, for ever: its side gets a moment, then the connection closes.
	_ = c.SetReadDeadline(time.Now().Add(relayLinger))
	<-done
}

// relayLinger is how long a relay waits for the client's side once the
// front end closed its own.
const relayLinger = time.Second
