package spread

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/internal/store"
)

// Objects built from parts (store.PartUploader). A construction is a
// record (the internal object labelled "c", holding the object's name)
// and its parts (internal objects labelled "N.RANDOM", so that a part sent
// again never replaces the bytes of an earlier upload of its number), all
// spread and authenticated like any object, under one token per member:
// one prefix listing per member finds a construction's objects.
// Completion reads the chosen parts back and spreads them and the tail as
// one object, then removes the construction. List, Stat, Survey and
// Repair never see internal objects; the janitor removes abandoned ones.

const (
	maxParts    = 10000
	handleLen   = 20
	recordLabel = "c"
)

var (
	_ store.PartUploader = (*Store)(nil)
	// errNoConstruction: the handle names no construction (never made,
	// aborted, abandoned, or completed).
	errNoConstruction = errors.New("no such construction")
)

// PartLimits implements store.PartUploader. Parts are objects of their
// own, of any size.
func (s *Store) PartLimits() store.PartLimits { return store.PartLimits{MaxParts: maxParts} }

func randomText(n int) string { return strings.ToLower(rand.Text())[:n] }

// validHandle: handleLen characters of rand.Text's alphabet, lower-cased.
func validHandle(h string) bool {
	if len(h) != handleLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// partLabel checks a part token, "N.RANDOM", against its number.
func partLabel(n int, token string) (string, bool) {
	num, rnd, ok := strings.Cut(token, ".")
	if !ok || num != strconv.Itoa(n) || len(rnd) != 8 || !validLabel(token) {
		return "", false
	}
	return token, true
}

func (s *Store) checkConstruction(ctx context.Context, op, name, handle string) error {
	if err := s.check(ctx, op, name); err != nil {
		return err
	}
	if !validHandle(handle) {
		return fmt.Errorf("spread: %s %q: invalid construction handle %q", op, name, handle)
	}
	return nil
}

// CreateParts implements store.PartUploader: it spreads the construction's
// record, which names the object.
func (s *Store) CreateParts(ctx context.Context, name string) (string, error) {
	if err := s.check(ctx, "create parts", name); err != nil {
		return "", err
	}
	h := randomText(handleLen)
	if err := s.put(ctx, internalRef(h, recordLabel), strings.NewReader(name), int64(len(name))); err != nil {
		return "", fmt.Errorf("spread: create parts %q: %w", name, err)
	}
	return h, nil
}

// record checks that handle is a construction of name.
func (s *Store) record(ctx context.Context, name, handle string) error {
	b, err := s.readAll(ctx, internalRef(handle, recordLabel))
	if errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("construction %s: %w", handle, errNoConstruction)
	}
	if err != nil {
		return fmt.Errorf("construction %s: %w", handle, err)
	}
	if string(b) != name {
		return fmt.Errorf("construction %s is of another object: %w", handle, errNoConstruction)
	}
	return nil
}

// readAll reads a whole (small) object.
func (s *Store) readAll(ctx context.Context, r ref) ([]byte, error) {
	res, err := s.resolve(ctx, r)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(&reader{s: s, ctx: ctx, res: res, end: res.g.size})
}

// UploadPart implements store.PartUploader.
func (s *Store) UploadPart(ctx context.Context, name, handle string, n int, r io.Reader, size int64) (string, error) {
	if err := s.checkConstruction(ctx, "upload part", name, handle); err != nil {
		return "", err
	}
	if n < 1 || n > maxParts {
		return "", fmt.Errorf("spread: upload part %d of %q: part numbers run from 1 to %d", n, name, maxParts)
	}
	if size < 0 {
		return "", fmt.Errorf("spread: upload part %d of %q: size %d: %w", n, name, size, store.ErrShortWrite)
	}
	if err := s.record(ctx, name, handle); err != nil {
		return "", fmt.Errorf("spread: upload part %d of %q: %w", n, name, err)
	}
	label := strconv.Itoa(n) + "." + randomText(8)
	if err := s.put(ctx, internalRef(handle, label), r, size); err != nil {
		return "", fmt.Errorf("spread: upload part %d of %q: %w", n, name, err)
	}
	return label, nil
}

// DeletePart implements store.PartUploader.
func (s *Store) DeletePart(ctx context.Context, name, handle string, p store.StoredPart) error {
	if err := s.checkConstruction(ctx, "delete part", name, handle); err != nil {
		return err
	}
	label, ok := partLabel(p.Number, p.Token)
	if !ok {
		return fmt.Errorf("spread: delete part %d of %q: invalid part token %q", p.Number, name, p.Token)
	}
	if err := s.removeRef(ctx, internalRef(handle, label)); err != nil {
		return fmt.Errorf("spread: delete part %d of %q: %w", p.Number, name, err)
	}
	return nil
}

// removeRef deletes every generation of r from every member.
func (s *Store) removeRef(ctx context.Context, r ref) error {
	var errs []error
	for j, l := range s.listName(ctx, r, s.order(nil)) {
		if l.err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", s.label(j), l.err))
			continue
		}
		for _, e := range l.entries {
			if err := s.cfg.Members[j].Store.Delete(ctx, e.String()); err != nil && !errors.Is(err, store.ErrNotExist) {
				errs = append(errs, fmt.Errorf("member %s: %w", s.label(j), err))
			}
		}
	}
	return errors.Join(errs...)
}

