package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/attest"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/keycache"
	"github.com/holdfast/holdfast/internal/keyserver/api"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/secret"
)

// Defaults (docs/keyserver.md, "When the key server is unreachable").
const (
	// DefaultCacheTTL: an unwrapped key is reused for this long, then
	// wiped; a short outage of the server is bridged for keys already
	// used, and a revoked client loses them soon.
	DefaultCacheTTL = 30 * time.Second
	// DefaultTimeout bounds one request, connection included.
	DefaultTimeout = 10 * time.Second
	// DefaultAttempts: each operation is tried this many times when the
	// server cannot be reached or answers "unavailable".
	DefaultAttempts = 3
)

// ErrRefused: the key server refused the request — the client
// certificate is missing, revoked, unknown or from another CA, or the
// grant does not cover the bucket, operation or key version, or the
// host's posture or attestation does not meet the release policy. Retrying
// does not help; the server's operator can (its log says why).
var ErrRefused = errors.New("refused by the key server")

// Config names a key server and this client's credentials (the bundle
// `holdfast keyserver enroll --out DIR` writes).
type Config struct {
	URL      string // https://host:port
	CertFile string // client.crt
	KeyFile  string // client.key
	CAFile   string // ca.crt: the key server's CA
	Timeout  time.Duration
	CacheTTL time.Duration // 0: DefaultCacheTTL; negative: no cache
	Attempts int           // 0: DefaultAttempts
	// Posture reads this host's posture, sent with every request that
	// releases a key (nil: posture.ReadHost). It is read at the first
	// such request and again when PostureInterval has passed since
	// (0: posture.DefaultInterval).
	Posture         func() posture.Report
	PostureInterval time.Duration
	// Attester, if set, gets attestation evidence for each request that
	// releases a key, bound to a nonce from the server and to this
	// client's TLS key (docs/keyserver.md, "Posture and attestation").
	Attester attest.Attester
	// CheckpointFile, if set, keeps the server's audit checkpoints: each
	// answer carries the newest (api.HeaderAuditCheckpoint), and one
	// this file does not hold yet (by seq) is appended, under an flock,
	// mode 0600, the file rotated past MaxCheckpointCopy. A home keeps
	// them in CheckpointFileName.
	CheckpointFile string
}

// Source is a key source on a key server. Safe for concurrent use.
type Source struct {
	base     string
	hc       *http.Client
	attempts int
	c        *keycache.Cache
	stop     chan struct{}
	// spki is the client certificate's SubjectPublicKeyInfo, which
	// attestation evidence is bound to.
	spki     []byte
	attester attest.Attester
	cps      *checkpoints // nil: checkpoints are not kept

	pmu         sync.Mutex // the posture claim
	readPosture func() posture.Report
	postureTTL  time.Duration
	report      *posture.Report
	readAt      time.Time

	mu     sync.RWMutex
	vers   api.Versions
	fresh  api.Freshness
	closed bool
}

// Open connects to the key server: it loads the client certificate and
// the CA, and asks for the root key versions and the freshness record.
// An unreachable server is keys.ErrUnavailable; a refusal ErrRefused.
func Open(ctx context.Context, c Config) (*Source, error) {
	tc, err := tlsConfig(c)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("key server URL %q: want https://host:port", c.URL)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Attempts <= 0 {
		c.Attempts = DefaultAttempts
	}
	ttl := c.CacheTTL
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	tr := &http.Transport{
		TLSClientConfig:     tc,
		DialContext:         (&net.Dialer{Timeout: c.Timeout / 2}).DialContext,
		TLSHandshakeTimeout: c.Timeout / 2,
		// HTTP/1.1: in TLS 1.3 the server judges the client's certificate
		// after the client's handshake is done, and its refusal (an
		// alert) can reach an HTTP/2 connection before the first request,
		// which then fails as "could not be established" — a refusal
		// taken for an unreachable server. Over HTTP/1.1 the request's
		// own read gets the alert.
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	s := &Source{base: strings.TrimSuffix(u.String(), "/"), hc: &http.Client{Transport: tr, Timeout: c.Timeout},
		attempts: c.Attempts, c: keycache.New(ttl, nil), stop: make(chan struct{}),
		attester: c.Attester, readPosture: c.Posture, postureTTL: c.PostureInterval}
	if s.readPosture == nil {
		s.readPosture = posture.ReadHost
	}
	if c.CheckpointFile != "" {
		s.cps = &checkpoints{path: c.CheckpointFile}
	}
	if s.postureTTL <= 0 {
		s.postureTTL = posture.DefaultInterval
	}
	if leaf := tc.Certificates[0].Leaf; leaf != nil {
		s.spki = leaf.RawSubjectPublicKeyInfo
	} else if leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0]); err == nil {
		s.spki = leaf.RawSubjectPublicKeyInfo
	}
	if err := s.reload(ctx); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	if ttl > 0 {
		go s.sweepEvery(ttl)
	}
	return s, nil
}

