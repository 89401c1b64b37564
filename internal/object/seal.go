package object

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/regfile"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/stream"
)

// DefaultSegmentSize is the plaintext size of a segment written by Sealer.
// Segments are the unit of parallel encryption; 4 MiB keeps the manifest of
// a 10 GiB object near 100 KB and the pipeline's memory near 8 MiB a worker.
const DefaultSegmentSize = 4 << 20

// Identity names an object's place: what the manifest records and what a
// reader checks.
type Identity struct {
	Kind          format.Kind
	Repo          keys.ID
	Object        keys.ID
	Bucket        keys.ID
	KeyVersion    uint32
	BucketName    string
	Key           string
	ObjectVersion uint64
}

// Attrs are the object's metadata, stored encrypted in the manifest.
type Attrs struct {
	Modified    time.Time
	ContentType string
	Meta        []format.MetaPair
	// MetaAtEnd, if set, replaces Meta: it is called once the whole
	// plaintext was read, before the manifest is sealed, so metadata can
	// include what only the end of the input tells (a digest of it).
	MetaAtEnd func() ([]format.MetaPair, error)
}

// WrapFunc wraps a fresh data key for the header's key slot. The caller
// builds the associated data from the identity.
type WrapFunc func(dek secret.Key) (keys.Alg, []byte, error)

// SealOptions tune the pipeline; the zero value is the default.
type SealOptions struct {
	SegmentSize int       // plaintext bytes per segment; DefaultSegmentSize if 0
	Workers     int       // parallel encryptors; GOMAXPROCS if 0
	Rand        io.Reader // randomness for the data key and salts; crypto/rand if nil
}

// Result describes a sealed object; valid once the whole object was read.
type Result struct {
	Header     []byte
	Manifest   *format.Manifest
	ManifestCT []byte
	FooterCT   []byte
	Sizes      format.Sizes
	Pin        [32]byte
	Commit     [32]byte
	Alg        keys.Alg
	Wrapped    []byte
}

// Sealer turns a plaintext stream into the bytes of one stored object. It
// is an io.Reader and an io.WriterTo; a store's Put reads it once.
type Sealer struct {
	src    io.Reader
	id     Identity
	attrs  Attrs
	opt    SealOptions
	d      *derived
	header []byte
	hdr    format.Header
	res    *Result

	pr      *io.PipeReader
	started bool
	done    bool
}

