// Package faultproxy is a reverse proxy for tests that stands between an
// S3 client and a real S3 server (versitygw) and makes requests fail: the
// connection reset before or after the server acted, HTTP 500
// InternalError, 503 SlowDown, a stall with no answer, an answer whose
// body is cut short or stops midway. Which requests fail, and how, follows
// a seeded schedule (math/rand/v2): the n-th request the proxy receives
// gets the n-th draw, so a client that sends its requests one at a time
// meets the same faults on every run. It counts what it injected, so a
// test can prove that faults happened.
//
// It is for tests only; nothing in the holdfast binary imports it.
package faultproxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is a kind of fault.
type Kind int

const (
	// ResetBefore resets the connection (TCP RST) instead of passing the
	// request on: the server never sees it.
	ResetBefore Kind = iota
	// ResetAfter passes the request on and resets the connection instead
	// of returning the answer: the server acted, the client cannot know.
	ResetAfter
	// InternalError answers 500 InternalError without passing the request
	// on.
	InternalError
	// SlowDown answers 503 SlowDown (S3's throttling) without passing the
	// request on.
	SlowDown
	// Stall neither reads the request further nor answers, until the
	// client gives up or StallFor passes; then it drops the connection.
	Stall
	// ShortBody (GET only) sends the answer's headers with the full
	// Content-Length and half the body, then closes the connection.
	ShortBody
	// StallBody (GET only) sends the headers and half the body, then
	// nothing until the client gives up or StallFor passes.
	StallBody
	numKinds
)

// AllKinds is every kind of fault, once.
var AllKinds = []Kind{ResetBefore, ResetAfter, InternalError, SlowDown, Stall, ShortBody, StallBody}

var kindNames = [...]string{"reset-before", "reset-after", "500", "503-slowdown", "stall", "short-body", "stall-body"}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// onBody reports whether k acts on an answer's body (GET requests only).
func (k Kind) onBody() bool { return k == ShortBody || k == StallBody }

// Schedule says which requests fail and how.
type Schedule struct {
	Seed uint64
	// Rate is the fraction of requests that fail, from 0 to 1; 1 fails
	// every request.
	Rate float64
	// Mix lists the kinds a failing request draws from, uniformly (repeat
	// a kind to weight it); nil means AllKinds. A request draws only among
	// the kinds that apply to it (the body kinds apply to GETs).
	Mix []Kind
	// Match, if set, limits faults to the requests for which it is true.
	Match func(*http.Request) bool
	// Limit, if positive, stops faults after that many.
	Limit int
}

// Options configure a proxy.
type Options struct {
	Upstream string // the server's URL: http://… or https://…
	CAFile   string // PEM certificates to trust for an https upstream
	// StallFor bounds a stall (default 10 s); clients give up sooner.
	StallFor time.Duration
	Schedule Schedule
	// Observe, if set, sees every request as it arrives (before any fault),
	// so that a test can check what a client sends the provider. It must
	// not read the body.
	Observe func(*http.Request)
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	URL string // http://127.0.0.1:PORT: point the client here

	upstream *url.URL
	tr       *http.Transport
	srv      *httptest.Server
	stallFor time.Duration
	observe  func(*http.Request)
	closed   chan struct{}
	once     sync.Once
	requests atomic.Int64

	mu     sync.Mutex
	sched  Schedule
	rng    *rand.Rand
	drawn  int
	counts [numKinds]int
}

// Start starts a proxy on 127.0.0.1 in front of o.Upstream.
func Start(o Options) (*Proxy, error) {
	u, err := url.Parse(o.Upstream)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("faultproxy: upstream %q is not an http(s) URL", o.Upstream)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("faultproxy: no certificate in %q", o.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	p := &Proxy{upstream: u, stallFor: o.StallFor, observe: o.Observe, closed: make(chan struct{}),
		tr: &http.Transport{TLSClientConfig: tlsCfg, DisableCompression: true, MaxIdleConnsPerHost: 16}}
	if p.stallFor <= 0 {
		p.stallFor = 10 * time.Second
	}
	p.Set(o.Schedule)
	p.srv = httptest.NewUnstartedServer(p)
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Start()
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy, ending any stall at once.
func (p *Proxy) Close() {
	p.once.Do(func() {
		close(p.closed)
		p.srv.Close()
		p.tr.CloseIdleConnections()
	})
}

// Set replaces the schedule and starts its draws afresh from its seed. The
// counts of injected faults are kept.
func (p *Proxy) Set(s Schedule) {
	if s.Mix == nil {
		s.Mix = AllKinds
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sched, p.drawn = s, 0
	p.rng = rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
}

// SetRate changes only the rate: 0 heals the proxy.
func (p *Proxy) SetRate(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sched.Rate = rate
}

// Counts are faults injected, by kind.
type Counts map[Kind]int

// Total is the number of faults of every kind.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func (c Counts) String() string {
	var b strings.Builder
	for k := Kind(0); k < numKinds; k++ {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, c[k])
	}
	return b.String()
}

// Faults returns the faults injected so far.
func (p *Proxy) Faults() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := Counts{}
	for k, n := range p.counts {
		c[Kind(k)] = n
	}
	return c
}

