package keyserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/keycache"
	"github.com/holdfast/holdfast/internal/keys/oplog"
	"github.com/holdfast/holdfast/internal/keyserver/api"
	"github.com/holdfast/holdfast/internal/logtext"
	"github.com/holdfast/holdfast/internal/secret"
)

// BucketKeyTTL is how long the server keeps a bucket key it opened for
// the data-key operation: a burst of requests for one bucket costs one
// root unwrap, and the key leaves memory soon after the burst.
const BucketKeyTTL = 5 * time.Minute

// maxBody bounds a request body: every valid request is well under 4 KiB.
const maxBody = 64 << 10

// Options tune a Server.
type Options struct {
	Log *slog.Logger // operational log (stderr); nil discards
	// RefusalLogInterval: handshake refusals are written to the
	// key-operation log at most once per interval per reason and peer
	// (0: DefaultRefusalLogInterval).
	RefusalLogInterval time.Duration
	// Audit tunes the audit log (if the state directory keeps one) and
	// the per-client rate watch.
	Audit AuditOptions
	// Keys, if set, are the root keys already open — the PKCS#11 token a
	// state directory made from a token's home names (Dir.Token); the
	// passphrase is then not used, and the Server closes them.
	Keys RootKeys
}

// RootKeys are the server's root keys: the state directory's keyring
// file, or a PKCS#11 token whose keys never leave it (repo.RootKeys has
// the same methods).
type RootKeys interface {
	keys.Source
	Repo() keys.ID
	Versions() []keyring.RootKeyInfo
	Freshness() (keyring.Freshness, bool)
	SetFreshness(keyring.Freshness) error
	Reload() error
	Close() error
}

// Server answers the key server API. Its root keys are in the state
// directory's keyring, opened once; bucket keys it opens stay in
// protected memory for BucketKeyTTL. Safe for concurrent use.
type Server struct {
	dir  Dir
	repo keys.ID
	kr   RootKeys
	reg  *registry
	ops  *oplog.Log
	pool *x509.CertPool
	cert tls.Certificate
	bk   *keycache.Cache
	// rel gates key releases: release-policy.json, attestation nonces
	// and trust roots (release.go).
	rel *release
	// heads is the newest catalog head clients reported (head.go).
	heads *headBook
	// aud is the audit log and the rate watch (audit.go).
	aud  serverAudit
	log  *slog.Logger
	m    metrics
	lim  *limiter
	sum  *summary
	stop chan struct{}
	// closed turns /healthz to 503 from the start of a shutdown, so that
	// a load balancer stops sending requests while in-flight ones finish.
	closed    atomic.Bool
	closeOnce sync.Once
}

type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	releases  *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	handshake *prometheus.CounterVec
}

func newMetrics() metrics {
	m := metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_keyserver_requests_total",
			Help: "API requests by operation and outcome (ok, refused, not-my-key, bad-request, unavailable, rollback, modified)."}, []string{"op", "outcome"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_keyserver_releases_total",
			Help: "Keys released to clients (root-level unwraps and data keys), by operation."}, []string{"op"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_keyserver_refusals_total",
			Help: "Requests and connections refused, by reason."}, []string{"reason"}),
		handshake: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_keyserver_connections_total",
			Help: "Client TLS handshakes by verdict (accepted or refused)."}, []string{"verdict"}),
	}
	m.reg.MustRegister(m.requests, m.releases, m.refusals, m.handshake,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Open opens the state directory dir: its keyring with passphrase (the
// caller clears it), its CA and server certificate, its client list.
func Open(dir string, passphrase []byte, o Options) (*Server, error) {
	d := Dir(dir)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RefusalLogInterval <= 0 {
		o.RefusalLogInterval = DefaultRefusalLogInterval
	}
	s := &Server{dir: d, ops: oplog.New(d.LogPath()), bk: keycache.New(BucketKeyTTL, nil), log: o.Log, m: newMetrics(),
		lim: newLimiter(), stop: make(chan struct{})}
	s.sum = newSummary(o.RefusalLogInterval, s.writeSummary)
	c, err := loadCA(d.path(CACertFile), d.path(CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("opening the key server's CA in %q: %w", dir, err)
	}
	s.pool = x509.NewCertPool()
	s.pool.AddCert(c.cert)
	if s.cert, err = tls.LoadX509KeyPair(d.path(ServerCertFile), d.path(ServerKeyFile)); err != nil {
		return nil, fmt.Errorf("loading the server certificate: %w", err)
	}
	if s.reg, err = newRegistry(d.path(ClientsFile)); err != nil {
		return nil, err
	}
	s.rel = newRelease(d.path(ReleasePolicyFile))
	if _, err := s.rel.policy.get(); err != nil {
		return nil, err
	}
	if err := s.ops.Ready(); err != nil {
		return nil, fmt.Errorf("the key-operation log cannot take a record: %w", err)
	}
	if s.heads, err = openHeadBook(d.path(CatalogHeadFile)); err != nil {
		return nil, err
	}
	if o.Keys != nil {
		s.kr = o.Keys
	} else if tok, terr := d.Token(); terr != nil || tok != nil {
		if terr == nil {
			terr = fmt.Errorf("the root keys of %q are in the PKCS#11 token %s: open it with its PIN (Options.Keys)", dir, tok.URI)
		}
		return nil, terr
	} else if s.kr, err = keyring.Open(d.path(KeyringFile), passphrase); err != nil {
		return nil, err
	}
	s.repo = s.kr.Repo()
	if err := s.openAudit(o.Audit); err != nil {
		s.kr.Close()
		return nil, err
	}
	go s.sweep()
	go s.sum.run(s.stop)
	return s, nil
}

func (s *Server) sweep() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.bk.Sweep()
		case <-s.stop:
			return
		}
	}
}

