package spread

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/internal/store"
)

// survey is a full listing of every member, decoded.
type survey struct {
	answered int
	errs     map[int]error
	// objects maps each object name to what each member that answered
	// holds of it.
	objects map[string]map[int]listing
	// foreign counts, per member, the objects that are not shards of this
	// store (another key's, or not of the form).
	foreign map[int]int
	bytes   map[int]int64
	mu      sync.Mutex
}

func (sv *survey) failures(s *Store) string {
	var f []string
	for j := range s.n {
		if err := sv.errs[j]; err != nil {
			f = append(f, fmt.Sprintf("member %s: %v", s.label(j), err))
		}
	}
	return strings.Join(f, "; ")
}

// survey lists every member in full, concurrently.
func (s *Store) survey(ctx context.Context) (*survey, error) {
	sv := &survey{errs: map[int]error{}, objects: map[string]map[int]listing{}, foreign: map[int]int{}, bytes: map[int]int64{}}
	var wg sync.WaitGroup
	for j := range s.n {
		wg.Go(func() { s.surveyMember(ctx, sv, j) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A member that answered but holds nothing of an object is recorded
	// as holding nothing: that is what tells "missing" from "unknown".
	for _, byMember := range sv.objects {
		for j := range s.n {
			if _, ok := byMember[j]; !ok && sv.errs[j] == nil {
				byMember[j] = listing{}
			}
		}
	}
	return sv, nil
}

func (s *Store) surveyMember(ctx context.Context, sv *survey, j int) {
	type hashedEntry struct {
		mn   memberName
		size int64
	}
	found := map[string][]memberName{}
	var hashed []hashedEntry
	foreign := 0
	var total int64
	m := s.cfg.Members[j].Store
	err := m.List(ctx, "", func(oi store.ObjectInfo) error {
		total += oi.Size
		mn, ok := parseMemberName(oi.Name)
		if !ok {
			foreign++
			return nil
		}
		if mn.internal {
			return nil // a construction's (see parts.go)
		}
		if mn.hashed {
			hashed = append(hashed, hashedEntry{mn, oi.Size})
			return nil
		}
		name, err := s.keys.nameOfToken(j, mn.token)
		if err != nil {
			foreign++
			return nil
		}
		if want := s.objSize(publicRef(name), mn); oi.Size != want {
			s.warn(Problem{Member: s.label(j), Object: name, Stripe: -1,
				Err: fmt.Errorf("shard object is %d bytes, want %d: %w", oi.Size, want, ErrDamaged)})
			return nil
		}
		found[name] = append(found[name], mn)
		return nil
	})
	if err == nil {
		// Long names are in a name block at the end of the member object.
		for _, h := range hashed {
			name, ok := s.readNameBlock(ctx, j, h.mn, h.size)
			if !ok {
				foreign++
				continue
			}
			found[name] = append(found[name], h.mn)
		}
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if err != nil {
		s.failed(j)
		sv.errs[j] = err
		return
	}
	sv.answered++
	sv.foreign[j] = foreign
	sv.bytes[j] = total
	for name, es := range found {
		if sv.objects[name] == nil {
			sv.objects[name] = map[int]listing{}
		}
		sv.objects[name][j] = listing{entries: es}
	}
}

// readNameBlock reads and checks the name block of member j's object mn.
func (s *Store) readNameBlock(ctx context.Context, j int, mn memberName, size int64) (string, bool) {
	if size < nameBlockLen {
		return "", false
	}
	rc, err := s.cfg.Members[j].Store.ReadRange(ctx, mn.String(), size-nameBlockLen, nameBlockLen)
	if err != nil {
		return "", false
	}
	defer rc.Close()
	blk := make([]byte, nameBlockLen)
	if _, err := io.ReadFull(rc, blk); err != nil {
		return "", false
	}
	name, err := s.keys.nameOfBlock(j, blk)
	if err != nil {
		return "", false
	}
	// The block must belong to this member object: a provider must not
	// pass one object's block off as another's.
	tok, hashed, err := s.keys.token(j, name)
	if err != nil || !hashed || tok != mn.token || size != s.objSize(publicRef(name), mn) {
		return "", false
	}
	return name, true
}
