package object

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/stream"
)

// ErrSegmentLength: a segment's plaintext source yielded fewer or more
// bytes than the segment's declared length; nothing of it may be used.
var ErrSegmentLength = errors.New("segment body length differs from its declared length")

// Multipart seals one object whose plaintext arrives in parts, in any
// order, perhaps over several processes: an S3 multipart upload
// (docs/design.md §3, "S3 multipart"). The data key is drawn once, when
// the upload is created; its header is known then and written before the
// first segment. Each part becomes one segment, sealed as it arrives under
// the key of a fresh random salt, so a part sent again gets a fresh key
// and no (key, nonce) pair ever repeats. The manifest and footer are
// sealed at completion, when the parts and their order are known.
//
// The stored layout is exactly Sealer's (docs/format.md, "Stored
// object"): a reader cannot tell how an object was written.
type Multipart struct {
	d      *derived
	header []byte
	hdr    format.Header
}

// NewMultipart draws a fresh data key from rnd (crypto/rand if nil),
// wraps it with wrap and builds the header. The caller keeps the wrapped
// key (Header gives it back) to resume the upload in another process.
func NewMultipart(wrap WrapFunc, rnd io.Reader) (*Multipart, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	dek, err := secret.NewFrom(rnd)
	if err != nil {
		return nil, err
	}
	d, err := derive(dek)
	if err != nil {
		dek.Wipe()
		return nil, err
	}
	alg, wrapped, err := wrap(dek)
	if err != nil {
		dek.Wipe()
		return nil, fmt.Errorf("wrapping data key: %w", err)
	}
	h := format.Header{Alg: alg, Wrapped: wrapped, Commit: d.commit}
	hb, err := h.Marshal()
	if err != nil {
		dek.Wipe()
		return nil, err
	}
	return &Multipart{d: d, header: hb, hdr: h}, nil
}

// ResumeMultipart continues an upload with its data key, unwrapped from
// the upload's record, and the header made when it was created. The key
// must match the header's commitment, so no other key can ever seal a
// segment of this object.
func ResumeMultipart(dek secret.Key, h format.Header) (*Multipart, error) {
	hb, err := h.Marshal()
	if err != nil {
		return nil, err
	}
	d, err := derive(dek)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(d.commit[:], h.Commit[:]) != 1 {
		return nil, format.Corrupt(format.LayerCommit, "data key does not match the upload's commitment")
	}
	return &Multipart{d: d, header: hb, hdr: h}, nil
}

// Header returns the object's header: the first format.HeaderLen bytes
// of the stored object.
func (m *Multipart) Header() format.Header { return m.hdr }

// HeaderBytes returns the encoded header.
func (m *Multipart) HeaderBytes() []byte { return append([]byte(nil), m.header...) }

// Wipe forgets the data key.
func (m *Multipart) Wipe() { m.d.dek.Wipe() }

// Segment returns a reader of the ciphertext of one segment whose
// plaintext is the next size bytes of src. The segment is sealed under the
// key of a fresh salt from rnd (crypto/rand if nil) chunk by chunk as it
// is read, so memory does not depend on size. The reader fails with
// ErrSegmentLength if src ends early or holds more than size bytes (it
// reads one byte past size to tell), and passes on src's own errors.
func (m *Multipart) Segment(src io.Reader, size int64, rnd io.Reader) (*SegmentReader, error) {
	if size < 0 || uint64(size) > format.MaxSegmentLen {
		return nil, fmt.Errorf("segment length %d out of range", size)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	r := &SegmentReader{src: src, size: uint64(size), chunks: format.Chunks(uint64(size))}
	if _, err := io.ReadFull(rnd, r.salt[:]); err != nil {
		return nil, fmt.Errorf("reading segment salt: %w", err)
	}
	aead, err := stream.SegmentAEAD(m.d.dek, r.salt[:])
	if err != nil {
		return nil, err
	}
	r.aead = aead
	return r, nil
}

// SegmentReader is one segment's ciphertext, sealed as it is read.
type SegmentReader struct {
	src    io.Reader
	aead   cipher.AEAD
	salt   [format.SaltLen]byte
	size   uint64 // plaintext length
	chunks uint64
	idx    uint64 // next chunk to seal
	pt, ct []byte
	out    []byte // sealed, not yet read
	err    error
}

// Salt returns the segment's salt, which the manifest lists.
func (r *SegmentReader) Salt() [format.SaltLen]byte { return r.salt }

// Len returns the segment's ciphertext length.
func (r *SegmentReader) Len() int64 { return int64(format.SegmentCTLen(r.size)) }

// Read implements io.Reader.
func (r *SegmentReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.idx == r.chunks {
			r.err = io.EOF
			continue
		}
		r.err = r.next()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// next reads and seals chunk r.idx.
func (r *SegmentReader) next() error {
	if r.pt == nil {
		r.pt = make([]byte, format.ChunkSize)
		r.ct = make([]byte, 0, format.ChunkCTSize)
	}
	n := min(format.ChunkSize, r.size-r.idx*format.ChunkSize)
	if _, err := io.ReadFull(r.src, r.pt[:n]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: the body ended before %d bytes", ErrSegmentLength, r.size)
		}
		return err
	}
	final := r.idx == r.chunks-1
	if final {
		// The body must end here.
		var one [1]byte
		switch _, err := io.ReadFull(r.src, one[:]); {
		case err == nil:
			return fmt.Errorf("%w: the body is longer than %d bytes", ErrSegmentLength, r.size)
		case err != io.EOF:
			return err
		}
	}
	r.out = stream.SealChunk(r.aead, r.ct[:0], r.pt[:n], r.idx, final)
	clear(r.pt[:n])
	r.idx++
	return nil
}

// Trailer seals the manifest and footer of the object made of segs, in
// order, with identity id and attributes attrs, and describes the object
// (sizes, pin). Result.Sizes gives the padding that goes between the last
// segment and the manifest (Padding reads it).
//
// Sealing is deterministic: the same identity, attributes and segments
// give the same bytes. A completion that was interrupted is retried by
// calling Trailer again with what was recorded the first time, which
// reseals the identical manifest and footer — the only second use of
// their zero nonces that format.md's writer rule allows. The caller must
// never call Trailer for one data key with different arguments.
func (m *Multipart) Trailer(id Identity, attrs Attrs, segs []format.Segment) (*Result, error) {
	if attrs.MetaAtEnd != nil {
		return nil, errors.New("multipart trailer: metadata must be known")
	}
	s := &Sealer{id: id, attrs: attrs, d: m.d, header: m.header, hdr: m.hdr}
	return s.trailer(segs)
}

// Padding returns the object's padding as an io.ReaderAt: byte i is byte
// i of the padding keystream (docs/format.md, "Padding"), so any part of
// the padding can be produced, and produced again, without the rest.
func (m *Multipart) Padding() io.ReaderAt { return padReaderAt{m.d.padKey} }

type padReaderAt struct{ block cipher.Block }

// ReadAt fills p with the keystream from off. CTR's counter block is the
// big-endian block index, so the stream can start at any block.
func (p padReaderAt) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("padding: negative offset %d", off)
	}
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(off)/aes.BlockSize)
	s := cipher.NewCTR(p.block, iv[:])
	if skip := off % aes.BlockSize; skip > 0 {
		var junk [aes.BlockSize]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	fillPadding(s, b)
	return len(b), nil
}