// CompleteParts implements store.PartUploader: the parts are read back,
// authenticated, and spread with the tail as one object.
func (s *Store) CompleteParts(ctx context.Context, name, handle string, parts []store.StoredPart, tail io.ReaderAt, tailSize int64) error {
	if err := s.checkConstruction(ctx, "complete parts", name, handle); err != nil {
		return err
	}
	if tailSize < 0 {
		return fmt.Errorf("spread: complete parts of %q: tail size %d: %w", name, tailSize, store.ErrShortWrite)
	}
	if err := s.record(ctx, name, handle); err != nil {
		// Completed before (the answer was lost): the object is there.
		if errors.Is(err, errNoConstruction) {
			if _, serr := s.Stat(ctx, name); serr == nil {
				return nil
			}
		}
		return fmt.Errorf("spread: complete parts of %q: %w", name, err)
	}
	var srcs []*resolved
	total := tailSize
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return fmt.Errorf("spread: complete parts of %q: part numbers not ascending", name)
		}
		label, ok := partLabel(p.Number, p.Token)
		if !ok {
			return fmt.Errorf("spread: complete parts of %q: invalid part token %q", name, p.Token)
		}
		res, err := s.resolve(ctx, internalRef(handle, label))
		if err != nil {
			return fmt.Errorf("spread: complete parts of %q: part %d: %w", name, p.Number, err)
		}
		srcs = append(srcs, res)
		total += res.g.size
	}
	body := &partsReader{s: s, ctx: ctx, parts: srcs, tail: io.NewSectionReader(tail, 0, tailSize)}
	if err := s.put(ctx, publicRef(name), body, total); err != nil {
		return fmt.Errorf("spread: complete parts of %q: %w", name, err)
	}
	// What is left behind the janitor removes.
	s.dropConstruction(context.WithoutCancel(ctx), handle)
	return nil
}

// partsReader reads the parts, then the tail.
type partsReader struct {
	s     *Store
	ctx   context.Context
	parts []*resolved
	cur   io.Reader
	tail  io.Reader
}

func (p *partsReader) Read(b []byte) (int, error) {
	for {
		if p.cur == nil {
			if len(p.parts) == 0 {
				p.cur, p.tail = p.tail, nil
				if p.cur == nil {
					return 0, io.EOF
				}
			} else {
				res := p.parts[0]
				p.parts = p.parts[1:]
				p.cur = &reader{s: p.s, ctx: p.ctx, res: res, end: res.g.size}
			}
		}
		n, err := p.cur.Read(b)
		if err == io.EOF {
			p.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// AbortParts implements store.PartUploader.
func (s *Store) AbortParts(ctx context.Context, name, handle string) error {
	if err := s.checkConstruction(ctx, "abort parts", name, handle); err != nil {
		return err
	}
	if err := s.dropConstruction(ctx, handle); err != nil {
		return fmt.Errorf("spread: abort parts of %q: %w", name, err)
	}
	return nil
}

// dropConstruction removes a construction's parts, then its record, from
// every member.
func (s *Store) dropConstruction(ctx context.Context, handle string) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for j := range s.n {
		wg.Go(func() {
			if err := s.dropMember(ctx, j, handle); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("member %s: %w", s.label(j), err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Store) dropMember(ctx context.Context, j int, handle string) error {
	tok, _, err := s.keys.tokenFor(j, internalRef(handle, recordLabel))
	if err != nil {
		return err
	}
	m := s.cfg.Members[j].Store
	var parts, records []string
	if err := m.List(ctx, tok+"-", func(oi store.ObjectInfo) error {
		if mn, ok := parseMemberName(oi.Name); ok && mn.internal && mn.token == tok {
			if mn.label == recordLabel {
				records = append(records, oi.Name)
			} else {
				parts = append(parts, oi.Name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, n := range append(parts, records...) {
		if err := m.Delete(ctx, n); err != nil && !errors.Is(err, store.ErrNotExist) {
			return err
		}
	}
	return nil
}

// abortConstructions removes the constructions whose object is not in
// progress, and those whose record cannot be read, and returns how many.
func (s *Store) abortConstructions(ctx context.Context, inProgress func(name string) bool) (int, error) {
	handles := map[string]bool{}
	var errs []error
	for j, m := range s.cfg.Members {
		err := m.Store.List(ctx, "", func(oi store.ObjectInfo) error {
			mn, ok := parseMemberName(oi.Name)
			if !ok || !mn.internal {
				return nil
			}
			if base, err := s.keys.nameOfToken(j, mn.token); err == nil {
				if h, ok := strings.CutPrefix(base, "u-"); ok && validHandle(h) {
					handles[h] = true
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", s.label(j), err))
		}
	}
	n := 0
	for h := range handles {
		b, err := s.readAll(ctx, internalRef(h, recordLabel))
		if err == nil && inProgress(string(b)) {
			continue
		}
		if err != nil && !errors.Is(err, store.ErrNotExist) && !errors.Is(err, ErrUnreadable) {
			errs = append(errs, fmt.Errorf("construction %s: %w", h, err))
			continue // unreachable now: decide later
		}
		if err := s.dropConstruction(ctx, h); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