func tlsConfig(c Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the key server client certificate: %w", err)
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("loading the key server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%q holds no PEM certificate", c.CAFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}

func (s *Source) sweepEvery(ttl time.Duration) {
	t := time.NewTicker(ttl)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.c.Sweep()
		case <-s.stop:
			return
		}
	}
}

func (s *Source) reload(ctx context.Context) error {
	var v api.Versions
	if err := s.do(ctx, http.MethodGet, api.PathVersions, nil, &v); err != nil {
		return err
	}
	var f api.Freshness
	if err := s.do(ctx, http.MethodGet, api.PathFreshness, nil, &f); err != nil {
		return err
	}
	s.mu.Lock()
	s.vers, s.fresh = v, f
	s.mu.Unlock()
	return nil
}

// do sends one API request, retrying with backoff while the server
// cannot be reached or is unavailable. Every API operation may be
// repeated safely: a wrap's or a bucket key make's answer that was lost
// only leaves an unused record (a made key is wiped on the server), and
// setting the same freshness record twice is accepted.
//
// A request that releases a key (one that embeds api.Claims) carries this
// host's claims, made anew for each attempt: attestation evidence is good
// for one nonce, which the server consumes whatever the answer.
func (s *Source) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	defer func() { clear(body) }() // it may hold a key
	marshal := func() error {
		clear(body)
		var err error
		body, err = json.Marshal(in)
		return err
	}
	claimer, claims := in.(interface{ SetClaims(api.Claims) })
	if in != nil && !claims {
		if err := marshal(); err != nil {
			return err
		}
	}
	var err error
	backoff := 100 * time.Millisecond
	for i := 0; i < s.attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff *= 4
		}
		if claims {
			var cl api.Claims
			if cl, err = s.claims(ctx); err == nil {
				claimer.SetClaims(cl)
				err = marshal()
			}
			if err != nil {
				if !errors.Is(err, keys.ErrUnavailable) || ctx.Err() != nil {
					return err
				}
				continue
			}
		}
		err = s.once(ctx, method, path, body, out)
		if err == nil || !errors.Is(err, keys.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (s *Source) once(ctx context.Context, method, path string, body []byte, out any) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return fmt.Errorf("key server source is closed: %w", keys.ErrUnavailable)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return s.transportError(ctx, err)
	}
	defer resp.Body.Close()
	s.cps.keep(resp.Header.Get(api.HeaderAuditCheckpoint))
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	defer clear(b) // it may hold a key
	if err != nil {
		return s.transportError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return s.apiError(resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("key server %s: malformed answer: %w", s.base, err)
	}
	return nil
}

// claims are this host's posture report and, with an Attester,
// attestation evidence for a new nonce from the server, bound to this
// client's TLS key.
func (s *Source) claims(ctx context.Context) (api.Claims, error) {
	s.pmu.Lock()
	if s.report == nil || time.Since(s.readAt) >= s.postureTTL {
		r := s.readPosture()
		s.report, s.readAt = &r, time.Now()
	}
	cl := api.Claims{Posture: s.report}
	s.pmu.Unlock()
	if s.attester == nil {
		return cl, nil
	}
	var n api.Nonce
	if err := s.once(ctx, http.MethodGet, api.PathNonce, nil, &n); err != nil {
		return cl, fmt.Errorf("asking for an attestation nonce: %w", err)
	}
	ev, err := s.attester.Evidence(ctx, attest.ReportData(n.Nonce, s.spki))
	if err != nil {
		return cl, fmt.Errorf("getting %s attestation evidence: %w", s.attester.Type(), err)
	}
	ev.Nonce = n.Nonce
	cl.Attestation = &ev
	return cl, nil
}

// transportError names what went wrong below HTTP: a refused handshake
// (ErrRefused) or a server that cannot be reached (keys.ErrUnavailable).
func (s *Source) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	msg := err.Error()
	switch {
	case errors.As(err, &ua), errors.As(err, &hn):
		return fmt.Errorf("key server %s: its certificate does not verify against the CA in the client bundle (%v): %w", s.base, err, ErrRefused)
	case refusalAlert(msg):
		return fmt.Errorf("key server %s refused this client's certificate (it is missing, revoked, unknown, or not issued by the server's CA; the server's log says which): %w", s.base, ErrRefused)
	}
	return fmt.Errorf("key server %s cannot be reached: %v: %w", s.base, err, keys.ErrUnavailable)
}

