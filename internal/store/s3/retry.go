package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/holdfast/holdfast/internal/store"
)

// How the store meets a network that fails (docs/design.md, "S3 faults").
//
// One S3 request is tried up to MaxAttempts times when an attempt fails in
// a way that may pass: a connection refused, reset or closed, an idle
// timeout, an answer cut short, HTTP 500, 502, 503 or 504, throttling
// (503 SlowDown and the like). Between attempts it waits a random time in
// [0, min(base × 2^retry, MaxBackoff)) — exponential backoff with full
// jitter, base 50 ms, or 1 s after throttling (the SDK's standard retryer).
// An attempt fails when its connection moves too little for IdleTimeout
// (idleConn); the request, all attempts and waits included, fails at its
// deadline, Timeout.
// A request that fails so is reported as store.ErrUnavailable, naming the
// attempts made and the last failure.

// Defaults of the Config fields that govern faults.
const (
	DefaultMaxAttempts = 10
	DefaultMaxBackoff  = 20 * time.Second
	DefaultIdleTimeout = 30 * time.Second
	DefaultTimeout     = 5 * time.Minute
)

// newRetryer is the SDK's standard retryer with Holdfast's limits and
// classification.
func newRetryer(attempts int, maxBackoff time.Duration) *retry.Standard {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = attempts
		o.MaxBackoff = maxBackoff
		// No client-side retry quota. The SDK's token bucket (500 tokens,
		// 14 per retry) protects a fleet of clients from retry storms; for
		// one client with bounded concurrency and backoff on every retry
		// it only turns a burst of transient faults — a flaky link during
		// a long verify — into failed operations once the bucket is empty,
		// and those failures are what retrying is meant to prevent. Each
		// request stays bounded by MaxAttempts and Timeout.
		o.RateLimiter = ratelimit.None
		// Refusals first: the SDK retries every error of a request that
		// could not be sent, and a server certificate we refuse will not
		// change on the next attempt.
		o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(notRetryable)}, o.Retryables...)
		o.Retryables = append(o.Retryables, retry.IsErrorRetryableFunc(cutShort))
	})
}

// notRetryable refuses to retry a TLS handshake we refused: an untrusted
// or mismatched certificate, a pinned key that does not match, a protocol
// version we do not accept.
func notRetryable(err error) aws.Ternary {
	if tlsRefused(err) {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
}

// tlsRefused reports whether err is a TLS handshake that failed for a
// reason of trust, not of the network: an untrusted or mismatched
// certificate, a pinned key that does not match, a protocol version one
// side does not accept, the server's alert.
func tlsRefused(err error) bool {
	var (
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		he   x509.HostnameError
		cie  x509.CertificateInvalidError
		ae   tls.AlertError
		rhe  tls.RecordHeaderError
		oe   *net.OpError
		idle *idleTimeoutError
	)
	switch {
	case errors.Is(err, ErrPinMismatch), errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &he),
		errors.As(err, &cie), errors.As(err, &ae), errors.As(err, &rhe):
		return true
	case errors.As(err, &oe) && oe.Op == "remote error":
		// The server refused our handshake with a TLS alert.
		return true
	case strings.Contains(err.Error(), "tls: ") && !errors.As(err, &oe) && !errors.As(err, &idle):
		// A handshake failure of our own making ("tls: server selected
		// unsupported protocol version"), not a network one.
		return true
	}
	return false
}

