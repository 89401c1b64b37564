package spread

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

// Member is one store of a spread store, with where it is.
type Member struct {
	MemberInfo
	Store store.Store
}

// Config describes a spread store.
type Config struct {
	// K data and M parity shards: any K members rebuild an object, and M
	// may be lost. There must be exactly K+M members; member i holds
	// shard i of every object. The layout must pass CheckPolicy.
	K, M    int
	Members []Member
	// Chunk is C, the shard length of a full stripe (one stripe carries
	// K×C object bytes); 0 means DefaultChunk. It is part of the layout:
	// it must not change once objects are stored.
	Chunk int64
	// Key is the 256-bit key the member names and stripe tags are derived
	// from. The caller keeps it (and wipes it); the store derives its own
	// subkeys and wipes them at Close.
	Key secret.Key
	// Replicate lists name prefixes of objects stored whole on every
	// member (the repository marker) instead of as shards.
	Replicate []string
	// SpoolDir is where Put spills a body of unknown size beyond
	// spoolMemory bytes (the file is unlinked at once); "" means
	// os.TempDir().
	SpoolDir string
	// Queue is the repair queue file: the names a degraded write or a
	// damaged read left for repair. "" keeps no queue.
	Queue string
	// Warn, if set, is told of every member found unreachable or holding a
	// damaged or missing shard, once per member and object per Store.
	Warn func(Problem)
	// Now replaces the clock that generations are taken from (tests).
	Now func() time.Time
}

// Problem is a member found at fault.
type Problem struct {
	Member string // the member's label
	Object string // the object's name ("" for a member-wide failure)
	// Stripe is the stripe whose shard failed authentication, or -1 when
	// the whole member object is missing or the member unreachable.
	Stripe int64
	Err    error
}

func (p Problem) String() string {
	if p.Object == "" {
		return fmt.Sprintf("member %s: %v", p.Member, p.Err)
	}
	if p.Stripe >= 0 {
		return fmt.Sprintf("member %s: object %s: stripe %d: %v", p.Member, p.Object, p.Stripe, p.Err)
	}
	return fmt.Sprintf("member %s: object %s: %v", p.Member, p.Object, p.Err)
}

// Errors a member's part can fail with.
var (
	// ErrDamaged: a shard failed authentication (its tag does not match
	// the bytes, the name, the member or the stripe).
	ErrDamaged = errors.New("shard failed authentication")
	// ErrMissing: the member does not hold its shard of the object.
	ErrMissing = errors.New("shard missing")
	// ErrUnreadable: fewer than K authentic shards of a stripe could be
	// found, so the object cannot be rebuilt now.
	ErrUnreadable = errors.New("too few authentic shards to rebuild the object")
)

// Store is a store.Store whose objects are spread over member stores by
// Reed-Solomon erasure coding. It is safe for concurrent use.
type Store struct {
	cfg    Config
	chunk  int64
	n      int // K+M
	quorum int // members that must take a write: max(K,M)+1
	enc    reedsolomon.Encoder
	keys   keySet
	closed atomic.Bool

	// down[j] is when member j last failed (unix ns), 0 if never: members
	// that failed recently are asked last.
	down []atomic.Int64

	warnMu sync.Mutex
	warned map[string]bool
	qMu    sync.Mutex
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.Janitor       = (*Store)(nil)
	_ store.StatsReporter = (*Store)(nil)
	_ store.PartUploader  = (*Store)(nil)
)

// New returns the spread store of c. It checks the layout against the
// jurisdiction policy. The members are the store's from now on: Close
// closes them, and so does a failing New.
func New(c Config) (*Store, error) {
	s, err := newStore(c)
	if err != nil {
		for _, m := range c.Members {
			if m.Store != nil {
				m.Store.Close()
			}
		}
		return nil, err
	}
	return s, nil
}

func newStore(c Config) (*Store, error) {
	infos := make([]MemberInfo, len(c.Members))
	for i, m := range c.Members {
		infos[i] = m.MemberInfo
		if m.Store == nil {
			return nil, fmt.Errorf("spread: member %q has no store", m.Label)
		}
	}
	if err := CheckPolicy(c.K, c.M, infos); err != nil {
		return nil, err
	}
	chunk := c.Chunk
	if chunk == 0 {
		chunk = DefaultChunk
	}
	if chunk < 1 || chunk > MaxChunk {
		return nil, fmt.Errorf("spread: chunk of %d bytes outside 1..%d", chunk, MaxChunk)
	}
	if !c.Key.Valid() {
		return nil, errors.New("spread: no key")
	}
	enc, err := reedsolomon.New(c.K, c.M)
	if err != nil {
		return nil, fmt.Errorf("spread: %w", err)
	}
	ks, err := deriveKeys(c.Key)
	if err != nil {
		return nil, fmt.Errorf("spread: deriving keys: %w", err)
	}
	n := c.K + c.M
	return &Store{cfg: c, chunk: chunk, n: n, quorum: max(c.K, c.M) + 1, enc: enc, keys: ks,
		down: make([]atomic.Int64, n), warned: map[string]bool{}}, nil
}