// refusalAlerts are the TLS alerts by which a server refuses a client's
// certificate (crypto/tls spells them so in "remote error: tls: …"). Any
// other alert (internal error: the server cannot check certificates now;
// handshake failure, …) is transient: the request is tried again.
var refusalAlerts = []string{"bad certificate", "revoked certificate", "expired certificate", "unknown certificate",
	"unsupported certificate", "unknown certificate authority", "access denied", "certificate required"}

func refusalAlert(msg string) bool {
	_, alert, ok := strings.Cut(msg, "remote error: tls: ")
	if !ok {
		return false
	}
	for _, a := range refusalAlerts {
		if strings.HasPrefix(alert, a) {
			return true
		}
	}
	return false
}

func (s *Source) apiError(status int, b []byte) error {
	var e api.Error
	if json.Unmarshal(b, &e) != nil || e.Code == "" {
		e = api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("HTTP %d", status)}
	}
	prefix := "key server " + s.base
	switch e.Code {
	case api.CodeNotMyKey:
		return fmt.Errorf("%s: %s: %w", prefix, e.Message, keys.ErrNotMyKey)
	case api.CodeRefused:
		return fmt.Errorf("%s: %s: %w", prefix, e.Message, ErrRefused)
	case api.CodeRollback:
		return fmt.Errorf("%s: %s: %w", prefix, e.Message, keyring.ErrFreshnessRollback)
	case api.CodeModified:
		return fmt.Errorf("%s: %s: %w", prefix, e.Message, keyring.ErrModified)
	case api.CodeUnavailable:
		return fmt.Errorf("%s: %s: %w", prefix, e.Message, keys.ErrUnavailable)
	}
	return fmt.Errorf("%s: %s", prefix, e.Message)
}

var _ keys.Source = (*Source)(nil)

// Kind reports keys.SourceKeyServer.
func (s *Source) Kind() keys.SourceKind { return keys.SourceKeyServer }

// URL is the key server's address.
func (s *Source) URL() string { return s.base }

// Client is the name the key server knows this client by.
func (s *Source) Client() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vers.Client
}

// Repo returns the repository id whose root keys the server holds.
func (s *Source) Repo() keys.ID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vers.Repo
}

// Primary returns the root key version for new wraps (as last read).
func (s *Source) Primary() uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vers.Primary
}

// Versions lists the root key versions (as last read).
func (s *Source) Versions() []keyring.RootKeyInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]keyring.RootKeyInfo, len(s.vers.Versions))
	for i, v := range s.vers.Versions {
		out[i] = keyring.RootKeyInfo{Version: v.Version, State: keyring.State(v.State), Created: v.Created}
	}
	return out
}

// Freshness returns the freshness record as last read or set.
func (s *Source) Freshness() (keyring.Freshness, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := s.fresh
	return keyring.Freshness{Sequence: f.Sequence, Hash: f.Hash, Time: f.Time}, f.Has
}

// SetFreshness records the latest catalog backup on the key server, with
// the keyring's rules (keyring.ErrFreshnessRollback).
func (s *Source) SetFreshness(f keyring.Freshness) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.attempts)*s.hc.Timeout)
	defer cancel()
	var out api.Freshness
	if err := s.do(ctx, http.MethodPost, api.PathFreshness, api.Freshness{Has: true, Sequence: f.Sequence, Hash: f.Hash, Time: f.Time}, &out); err != nil {
		return fmt.Errorf("setting freshness: %w", err)
	}
	s.mu.Lock()
	s.fresh = out
	s.mu.Unlock()
	return nil
}

// Reload asks the server again for the versions and the freshness record.
func (s *Source) Reload() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.attempts)*s.hc.Timeout)
	defer cancel()
	return s.reload(ctx)
}

// Close wipes the cached keys and ends the connections.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.c.Purge()
	s.hc.CloseIdleConnections()
	return nil
}

// Wrap seals k under root key version ver on the key server.
func (s *Source) Wrap(ctx context.Context, ver uint32, ad keys.AD, k secret.Key) (keys.Wrapped, error) {
	req := api.WrapRequest{Version: ver, AD: ad}
	if err := k.Use(func(b []byte) error { req.Key = append([]byte(nil), b...); return nil }); err != nil {
		return keys.Wrapped{}, err
	}
	defer clear(req.Key)
	var out api.WrapResponse
	if err := s.do(ctx, http.MethodPost, api.PathWrap, req, &out); err != nil {
		return keys.Wrapped{}, fmt.Errorf("key server wrap: %w", err)
	}
	return out.Wrapped, nil
}