// Repo is the repository whose root keys the server holds.
func (s *Server) Repo() keys.ID { return s.repo }

// Draining marks the server as shutting down (/healthz answers 503).
func (s *Server) Draining() { s.closed.Store(true) }

// Reload re-reads the client list and the keyring (SIGHUP), and wipes
// the bucket keys it holds: a root key version destroyed or retired in
// the keyring file stops serving at once, cached bucket keys included.
func (s *Server) Reload() error {
	err := errors.Join(s.reg.Reload(), s.kr.Reload())
	s.bk.Purge()
	s.liftCutOffs()
	return err
}

// Close wipes every key the server holds and writes the handshake
// refusals not yet summarised. In-flight requests must be finished first
// (http.Server.Shutdown).
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.Draining()
		close(s.stop)
		<-s.sum.done
		s.bk.Purge()
		err = errors.Join(s.closeAudit(), s.kr.Close())
	})
	return err
}

// TLSConfig is the API listener's configuration: TLS 1.3 only, the
// server certificate, and client certificates verified by the server
// itself (verifyClient) so that every refusal, certificate missing
// included, is logged with the peer's address.
func (s *Server) TLSConfig() *tls.Config {
	base := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert},
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		peer := hello.Conn.RemoteAddr().String()
		lc, _ := hello.Conn.(*limitConn) // nil when not served on Listener
		// The client list is checked here, where a failure is an
		// internal_error alert (a client retries it), not a refusal of
		// its certificate.
		if err := s.reg.check(); err != nil {
			s.log.Error("the client list cannot be read; connections are refused until it can", "error", err.Error())
			return nil, errors.New("the key server cannot check client certificates now")
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			err := s.verifyClient(peer, cs)
			if lc != nil {
				lc.authenticated(err != nil)
			}
			return err
		}
		return c, nil
	}
	return base
}

// errCertRefused is what a refused client learns (a TLS alert); the log
// says why.
var errCertRefused = errors.New("client certificate refused")

func (s *Server) verifyClient(peer string, cs tls.ConnectionState) error {
	refuse := func(reason, detail string) error {
		s.handshakeRefused(reason, peerHost(peer), fmt.Sprintf("connection from %s refused: %s", peer, detail))
		return errCertRefused
	}
	if len(cs.PeerCertificates) == 0 {
		return refuse("no-certificate", "no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: s.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return refuse("bad-certificate", fmt.Sprintf("certificate %q (serial %s) does not verify against the key server's CA: %s",
			logtext.Clip(leaf.Subject.CommonName, 128), logtext.Clip(serialHex(leaf.SerialNumber), 64), logtext.Clip(err.Error(), 512)))
	}
	c, ok, rerr := s.reg.lookup(serialHex(leaf.SerialNumber))
	switch {
	case rerr != nil:
		s.log.Error("re-reading the client list failed; refusing", "error", rerr.Error())
		return refuse(reasonClientList, fmt.Sprintf("certificate %q (serial %s): the client list cannot be read", logtext.Clip(leaf.Subject.CommonName, 128), logtext.Clip(serialHex(leaf.SerialNumber), 64)))
	case !ok:
		return refuse("unknown-client", fmt.Sprintf("certificate %q (serial %s) is not in clients.json", logtext.Clip(leaf.Subject.CommonName, 128), logtext.Clip(serialHex(leaf.SerialNumber), 64)))
	case c.Revoked != nil:
		return refuse("revoked", fmt.Sprintf("client %q certificate serial %s was revoked at %s", c.Name, c.Serial, c.Revoked.Format(time.RFC3339)))
	}
	s.m.handshake.WithLabelValues("accepted").Inc()
	return nil
}