// K returns the number of data shards.
func (s *Store) K() int { return s.cfg.K }

// M returns the number of parity shards.
func (s *Store) M() int { return s.cfg.M }

// WriteQuorum is how many members must store their shard for a Put to
// succeed: max(K,M)+1. It is more than K, so a fresh object survives the
// loss of one more member, and more than M, so that any K members include
// one that holds the newest generation of every object.
func (s *Store) WriteQuorum() int { return s.quorum }

// Members describes the members, in shard order.
func (s *Store) Members() []MemberInfo {
	out := make([]MemberInfo, s.n)
	for i, m := range s.cfg.Members {
		out[i] = m.MemberInfo
	}
	return out
}

func (s *Store) check(ctx context.Context, op, name string) error {
	if s.closed.Load() {
		return fmt.Errorf("spread: %s %q: store is closed", op, name)
	}
	if !store.ValidName(name) {
		return fmt.Errorf("spread: %s %q: %w", op, name, store.ErrInvalidName)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spread: %s %q: %w", op, name, err)
	}
	return nil
}

func (s *Store) mode(r ref) byte {
	if r.handle == freshnessHandle {
		return modeReplica // the freshness record: whole on every member
	}
	if r.internal() {
		return modeErasure
	}
	for _, p := range s.cfg.Replicate {
		if p != "" && strings.HasPrefix(r.name, p) {
			return modeReplica
		}
	}
	return modeErasure
}

func (s *Store) geometry(r ref, size int64) geometry {
	return geometry{k: s.cfg.K, chunk: s.chunk, size: size, mode: s.mode(r)}
}

// need is how many authentic shards of a stripe rebuild it.
func (s *Store) need(g geometry) int {
	if g.mode == modeReplica {
		return 1
	}
	return s.cfg.K
}

// newGen returns a generation: the clock in nanoseconds, its low 16 bits
// replaced by random ones so that two writers at the same instant differ.
// The newest readable generation of a name is its current contents.
func (s *Store) newGen() uint64 {
	now := time.Now()
	if s.cfg.Now != nil {
		now = s.cfg.Now()
	}
	var r [2]byte
	rand.Read(r[:])
	return uint64(now.UnixNano())&^0xffff | uint64(binary.BigEndian.Uint16(r[:]))
}

func (s *Store) label(j int) string { return s.cfg.Members[j].Label }

// failed records that member j just failed.
func (s *Store) failed(j int) { s.down[j].Store(time.Now().UnixNano()) }

// recentlyDown reports whether member j failed in the last 30 seconds.
func (s *Store) recentlyDown(j int) bool {
	t := s.down[j].Load()
	return t != 0 && time.Since(time.Unix(0, t)) < 30*time.Second
}

// order returns the members to ask, best first: those that have not
// failed recently, data shards before parity (no decoding is needed when
// the K data shards answer).
func (s *Store) order(skip func(int) bool) []int {
	var up, down []int
	for j := range s.n {
		if skip != nil && skip(j) {
			continue
		}
		if s.recentlyDown(j) {
			down = append(down, j)
		} else {
			up = append(up, j)
		}
	}
	return append(up, down...)
}

// warn reports a problem once per member and object (per Store, and per
// maxWarned problems in a long-running process), and queues the object
// for repair when its shard on the member is missing or damaged, or a
// write missed it — not when the member merely could not be reached for
// a read.
func (s *Store) warn(p Problem) {
	key := p.Member + "\x00" + p.Object
	s.warnMu.Lock()
	if len(s.warned) >= maxWarned {
		clear(s.warned)
	}
	seen := s.warned[key]
	s.warned[key] = true
	s.warnMu.Unlock()
	if seen {
		return
	}
	if p.Object != "" && (errors.Is(p.Err, ErrDamaged) || errors.Is(p.Err, ErrMissing) || errors.Is(p.Err, errWriteMissed)) {
		s.enqueue(queuePut, p.Object)
	}
	if s.cfg.Warn != nil {
		s.cfg.Warn(p)
	}
}