// Requests returns the number of requests received so far.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// draw decides the fate of the next request. Every request takes the same
// two numbers from the generator, so the schedule depends only on the
// order of requests.
func (p *Proxy) draw(r *http.Request) (Kind, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, pick := p.rng.Float64(), p.rng.IntN(1<<30)
	s := p.sched
	if u >= s.Rate || (s.Match != nil && !s.Match(r)) || (s.Limit > 0 && p.drawn >= s.Limit) {
		return 0, false
	}
	var eligible []Kind
	for _, k := range s.Mix {
		if !k.onBody() || r.Method == http.MethodGet {
			eligible = append(eligible, k)
		}
	}
	if len(eligible) == 0 {
		return 0, false
	}
	p.drawn++
	return eligible[pick%len(eligible)], true
}

func (p *Proxy) count(k Kind) {
	p.mu.Lock()
	p.counts[k]++
	p.mu.Unlock()
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if p.observe != nil {
		p.observe(r)
	}
	k, fail := p.draw(r)
	if !fail {
		resp, err := p.roundTrip(r)
		if err != nil {
			http.Error(w, "faultproxy: upstream: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		copyHeader(w, resp)
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return
	}
	switch k {
	case ResetBefore:
		p.count(k)
		reset(w)
	case ResetAfter:
		if resp, err := p.roundTrip(r); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		p.count(k)
		reset(w)
	case InternalError, SlowDown:
		io.Copy(io.Discard, r.Body)
		p.count(k)
		code, status, msg := "InternalError", http.StatusInternalServerError, "We encountered an internal error. Please try again."
		if k == SlowDown {
			code, status, msg = "SlowDown", http.StatusServiceUnavailable, "Please reduce your request rate."
		}
		w.Header().Set("Content-Type", "application/xml")
		body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>%s</Message><RequestId>faultproxy</RequestId></Error>`, code, msg)
		if r.Method == http.MethodHead {
			body = ""
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		io.WriteString(w, body)
	case Stall:
		p.count(k)
		p.hold(r)
		reset(w)
	case ShortBody, StallBody:
		resp, err := p.roundTrip(r)
		if err != nil {
			http.Error(w, "faultproxy: upstream: "+err.Error(), http.StatusBadGateway)
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		copyHeader(w, resp)
		if err != nil || len(b) < 2 {
			// Nothing to cut: pass it on, no fault.
			w.WriteHeader(resp.StatusCode)
			w.Write(b)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(resp.StatusCode)
		w.Write(b[:len(b)/2])
		http.NewResponseController(w).Flush()
		p.count(k)
		if k == StallBody {
			p.hold(r)
		}
		panic(http.ErrAbortHandler) // closes the connection
	}
}

// hold waits until the client goes away, StallFor passes or the proxy
// closes.
func (p *Proxy) hold(r *http.Request) {
	t := time.NewTimer(p.stallFor)
	defer t.Stop()
	select {
	case <-r.Context().Done():
	case <-t.C:
	case <-p.closed:
	}
}

// hopHeaders are not passed on.
var hopHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Expect": true}

// roundTrip passes r on to the server. The Host header is kept: the
// client signed it (SigV4) for the proxy's address, and the server checks
// the signature against the Host it receives.
func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	target := p.upstream.Scheme + "://" + p.upstream.Host + r.URL.RequestURI()
	var body io.Reader = r.Body
	if r.ContentLength == 0 {
		body = nil
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.Header {
		if !hopHeaders[k] {
			out.Header[k] = vs
		}
	}
	out.Host = r.Host
	out.ContentLength = r.ContentLength
	return p.tr.RoundTrip(out)
}

func copyHeader(w http.ResponseWriter, resp *http.Response) {
	for k, vs := range resp.Header {
		if !hopHeaders[k] {
			w.Header()[k] = vs
		}
	}
}

// reset ends the client's connection with a TCP RST.
func reset(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
	c.Close()
}
