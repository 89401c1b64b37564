package object

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/regfile"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/stream"
)

// Expect is what the reader knows before it reads. Zero fields are not
// checked, except Repo and Object, which always are.
type Expect struct {
	Identity
	Pin         *[32]byte // from the catalog; nil during recovery
	StoredLen   int64     // 0: ask the store
	ManifestOff int64     // 0: find the manifest through the footer
	ManifestLen int64
	// WholeMax, with the catalog's offsets, makes Open read an object
	// whose stored length is at most WholeMax with one request for all of
	// it, and serve every later read of it (WriteTo, Range) from that
	// copy: one provider request per small read instead of three (header,
	// tail, body). What the provider sees is a read of the whole object,
	// as for any full read. 0: never.
	WholeMax int64
	// Rewrapped: the data key may come from a later key record (a rewrap
	// under a newer bucket key version, docs/format.md) rather than the
	// header's slot, so the manifest's key version — the version that
	// wrapped the header's slot — may be lower than the unwrap's, never
	// higher. The header's commitment still binds the key.
	Rewrapped bool
}

// UnwrapFunc opens the header's key slot. It returns the data key and the
// associated data it used, which the manifest must agree with.
type UnwrapFunc func(h format.Header) (secret.Key, keys.AD, error)

// Object is an authenticated stored object, ready for reading.
type Object struct {
	Manifest *format.Manifest
	Header   format.Header
	Sizes    format.Sizes
	Pin      [32]byte

	name   string
	st     store.Store
	d      *derived
	segOff []uint64 // ciphertext offset of each segment
	segPT  []uint64 // plaintext offset of each segment
}

// PinError is returned when the stored header, manifest or footer differ
// from the catalog's pin. It unwraps to a format.CorruptError at LayerPin.
type PinError struct {
	Found [32]byte // pin of what the store holds
}

func (e *PinError) Error() string { return e.Unwrap().Error() }
func (e *PinError) Unwrap() error {
	return &format.CorruptError{Layer: format.LayerPin, Detail: "stored object differs from the catalog's pin"}
}

func readAll(ctx context.Context, st store.Store, name string, off, n int64) ([]byte, error) {
	rc, err := st.ReadRange(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, format.Corrupt(format.LayerSize, "object shorter than expected")
		}
		return nil, err
	}
	return b, nil
}

// readTail reads [off, stored) and proves the object ends there: it asks
// for one byte more, which a longer object would deliver.
func readTail(ctx context.Context, st store.Store, name string, off, stored int64) ([]byte, error) {
	rc, err := st.ReadRange(ctx, name, off, stored-off+1)
	if err != nil {
		if errors.Is(err, store.ErrInvalidRange) {
			return nil, format.Corrupt(format.LayerSize, "object shorter than expected")
		}
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, stored-off+1))
	if err != nil {
		return nil, err
	}
	switch {
	case int64(len(b)) < stored-off:
		return nil, format.Corrupt(format.LayerSize, "object shorter than expected")
	case int64(len(b)) > stored-off:
		return nil, format.Corrupt(format.LayerSize, "object longer than expected")
	}
	return b, nil
}