// NewSealer draws a fresh data key, wraps it with wrap and prepares the
// header. The data key never leaves the Sealer.
func NewSealer(src io.Reader, id Identity, attrs Attrs, wrap WrapFunc, opt SealOptions) (*Sealer, error) {
	if opt.SegmentSize <= 0 {
		opt.SegmentSize = DefaultSegmentSize
	}
	if opt.SegmentSize%format.ChunkSize != 0 {
		return nil, fmt.Errorf("segment size %d is not a multiple of the chunk size", opt.SegmentSize)
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Rand == nil {
		opt.Rand = rand.Reader
	}
	dek, err := secret.NewFrom(opt.Rand)
	if err != nil {
		return nil, err
	}
	d, err := derive(dek)
	if err != nil {
		return nil, err
	}
	alg, wrapped, err := wrap(dek)
	if err != nil {
		return nil, fmt.Errorf("wrapping data key: %w", err)
	}
	h := format.Header{Alg: alg, Wrapped: wrapped, Commit: d.commit}
	hb, err := h.Marshal()
	if err != nil {
		return nil, err
	}
	return &Sealer{src: src, id: id, attrs: attrs, opt: opt, d: d, header: hb, hdr: h}, nil
}

// Result returns the description of the sealed object, or nil if the
// object has not been completely produced.
func (s *Sealer) Result() *Result { return s.res }

// Read implements io.Reader by running WriteTo into a pipe.
func (s *Sealer) Read(p []byte) (int, error) {
	if !s.started {
		s.started = true
		pr, pw := io.Pipe()
		s.pr = pr
		go func() {
			_, err := s.WriteTo(pw)
			pw.CloseWithError(err)
		}()
	}
	if s.pr == nil {
		return 0, errors.New("sealer already consumed")
	}
	return s.pr.Read(p)
}

// Close stops a Read in progress (its pipeline then winds down) and
// forgets the data key. Callers that hand the Sealer to a store's Put must
// Close it afterwards, whatever the outcome.
func (s *Sealer) Close() error {
	if s.pr != nil {
		s.pr.CloseWithError(errors.New("sealer closed"))
	}
	if !s.started {
		// WriteTo, if it ran, wiped the key when it finished.
		s.d.dek.Wipe()
	}
	return nil
}

func getSealBuf(segSize int) (*sealJob, error) {
	j := &sealJob{}
	return j, j.take(segSize, sealBudget)
}

// putSealBuf returns j's buffers; nothing may use j afterwards.
func putSealBuf(j *sealJob) { j.give() }

type sealJob struct {
	segBuf
	salt [format.SaltLen]byte
	err  error
	done chan struct{}
	// A segment read in place (Viewer): pt is the view, own the buffer
	// it stands in for, release ends the view.
	own     []byte
	release func()
}

// Viewer is an input whose pieces the sealer can encrypt where they are
// instead of copying them into its own buffers first (regfile.Source: a
// regular file, mapped). View returns the next min(n, what is left)
// bytes and moves past them, or no bytes and the error that ends the
// input (io.EOF); the bytes stay valid until release. A View failing
// with regfile.ErrNotMappable has consumed nothing, and the sealer reads
// the rest through Read. Reading a view may fault if the input changes
// (a mapped file truncated): the sealer reads views with
// runtime/debug.SetPanicOnFault and fails the object with
// ErrInputChanged. Since views are read after the input's end was
// reached, the sealer asks Unchanged once it has sealed them all, and
// fails the object with its error.
type Viewer interface {
	View(n int) (view []byte, release func(), err error)
	Unchanged() error
}

// ErrInputChanged is the error of an object whose input changed under a
// view of it while it was being sealed.
var ErrInputChanged = errors.New("the input changed while it was being read")

// WriteTo writes the whole stored object to w: header, segments (encrypted
// in parallel, written in order), padding, manifest and footer.
func (s *Sealer) WriteTo(w io.Writer) (int64, error) {
	if s.done {
		return 0, errors.New("sealer already consumed")
	}
	s.done = true
	// The data key is needed only while the object is written.
	defer s.d.dek.Wipe()
	var written int64
	write := func(b []byte) error {
		n, err := w.Write(b)
		written += int64(n)
		return err
	}
	if err := write(s.header); err != nil {
		return written, err
	}

	segs, err := s.writeSegments(write)
	if err != nil {
		return written, err
	}
	res, err := s.trailer(segs)
	if err != nil {
		return written, err
	}
	if err := s.writePadding(res.Sizes.Padding, write); err != nil {
		return written, err
	}
	if err := write(res.ManifestCT); err != nil {
		return written, err
	}
	if err := write(res.FooterCT); err != nil {
		return written, err
	}
	if uint64(written) != res.Sizes.Stored {
		return written, fmt.Errorf("internal error: wrote %d bytes, size rule says %d", written, res.Sizes.Stored)
	}
	s.res = res
	return written, nil
}

// writePadding writes the first pad bytes of the padding keystream,
// made a piece ahead of the writes (padAhead).
func (s *Sealer) writePadding(pad uint64, write func([]byte) error) error {
	return padAhead(s.d.padStream(), pad, write)
}

// seal encrypts j.pt as one segment under a fresh key from j.salt.
func (s *Sealer) seal(j *sealJob) error {
	aead, err := stream.SegmentAEAD(s.d.dek, j.salt[:])
	if err == nil {
		j.ct = stream.Seal(aead, j.ct[:0], j.pt)
	}
	return err
}

// sealView seals j, whose plaintext is a view of the input, and ends the
// view. A fault reading the view fails the segment with ErrInputChanged,
// or with an I/O error if the input has not changed.
func (s *Sealer) sealView(j *sealJob) (err error) {
	defer func() {
		j.release()
		j.release = nil
	}()
	if readView(j.pt, func() { err = s.seal(j) }) {
		// Cut short, or a page that could not be read in.
		err = ErrInputChanged
		if v, ok := s.src.(Viewer); ok && v.Unchanged() == nil {
			err = fmt.Errorf("reading input: %w", syscall.EIO)
		}
	}
	return err
}

// unview puts j's own plaintext buffer back after a view, ending the
// view if it is still open.
func (j *sealJob) unview() {
	if j.release != nil {
		j.release()
		j.release = nil
	}
	if j.own != nil {
		j.pt, j.own = j.own, nil
	}
}

// writeSegments reads, seals and writes every segment in order. It reads
// the first segment itself: an object that fits in one segment (most do)
// is sealed right here, without starting the parallel pipeline.
func (s *Sealer) writeSegments(write func([]byte) error) ([]format.Segment, error) {
	segSize := s.opt.SegmentSize
	// Most objects are small: read into a small buffer first, and move to
	// a full-size one only when the input goes on.
	head := min(segSize, smallSegment)
	first, err := getSealBuf(head)
	if err != nil {
		return nil, err
	}
	n, err := io.ReadFull(s.src, first.pt[:head])
	if err == nil && segSize > head {
		full, ferr := getSealBuf(segSize)
		if ferr != nil {
			putSealBuf(first)
			return nil, ferr
		}
		full.pt = append(full.pt[:0], first.pt[:n]...)
		putSealBuf(first)
		first = full
		var m int
		m, err = io.ReadFull(s.src, first.pt[n:segSize])
		n += m
	}
	first.pt = first.pt[:n]
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		defer putSealBuf(first) // nothing else holds it
		if _, err := io.ReadFull(s.opt.Rand, first.salt[:]); err != nil {
			return nil, fmt.Errorf("reading segment salt: %w", err)
		}
		if err := s.seal(first); err != nil {
			return nil, err
		}
		if err := write(first.ct); err != nil {
			return nil, err
		}
		return []format.Segment{{Len: uint64(n), Salt: first.salt}}, nil
	case err != nil:
		putSealBuf(first)
		return nil, fmt.Errorf("reading input: %w", err)
	}
	return s.pipeline(first, write)
}