// Put implements store.Store. The body is cut into stripes as it is
// read; a body of unknown size is first spooled (in memory, then in an
// unlinked file) because every stripe tag binds the object's length.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := s.check(ctx, "put", name); err != nil {
		return err
	}
	if size < store.UnknownSize {
		return fmt.Errorf("spread: put %q: negative size %d: %w", name, size, store.ErrShortWrite)
	}
	if size == store.UnknownSize {
		body, n, done, err := s.spool(ctx, r)
		if err != nil {
			return fmt.Errorf("spread: put %q: %w", name, err)
		}
		defer done()
		r, size = body, n
	}
	if err := s.put(ctx, publicRef(name), r, size); err != nil {
		return fmt.Errorf("spread: put %q: %w", name, err)
	}
	return nil
}

// spoolMemory is how much of a body of unknown size Put holds in memory
// before it spills to a file.
const spoolMemory = 8 << 20

// spool reads r to EOF and returns a reader of what it yielded, its
// length, and a function that releases it.
func (s *Store) spool(ctx context.Context, r io.Reader) (io.Reader, int64, func(), error) {
	var mem bytes.Buffer
	n, err := io.Copy(&mem, io.LimitReader(ctxReader{ctx, r}, spoolMemory+1))
	if err != nil {
		return nil, 0, nil, err
	}
	if n <= spoolMemory {
		return bytes.NewReader(mem.Bytes()), n, func() {}, nil
	}
	dir := s.cfg.SpoolDir
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, nil, err
	}
	f, err := os.CreateTemp(dir, "spread-spool-")
	if err != nil {
		return nil, 0, nil, err
	}
	// Unlinked at once: a crash leaves nothing behind.
	os.Remove(f.Name())
	done := func() { f.Close() }
	m, err := io.Copy(f, io.MultiReader(&mem, ctxReader{ctx, r}))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		done()
		return nil, 0, nil, err
	}
	return f, m, done, nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (s *Store) put(ctx context.Context, name ref, r io.Reader, size int64) error {
	g := s.geometry(name, size)
	gen := s.newGen()
	all := make([]int, s.n)
	for j := range all {
		all[j] = j
	}
	errs, err := s.writeMembers(ctx, name, g, gen, r, all)
	if err != nil {
		return err
	}
	var ok []int
	var failures []string
	for j := range s.n {
		if e := errs[j]; e == nil {
			ok = append(ok, j)
		} else {
			failures = append(failures, fmt.Sprintf("member %s: %v", s.label(j), e))
		}
	}
	if len(ok) < s.quorum {
		// Below the quorum the write must not count: remove what it left
		// so that it cannot shadow the previous contents.
		s.removeGen(context.WithoutCancel(ctx), name, g, gen, ok)
		return fmt.Errorf("only %d of %d members stored their shard, %d needed (%s): %w",
			len(ok), s.n, s.quorum, strings.Join(failures, "; "), store.ErrUnavailable)
	}
	for j := range s.n {
		if e := errs[j]; e != nil {
			s.warn(Problem{Member: s.label(j), Object: name.name, Stripe: -1, Err: fmt.Errorf("%w: %w", errWriteMissed, e)})
		}
	}
	return nil
}

// removeGen deletes generation gen of name from the members in js.
func (s *Store) removeGen(ctx context.Context, name ref, g geometry, gen uint64, js []int) {
	for _, j := range js {
		if mn, err := s.memberName(j, name, g.size, gen); err == nil {
			s.cfg.Members[j].Store.Delete(ctx, mn.String())
		}
	}
}

func (s *Store) memberName(j int, r ref, size int64, gen uint64) (memberName, error) {
	tok, hashed, err := s.keys.tokenFor(j, r)
	if err != nil {
		return memberName{}, err
	}
	return memberName{token: tok, label: r.label, size: size, gen: gen, hashed: hashed, internal: r.internal()}, nil
}

// objSize is the size of member object mn: its stripes, and its name
// block if it has one.
func (s *Store) objSize(name ref, mn memberName) int64 {
	z := s.geometry(name, mn.size).memberSize()
	if mn.hashed {
		z += nameBlockLen
	}
	return z
}