// reasonClientList: clients.json cannot be read, so no certificate can
// be checked (fail closed).
const reasonClientList = "client-list-unreadable"

// handshakeRefused counts a refusal before authentication and hands it to
// the summary, which logs it off the handshake path (limit.go).
func (s *Server) handshakeRefused(reason, host, detail string) {
	s.m.handshake.WithLabelValues("refused").Inc()
	s.m.refusals.WithLabelValues(reason).Inc()
	s.sum.note(reason, host, detail)
}

// writeSummary logs the handshake refusals of one reason and peer.
func (s *Server) writeSummary(reason, peer string, t tally) {
	d := summaryDetail(reason, peer, t)
	s.log.Warn("refused", "reason", reason, "peer", peer, "count", t.n, "detail", d)
	if err := s.ops.Record(keys.Op{Time: time.Now().UTC(), Op: "refuse", Repo: s.repo, Source: keys.SourceKeyServer, Detail: d}); err != nil {
		s.log.Error("the key-operation log did not record refusals", "error", err.Error())
	}
	e := audit.Entry{Kind: audit.KindRefusal, Actor: peer, Op: "handshake", Status: reason, Detail: d}
	if err := s.auditWait(context.Background(), e); err != nil {
		s.log.Error("the audit log did not record refusals", "error", err.Error())
	}
}

// refused logs and counts a refusal of an authenticated client's request,
// before the answer, in both logs (the audit entry names the client as
// actor, the API operation, and the reason as status). A log that cannot
// take it is reported on stderr: the refusal itself stands either way.
func (s *Server) refused(ctx context.Context, actor, op, reason, detail string) {
	s.m.refusals.WithLabelValues(reason).Inc()
	s.log.Warn("refused", "reason", reason, "detail", detail)
	if err := s.ops.Record(keys.Op{Time: time.Now().UTC(), Op: "refuse", Repo: s.repo, Source: keys.SourceKeyServer, Detail: reason + ": " + detail}); err != nil {
		s.log.Error("the key-operation log did not record a refusal", "error", err.Error())
	}
	e := audit.Entry{Kind: audit.KindRefusal, Actor: actor, Op: op, Status: reason, Detail: reason + ": " + detail}
	if err := s.auditWait(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("the audit log did not record a refusal", "error", err.Error())
	}
}

// Handler serves the API (on the mutual-TLS listener).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+api.PathVersions, s.api("versions", "", s.versions))
	mux.Handle("GET "+api.PathNonce, s.api("nonce", "", s.nonce))
	mux.Handle("POST "+api.PathWrap, s.api("wrap", api.OpWrap, s.wrap))
	mux.Handle("POST "+api.PathUnwrap, s.api("unwrap", api.OpUnwrap, s.unwrap))
	mux.Handle("GET "+api.PathFreshness, s.api("freshness-get", "", s.freshness))
	mux.Handle("POST "+api.PathFreshness, s.api("freshness-set", api.OpWrap, s.setFreshness))
	mux.Handle("GET "+api.PathCatalogHead, s.api("catalog-head-get", "", s.catalogHead))
	mux.Handle("POST "+api.PathCatalogHead, s.api("catalog-head-set", api.OpWrap, s.setCatalogHead))
	mux.Handle("POST "+api.PathDataKeyWrap, s.api("datakey-wrap", api.OpData, s.dataWrap))
	mux.Handle("POST "+api.PathDataKeyUnwrap, s.api("datakey-unwrap", api.OpData, s.dataUnwrap))
	// Making a bucket key is a root-level wrap whose key the client never
	// sees: it is granted with wrap, which already lets a client put any
	// key it chooses under the root key.
	mux.Handle("POST "+api.PathBucketKeyMake, s.api("bucketkey-make", api.OpWrap, s.makeBucketKey))
	return mux
}

// OpsHandler serves /healthz and /metrics (on a separate, plain-HTTP
// listener meant for the loopback or a management network).
func (s *Server) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.closed.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	return mux
}