// cutShort retries an answer whose body ended early or stopped (an XML
// listing cut mid-way): the SDK does not classify it.
func cutShort(err error) aws.Ternary {
	var idle *idleTimeoutError
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &idle) {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

// idleTimeoutError: a connection moved too little for the idle timeout.
type idleTimeoutError struct {
	op string // "read" or "write"
	d  time.Duration
}

func (e *idleTimeoutError) Error() string {
	if e.op == "write" {
		return fmt.Sprintf("the server took no byte for %s", e.d)
	}
	return fmt.Sprintf("no answer, or too little of one, for %s", e.d)
}
func (e *idleTimeoutError) Timeout() bool   { return true }
func (e *idleTimeoutError) Temporary() bool { return true }

// minProgress is the least an answer must deliver per idle timeout
// (about 2 KiB/s with the default 30 s): its deadline moves on only as
// each further minProgress bytes arrive.
const minProgress = 64 << 10

// idleConn fails a connection that moves too little for d: a stalled
// connect-and-handshake, a server that stops reading a request body, an
// answer that does not come, stops midway or drips (a provider sending a
// byte now and then would otherwise hold a read, and a verify, for
// ever). A write must complete within d of its start; an answer must
// deliver minProgress bytes within d of the request, and each further
// minProgress bytes within d of the last, or its last bytes within d.
// (HTTP/1.1 carries one request at a time on a connection, so the
// connection's pace is the request's.)
type idleConn struct {
	net.Conn
	d     time.Duration
	moved atomic.Int64 // bytes read since the read deadline last moved
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.moved.Add(int64(n)) >= minProgress {
		c.moved.Store(0)
		if derr := c.Conn.SetReadDeadline(time.Now().Add(c.d)); derr != nil && err == nil {
			err = derr
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = &idleTimeoutError{"read", c.d}
	}
	return n, err
}

// Write moves the read deadline too, starting the answer's first window:
// net/http's read loop starts its Read when a connection goes idle in the
// pool, and a request written on it later must still give the server d
// to answer.
func (c *idleConn) Write(p []byte) (int, error) {
	c.moved.Store(0)
	if err := c.Conn.SetDeadline(time.Now().Add(c.d)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = &idleTimeoutError{"write", c.d}
	}
	return n, err
}

// testDial, set only by tests, replaces the dialer: it lets a test reach a
// server under names no resolver here knows (virtual-host addressing).
var testDial func(ctx context.Context, network, addr string) (net.Conn, error)

// MaxIdleConns is how many idle connections to the provider a store
// keeps.
const MaxIdleConns = 128

// idleConns is MaxIdleConns; a test lowers it to the SDK's default to
// show the difference it makes.
var idleConns = MaxIdleConns

// httpClient is the HTTP client of a store, made from the SDK's transport
// (which carries the TLS settings and any AWS_CA_BUNDLE): HTTP/1.1 over
// idle-timed connections, no redirects followed (S3 answers a wrong
// region with one), and every request the transport itself repeats
// counted.
func (s *Store) httpClient(tr *http.Transport, idle time.Duration) *http.Client {
	d := &net.Dialer{Timeout: idle, KeepAlive: 30 * time.Second}
	dial := d.DialContext
	if testDial != nil {
		dial = testDial
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		ic := &idleConn{Conn: c, d: idle}
		if err := c.SetDeadline(time.Now().Add(idle)); err != nil {
			c.Close()
			return nil, err
		}
		return ic, nil
	}
	tr.TLSHandshakeTimeout = idle
	// Keep a connection for every request that may run at once (a
	// gateway's, up to its request limit): with the SDK's 10 idle
	// connections per host, more concurrent requests than that closed
	// and re-opened connections, each with a TLS handshake.
	tr.MaxIdleConns = max(tr.MaxIdleConns, idleConns)
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, idleConns)
	// S3 speaks HTTP/1.1; a non-nil empty map keeps HTTP/2 off.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return &http.Client{
		Transport:     &countingTransport{rt: tr, s: s},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// countingTransport counts the requests net/http repeats by itself (a GET
// or HEAD on a kept-alive connection that failed before any answer), which
// the SDK never sees.
type countingTransport struct {
	rt http.RoundTripper
	s  *Store
}

// CloseIdleConnections passes http.Client.CloseIdleConnections on.
func (c *countingTransport) CloseIdleConnections() {
	if ci, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var conns atomic.Int64
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns.Add(1) }}
	resp, err := c.rt.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if n := conns.Load(); n > 1 {
		c.s.requests.Add(n - 1)
		c.s.retries.Add(n - 1)
		if rs, ok := req.Context().Value(reqStateKey{}).(*reqState); ok {
			rs.attempts += int(n - 1) // RoundTrip runs in the request's goroutine
		}
	}
	if resp != nil && resp.Body != nil && !objectBody(req, resp) {
		resp.Body = &boundedBody{rc: resp.Body, left: MaxAnswer}
	}
	return resp, err
}

// MaxAnswer bounds every answer body but an object's bytes: an error, a
// listing page (1,000 keys of at most 1 KiB each, in XML, is under 2 MiB),
// a multipart upload's answers. The SDK reads such a body whole into
// memory, so without a bound a provider that sent an endless one would
// have it held until the request's deadline.
const MaxAnswer = 16 << 20

