package keyserver

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// registry is the server's view of clients.json. It re-reads the file
// whenever it changed (checked on every lookup: one stat), so that
// `keyserver revoke` takes effect at the next connection and request
// without a restart; Reload (SIGHUP) forces a read.
type registry struct {
	path string

	mu     sync.Mutex
	stamp  fileStamp
	serial map[string]Client
}

type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(interface{ Ino() uint64 }); ok {
		s.ino = st.Ino()
	}
	return s
}

func newRegistry(path string) (*registry, error) {
	r := &registry{path: path}
	return r, r.Reload()
}

// Reload reads clients.json now.
func (r *registry) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *registry) loadLocked() error {
	fi, err := os.Stat(r.path)
	if err != nil {
		return err
	}
	cf, err := readClients(r.path)
	if err != nil {
		return err
	}
	m := make(map[string]Client, len(cf.Clients))
	for _, c := range cf.Clients {
		m[c.Serial] = c
	}
	r.serial, r.stamp = m, stampOf(fi)
	return nil
}

// check re-reads the file if it changed; an error means it cannot be
// read now.
func (r *registry) check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkLocked()
}

func (r *registry) checkLocked() error {
	fi, err := os.Stat(r.path)
	if err != nil {
		return fmt.Errorf("checking %q: %w", r.path, err)
	}
	if stampOf(fi) != r.stamp {
		return r.loadLocked()
	}
	return nil
}

// lookup returns the client whose certificate has serial, re-reading the
// file first if it changed. If the file cannot be read now, lookup
// returns the error and the caller refuses (fail closed): a revocation
// written in a file it cannot read must not be missed.
func (r *registry) lookup(serial string) (Client, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkLocked(); err != nil {
		return Client{}, false, err
	}
	c, ok := r.serial[serial]
	return c, ok, nil
}