// apiError is an error with its wire code; the message is safe to show
// the client (it names no key and nothing the client did not send).
// reason is the log's refusal reason ("" : the code).
type apiError struct {
	status int
	code   string
	msg    string
	reason string
}

func (e *apiError) Error() string { return e.msg }

func refusal(f string, a ...any) error {
	return &apiError{http.StatusForbidden, api.CodeRefused, fmt.Sprintf(f, a...), "not-authorized"}
}

// refusalFor is a refusal logged with its own reason (revoked, …).
func refusalFor(reason, f string, a ...any) error {
	return &apiError{http.StatusForbidden, api.CodeRefused, fmt.Sprintf(f, a...), reason}
}

func badRequest(f string, a ...any) error {
	return &apiError{http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf(f, a...), ""}
}

// classify maps a key operation's error to its wire form.
func classify(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, keys.ErrNotMyKey):
		return &apiError{http.StatusUnprocessableEntity, api.CodeNotMyKey, "the record does not open under this key server's keys", ""}
	case errors.Is(err, keyring.ErrFreshnessRollback):
		return &apiError{http.StatusConflict, api.CodeRollback, err.Error(), ""}
	case errors.Is(err, keyring.ErrModified):
		return &apiError{http.StatusConflict, api.CodeModified, err.Error(), ""}
	}
	return &apiError{http.StatusServiceUnavailable, api.CodeUnavailable, "the key server cannot answer now (see its log)", ""}
}

// call is one authenticated request: who asks, and their grant.
type call struct {
	client Client
	peer   string
	r      *http.Request
}

func (c call) describe() string {
	return fmt.Sprintf("client %q serial %s from %s", c.client.Name, c.client.Serial, c.peer)
}

// api wraps an operation: it identifies the client (its certificate was
// verified at the handshake; the list and the certificate's validity are
// checked again, so a revocation or an expiry also ends connections that
// were open), checks the operation is granted, runs it, and writes the
// answer. Every answer but success and "unavailable" is logged as a
// refusal, before it is sent.
func (s *Server) api(name, op string, fn func(call) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.identify(r)
		if err != nil {
			// The connection is not this client's any more: end it
			// (HTTP/1.1 closes, HTTP/2 sends GOAWAY).
			w.Header().Set("Connection", "close")
		}
		if err == nil && op != "" && !c.client.Grant.allowsOp(op) {
			err = refusal("client %q may not %s", c.client.Name, op)
		}
		var out any
		if err == nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			out, err = fn(c)
		}
		if err != nil {
			ae := classify(err)
			if ae.code == api.CodeUnavailable {
				// The details stay in the log; the client gets the code.
				s.log.Error("request failed", "op", name, "client", c.client.Name, "error", err.Error())
			} else {
				reason := ae.reason
				if reason == "" {
					reason = ae.code
				}
				d := fmt.Sprintf("%s: %s: %s", c.describe(), name, ae.msg)
				var ld *logDetail
				if errors.As(err, &ld) && ld.detail != "" {
					d += " [" + ld.detail + "]"
				}
				actor := c.client.Name
				if actor == "" {
					actor = c.peer
				}
				s.refused(r.Context(), actor, name, reason, d)
			}
			s.m.requests.WithLabelValues(name, ae.code).Inc()
			s.checkpointHeader(w)
			writeJSON(w, ae.status, api.Error{Code: ae.code, Message: ae.msg})
			return
		}
		s.m.requests.WithLabelValues(name, "ok").Inc()
		s.checkpointHeader(w)
		writeJSON(w, http.StatusOK, out)
		wipeResponse(out)
	})
}

// checkpointHeader puts the audit log's newest checkpoint line on an
// answer (api.HeaderAuditCheckpoint).
func (s *Server) checkpointHeader(w http.ResponseWriter) {
	if cp := s.AuditCheckpoint(); cp != nil {
		w.Header().Set(api.HeaderAuditCheckpoint, string(cp))
	}
}