// Open reads and authenticates the header, manifest and footer of the
// object stored under name. No plaintext is released by Open.
func Open(ctx context.Context, st store.Store, name string, exp Expect, unwrap UnwrapFunc) (*Object, error) {
	stored := exp.StoredLen
	if stored == 0 {
		info, err := st.Stat(ctx, name)
		if err != nil {
			return nil, err
		}
		stored = info.Size
	}
	if stored < format.MinStored {
		return nil, format.Corrupt(format.LayerSize, "stored length %d below the minimum", stored)
	}
	if exp.WholeMax > 0 && stored <= exp.WholeMax && exp.ManifestOff > 0 {
		all, err := readTail(ctx, st, name, 0, stored)
		if err != nil {
			return nil, err
		}
		st = &loaded{name: name, b: all}
	}
	hb, err := readAll(ctx, st, name, 0, format.HeaderLen)
	if err != nil {
		return nil, err
	}
	h, err := format.ParseHeader(hb)
	if err != nil {
		return nil, err
	}
	var mct, fct []byte
	if exp.ManifestOff > 0 {
		if exp.ManifestOff < format.HeaderLen || exp.ManifestLen <= format.TagSize || exp.ManifestLen > stored ||
			exp.ManifestOff+exp.ManifestLen+format.FooterLen != stored {
			return nil, fmt.Errorf("the catalog's manifest offsets (%d, %d) do not fit the stored length %d", exp.ManifestOff, exp.ManifestLen, stored)
		}
		// Read whole manifest blocks (padding lies before the manifest), so
		// the request does not reveal the manifest's exact length.
		start := min(max(stored-format.FooterLen-int64(roundBlock(uint64(exp.ManifestLen))), format.HeaderLen), exp.ManifestOff)
		tail, err := readTail(ctx, st, name, start, stored)
		if err != nil {
			return nil, err
		}
		tail = tail[exp.ManifestOff-start:]
		mct, fct = tail[:exp.ManifestLen], tail[exp.ManifestLen:]
	} else {
		if fct, err = readTail(ctx, st, name, stored-format.FooterLen, stored); err != nil {
			return nil, err
		}
	}
	if exp.Pin != nil {
		if mct == nil {
			return nil, errors.New("a pinned read needs the catalog's manifest offsets")
		}
		got := format.Pin(hb, mct, fct)
		if subtle.ConstantTimeCompare(got[:], exp.Pin[:]) != 1 {
			return nil, &PinError{Found: got}
		}
	}
	dek, ad, err := unwrap(h)
	if err != nil {
		if errors.Is(err, keys.ErrUnavailable) {
			return nil, err
		}
		return nil, &format.CorruptError{Layer: format.LayerUnwrap, Detail: err.Error()}
	}
	if zero := dek.Use(func(b []byte) error {
		if subtle.ConstantTimeCompare(b, make([]byte, len(b))) == 1 {
			return errors.New("all-zero data key")
		}
		return nil
	}); zero != nil {
		dek.Wipe()
		return nil, format.Corrupt(format.LayerUnwrap, "%v", zero)
	}
	d, err := derive(dek)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(d.commit[:], h.Commit[:]) != 1 {
		dek.Wipe()
		return nil, format.Corrupt(format.LayerCommit, "data key does not match its commitment")
	}
	fplain, err := d.footer.Open(nil, zeroNonce, fct, hb)
	if err != nil {
		dek.Wipe()
		return nil, format.Corrupt(format.LayerFooter, "footer failed authentication")
	}
	foot, err := format.ParseFooter(fplain)
	if err != nil {
		dek.Wipe()
		return nil, err
	}
	if foot.ManifestOff+uint64(foot.ManifestLen)+format.FooterLen != uint64(stored) || foot.ManifestOff < format.HeaderLen {
		dek.Wipe()
		return nil, format.Corrupt(format.LayerSize, "footer offsets do not fit the stored length")
	}
	if mct == nil {
		if mct, err = readAll(ctx, st, name, int64(foot.ManifestOff), int64(foot.ManifestLen)); err != nil {
			dek.Wipe()
			return nil, err
		}
	} else if foot.ManifestOff != uint64(exp.ManifestOff) || uint64(foot.ManifestLen) != uint64(len(mct)) {
		dek.Wipe()
		return nil, format.Corrupt(format.LayerFooter, "footer disagrees with the catalog")
	}
	mplain, err := d.manifest.Open(nil, zeroNonce, mct, hb)
	if err != nil {
		dek.Wipe()
		return nil, format.Corrupt(format.LayerManifest, "manifest failed authentication")
	}
	m, err := format.ParseManifest(mplain)
	if err != nil {
		dek.Wipe()
		return nil, err
	}
	o := &Object{Manifest: m, Header: h, Pin: format.Pin(hb, mct, fct), name: name, st: st, d: d}
	if err := o.check(exp, ad, uint64(stored), len(mplain), foot); err != nil {
		dek.Wipe()
		return nil, err
	}
	return o, nil
}

