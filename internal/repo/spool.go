package repo

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/holdfast/holdfast/internal/offheap"
)

// The upload spool: ciphertext of multipart uploads kept on premises in
// the home, never plaintext.
//
//	uploads/ID/TOKEN   a part held until its upload completes (a part
//	                   under the store's minimum part size, or the part
//	                   numbered the store's highest: docs/design.md §3)
//	uploads/.tmp/PID-R a part being written, or being sent to a store
//	                   that may send it again (see spoolBody)
const (
	spoolDirName = "uploads"
	spoolTmpName = ".tmp"
)

func (r *Repo) spoolDir() string             { return filepath.Join(r.Home, spoolDirName) }
func (r *Repo) uploadSpool(id string) string { return filepath.Join(r.spoolDir(), id) }

// spoolTemp creates a temporary file in the spool, named for this process.
func (r *Repo) spoolTemp() (*os.File, error) {
	dir := filepath.Join(r.spoolDir(), spoolTmpName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	name := filepath.Join(dir, strconv.Itoa(os.Getpid())+"-"+strings.ToLower(rand.Text()))
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

// holdPart writes a part's stored bytes (body, exactly size bytes) into
// the spool of upload id as file token, durably: it is recorded as held
// only once this returns.
func (r *Repo) holdPart(id, token string, body io.Reader, size int64) error {
	dir := r.uploadSpool(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := r.spoolTemp()
	if err != nil {
		return err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, body)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("internal error: held part is %d bytes, expected %d", n, size)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, token)); err != nil {
		return err
	}
	done = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// cleanSpool removes the spool directories of uploads the catalog no
// longer has (known reports whether it has one) and temporary files of
// processes that are gone.
func (r *Repo) cleanSpool(known func(id string) bool) {
	entries, err := os.ReadDir(r.spoolDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() == spoolTmpName {
			tmps, _ := os.ReadDir(filepath.Join(r.spoolDir(), spoolTmpName))
			for _, t := range tmps {
				p, _, _ := strings.Cut(t.Name(), "-")
				if pid, err := strconv.Atoi(p); err == nil && pid != os.Getpid() && !processAlive(pid) {
					os.Remove(filepath.Join(r.spoolDir(), spoolTmpName, t.Name()))
				}
			}
			continue
		}
		if validUploadID(e.Name()) && !known(e.Name()) {
			os.RemoveAll(filepath.Join(r.spoolDir(), e.Name()))
		}
	}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// spoolBody is a part's body for a store that retries requests
// (store.PartLimits.Rewind): it reads src once, keeping what it read, so
// that a request that failed in passing can send the part again — from
// what was kept as far as src was read, then on from src — while the
// first attempt streams as src arrives. A part of up to memSpoolPart
// bytes is kept in memory while spoolMemory has room for it (the common
// case: clients send parts of 5 to 16 MiB); any other is kept in a spool
// file, and memory stays at a copy buffer whatever its size. What was
// kept goes when the body is closed.
type spoolBody struct {
	mu   sync.Mutex
	src  io.Reader
	mem  *[]byte  // what was read of src, when kept in memory
	f    *os.File // what was read of src, when kept in a file
	size int64    // the body's length
	have int64    // bytes of src kept
	pos  int64    // read position
	err  error    // src's failure: final
}

// memSpoolPart is the largest part body spoolBody keeps in memory.
const memSpoolPart = 16<<20 + 1<<20 // a 16 MiB part's ciphertext, with room for the header and tags

// spoolMemory holds the memory of part bodies kept in memory across the
// process (a gateway receiving many parts at once): 64 MiB, idle buffers
// included — four of the largest parts, eight of the AWS CLI's 8 MiB
// ones. Beyond it, parts are spooled to files.
var spoolMemory = newPartMemory(64 << 20)

// partMemory hands out buffers for kept part bodies within a limit on
// their total capacity, busy or idle. Buffers given back are reused by
// the next parts (most clients send parts of one size), and freed when
// room is needed for a larger one or no part is kept any more. They live
// outside the Go heap (package offheap), so the collector neither scans
// them nor lets the heap grow to twice their size before it reclaims
// one. They hold ciphertext only.
type partMemory struct {
	mu    sync.Mutex
	limit int64
	held  int64 // capacity of every buffer, busy or idle
	busy  int64 // capacity of the buffers in use
	idle  []*[]byte
}

func newPartMemory(limit int64) *partMemory { return &partMemory{limit: limit} }

// take returns an empty buffer with room for n bytes, or nil if the
// limit leaves no room for it.
func (m *partMemory) take(n int64) *[]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, b := range m.idle {
		if int64(cap(*b)) >= n {
			m.idle = append(m.idle[:i], m.idle[i+1:]...)
			m.busy += int64(cap(*b))
			*b = (*b)[:0]
			return b
		}
	}
	for m.held+n > m.limit && len(m.idle) > 0 { // too small for n: free
		m.held -= int64(cap(*m.idle[0]))
		_ = offheap.Free(*m.idle[0])
		m.idle = m.idle[1:]
	}
	if m.held+n > m.limit {
		return nil
	}
	b, err := offheap.Alloc(int(n))
	if err != nil {
		return nil // the part goes to a spool file
	}
	b = b[:0]
	m.held += n
	m.busy += n
	return &b
}

// give returns a buffer from take; nothing may use it afterwards. When no
// part holds a buffer any more, the idle ones are freed too: memory is
// kept only while parts keep arriving.
func (m *partMemory) give(b *[]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy -= int64(cap(*b))
	m.idle = append(m.idle, b)
	if m.busy == 0 {
		for _, b := range m.idle {
			_ = offheap.Free(*b)
		}
		m.idle, m.held = nil, 0
	}
}

// inUse is the capacity of the buffers taken and not given back.
func (m *partMemory) inUse() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.busy
}

func (r *Repo) newSpoolBody(src io.Reader, size int64) (*spoolBody, error) {
	if size <= memSpoolPart {
		if b := spoolMemory.take(size); b != nil {
			return &spoolBody{src: src, mem: b, size: size}, nil
		}
	}
	f, err := r.spoolTemp()
	if err != nil {
		return nil, err
	}
	return &spoolBody{src: src, f: f, size: size}, nil
}

func (b *spoolBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pos >= b.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.mem == nil && b.f == nil {
		return 0, errors.New("spool: read after close")
	}
	p = p[:min(int64(len(p)), b.size-b.pos)]
	if b.pos < b.have {
		p = p[:min(int64(len(p)), b.have-b.pos)]
		if b.mem != nil {
			n := copy(p, (*b.mem)[b.pos:b.have])
			b.pos += int64(n)
			return n, nil
		}
		n, err := b.f.ReadAt(p, b.pos)
		b.pos += int64(n)
		if n > 0 {
			err = nil
		}
		return n, err
	}
	for b.have < b.pos && b.err == nil { // after a Seek forward
		var buf [32 << 10]byte
		b.take(buf[:min(int64(len(buf)), b.pos-b.have)])
	}
	if b.err != nil {
		return 0, b.err
	}
	n := b.take(p)
	b.pos += int64(n)
	if n > 0 {
		return n, nil
	}
	return 0, b.err
}

// take reads from src into p and keeps what it read.
func (b *spoolBody) take(p []byte) int {
	n, err := b.src.Read(p)
	if n > 0 {
		if b.mem != nil {
			*b.mem = append(*b.mem, p[:n]...)
		} else if _, werr := b.f.WriteAt(p[:n], b.have); werr != nil {
			b.err = werr
			return 0
		}
		b.have += int64(n)
	}
	switch {
	case err == io.EOF && b.have < b.size:
		b.err = io.ErrUnexpectedEOF
	case err != nil && err != io.EOF:
		b.err = err
	}
	return n
}

func (b *spoolBody) Seek(off int64, whence int) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch whence {
	case io.SeekCurrent:
		off += b.pos
	case io.SeekEnd:
		off += b.size
	}
	if off < 0 || off > b.size {
		return 0, fmt.Errorf("spool: seek to %d outside %d bytes", off, b.size)
	}
	b.pos = off
	return off, nil
}

// Close forgets what was kept: the memory goes back, the spool file is
// removed.
func (b *spoolBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem != nil {
		spoolMemory.give(b.mem)
		b.mem = nil
		return nil
	}
	if b.f == nil {
		return nil
	}
	f := b.f
	b.f = nil
	err := f.Close()
	if rerr := os.Remove(f.Name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// readerAts is the concatenation of pieces, each an io.ReaderAt of the
// given size.
type readerAts []sizedReaderAt

type sizedReaderAt struct {
	r    io.ReaderAt
	size int64
}

func (c readerAts) size() int64 {
	var n int64
	for _, p := range c {
		n += p.size
	}
	return n
}

func (c readerAts) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	for _, piece := range c {
		if len(p) == 0 {
			break
		}
		if off >= piece.size {
			off -= piece.size
			continue
		}
		want := min(int64(len(p)), piece.size-off)
		m, err := piece.r.ReadAt(p[:want], off)
		n += m
		if m < int(want) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF // a piece shorter than its size
			}
			return n, err
		}
		p, off = p[want:], 0
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}