// pipeline seals the segments on s.opt.Workers goroutines and writes them
// in order; first is the already-read, full first segment.
func (s *Sealer) pipeline(first *sealJob, write func([]byte) error) ([]format.Segment, error) {
	segSize := s.opt.SegmentSize
	inflight := s.opt.Workers + 2
	// A multi-segment object may use up to inflight buffers. It holds the
	// budget for all of them from the start (sealBudget: as many as the
	// process's budget has now; it holds first, so it never waits for
	// more), so what it may use does not depend on how fast its reader,
	// workers and writer run. The memory itself is taken only when the
	// reader needs a buffer and none is idle: the second buffer is mapped
	// while the first segment is being sealed, not before, and an object
	// of two segments maps two.
	stop := make(chan struct{})
	defer close(stop)
	spare := 0 // budget held for buffers not taken yet
	for 1+spare < inflight && (!segBudgeted(segSize) || sealBudget.tryAcquire()) {
		spare++
	}
	free := make(chan *sealJob, inflight)
	mine := []*sealJob{first} // owned by the reader goroutine until it closes order
	finished := false
	var running sync.WaitGroup // the reader and the workers
	defer func() {
		releaseWhenStopped(finished, &running, func() {
			for _, j := range mine {
				putSealBuf(j)
			}
			if segBudgeted(segSize) {
				for range spare {
					sealBudget.release()
				}
			}
		})
	}()
	// next is the reader's next buffer (nextBuf): a new one while budget
	// is held for one.
	next := func() (*sealJob, error) {
		return nextBuf(free, stop, func() (*sealJob, bool, error) {
			if spare == 0 {
				return nil, false, nil
			}
			spare--
			j := &sealJob{}
			if err := j.takeHeld(segSize, sealBudget); err != nil {
				return nil, false, err
			}
			mine = append(mine, j)
			return j, true, nil
		})
	}
	work := make(chan *sealJob, inflight)
	order := make(chan *sealJob, inflight)

	running.Add(s.opt.Workers + 1)
	for i := 0; i < s.opt.Workers; i++ {
		go func() {
			defer running.Done()
			for j := range work {
				if j.release != nil {
					j.err = s.sealView(j)
				} else {
					j.err = s.seal(j)
				}
				close(j.done)
			}
		}()
	}
	viewer, _ := s.src.(Viewer)
	var readErr error
	go func() {
		defer running.Done()
		defer close(order)
		defer close(work)
		for idx := 0; ; idx++ {
			var j *sealJob
			last := false
			if idx == 0 {
				j = first // read by writeSegments: a full segment
			} else {
				var err error
				if j, err = next(); err != nil {
					readErr = err
					return
				} else if j == nil { // stopped
					return
				}
				var n int
				if viewer != nil {
					var view []byte
					// A short view is the last, but the input ends
					// only with the error after it (a Source checks
					// then that its file did not change).
					view, j.release, err = viewer.View(segSize)
					if n = len(view); n > 0 {
						j.own, j.pt = j.pt, view
					} else if errors.Is(err, regfile.ErrNotMappable) {
						viewer, err = nil, nil // read the rest
					} else if err == nil {
						err = io.ErrNoProgress
					}
				}
				if viewer == nil {
					n, err = io.ReadFull(s.src, j.pt[:segSize])
					if err == io.ErrUnexpectedEOF {
						last, err = true, nil
					}
				}
				switch {
				case n == 0 && err == io.EOF:
					j.unview()
					j.pt = j.pt[:cap(j.pt)]
					free <- j
					return
				case err != nil:
					j.unview()
					readErr = fmt.Errorf("reading input: %w", err)
					return
				}
				j.pt = j.pt[:n]
			}
			if _, err := io.ReadFull(s.opt.Rand, j.salt[:]); err != nil {
				j.unview()
				readErr = fmt.Errorf("reading segment salt: %w", err)
				return
			}
			j.done = make(chan struct{})
			select {
			case order <- j:
			case <-stop:
				j.unview()
				return
			}
			work <- j
			if last {
				return
			}
		}
	}()

	var segs []format.Segment
	for j := range order {
		<-j.done
		if j.err != nil {
			return nil, j.err
		}
		if err := write(j.ct); err != nil {
			return nil, err
		}
		segs = append(segs, format.Segment{Len: uint64(len(j.pt)), Salt: j.salt})
		j.unview()
		j.pt = j.pt[:cap(j.pt)]
		free <- j
	}
	if readErr != nil {
		return nil, readErr
	}
	finished = true
	if v, ok := s.src.(Viewer); ok {
		// Every view is sealed and released: only now is what was
		// sealed known to be what the input held.
		if err := v.Unchanged(); err != nil {
			return nil, fmt.Errorf("reading input: %w", err)
		}
	}
	return segs, nil
}

