package spread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/internal/store"
)

// listing is what one member holds of one object: its member objects
// (generations), or the error that kept it from answering.
type listing struct {
	entries []memberName
	err     error
}

// listName lists what each member in js holds of name, concurrently.
func (s *Store) listName(ctx context.Context, name ref, js []int) map[int]listing {
	out := make(map[int]listing, len(js))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, j := range js {
		wg.Go(func() {
			l := s.listMember(ctx, j, name)
			mu.Lock()
			out[j] = l
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (s *Store) listMember(ctx context.Context, j int, name ref) listing {
	tok, _, err := s.keys.tokenFor(j, name)
	if err != nil {
		return listing{err: err}
	}
	prefix := tok + "-"
	if name.internal() {
		prefix += name.label + "-"
	}
	var l listing
	err = s.cfg.Members[j].Store.List(ctx, prefix, func(oi store.ObjectInfo) error {
		mn, ok := parseMemberName(oi.Name)
		if !ok || mn.token != tok || mn.internal != name.internal() || mn.label != name.label {
			return nil
		}
		if want := s.objSize(name, mn); oi.Size != want {
			s.warn(Problem{Member: s.label(j), Object: name.name, Stripe: -1,
				Err: fmt.Errorf("shard object is %d bytes, want %d: %w", oi.Size, want, ErrDamaged)})
			return nil
		}
		l.entries = append(l.entries, mn)
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			s.failed(j)
			s.warn(Problem{Member: s.label(j), Stripe: -1, Err: fmt.Errorf("unreachable: %w", err)})
		}
		return listing{err: err}
	}
	return l
}

// pick returns the newest generation of name that K of the members that
// answered hold. K even for a replicated object, of which one authentic
// copy is enough to read: a member must not be able to shadow an object
// with a generation of its own making.
func (s *Store) pick(name ref, ls map[int]listing) (memberName, bool) {
	need := s.cfg.K
	type genKey struct {
		gen  uint64
		size int64
	}
	count := map[genKey]int{}
	byKey := map[genKey]memberName{}
	for _, l := range ls {
		seen := map[genKey]bool{}
		for _, e := range l.entries {
			k := genKey{e.gen, e.size}
			if !seen[k] {
				seen[k] = true
				count[k]++
				byKey[k] = e
			}
		}
	}
	var best memberName
	found := false
	for k, c := range count {
		if c < need {
			continue
		}
		if !found || k.gen > best.gen || k.gen == best.gen && k.size > best.size {
			best, found = byKey[k], true
		}
	}
	return best, found
}

// newest returns the newest generation any member listed.
func newest(ls map[int]listing) (uint64, bool) {
	var g uint64
	found := false
	for _, l := range ls {
		for _, e := range l.entries {
			if !found || e.gen > g {
				g, found = e.gen, true
			}
		}
	}
	return g, found
}

// resolved is the generation of an object a read uses.
type resolved struct {
	ref ref
	g   geometry
	gen uint64
	// lacks[j]: member j answered and does not hold this generation.
	lacks []bool
}

// resolve finds the current generation of name. It lists K members (the
// best in order); only when they disagree, or some fail, does it list the
// others. Because a write reaches more than M members, any K members
// include one holding the newest generation.
func (s *Store) resolve(ctx context.Context, name ref) (*resolved, error) {
	order := s.order(nil)
	ls := s.listName(ctx, name, order[:s.cfg.K])
	best, ok := s.pick(name, ls)
	if g, any := newest(ls); !ok || !any || best.gen != g || answered(ls) < s.cfg.K {
		if empty(ls) < s.cfg.K {
			for j, l := range s.listName(ctx, name, order[s.cfg.K:]) {
				ls[j] = l
			}
			best, ok = s.pick(name, ls)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !ok {
		switch {
		case empty(ls) >= s.cfg.K:
			return nil, store.ErrNotExist
		case answered(ls) < s.cfg.K:
			return nil, fmt.Errorf("only %d of %d members answered (%s): %w", answered(ls), s.n, failures(s, ls), store.ErrUnavailable)
		default:
			return nil, fmt.Errorf("no generation is held by enough members: %w", ErrUnreadable)
		}
	}
	res := &resolved{ref: name, g: s.geometry(name, best.size), gen: best.gen, lacks: make([]bool, s.n)}
	for j, l := range ls {
		if l.err != nil {
			continue
		}
		has := slices.ContainsFunc(l.entries, func(e memberName) bool { return e.gen == best.gen && e.size == best.size })
		if !has {
			res.lacks[j] = true
			s.warn(Problem{Member: s.label(j), Object: name.name, Stripe: -1, Err: ErrMissing})
		}
	}
	return res, nil
}

func answered(ls map[int]listing) int {
	n := 0
	for _, l := range ls {
		if l.err == nil {
			n++
		}
	}
	return n
}

// empty counts the members that answered and hold nothing of the object.
func empty(ls map[int]listing) int {
	n := 0
	for _, l := range ls {
		if l.err == nil && len(l.entries) == 0 {
			n++
		}
	}
	return n
}

func failures(s *Store, ls map[int]listing) string {
	var f []string
	for j := range s.n {
		if l, ok := ls[j]; ok && l.err != nil {
			f = append(f, fmt.Sprintf("member %s: %v", s.label(j), l.err))
		}
	}
	return strings.Join(f, "; ")
}

// batchBytes bounds what a read fetches from one member at a time.
const batchBytes = 1 << 20

// ReadRange implements store.Store. It fetches only the stripes the range
// covers, from K members when they answer with authentic shards (the data
// shards first, which need no decoding), and from more only for the
// stripes that fail.
func (s *Store) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := s.check(ctx, "read", name); err != nil {
		return nil, err
	}
	if off < 0 || length < -1 {
		return nil, fmt.Errorf("spread: read %q: offset %d, length %d: %w", name, off, length, store.ErrInvalidRange)
	}
	res, err := s.resolve(ctx, publicRef(name))
	if err != nil {
		return nil, fmt.Errorf("spread: read %q: %w", name, err)
	}
	size := res.g.size
	if off > size {
		return nil, fmt.Errorf("spread: read %q: offset %d beyond size %d: %w", name, off, size, store.ErrInvalidRange)
	}
	end := size
	if length >= 0 && off+length < size {
		end = off + length
	}
	rctx, cancel := context.WithCancel(ctx)
	rd := &reader{s: s, ctx: rctx, cancel: cancel, res: res, pos: off, end: end, prefetch: true}
	if err := rd.fill(); err != nil && err != io.EOF {
		cancel()
		return nil, fmt.Errorf("spread: read %q: %w", name, err)
	}
	return rd, nil
}

// reader streams a range of an object, a batch of stripes at a time;
// with prefetch set, the next batch is fetched while the caller reads
// the current one.
type reader struct {
	s        *Store
	ctx      context.Context
	cancel   context.CancelFunc // ends a prefetch; nil if none can run
	res      *resolved
	pos, end int64  // the next object byte to fill, and the range's end
	buf      []byte // filled, not yet read
	err      error
	avoid    func(int) bool // members not to read from (repair targets)
	closed   bool
	prefetch bool
	ahead    chan batch // the next batch, being fetched
}

// batch is the object bytes of a run of stripes, cut to the range.
type batch struct {
	data []byte
	next int64 // the object offset after data
	err  error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("spread: read after close")
	}
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if err := r.fill(); err != nil {
			r.err = err
			if len(r.buf) == 0 {
				return 0, err
			}
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *reader) Close() error {
	r.closed = true
	r.buf = nil
	if r.cancel != nil {
		r.cancel()
	}
	return nil
}

// fill makes the next batch of stripes the buffer.
func (r *reader) fill() error {
	if r.pos >= r.end {
		return io.EOF
	}
	var b batch
	if r.ahead != nil {
		b = <-r.ahead
		r.ahead = nil
	} else {
		b = r.load(r.pos)
	}
	if b.err != nil {
		return b.err
	}
	r.buf, r.pos = b.data, b.next
	if r.prefetch && r.pos < r.end {
		ch := make(chan batch, 1)
		r.ahead = ch
		go func(pos int64) { ch <- r.load(pos) }(r.pos)
	}
	return nil
}

// load decodes the batch of stripes that starts at object offset pos. It
// reads only fields that do not change while a prefetch runs.
func (r *reader) load(pos int64) batch {
	g := r.res.g
	sd := g.stripeData()
	s0 := pos / sd
	per := max(1, batchBytes/(g.fullShard()+TagSize))
	s1 := min((r.end-1)/sd, s0+per-1)
	data, err := r.s.decode(r.ctx, r.res, s0, s1, r.avoid)
	if err != nil {
		return batch{err: fmt.Errorf("%s: %w", r.res.ref.name, err)}
	}
	lo := pos - s0*sd
	hi := min(r.end-s0*sd, int64(len(data)))
	return batch{data: data[lo:hi], next: s0*sd + hi}
}

// shardSet holds the authentic shards of a run of stripes.
type shardSet struct {
	s0     int64
	shards [][][]byte // [stripe-s0][member]
}

func (ss *shardSet) valid(i int64) int {
	n := 0
	for _, b := range ss.shards[i-ss.s0] {
		if b != nil {
			n++
		}
	}
	return n
}

// decode returns the object bytes of stripes s0..s1.
func (s *Store) decode(ctx context.Context, res *resolved, s0, s1 int64, avoid func(int) bool) ([]byte, error) {
	g := res.g
	need := s.need(g)
	ss := &shardSet{s0: s0, shards: make([][][]byte, s1-s0+1)}
	for i := range ss.shards {
		ss.shards[i] = make([][]byte, s.n)
	}
	cands := s.order(func(j int) bool { return res.lacks[j] || avoid != nil && avoid(j) })
	var why []string
	// First wave: the first `need` candidates, for every stripe; then,
	// for the stripes still short, as many more as they lack.
	want := need
	lo, hi := s0, s1
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		take := cands[:min(want, len(cands))]
		cands = cands[len(take):]
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, j := range take {
			wg.Go(func() {
				got, err := s.fetch(ctx, res, j, lo, hi)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					why = append(why, fmt.Sprintf("member %s: %v", s.label(j), err))
				}
				for i, b := range got {
					ss.shards[lo+int64(i)-s0][j] = b
				}
			})
		}
		wg.Wait()
		// The stripes still short, and by how much.
		short, lack := int64(-1), 0
		for i := s0; i <= s1; i++ {
			if v := ss.valid(i); v < need {
				if short < 0 {
					short = i
				}
				hi = i
				lack = max(lack, need-v)
			}
		}
		if short < 0 {
			break
		}
		if len(cands) == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			slices.Sort(why)
			return nil, fmt.Errorf("stripe %d: %d authentic shards, %d needed (%s): %w", short, ss.valid(short), need, strings.Join(why, "; "), ErrUnreadable)
		}
		lo, want = short, lack
	}
	out := make([]byte, 0, (s1-s0+1)*g.stripeData())
	for i := s0; i <= s1; i++ {
		shards := ss.shards[i-s0]
		if g.mode == modeReplica {
			for _, b := range shards {
				if b != nil {
					out = append(out, b...)
					break
				}
			}
			continue
		}
		if slices.ContainsFunc(shards[:s.cfg.K], func(b []byte) bool { return b == nil }) {
			if err := s.enc.ReconstructData(shards); err != nil {
				return nil, fmt.Errorf("stripe %d: %w", i, err)
			}
		}
		start := len(out)
		for _, b := range shards[:s.cfg.K] {
			out = append(out, b...)
		}
		out = out[:start+int(g.dataLen(i))]
	}
	return out, nil
}

// fetch reads member j's shards of stripes s0..s1 and authenticates
// them: a shard that fails is nil (and reported). The error says why the
// member could not be read at all, or why some shards are missing.
func (s *Store) fetch(ctx context.Context, res *resolved, j int, s0, s1 int64) ([][]byte, error) {
	g := res.g
	mn, err := s.memberName(j, res.ref, g.size, res.gen)
	if err != nil {
		return nil, err
	}
	off := g.offset(s0)
	end := g.offset(s1) + g.shardLen(s1) + TagSize
	rc, err := s.cfg.Members[j].Store.ReadRange(ctx, mn.String(), off, end-off)
	if err != nil {
		if errors.Is(err, store.ErrNotExist) {
			s.warn(Problem{Member: s.label(j), Object: res.ref.name, Stripe: -1, Err: ErrMissing})
			return nil, ErrMissing
		}
		if ctx.Err() == nil {
			s.failed(j)
			s.warn(Problem{Member: s.label(j), Object: res.ref.name, Stripe: -1, Err: err})
		}
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, end-off)
	n, rerr := io.ReadFull(rc, buf)
	buf = buf[:n]
	if err := ctx.Err(); err != nil {
		return nil, err // cancelled: says nothing about the member
	}
	tg, err := s.keys.newTagger(g, s.cfg.M, j, res.ref.name, res.gen)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, s1-s0+1)
	var bad error
	for i := s0; i <= s1; i++ {
		p := g.offset(i) - off
		sl := g.shardLen(i)
		if p+sl+TagSize > int64(len(buf)) {
			bad = fmt.Errorf("shard object cut short at stripe %d: %w", i, ErrDamaged)
			if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF) {
				bad = rerr
				if ctx.Err() == nil {
					s.failed(j)
				}
			}
			s.warn(Problem{Member: s.label(j), Object: res.ref.name, Stripe: i, Err: bad})
			break
		}
		shard := buf[p : p+sl]
		if !tg.check(i, shard, buf[p+sl:p+sl+TagSize]) {
			bad = fmt.Errorf("stripe %d: %w", i, ErrDamaged)
			s.warn(Problem{Member: s.label(j), Object: res.ref.name, Stripe: i, Err: ErrDamaged})
			continue
		}
		out[i-s0] = shard
	}
	return out, bad
}