// writeMembers stores generation gen of name, read from r (exactly g.size
// bytes, then EOF), on each member in targets. It returns each target's
// error, or an error of the body (short, long, failing, cancelled), in
// which case no target stored anything.
func (s *Store) writeMembers(ctx context.Context, name ref, g geometry, gen uint64, r io.Reader, targets []int) (map[int]error, error) {
	type target struct {
		j     int
		ch    chan []byte
		pw    *io.PipeWriter
		tg    *tagger
		mn    memberName
		block []byte
	}
	ts := make([]*target, len(targets))
	for x, j := range targets {
		mn, err := s.memberName(j, name, g.size, gen)
		if err != nil {
			return nil, err
		}
		tg, err := s.keys.newTagger(g, s.cfg.M, j, name.name, gen)
		if err != nil {
			return nil, err
		}
		t := &target{j: j, ch: make(chan []byte, 4), tg: tg, mn: mn}
		if mn.hashed {
			if t.block, err = s.keys.nameBlock(j, name.name); err != nil {
				return nil, err
			}
		}
		ts[x] = t
	}
	var mu sync.Mutex
	errs := map[int]error{}
	var wg sync.WaitGroup
	var abort atomic.Pointer[error]
	for _, t := range ts {
		pr, pw := io.Pipe()
		t.pw = pw
		wg.Go(func() {
			err := s.cfg.Members[t.j].Store.Put(ctx, t.mn.String(), pr, s.objSize(name, t.mn))
			pr.CloseWithError(errMemberDone)
			mu.Lock()
			errs[t.j] = err
			mu.Unlock()
			if err != nil && abort.Load() == nil {
				s.failed(t.j)
			}
		})
		// The writer of member t: tags its shards and feeds its Put. A
		// member whose Put failed is drained without writing, so a slow or
		// dead member never stalls the others beyond its buffer.
		wg.Go(func() {
			var werr error
			i := int64(0)
			var tag [TagSize]byte
			for shard := range t.ch {
				if werr == nil {
					if _, werr = t.pw.Write(shard); werr == nil {
						_, werr = t.pw.Write(t.tg.tag(tag[:0], i, shard))
					}
				}
				i++
			}
			if werr == nil && t.block != nil {
				_, werr = t.pw.Write(t.block)
			}
			if ap := abort.Load(); ap != nil {
				t.pw.CloseWithError(*ap)
			} else {
				t.pw.Close()
			}
		})
	}
	err := s.encodeStripes(ctx, g, r, func(shards [][]byte) {
		for _, t := range ts {
			if g.mode == modeReplica {
				t.ch <- shards[0]
			} else {
				t.ch <- shards[t.j]
			}
		}
	})
	if err != nil {
		abort.Store(&err)
	}
	for _, t := range ts {
		close(t.ch)
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	return errs, nil
}

var (
	errMemberDone = errors.New("member store stopped reading")
	// errWriteMissed: a write succeeded without this member's shard.
	errWriteMissed = errors.New("the write missed this member")
)

// maxWarned bounds the problems a Store remembers having reported.
const maxWarned = 10000

// encodeStripes reads the object from r stripe by stripe, encodes each
// and passes its shards to emit (in replica mode, shards[0] is the whole
// stripe). It fails if r yields other than g.size bytes, or fails.
func (s *Store) encodeStripes(ctx context.Context, g geometry, r io.Reader, emit func([][]byte)) error {
	n := g.stripes()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		dl, sl := g.dataLen(i), g.shardLen(i)
		if g.mode == modeReplica {
			buf := make([]byte, dl)
			if err := readFull(r, buf); err != nil {
				return err
			}
			emit([][]byte{buf})
			continue
		}
		buf := make([]byte, int64(s.n)*sl)
		if err := readFull(r, buf[:dl]); err != nil {
			return err
		}
		shards := make([][]byte, s.n)
		for x := range shards {
			shards[x] = buf[int64(x)*sl : int64(x+1)*sl]
		}
		if err := s.enc.Encode(shards); err != nil {
			return err
		}
		emit(shards)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The body must end exactly here.
	var one [1]byte
	for {
		m, err := r.Read(one[:])
		if m > 0 {
			return fmt.Errorf("body longer than %d bytes: %w", g.size, store.ErrShortWrite)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readFull is io.ReadFull, with a body that ends early reported as
// ErrShortWrite.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("body shorter than declared: %w", store.ErrShortWrite)
	}
	return err
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if err := s.check(ctx, "stat", name); err != nil {
		return store.ObjectInfo{}, err
	}
	res, err := s.resolve(ctx, publicRef(name))
	if err != nil {
		return store.ObjectInfo{}, fmt.Errorf("spread: stat %q: %w", name, err)
	}
	return store.ObjectInfo{Name: name, Size: res.g.size}, nil
}

// Delete implements store.Store. It removes every generation of the
// object from every member it can reach; members it cannot reach are
// queued for repair, which removes what they hold. It succeeds when at
// least the write quorum of members no longer hold the object.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.check(ctx, "delete", name); err != nil {
		return err
	}
	ls := s.listName(ctx, publicRef(name), s.order(nil))
	readable := false
	if _, ok := s.pick(publicRef(name), ls); ok {
		readable = true
	}
	clean := 0
	var failures []string
	for j, l := range ls {
		if l.err != nil {
			failures = append(failures, fmt.Sprintf("member %s: %v", s.label(j), l.err))
			continue
		}
		ok := true
		for _, e := range l.entries {
			if err := s.cfg.Members[j].Store.Delete(ctx, e.String()); err != nil && !errors.Is(err, store.ErrNotExist) {
				ok = false
				s.failed(j)
				failures = append(failures, fmt.Sprintf("member %s: %v", s.label(j), err))
			}
		}
		if ok {
			clean++
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spread: delete %q: %w", name, err)
	}
	if clean < s.n {
		s.enqueue(queueDel, name)
	}
	if !readable {
		if clean >= s.cfg.K {
			return fmt.Errorf("spread: delete %q: %w", name, store.ErrNotExist)
		}
		return fmt.Errorf("spread: delete %q: only %d members answered (%s): %w", name, clean, strings.Join(failures, "; "), store.ErrUnavailable)
	}
	if clean < s.quorum {
		return fmt.Errorf("spread: delete %q: removed from only %d of %d members, %d needed (%s): %w",
			name, clean, s.n, s.quorum, strings.Join(failures, "; "), store.ErrUnavailable)
	}
	return nil
}

// List implements store.Store. Every member is listed in full (member
// names are encrypted, so a prefix cannot be passed down); an object is
// listed when K members that answered hold its newest generation.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	if s.closed.Load() {
		return fmt.Errorf("spread: list %q: store is closed", prefix)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spread: list %q: %w", prefix, err)
	}
	sv, err := s.survey(ctx)
	if err != nil {
		return fmt.Errorf("spread: list %q: %w", prefix, err)
	}
	if sv.answered < s.cfg.K {
		return fmt.Errorf("spread: list %q: only %d of %d members answered (%s): %w", prefix, sv.answered, s.n, sv.failures(s), store.ErrUnavailable)
	}
	names := make([]string, 0, len(sv.objects))
	for name := range sv.objects {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		mn, ok := s.pick(publicRef(name), sv.objects[name])
		if !ok {
			continue
		}
		if err := fn(store.ObjectInfo{Name: name, Size: mn.size}); err != nil {
			return err
		}
	}
	return nil
}