func (o *Object) check(exp Expect, ad keys.AD, stored uint64, plainLen int, foot format.Footer) error {
	m := o.Manifest
	// The key slot's associated data and the manifest must name the same place.
	wantPurpose := keys.PurposeDataKey
	if m.Kind != format.KindData {
		wantPurpose = keys.PurposeSystemKey
	}
	kekOK := ad.KEKVersion == m.KeyVersion || exp.Rewrapped && m.Kind == format.KindData && m.KeyVersion < ad.KEKVersion
	if ad.Purpose != wantPurpose || ad.Repo != m.Repo || ad.Bucket != m.Bucket || !kekOK || ad.Object != m.Object {
		return format.Corrupt(format.LayerIdentity, "manifest identity differs from the key slot's")
	}
	if m.Repo != exp.Repo {
		return format.Corrupt(format.LayerIdentity, "object belongs to another repository")
	}
	name := format.StoreName(m.Object)
	if m.Kind == format.KindMarker {
		if m.Object != m.Repo {
			return format.Corrupt(format.LayerIdentity, "marker names another repository")
		}
		name = format.MarkerName(m.Repo)
	}
	if m.Object != exp.Object || name != o.name {
		return format.Corrupt(format.LayerIdentity, "object was written under another name")
	}
	e := exp.Identity
	if e.Kind != 0 && m.Kind != e.Kind {
		return format.Corrupt(format.LayerIdentity, "object is a %s, expected a %s", m.Kind, e.Kind)
	}
	if e.Kind == format.KindData && e.BucketName != "" {
		if m.Bucket != e.Bucket || m.BucketName != e.BucketName || m.Key != e.Key {
			return format.Corrupt(format.LayerIdentity, "object belongs to another bucket or key")
		}
		if e.ObjectVersion != 0 && m.ObjectVersion != e.ObjectVersion {
			return format.Corrupt(format.LayerIdentity, "object is version %d, expected %d", m.ObjectVersion, e.ObjectVersion)
		}
		if e.KeyVersion != 0 && m.KeyVersion != e.KeyVersion && !(exp.Rewrapped && m.KeyVersion < e.KeyVersion) {
			return format.Corrupt(format.LayerIdentity, "object key version differs")
		}
	}
	lens := make([]uint64, len(m.Segments))
	o.segOff = make([]uint64, len(m.Segments))
	o.segPT = make([]uint64, len(m.Segments))
	off, pt := uint64(format.HeaderLen), uint64(0)
	for i, s := range m.Segments {
		lens[i] = s.Len
		o.segOff[i], o.segPT[i] = off, pt
		off += format.SegmentCTLen(s.Len)
		pt += s.Len
	}
	sz := format.ComputeSizes(lens, plainLen)
	if sz.Stored != stored || sz.Padding != m.Padding || sz.ManifestOff != foot.ManifestOff || sz.ManifestLen != uint64(foot.ManifestLen) {
		return format.Corrupt(format.LayerSize, "stored length %d does not follow the size rule (%d)", stored, sz.Stored)
	}
	o.Sizes = sz
	return nil
}

func roundBlock(n uint64) uint64 {
	return format.ManifestBlk * ((n + format.ManifestBlk - 1) / format.ManifestBlk)
}

// Wipe forgets the object's data key.
func (o *Object) Wipe() { o.d.dek.Wipe() }

type openJob struct {
	seg    int
	chunk0 uint64 // the piece's first chunk within its segment
	final  bool   // the piece ends its segment
	segBuf
	err  error
	done chan struct{}
	// The piece's ciphertext where the store holds it (a view), or nil:
	// then it was read into ct. viewEnd is where the view ends in the
	// store's range.
	view    []byte
	release func()
	viewEnd int64
}

// viewMin is the smallest piece of ciphertext read through a view: for
// fewer pages, mapping and unmapping them costs more than copying.
const viewMin = 1 << 20

// ctViewer is a store reader that can hand over ciphertext without
// copying it into the process (a local store's mapped file). Faulted
// tells why reading a view that ended at offset end of the range faulted:
// io.ErrUnexpectedEOF if the object now ends before it, else the I/O
// error reading it met.
type ctViewer interface {
	View(n int) (view []byte, release func(), err error)
	Faulted(end int64) error
}

