package keyserver

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Refusals before a client is authenticated (docs/keyserver.md,
// "Authorization and refusals") cost the server nothing it cannot
// bound: no log write on the handshake path, a cap on handshakes in
// progress, and a per-peer budget of failed handshakes.

// DefaultRefusalLogInterval is how often, at most, the key-operation log
// takes a record per refusal reason and peer for handshake refusals.
const DefaultRefusalLogInterval = time.Minute

// Handshake limits. A peer is an IP address (the port changes with every
// connection).
const (
	// maxPendingHandshakes bounds connections accepted but not yet
	// authenticated, over all peers; maxPendingPerPeer per peer.
	maxPendingHandshakes = 64
	maxPendingPerPeer    = 8
	// A peer may fail refusalBurst handshakes at once and refusalRate per
	// second after that; beyond it, its connections are closed at accept,
	// before any TLS work.
	refusalBurst = 20
	refusalRate  = 1.0
	// maxPeers bounds the peers tracked (limits and log summaries); the
	// rest share one entry, otherPeers.
	maxPeers   = 4096
	otherPeers = "other-peers"
)

// Reasons of connection-level refusals that never reach the handshake's
// certificate check.
const (
	reasonRateLimited = "rate-limited"        // the peer's budget of failed handshakes is spent
	reasonTooMany     = "too-many-handshakes" // the cap on handshakes in progress
	reasonIncomplete  = "incomplete-handshake"
)

// peerHost is the address part of a net.Addr string.
func peerHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// summary collects handshake refusals and writes them to the
// key-operation log from its own goroutine: the first refusal of a
// (reason, peer) at once, the next ones as one record ("N refused, first
// …, last …") when the interval since the last record has passed, and
// whatever is left when it stops. So the log takes at most one record per
// reason and peer per interval, however many connections a peer makes,
// and no handshake waits for the log.
type summary struct {
	interval time.Duration
	write    func(reason, peer string, t tally)

	mu   sync.Mutex
	m    map[sumKey]*tally
	kick chan struct{}
	done chan struct{}
}

type sumKey struct{ reason, peer string }

type tally struct {
	n           int
	first, last time.Time
	detail      string    // the last refusal's
	written     time.Time // when this key's last record was written
}

func newSummary(interval time.Duration, write func(reason, peer string, t tally)) *summary {
	return &summary{interval: interval, write: write, m: map[sumKey]*tally{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// note counts one refusal; it never blocks on the log.
func (s *summary) note(reason, peer, detail string) {
	now := time.Now()
	s.mu.Lock()
	k := sumKey{reason, peer}
	t, ok := s.m[k]
	if !ok && len(s.m) >= maxPeers {
		k.peer = otherPeers
		t, ok = s.m[k]
	}
	if !ok {
		t = &tally{}
		s.m[k] = t
	}
	if t.n == 0 {
		t.first = now
	}
	t.n++
	t.last, t.detail = now, detail
	due := now.Sub(t.written) >= s.interval
	s.mu.Unlock()
	if due {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// run writes the records until stop is closed, then writes what is left.
func (s *summary) run(stop <-chan struct{}) {
	defer close(s.done)
	tick := time.NewTicker(min(max(s.interval/4, 10*time.Millisecond), 5*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-s.kick:
		case <-tick.C:
		case <-stop:
			s.flush(true)
			return
		}
		s.flush(false)
	}
}

func (s *summary) flush(all bool) {
	now := time.Now()
	type item struct {
		k sumKey
		t tally
	}
	var out []item
	s.mu.Lock()
	for k, t := range s.m {
		switch {
		case t.n > 0 && (all || now.Sub(t.written) >= s.interval):
			out = append(out, item{k, *t})
			t.n, t.written = 0, now
		case t.n == 0 && now.Sub(t.written) >= s.interval:
			delete(s.m, k) // quiet for an interval: forget it
		}
	}
	s.mu.Unlock()
	for _, it := range out {
		s.write(it.k.reason, it.k.peer, it.t)
	}
}

// summaryDetail is a summary record's detail: "REASON: …" as every
// refusal record.
func summaryDetail(reason, peer string, t tally) string {
	return fmt.Sprintf("%s: %d connection(s) from %s refused, first %s, last %s; last: %s", reason, t.n, peer,
		t.first.UTC().Format(time.RFC3339Nano), t.last.UTC().Format(time.RFC3339Nano), t.detail)
}

// limiter admits connections: at most maxPendingHandshakes not yet
// authenticated (maxPendingPerPeer per peer), and none from a peer whose
// budget of failed handshakes is spent. Only failures spend the budget, so
// a client that reconnects often but authenticates is never limited.
type limiter struct {
	now func() time.Time

	mu      sync.Mutex
	pending int
	peers   map[string]*peerState
}

type peerState struct {
	pending int
	tokens  float64
	at      time.Time // of tokens
}

func newLimiter() *limiter { return &limiter{now: time.Now, peers: map[string]*peerState{}} }

// peerLocked returns the state of host, refilled to now.
func (l *limiter) peerLocked(host string) *peerState {
	now := l.now()
	p, ok := l.peers[host]
	if !ok {
		if len(l.peers) >= maxPeers {
			for h, q := range l.peers { // forget peers with nothing to remember
				if q.pending == 0 && q.tokens+now.Sub(q.at).Seconds()*refusalRate >= refusalBurst {
					delete(l.peers, h)
				}
			}
		}
		if len(l.peers) >= maxPeers {
			host = otherPeers
			p, ok = l.peers[host]
		}
		if !ok {
			p = &peerState{tokens: refusalBurst, at: now}
			l.peers[host] = p
		}
	}
	p.tokens = min(refusalBurst, p.tokens+now.Sub(p.at).Seconds()*refusalRate)
	p.at = now
	return p
}

// admit reports whether a connection from host may start a handshake,
// and if not why; an admitted one must be ended with end.
func (l *limiter) admit(host string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peerLocked(host)
	switch {
	case p.tokens < 1:
		return reasonRateLimited, false
	case p.pending >= maxPendingPerPeer || l.pending >= maxPendingHandshakes:
		return reasonTooMany, false
	}
	p.pending++
	l.pending++
	return "", true
}

// end ends an admitted handshake; a failed one spends the peer's budget.
func (l *limiter) end(host string, failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peerLocked(host)
	if p.pending > 0 {
		p.pending--
	}
	if l.pending > 0 {
		l.pending--
	}
	if failed {
		p.tokens--
	}
}

// Listener wraps the API listener ln: connections beyond the handshake
// limits are closed at accept, before any TLS work, and counted into the
// refusal summaries. Serve the TLS API on it (http.Server.ServeTLS).
func (s *Server) Listener(ln net.Listener) net.Listener { return &limitListener{Listener: ln, s: s} }

type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := c.RemoteAddr().String()
		host := peerHost(peer)
		if why, ok := l.s.lim.admit(host); !ok {
			l.s.handshakeRefused(why, host, "connection from "+peer+" closed at accept")
			c.Close()
			continue
		}
		return &limitConn{Conn: c, s: l.s, host: host}, nil
	}
}

// limitConn is an admitted connection: its handshake slot is freed when
// the certificate check accepts it, or when it closes (a failed
// handshake).
type limitConn struct {
	net.Conn
	s      *Server
	host   string
	failed atomic.Bool
	once   sync.Once
}

// lingerTime bounds how long a refused connection is drained before it
// closes.
const lingerTime = 500 * time.Millisecond

// authenticated ends the certificate check. An accepted connection frees
// its slot now; a refused one keeps it until it is closed, after the
// alert has reached the peer.
func (c *limitConn) authenticated(failed bool) {
	if failed {
		c.failed.Store(true)
		return
	}
	c.once.Do(func() { c.s.lim.end(c.host, false) })
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		if c.failed.Load() {
			c.linger()
		} else {
			c.s.handshakeRefused(reasonIncomplete, c.host, "connection from "+c.RemoteAddr().String()+" closed before its certificate was checked")
		}
		c.s.lim.end(c.host, true)
	})
	return c.Conn.Close()
}

// linger half-closes a refused connection and drains what the peer still
// sends (in TLS 1.3 its first request follows its certificate at once):
// closing with unread data would reset the connection, and the peer would
// see "connection reset" instead of the refusal's alert.
func (c *limitConn) linger() {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(c.Conn, 64<<10))
}
