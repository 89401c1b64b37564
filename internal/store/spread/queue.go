package spread

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/store"
)

// The repair queue is a text file of lines "put NAME" (a member missed
// the object's shard or holds a damaged one) and "del NAME" (a member
// could not be reached to delete it). It lists only object names, which
// are as opaque as the store's; repair works through it and rewrites it
// with what it could not finish. Appends are single small writes with
// O_APPEND, so processes sharing the home do not interleave lines.
const (
	queuePut = "put"
	queueDel = "del"
)

// enqueue records name for repair. A queue that cannot be written is not
// an error of the operation that found the problem: a deep repair finds
// every problem without the queue.
func (s *Store) enqueue(op, name string) {
	if s.cfg.Queue == "" {
		return
	}
	s.qMu.Lock()
	defer s.qMu.Unlock()
	f, err := os.OpenFile(s.cfg.Queue, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.WriteString(op + " " + name + "\n"); err == nil {
		f.Sync()
	}
}

// readQueue returns the queued names and the last operation queued for
// each.
func (s *Store) readQueue() (map[string]string, error) {
	q := map[string]string{}
	if s.cfg.Queue == "" {
		return q, nil
	}
	s.qMu.Lock()
	defer s.qMu.Unlock()
	f, err := os.Open(s.cfg.Queue)
	if errors.Is(err, fs.ErrNotExist) {
		return q, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		op, name, ok := strings.Cut(sc.Text(), " ")
		if ok && (op == queuePut || op == queueDel) && (store.ValidName(name) || name == freshnessName) {
			q[name] = op
		}
	}
	return q, sc.Err()
}

// settleQueue removes the names in done from the queue.
func (s *Store) settleQueue(done map[string]bool) error {
	if s.cfg.Queue == "" || len(done) == 0 {
		return nil
	}
	s.qMu.Lock()
	defer s.qMu.Unlock()
	b, err := os.ReadFile(s.cfg.Queue)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if _, name, ok := strings.Cut(line, " "); ok && !done[name] {
			keep = append(keep, line+"\n")
		}
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Queue), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(s.cfg.Queue, []byte(strings.Join(keep, "")), atomicfile.Options{Mode: 0o600})
}

// Queued returns the names waiting in the repair queue.
func (s *Store) Queued() ([]string, error) {
	q, err := s.readQueue()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(q))
	for name := range q {
		out = append(out, name)
	}
	return out, nil
}