// unview ends j's view, if it has one.
func (j *openJob) unview() {
	if j.release != nil {
		j.release()
	}
	j.view, j.release = nil, nil
}

// openView opens j's piece from its view. The view is the provider's
// memory, which may change while it is read, so each chunk is first
// copied into j's own ciphertext buffer (a 64 KiB piece of it, which
// stays in cache) and authenticated and decrypted from there: every
// byte is read from the view once, and what is released is what was
// authenticated. Reading a view faults where its file was cut short, or
// where a page could not be read in: the fault fails the piece as a
// truncated object, or with the I/O error, as v tells.
func openView(aead cipher.AEAD, v ctViewer, j *openJob) (pt []byte, err error) {
	defer j.unview()
	faulted := readView(j.view, func() {
		dst, ct, scratch := j.pt[:0], j.view, j.ct[:cap(j.ct)]
		for i := uint64(0); len(ct) > 0; i++ {
			n := min(len(ct), format.ChunkCTSize)
			c := scratch[:copy(scratch[:n], ct[:n])]
			if dst, err = stream.OpenChunk(aead, dst, c, j.chunk0+i, j.final && n == len(ct)); err != nil {
				pt, err = dst, format.Corrupt(format.LayerChunk, "segment %d: %v", j.seg, err)
				return
			}
			ct = ct[n:]
		}
		pt = dst
	})
	if !faulted {
		return pt, err
	}
	if err = v.Faulted(j.viewEnd); errors.Is(err, io.ErrUnexpectedEOF) {
		return j.pt[:0], format.Corrupt(format.LayerSize, "object truncated in segment %d", j.seg)
	}
	return j.pt[:0], fmt.Errorf("reading segment %d: %w", j.seg, err)
}