// Close implements store.Store: it closes every member.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, m := range s.cfg.Members {
		if err := m.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", m.Label, err))
		}
	}
	s.keys.wipe()
	return errors.Join(errs...)
}

// Stats implements store.StatsReporter: the sum over the members that
// keep counts.
func (s *Store) Stats() store.Stats {
	var st store.Stats
	for _, m := range s.cfg.Members {
		if sr, ok := m.Store.(store.StatsReporter); ok {
			x := sr.Stats()
			st.Requests += x.Requests
			st.Retries += x.Retries
		}
	}
	return st
}

// AbortIncomplete implements store.Janitor: it abandons this store's
// constructions (parts.go) whose object is not in progress, and calls the
// members that are janitors themselves. A member's leftover is kept when it belongs to an object in
// progress, or when its name cannot be read back (another repository's,
// or a long name).
func (s *Store) AbortIncomplete(ctx context.Context, inProgress func(name string) bool) (int, error) {
	total, err := s.abortConstructions(ctx, inProgress)
	errs := []error{err}
	for j, m := range s.cfg.Members {
		jn, ok := m.Store.(store.Janitor)
		if !ok {
			continue
		}
		n, err := jn.AbortIncomplete(ctx, func(mname string) bool {
			mn, ok := parseMemberName(mname)
			if !ok || mn.hashed {
				return true
			}
			name, err := s.keys.nameOfToken(j, mn.token)
			return err != nil || inProgress(name)
		})
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", m.Label, err))
		}
	}
	return total, errors.Join(errs...)
}