// identify names the client of a request, checking again what the
// handshake checked and what may have changed since: the client list
// (revoked, unknown; unreadable is "unavailable") and the certificate's
// validity period.
func (s *Server) identify(r *http.Request) (call, error) {
	c := call{peer: r.RemoteAddr, r: r}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return c, refusalFor("no-certificate", "no client certificate")
	}
	leaf := r.TLS.PeerCertificates[0]
	serial := serialHex(leaf.SerialNumber)
	c.client = Client{Name: leaf.Subject.CommonName, Serial: serial}
	cl, ok, err := s.reg.lookup(serial)
	switch {
	case err != nil:
		return c, fmt.Errorf("the client list cannot be read, so no request is answered: %w", err)
	case !ok:
		return c, refusalFor("unknown-client", "this client certificate is not enrolled")
	case cl.Revoked != nil:
		c.client = cl
		return c, refusalFor("revoked", "this client certificate was revoked at %s", cl.Revoked.Format(time.RFC3339))
	}
	c.client = cl
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return c, refusalFor("expired", "this client certificate is valid from %s to %s only",
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// writeJSON writes v as the answer from one buffer, which it clears
// afterwards (an answer may hold a key).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	defer clear(b)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"unavailable","message":"the key server cannot answer now"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

// wipeResponse clears key bytes from an answer once it is written.
func wipeResponse(v any) {
	if k, ok := v.(api.KeyResponse); ok {
		clear(k.Key)
	}
}

// decode reads the request body into one buffer, decodes it into v (a
// struct) and clears the buffer (a request may hold a key). It decodes
// with json.Unmarshal, which makes no copy of the input (a Decoder would
// keep one in its own buffer), and refuses unknown top-level fields.
func decode(c call, v any) error {
	b, err := io.ReadAll(c.r.Body)
	defer clear(b)
	if err != nil {
		return badRequest("malformed request: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return badRequest("malformed request: %v", err)
	}
	var fields map[string]skip
	if err := json.Unmarshal(b, &fields); err != nil {
		return badRequest("malformed request: %v", err)
	}
	known := jsonFields(reflect.TypeOf(v).Elem())
	for f := range fields {
		if !known[f] {
			return badRequest("malformed request: unknown field %q", logtext.Clip(f, 64))
		}
	}
	return nil
}

// skip decodes any JSON value into nothing (no copy of it is made).
type skip struct{}

func (*skip) UnmarshalJSON([]byte) error { return nil }

// jsonFields are the JSON names of struct type t's fields.
func jsonFields(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for i := range t.NumField() {
		if f := t.Field(i); f.Anonymous && f.Tag.Get("json") == "" && f.Type.Kind() == reflect.Struct {
			maps.Copy(m, jsonFields(f.Type)) // embedded: its fields are the parent's (api.Claims)
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		m[name] = true
	}
	return m
}

func (s *Server) versions(c call) (any, error) {
	out := api.Versions{Repo: s.kr.Repo(), Primary: s.kr.Primary(), Client: c.client.Name}
	for _, v := range s.kr.Versions() {
		out.Versions = append(out.Versions, api.Version{Version: v.Version, State: uint8(v.State), Created: v.Created})
	}
	return out, nil
}

// authorizeRoot checks a root-level wrap or unwrap: what the AD names
// must be in the client's grant. Data keys are never wrapped under a
// root key, and the PKCS#11 source's state key is not the key server's.
func (s *Server) authorizeRoot(c call, ad keys.AD) error {
	g := c.client.Grant
	if ad.Purpose == keys.PurposeSystemKey && ad.Object == ServerAuditObjectID(s.repo) {
		return refusal("the key server's own audit key is never wrapped or opened for a client")
	}
	switch ad.Purpose {
	case keys.PurposeBucketKey, keys.PurposeSystemKey, keys.PurposeAccessTable:
	default:
		return refusal("purpose %d is not served at the root level", ad.Purpose)
	}
	if !g.allowsBucket(ad.Bucket) {
		if ad.Bucket == (keys.ID{}) {
			return refusal("client %q may not use the repository's system keys (its grant names buckets, not \"*\")", c.client.Name)
		}
		return refusal("client %q may not use bucket %x", c.client.Name, ad.Bucket[:])
	}
	if !g.allowsVersion(ad.KEKVersion) {
		return refusal("client %q may not use root key version %d", c.client.Name, ad.KEKVersion)
	}
	return nil
}

// record logs a key use in the key-operation log and the audit log; a
// release that cannot be logged in either is not made.
func (s *Server) record(c call, op string, ad keys.AD, what string) error {
	d := fmt.Sprintf("%s; %s purpose=%d bucket=%x object=%x key-version=%d", c.describe(), what, ad.Purpose, ad.Bucket[:], ad.Object[:], ad.KeyVersion)
	err := s.ops.Record(keys.Op{Time: time.Now().UTC(), Op: op, Repo: s.repo, Source: keys.SourceKeyServer, Versions: []uint32{ad.KEKVersion}, Detail: d})
	if err != nil {
		return fmt.Errorf("the key-operation log did not record the %s, so it was not made: %w", op, err)
	}
	e := audit.Entry{Kind: audit.KindKey, Actor: c.client.Name, Op: op, Subject: subject(ad), Status: "ok",
		Detail: fmt.Sprintf("%s; root key version %d", d, ad.KEKVersion)}
	if err := s.auditWait(context.WithoutCancel(c.r.Context()), e); err != nil {
		return fmt.Errorf("the audit log did not record the %s, so it was not made: %w", op, err)
	}
	return nil
}

func (s *Server) wrap(c call) (any, error) {
	var req api.WrapRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	k, err := secret.FromBytes(req.Key) // wipes req.Key
	if err != nil {
		return nil, badRequest("the key to wrap is not %d bytes", secret.KeySize)
	}
	defer k.Wipe()
	if err := s.authorizeRoot(c, req.AD); err != nil {
		return nil, err
	}
	w, err := s.kr.Wrap(c.r.Context(), req.Version, req.AD, k)
	if err != nil {
		return nil, badRequest("wrap under root key version %d: %v", req.Version, err)
	}
	if err := s.record(c, "wrap", req.AD, "root wrap"); err != nil {
		return nil, err
	}
	w.Source = keys.SourceKeyServer
	return api.WrapResponse{Wrapped: w}, nil
}

// makeBucketKey makes a bucket key version in protected memory, wraps it
// under the root key version the AD names and answers with the wrap and
// the key check only, so that a client creating a bucket or rotating its
// key never holds the key (docs/keyserver.md, "What a joined gateway
// holds"). The key is wiped before the answer is sent; the server opens
// it again from the record, as for any record, when the client asks for
// data keys under it.
func (s *Server) makeBucketKey(c call) (any, error) {
	var req api.MakeBucketKeyRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	ad := req.AD
	switch {
	case ad.Purpose != keys.PurposeBucketKey:
		return nil, badRequest("the associated data is not a bucket key's (purpose %d)", ad.Purpose)
	case ad.Repo != s.repo:
		return nil, badRequest("the associated data names another repository")
	case ad.Bucket == (keys.ID{}):
		return nil, badRequest("the associated data names no bucket")
	}
	if err := s.authorizeRoot(c, ad); err != nil {
		return nil, err
	}
	note, err := s.gate(c, req.Claims)
	if err != nil {
		return nil, err
	}
	k, err := secret.New()
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	w, err := s.kr.Wrap(c.r.Context(), ad.KEKVersion, ad, k)
	if err != nil {
		return nil, badRequest("wrap under root key version %d: %v", ad.KEKVersion, err)
	}
	kc, err := keys.KeyCheck(k)
	if err != nil {
		return nil, err
	}
	if err := s.record(c, "make", ad, "bucket key made and wrapped, not released"+note); err != nil {
		return nil, err
	}
	w.Source = keys.SourceKeyServer
	return api.MakeBucketKeyResponse{Wrapped: w, KeyCheck: kc}, nil
}

// asKeyring turns a record this server made (source kind key server),
// or one its root keys made before they moved here (the keyring's or the
// token's kind), into the root keys' own form.
func (s *Server) asKeyring(w keys.Wrapped) (keys.Wrapped, error) {
	if w.Source != keys.SourceKeyServer && w.Source != s.kr.Kind() {
		return w, fmt.Errorf("record is for key source kind %d: %w", w.Source, keys.ErrNotMyKey)
	}
	w.Source = s.kr.Kind()
	return w, nil
}

func (s *Server) unwrap(c call) (any, error) {
	var req api.UnwrapRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := s.authorizeRoot(c, req.AD); err != nil {
		return nil, err
	}
	if req.AD.Purpose == keys.PurposeSystemKey && req.AD.Object == audit.ObjectID(s.repo) && !c.client.Grant.allowsOp(api.OpAudit) {
		return nil, refusal("client %q may not open the audit log's key (its grant lacks the %q operation)", c.client.Name, api.OpAudit)
	}
	if err := s.rateGate(c); err != nil {
		return nil, err
	}
	note, err := s.gate(c, req.Claims)
	if err != nil {
		return nil, err
	}
	w, err := s.asKeyring(req.Wrapped)
	if err != nil {
		return nil, err
	}
	k, err := s.kr.Unwrap(c.r.Context(), w, req.AD)
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	if err := s.record(c, "release", req.AD, "root unwrap"+note); err != nil {
		return nil, err
	}
	s.m.releases.WithLabelValues("unwrap").Inc()
	s.released(c)
	return keyResponse(k)
}

func keyResponse(k secret.Key) (api.KeyResponse, error) {
	var out []byte
	err := k.Use(func(b []byte) error {
		out = append([]byte(nil), b...)
		return nil
	})
	return api.KeyResponse{Key: out}, err
}

func (s *Server) freshness(c call) (any, error) {
	f, ok := s.kr.Freshness()
	return api.Freshness{Has: ok, Sequence: f.Sequence, Hash: f.Hash, Time: f.Time}, nil
}

// setFreshness changes the anti-rollback record. The change is logged
// before the answer; the log is checked first, so that a change it could
// not take is not made (a log that fails between the check and the
// record leaves the change made and the answer "unavailable"; the client
// sets it again, which is accepted).
func (s *Server) setFreshness(c call) (any, error) {
	var req api.Freshness
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if !c.client.Grant.allowsBucket(keys.ID{}) {
		return nil, refusal("client %q may not record catalog backups (its grant names buckets, not \"*\")", c.client.Name)
	}
	if err := s.ops.Ready(); err != nil {
		return nil, fmt.Errorf("the key-operation log cannot take a record, so the freshness record was not changed: %w", err)
	}
	old, had := s.kr.Freshness()
	want := keyring.Freshness{Sequence: req.Sequence, Hash: req.Hash, Time: req.Time}
	err := s.kr.SetFreshness(want)
	if errors.Is(err, keyring.ErrModified) {
		// Another process (a key server admin command) changed the file.
		if rerr := s.kr.Reload(); rerr == nil {
			old, had = s.kr.Freshness()
			err = s.kr.SetFreshness(want)
		}
	}
	if err != nil {
		return nil, err
	}
	f, _ := s.kr.Freshness()
	was := "none"
	if had {
		was = fmt.Sprintf("sequence %d hash %x", old.Sequence, old.Hash[:8])
	}
	d := fmt.Sprintf("%s; freshness record set to sequence %d hash %x time %s (was %s)", c.describe(), f.Sequence, f.Hash[:8],
		f.Time.UTC().Format(time.RFC3339), was)
	if err := s.ops.Record(keys.Op{Time: time.Now().UTC(), Op: "freshness", Repo: s.repo, Source: keys.SourceKeyServer, Detail: d}); err != nil {
		return nil, fmt.Errorf("the key-operation log did not record the freshness change: %w", err)
	}
	e := audit.Entry{Kind: audit.KindKey, Actor: c.client.Name, Op: "freshness", Status: "ok", Detail: d}
	if err := s.auditWait(context.WithoutCancel(c.r.Context()), e); err != nil {
		return nil, fmt.Errorf("the audit log did not record the freshness change: %w", err)
	}
	return api.Freshness{Has: true, Sequence: f.Sequence, Hash: f.Hash, Time: f.Time}, nil
}

// authorizeData checks a data-key request and that its parts agree: the
// AD is a data key's, of the bucket and bucket key version the record
// names, in this repository.
func (s *Server) authorizeData(c call, bk api.BucketKey, ad keys.AD) error {
	g := c.client.Grant
	switch {
	case ad.Purpose != keys.PurposeDataKey:
		return badRequest("the associated data is not a data key's (purpose %d)", ad.Purpose)
	case ad.Bucket != bk.Bucket || ad.KEKVersion != bk.Version:
		return badRequest("the associated data names bucket %x v%d, the bucket key record bucket %x v%d", ad.Bucket[:], ad.KEKVersion, bk.Bucket[:], bk.Version)
	case ad.Repo != s.repo:
		return badRequest("the associated data names another repository")
	case !g.allowsBucket(ad.Bucket) || ad.Bucket == (keys.ID{}):
		return refusal("client %q may not use bucket %x", c.client.Name, ad.Bucket[:])
	case !g.allowsVersion(bk.Wrapped.KEKVersion):
		return refusal("client %q may not use root key version %d", c.client.Name, bk.Wrapped.KEKVersion)
	}
	return nil
}

// bucketKey opens a bucket key record under the root key, checks it
// against its key check, and keeps it for BucketKeyTTL. The key never
// leaves the server.
func (s *Server) bucketKey(ctx context.Context, bk api.BucketKey) (secret.Key, error) {
	// The root key version's state first, also for a cached key: a
	// version destroyed since (and reloaded) opens nothing more.
	if !s.rootUsable(bk.Wrapped.KEKVersion) {
		return secret.Key{}, fmt.Errorf("root key version %d is unknown or destroyed: %w", bk.Wrapped.KEKVersion, keys.ErrNotMyKey)
	}
	id := bucketCacheID(bk)
	if k, ok := s.bk.Get(id); ok {
		return k, nil
	}
	w, err := s.asKeyring(bk.Wrapped)
	if err != nil {
		return secret.Key{}, err
	}
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: s.repo, Bucket: bk.Bucket, KEKVersion: bk.Wrapped.KEKVersion, KeyVersion: bk.Version}
	k, err := s.kr.Unwrap(ctx, w, ad)
	if err != nil {
		return secret.Key{}, fmt.Errorf("bucket key v%d: %w", bk.Version, err)
	}
	kc, err := keys.KeyCheck(k)
	if err != nil || subtle.ConstantTimeCompare(kc, bk.KeyCheck) != 1 {
		k.Wipe()
		return secret.Key{}, fmt.Errorf("bucket key v%d does not match its key check: %w", bk.Version, keys.ErrNotMyKey)
	}
	s.bk.Put(id, k)
	return k, nil
}

// rootUsable reports whether the keyring holds root key version v, not
// destroyed.
func (s *Server) rootUsable(v uint32) bool {
	for _, i := range s.kr.Versions() {
		if i.Version == v {
			return i.State != keyring.StateDestroyed
		}
	}
	return false
}

// bucketCacheID names a bucket key record: every field, each with its
// length, so that no two records share a name.
func bucketCacheID(bk api.BucketKey) [32]byte {
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		h.Write(b)
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	field([]byte("holdfast keyserver bucket key record"))
	field(bk.Bucket[:])
	field(u32(bk.Version))
	field([]byte{byte(bk.Wrapped.Source)})
	field([]byte{byte(bk.Wrapped.Alg)})
	field(u32(bk.Wrapped.KEKVersion))
	field(bk.Wrapped.Data)
	field(bk.KeyCheck)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

func (s *Server) dataWrap(c call) (any, error) {
	var req api.DataKeyWrapRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	dk, err := secret.FromBytes(req.Key)
	if err != nil {
		return nil, badRequest("the data key is not %d bytes", secret.KeySize)
	}
	defer dk.Wipe()
	if err := s.authorizeData(c, req.BucketKey, req.AD); err != nil {
		return nil, err
	}
	bk, err := s.bucketKey(c.r.Context(), req.BucketKey)
	if err != nil {
		return nil, err
	}
	defer bk.Wipe()
	data, err := keys.WrapSoftware(bk, req.AD, dk, rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := s.record(c, "wrap", req.AD, "data key wrap"); err != nil {
		return nil, err
	}
	return api.DataKeyWrapResponse{Alg: keys.AlgHKDFGCMCommit, Data: data}, nil
}

func (s *Server) dataUnwrap(c call) (any, error) {
	var req api.DataKeyUnwrapRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if err := s.authorizeData(c, req.BucketKey, req.AD); err != nil {
		return nil, err
	}
	if req.Alg != keys.AlgHKDFGCMCommit {
		return nil, fmt.Errorf("data key wrap algorithm %d: %w", req.Alg, keys.ErrNotMyKey)
	}
	if err := s.rateGate(c); err != nil {
		return nil, err
	}
	note, err := s.gate(c, req.Claims)
	if err != nil {
		return nil, err
	}
	bk, err := s.bucketKey(c.r.Context(), req.BucketKey)
	if err != nil {
		return nil, err
	}
	defer bk.Wipe()
	dk, err := keys.UnwrapSoftware(bk, req.AD, req.Data)
	if err != nil {
		return nil, err
	}
	defer dk.Wipe()
	if err := s.record(c, "release", req.AD, "data key unwrap"+note); err != nil {
		return nil, err
	}
	s.m.releases.WithLabelValues("datakey").Inc()
	s.released(c)
	return keyResponse(dk)
}

// Listen is a convenience for the CLI and tests: it listens on addr and
// returns the listener and the "https://host:port" URL clients use.
func Listen(addr string) (net.Listener, string, error) {
	// SO_REUSEPORT: a new server process can listen on the address while
	// the old one drains, so that a restart refuses no client (the kernel
	// lets only processes of the same user share the port).
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	return ln, "https://" + ln.Addr().String(), nil
}