// WriteTo decrypts the whole object into w, segments in parallel and in
// order, then checks the padding. A chunk is written only after its tag
// verified; a failure stops the output there and returns the error.
// Segments longer than DefaultSegmentSize (an S3 multipart upload makes
// one of each part, up to 5 GiB) are opened in pieces of that size, so
// memory does not depend on how the object was written.
func (o *Object) WriteTo(ctx context.Context, w io.Writer) (int64, error) {
	// One request for everything after the header, so the request does not
	// reveal where the segments end.
	rc, err := o.st.ReadRange(ctx, o.name, format.HeaderLen, int64(o.Sizes.Stored)-format.HeaderLen)
	if err != nil {
		return 0, err
	}
	defer rc.Close()

	workers := runtime.GOMAXPROCS(0)
	inflight := workers + 2
	const pieceChunks = DefaultSegmentSize / format.ChunkSize
	pieces := uint64(0)
	piece := 0 // the largest piece: what each buffer must hold
	for _, s := range o.Manifest.Segments {
		pieces += (format.Chunks(s.Len) + pieceChunks - 1) / pieceChunks
		piece = max(piece, int(min(s.Len, DefaultSegmentSize)))
	}
	// Pieces use the sealer's off-heap buffers, at most one per piece and
	// inflight in all. The reader takes a new one only when none is idle,
	// so the second is mapped while the first piece is being opened.
	first := &openJob{}
	if err := first.take(piece, nil); err != nil {
		return 0, err
	}
	limit := int(max(1, min(pieces, uint64(inflight))))
	jobs := []*openJob{first} // owned by the reader goroutine until it closes order
	free := make(chan *openJob, limit)
	free <- first
	var running sync.WaitGroup // the reader and the workers
	finished := false
	defer func() {
		releaseWhenStopped(finished, &running, func() {
			for _, j := range jobs {
				j.give()
			}
		})
	}()
	stop := make(chan struct{})
	defer close(stop)
	// next is the reader's next buffer (nextBuf): a new one up to the
	// limit.
	next := func() (*openJob, error) {
		return nextBuf(free, stop, func() (*openJob, bool, error) {
			if len(jobs) == limit {
				return nil, false, nil
			}
			j := &openJob{}
			if err := j.take(piece, nil); err != nil {
				return nil, false, err
			}
			jobs = append(jobs, j)
			return j, true, nil
		})
	}
	work := make(chan *openJob, inflight)
	order := make(chan *openJob, inflight)
	viewer, _ := rc.(ctViewer)
	running.Add(workers + 1)
	for i := 0; i < workers; i++ {
		go func() {
			defer running.Done()
			for j := range work {
				s := o.Manifest.Segments[j.seg]
				aead, err := stream.SegmentAEAD(o.d.dek, s.Salt[:])
				switch {
				case err != nil:
					j.unview()
					err = format.Corrupt(format.LayerChunk, "segment %d: %v", j.seg, err)
				case j.release != nil:
					j.pt, err = openView(aead, viewer, j)
				default:
					if j.pt, err = openPiece(aead, j.pt[:0], j.ct, j.chunk0, j.final); err != nil {
						err = format.Corrupt(format.LayerChunk, "segment %d: %v", j.seg, err)
					}
				}
				j.err = err
				close(j.done)
			}
		}()
	}
	var readErr error
	go func() {
		var at int64      // the reader's offset in rc
		mapping := viewer // until the store cannot map the object
		defer running.Done()
		defer close(order)
		defer close(work)
		for i, s := range o.Manifest.Segments {
			chunks := format.Chunks(s.Len)
			for c := uint64(0); c < chunks; c += pieceChunks {
				j, err := next()
				if err != nil {
					readErr = err
					return
				} else if j == nil { // stopped
					return
				}
				n := min(pieceChunks, chunks-c)
				ptLen := min(n*format.ChunkSize, s.Len-c*format.ChunkSize)
				ctLen := int(ptLen + n*format.TagSize)
				if mapping != nil && ctLen >= viewMin {
					view, release, err := mapping.View(ctLen)
					switch {
					case len(view) == ctLen:
						j.view, j.release, j.viewEnd = view, release, at+int64(ctLen)
					case len(view) > 0:
						release()
						readErr = format.Corrupt(format.LayerSize, "object truncated in segment %d", i)
						return
					case errors.Is(err, regfile.ErrNotMappable):
						mapping = nil // read the rest
					case err == io.EOF:
						readErr = format.Corrupt(format.LayerSize, "object truncated in segment %d", i)
						return
					default:
						readErr = err
						return
					}
				}
				if j.view == nil {
					j.ct = j.ct[:ctLen]
					if _, err := io.ReadFull(rc, j.ct); err != nil {
						if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
							err = format.Corrupt(format.LayerSize, "object truncated in segment %d", i)
						}
						readErr = err
						return
					}
				}
				at += int64(ctLen)
				j.seg, j.chunk0, j.final, j.err, j.done = i, c, c+n == chunks, nil, make(chan struct{})
				select {
				case order <- j:
				case <-stop:
					j.unview()
					return
				}
				work <- j
			}
		}
	}()
	var written int64
	for j := range order {
		<-j.done
		if j.err != nil {
			return written, j.err
		}
		n, err := w.Write(j.pt)
		written += int64(n)
		if err != nil {
			return written, err
		}
		free <- j
	}
	if readErr != nil {
		return written, readErr
	}
	// The reader closed order: every job is idle.
	finished = true
	// Padding: the rest of the body must be the padding keystream, made
	// a piece ahead of the reads (padAhead). The stored padding is read
	// into a ciphertext buffer, idle now (at least 256 KiB), so checking
	// it makes no garbage.
	got := jobs[0].ct[:cap(jobs[0].ct)]
	if len(got) == 0 {
		got = make([]byte, min(o.Sizes.Padding, 64<<10))
	}
	err = padAhead(o.d.padStream(), o.Sizes.Padding, func(want []byte) error {
		for len(want) > 0 {
			n := min(len(want), len(got))
			if _, err := io.ReadFull(rc, got[:n]); err != nil {
				return format.Corrupt(format.LayerSize, "object truncated in padding")
			}
			if !bytes.Equal(got[:n], want[:n]) {
				return format.Corrupt(format.LayerPadding, "padding altered")
			}
			want = want[n:]
		}
		return nil
	})
	return written, err
}