// trailer builds the manifest and footer for the given segments.
func (s *Sealer) trailer(segs []format.Segment) (*Result, error) {
	if s.attrs.MetaAtEnd != nil {
		meta, err := s.attrs.MetaAtEnd()
		if err != nil {
			return nil, err
		}
		s.attrs.Meta = meta
	}
	m := &format.Manifest{
		Kind: s.id.Kind, Repo: s.id.Repo, Object: s.id.Object, Bucket: s.id.Bucket,
		KeyVersion: s.id.KeyVersion, BucketName: s.id.BucketName, Key: s.id.Key,
		ObjectVersion: s.id.ObjectVersion, ContentType: s.attrs.ContentType, Meta: s.attrs.Meta,
		Segments: segs,
	}
	if !s.attrs.Modified.IsZero() {
		m.Modified = uint64(s.attrs.Modified.UnixNano())
	}
	lens := make([]uint64, len(segs))
	for i, sg := range segs {
		m.Length += sg.Len
		lens[i] = sg.Len
	}
	sizes := format.ComputeSizes(lens, m.PlainLen())
	m.Padding = sizes.Padding
	plain, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	mct := s.d.manifest.Seal(nil, zeroNonce, plain, s.header)
	if uint64(len(mct)) != sizes.ManifestLen {
		return nil, fmt.Errorf("internal error: manifest is %d bytes, expected %d", len(mct), sizes.ManifestLen)
	}
	f := format.Footer{ManifestOff: sizes.ManifestOff, ManifestLen: uint32(len(mct))}
	fct := s.d.footer.Seal(nil, zeroNonce, f.Marshal(), s.header)
	return &Result{
		Header: s.header, Manifest: m, ManifestCT: mct, FooterCT: fct, Sizes: sizes,
		Pin: format.Pin(s.header, mct, fct), Commit: s.d.commit, Alg: s.hdr.Alg, Wrapped: s.hdr.Wrapped,
	}, nil
}