// MakeBucketKey has the key server make a new bucket key version and wrap
// it under root key version ad.KEKVersion with ad (purpose
// keys.PurposeBucketKey). It returns the wrap and the key check the
// catalog keeps; the key itself never reaches this process.
func (s *Source) MakeBucketKey(ctx context.Context, ad keys.AD) (keys.Wrapped, []byte, error) {
	var out api.MakeBucketKeyResponse
	if err := s.do(ctx, http.MethodPost, api.PathBucketKeyMake, &api.MakeBucketKeyRequest{AD: ad}, &out); err != nil {
		return keys.Wrapped{}, nil, fmt.Errorf("key server bucket key make: %w", err)
	}
	return out.Wrapped, out.KeyCheck, nil
}

// Unwrap opens w on the key server, or answers from the cache.
func (s *Source) Unwrap(ctx context.Context, w keys.Wrapped, ad keys.AD) (secret.Key, error) {
	id := cacheID("root", []byte{byte(w.Source), byte(w.Alg)}, u32(w.KEKVersion), w.Data, ad.Bytes())
	if k, ok := s.c.Get(id); ok {
		return k, nil
	}
	var out api.KeyResponse
	if err := s.do(ctx, http.MethodPost, api.PathUnwrap, &api.UnwrapRequest{Wrapped: w, AD: ad}, &out); err != nil {
		return secret.Key{}, fmt.Errorf("key server unwrap: %w", err)
	}
	k, err := secret.FromBytes(out.Key) // wipes out.Key
	if err != nil {
		return secret.Key{}, err
	}
	s.c.Put(id, k)
	return k, nil
}

// BucketKey is a bucket key record as the catalog holds it: what the
// data-key operations send, so that the server opens the bucket key
// itself.
type BucketKey = api.BucketKey

// WrapDataKey has the key server wrap an object's data key under the
// bucket key in bk (which the server opens and keeps): the bucket key
// never reaches this process. The result is an AlgHKDFGCMCommit wrap.
func (s *Source) WrapDataKey(ctx context.Context, bk BucketKey, ad keys.AD, k secret.Key) (keys.Alg, []byte, error) {
	req := api.DataKeyWrapRequest{BucketKey: bk, AD: ad}
	if err := k.Use(func(b []byte) error { req.Key = append([]byte(nil), b...); return nil }); err != nil {
		return 0, nil, err
	}
	defer clear(req.Key)
	var out api.DataKeyWrapResponse
	if err := s.do(ctx, http.MethodPost, api.PathDataKeyWrap, req, &out); err != nil {
		return 0, nil, fmt.Errorf("key server data key wrap: %w", err)
	}
	return out.Alg, out.Data, nil
}

// UnwrapDataKey has the key server open a data key wrapped under the
// bucket key in bk, or answers from the cache.
func (s *Source) UnwrapDataKey(ctx context.Context, bk BucketKey, ad keys.AD, alg keys.Alg, data []byte) (secret.Key, error) {
	id := cacheID("data", bk.Bucket[:], u32(bk.Version), []byte{byte(bk.Wrapped.Source), byte(bk.Wrapped.Alg)},
		u32(bk.Wrapped.KEKVersion), bk.Wrapped.Data, bk.KeyCheck, []byte{byte(alg)}, data, ad.Bytes())
	if k, ok := s.c.Get(id); ok {
		return k, nil
	}
	var out api.KeyResponse
	req := &api.DataKeyUnwrapRequest{BucketKey: bk, AD: ad, Alg: alg, Data: data}
	if err := s.do(ctx, http.MethodPost, api.PathDataKeyUnwrap, req, &out); err != nil {
		return secret.Key{}, fmt.Errorf("key server data key unwrap: %w", err)
	}
	k, err := secret.FromBytes(out.Key)
	if err != nil {
		return secret.Key{}, err
	}
	s.c.Put(id, k)
	return k, nil
}

// cacheID names an unwrap: what was asked and every field of the
// record and its binding, each with its length, so that no two requests
// share a name.
func cacheID(kind string, fields ...[]byte) [32]byte {
	h := sha256.New()
	for _, f := range append([][]byte{[]byte(kind)}, fields...) {
		h.Write(u32(uint32(len(f))))
		h.Write(f)
	}
	var id [32]byte
	h.Sum(id[:0])
	return id
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