// Range returns a reader of n plaintext bytes starting at off (n < 0: to
// the end). It fetches and decrypts only the chunks the range covers.
func (o *Object) Range(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	size := int64(o.Manifest.Length)
	if off < 0 || off > size {
		return nil, fmt.Errorf("range start %d outside object of %d bytes: %w", off, size, store.ErrInvalidRange)
	}
	if n < 0 || n > size-off {
		n = size - off
	}
	return &rangeReader{ctx: ctx, o: o, off: uint64(off), end: uint64(off + n), seg: -1}, nil
}

type rangeReader struct {
	ctx      context.Context
	o        *Object
	off, end uint64 // plaintext positions still to deliver
	seg      int
	rc       io.ReadCloser
	aead     cipher.AEAD
	chunk    uint64 // next chunk index within seg
	nchunks  uint64
	ct, pt   []byte
	buf      []byte // undelivered plaintext
	err      error
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.off >= r.end {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// next decrypts the chunk containing r.off into r.buf.
func (r *rangeReader) next() error {
	o := r.o
	segs := o.Manifest.Segments
	// Find the segment holding r.off.
	i := r.seg
	if i < 0 || r.off >= o.segPT[i]+segs[i].Len {
		i = 0
		for i+1 < len(segs) && o.segPT[i+1] <= r.off {
			i++
		}
		for segs[i].Len == 0 && i+1 < len(segs) {
			i++
		}
		if r.rc != nil {
			r.rc.Close()
			r.rc = nil
		}
		aead, err := stream.SegmentAEAD(o.d.dek, segs[i].Salt[:])
		if err != nil {
			return err
		}
		r.seg, r.aead = i, aead
		r.nchunks = format.Chunks(segs[i].Len)
		inSeg := r.off - o.segPT[i]
		r.chunk = inSeg / format.ChunkSize
		last := (min(r.end, o.segPT[i]+segs[i].Len) - o.segPT[i] + format.ChunkSize - 1) / format.ChunkSize
		last = max(last, r.chunk+1)
		ctStart := o.segOff[i] + r.chunk*format.ChunkCTSize
		ctEnd := min(o.segOff[i]+last*format.ChunkCTSize, o.segOff[i]+format.SegmentCTLen(segs[i].Len))
		rc, err := o.st.ReadRange(r.ctx, o.name, int64(ctStart), int64(ctEnd-ctStart))
		if err != nil {
			return err
		}
		r.rc = rc
		if r.ct == nil {
			r.ct = make([]byte, format.ChunkCTSize)
			r.pt = make([]byte, 0, format.ChunkSize)
		}
	}
	s := segs[i]
	ctLen := uint64(format.ChunkCTSize)
	if r.chunk == r.nchunks-1 {
		ctLen = format.SegmentCTLen(s.Len) - r.chunk*format.ChunkCTSize
	}
	if _, err := io.ReadFull(r.rc, r.ct[:ctLen]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return format.Corrupt(format.LayerSize, "object truncated in segment %d", i)
		}
		return err
	}
	pt, err := stream.OpenChunk(r.aead, r.pt[:0], r.ct[:ctLen], r.chunk, r.chunk == r.nchunks-1)
	if err != nil {
		return format.Corrupt(format.LayerChunk, "segment %d chunk %d: %v", i, r.chunk, err)
	}
	chunkStart := o.segPT[i] + r.chunk*format.ChunkSize
	lo := r.off - chunkStart
	hi := min(uint64(len(pt)), r.end-chunkStart)
	r.buf = pt[lo:hi]
	r.off = chunkStart + hi
	r.chunk++
	return nil
}

// openPiece authenticates and decrypts consecutive chunks of a segment,
// the first of them chunk chunk0, appending the plaintext to dst; final
// says that the last of them ends the segment.
func openPiece(aead cipher.AEAD, dst, ct []byte, chunk0 uint64, final bool) ([]byte, error) {
	var err error
	for i := uint64(0); len(ct) > 0; i++ {
		n := min(len(ct), format.ChunkCTSize)
		if dst, err = stream.OpenChunk(aead, dst, ct[:n], chunk0+i, final && n == len(ct)); err != nil {
			return dst, err
		}
		ct = ct[n:]
	}
	return dst, nil
}

func (r *rangeReader) Close() error {
	if r.rc != nil {
		return r.rc.Close()
	}
	return nil
}