// objectBody reports whether resp carries an object's bytes: the
// successful answer to a ranged GET (every read the store makes is
// ranged), which streams to the caller and is never held whole.
func objectBody(req *http.Request, resp *http.Response) bool {
	return req.Method == http.MethodGet && req.Header.Get("Range") != "" && resp.StatusCode/100 == 2
}

// errAnswerTooLong: an answer body went past MaxAnswer.
var errAnswerTooLong = fmt.Errorf("the answer is longer than %d bytes, more than any S3 answer but an object's", MaxAnswer)

// boundedBody fails a read past its bound.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		return 0, errAnswerTooLong
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// reqState follows one S3 request through its attempts.
type reqState struct {
	start    time.Time
	attempts int
	last     error // the last attempt's failure
	expired  atomic.Bool
}

type reqStateKey struct{}

// addMiddleware installs two middlewares around the SDK's retry loop: one
// outside it that gives the request its deadline and turns a request that
// failed after retries into an unavailableError, one inside it that counts
// and remembers each attempt.
func (s *Store) addMiddleware(stack *middleware.Stack) error {
	deadline := middleware.FinalizeMiddlewareFunc("HoldfastDeadline", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		rs := &reqState{start: time.Now()}
		dctx, cancel := context.WithCancel(context.WithValue(ctx, reqStateKey{}, rs))
		timeout := s.timeout
		if d, ok := ctx.Value(timeoutKey{}).(time.Duration); ok && d > timeout {
			timeout = d // a long part's upload (parts.go)
		}
		t := time.AfterFunc(timeout, func() { rs.expired.Store(true); cancel() })
		out, md, err := next.HandleFinalize(dctx, in)
		t.Stop()
		if err != nil || awsmiddleware.GetOperationName(ctx) != "GetObject" {
			cancel()
		}
		// A GetObject body streams on under dctx after the request
		// returns; ReadRange cancels the context it passed in when the
		// body is closed, which releases dctx.
		if err == nil || ctx.Err() != nil {
			return out, md, err
		}
		var mae *retry.MaxAttemptsError
		if rs.expired.Load() || errors.As(err, &mae) {
			detail := fmt.Sprintf("gave up after %s in %s", plural(rs.attempts, "attempt"), time.Since(rs.start).Round(time.Millisecond))
			if rs.expired.Load() {
				detail = fmt.Sprintf("no success within the %s deadline (%s)", timeout, plural(rs.attempts, "attempt"))
			}
			err = &unavailableError{detail: detail, last: rs.last}
		}
		return out, md, err
	})
	attempt := middleware.FinalizeMiddlewareFunc("HoldfastAttempt", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		s.requests.Add(1)
		rs, _ := ctx.Value(reqStateKey{}).(*reqState)
		if rs != nil {
			if rs.attempts++; rs.attempts > 1 {
				s.retries.Add(1)
			}
		}
		out, md, err := next.HandleFinalize(ctx, in)
		if err != nil && rs != nil && !rs.expired.Load() {
			rs.last = err
		}
		return out, md, err
	})
	if err := stack.Finalize.Insert(deadline, "Retry", middleware.Before); err != nil {
		return err
	}
	return stack.Finalize.Insert(attempt, "Retry", middleware.After)
}

// unavailableError: a request failed after retries or at its deadline,
// or a transfer broke too often.
type unavailableError struct {
	detail string // what was tried
	last   error  // the last failure
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("the store could not be reached: %s (last: %s)", e.detail, describe(e.last))
}

// Unwrap gives store.ErrUnavailable only: the last failure is described,
// not wrapped, so that no caller takes, say, a body cut short in transit
// for a stored object that is short.
func (e *unavailableError) Unwrap() error { return store.ErrUnavailable }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// describe says in a few words why an attempt failed.
func describe(err error) string {
	var (
		re   *smithyhttp.ResponseError
		ae   smithy.APIError
		idle *idleTimeoutError
	)
	switch {
	case err == nil:
		return "no answer"
	case errors.As(err, &re) && re.HTTPStatusCode() > 0:
		s := fmt.Sprintf("HTTP %d", re.HTTPStatusCode())
		if errors.As(err, &ae) && ae.ErrorCode() != "" {
			s += " " + ae.ErrorCode()
		}
		return s
	case errors.As(err, &idle):
		return idle.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the answer was cut short"
	case errors.Is(err, io.EOF):
		return "the server closed the connection"
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	return err.Error()
}
