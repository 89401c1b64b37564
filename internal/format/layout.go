package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"

	"github.com/holdfast/holdfast/internal/keys"
)

// Version is the storage format version this package writes and reads.
const Version = 1

// Layout constants (docs/format.md).
const (
	Magic       = "HOLDFAST"
	HeaderLen   = 8 + 1 + 1 + 2 + keys.MaxWrappedLen + 32 // 156
	FooterLen   = 12 + 16                                 // 28
	ChunkSize   = 64 << 10
	TagSize     = 16
	ChunkCTSize = ChunkSize + TagSize
	SaltLen     = 32
	MinStored   = 4096
	ManifestBlk = 4096
	MaxKeyLen   = 1024
	MaxSegments = 1 << 20

	// Limits on the variable manifest fields. They bound the manifest so
	// that the size rule can budget for the largest one: metadata never
	// changes an object's stored size.
	MaxBucketLen      = 63
	MaxContentTypeLen = 256
	MaxMetaEncoded    = 2304 // Σ (4 + |name| + |value|) over the pairs
	MaxSegmentLen     = 1 << 40

	// ManifestBase is the largest manifest plaintext without its segment
	// table: every fixed field plus every variable field at its limit.
	ManifestBase = 2 + 3*16 + 4 + (2 + MaxBucketLen) + (2 + MaxKeyLen) + 8 + 8 + (2 + MaxContentTypeLen) + 2 + MaxMetaEncoded + 8 + 4 + 8
)

// Kind is what a stored object holds.
type Kind uint8

const (
	KindData    Kind = 1
	KindJournal Kind = 2
	KindBackup  Kind = 3
	KindMarker  Kind = 4
	// KindCheckpoint is an audit checkpoint (docs/format.md, "Audit
	// checkpoint (kind 5)"): a copy of a checkpoint line of the audit log.
	KindCheckpoint Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindJournal:
		return "key journal entry"
	case KindBackup:
		return "catalog backup"
	case KindMarker:
		return "repository marker"
	case KindCheckpoint:
		return "audit checkpoint"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Layer names which check rejected a stored object. Test vectors name the
// layer that must reject them; errors carry it for the log.
type Layer string

const (
	LayerHeader   Layer = "header"
	LayerUnwrap   Layer = "key unwrap"
	LayerCommit   Layer = "key commitment"
	LayerFooter   Layer = "footer"
	LayerManifest Layer = "manifest"
	LayerIdentity Layer = "identity"
	LayerSize     Layer = "size"
	LayerChunk    Layer = "payload chunk"
	LayerPadding  Layer = "padding"
	LayerPin      Layer = "pin"
)

// ErrCorrupt is wrapped by every rejection of stored bytes. From outside
// all such failures look alike; the Layer says which check failed.
var ErrCorrupt = errors.New("stored object failed authentication")

// CorruptError says which layer rejected a stored object.
type CorruptError struct {
	Layer  Layer
	Detail string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: %s: %s", ErrCorrupt, e.Layer, e.Detail)
}
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Corrupt returns a *CorruptError.
func Corrupt(l Layer, format string, a ...any) error {
	return &CorruptError{Layer: l, Detail: fmt.Sprintf(format, a...)}
}

// LayerOf returns the layer of a CorruptError in err's chain, or "".
func LayerOf(err error) Layer {
	var ce *CorruptError
	if errors.As(err, &ce) {
		return ce.Layer
	}
	return ""
}

// Header is the fixed 156-byte plaintext header.
type Header struct {
	Alg     keys.Alg
	Wrapped []byte   // keys.WrappedLen(Alg) bytes
	Commit  [32]byte // commitment of the DEK
}

// Marshal encodes h.
func (h Header) Marshal() ([]byte, error) {
	n := keys.WrappedLen(h.Alg)
	if n == 0 || len(h.Wrapped) != n {
		return nil, fmt.Errorf("header: wrapped key of %d bytes for alg %d", len(h.Wrapped), h.Alg)
	}
	b := make([]byte, HeaderLen)
	copy(b, Magic)
	b[8] = Version
	b[9] = byte(h.Alg)
	copy(b[12:], h.Wrapped)
	copy(b[12+keys.MaxWrappedLen:], h.Commit[:])
	return b, nil
}

// ParseHeader decodes exactly HeaderLen bytes.
func ParseHeader(b []byte) (Header, error) {
	if len(b) != HeaderLen {
		return Header{}, Corrupt(LayerHeader, "header is %d bytes, want %d", len(b), HeaderLen)
	}
	if string(b[:8]) != Magic {
		return Header{}, Corrupt(LayerHeader, "bad magic")
	}
	if b[8] != Version {
		return Header{}, Corrupt(LayerHeader, "unsupported format version %d", b[8])
	}
	alg := keys.Alg(b[9])
	n := keys.WrappedLen(alg)
	if n == 0 {
		return Header{}, Corrupt(LayerHeader, "unknown wrap algorithm %d", b[9])
	}
	if b[10] != 0 || b[11] != 0 {
		return Header{}, Corrupt(LayerHeader, "reserved bytes not zero")
	}
	slot := b[12 : 12+keys.MaxWrappedLen]
	for _, c := range slot[n:] {
		if c != 0 {
			return Header{}, Corrupt(LayerHeader, "unused key slot bytes not zero")
		}
	}
	h := Header{Alg: alg, Wrapped: bytes.Clone(slot[:n])}
	copy(h.Commit[:], b[12+keys.MaxWrappedLen:])
	return h, nil
}

// Segment is one manifest segment entry.
type Segment struct {
	Len  uint64
	Salt [SaltLen]byte
}

// Manifest is the decrypted manifest (docs/format.md, "Manifest").
type Manifest struct {
	Kind          Kind
	Repo          keys.ID
	Object        keys.ID
	Bucket        keys.ID
	KeyVersion    uint32
	BucketName    string
	Key           string
	ObjectVersion uint64
	Modified      uint64 // unix nanoseconds
	ContentType   string
	Meta          []MetaPair // strictly increasing by Name
	Length        uint64
	Segments      []Segment
	Padding       uint64
}

// MetaPair is one user metadata entry.
type MetaPair struct{ Name, Value string }

const manifestVersion = 1

// Marshal encodes m after checking it is valid.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 128+len(m.BucketName)+len(m.Key)+len(m.ContentType)+len(m.Segments)*40)
	b = append(b, manifestVersion, byte(m.Kind))
	b = append(b, m.Repo[:]...)
	b = append(b, m.Object[:]...)
	b = append(b, m.Bucket[:]...)
	b = binary.BigEndian.AppendUint32(b, m.KeyVersion)
	b = appendStr(b, m.BucketName)
	b = appendStr(b, m.Key)
	b = binary.BigEndian.AppendUint64(b, m.ObjectVersion)
	b = binary.BigEndian.AppendUint64(b, m.Modified)
	b = appendStr(b, m.ContentType)
	b = appendMeta(b, m.Meta)
	b = binary.BigEndian.AppendUint64(b, m.Length)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Segments)))
	for _, s := range m.Segments {
		b = binary.BigEndian.AppendUint64(b, s.Len)
		b = append(b, s.Salt[:]...)
	}
	b = binary.BigEndian.AppendUint64(b, m.Padding)
	return b, nil
}

// ManifestPlainLen returns the encoded length of m without encoding it.
func (m *Manifest) PlainLen() int {
	n := 2 + 16*3 + 4 + 2 + len(m.BucketName) + 2 + len(m.Key) + 8 + 8 + 2 + len(m.ContentType) + 2
	for _, p := range m.Meta {
		n += 4 + len(p.Name) + len(p.Value)
	}
	return n + 8 + 4 + len(m.Segments)*(8+SaltLen) + 8
}

func (m *Manifest) validate() error {
	if m.Kind < KindData || m.Kind > KindCheckpoint {
		return Corrupt(LayerManifest, "unknown kind %d", m.Kind)
	}
	if m.Kind != KindData {
		if m.Bucket != (keys.ID{}) || m.BucketName != "" || m.Key != "" || m.ObjectVersion != 1 {
			return Corrupt(LayerManifest, "system object with a logical name")
		}
	} else if m.ObjectVersion == 0 {
		return Corrupt(LayerManifest, "object version zero")
	}
	if len(m.Key) > MaxKeyLen || len(m.BucketName) > MaxBucketLen || len(m.ContentType) > MaxContentTypeLen {
		return Corrupt(LayerManifest, "bucket, key or content type longer than allowed")
	}
	if !utf8.ValidString(m.BucketName) || !utf8.ValidString(m.Key) || !utf8.ValidString(m.ContentType) {
		return Corrupt(LayerManifest, "name is not valid UTF-8")
	}
	metaLen := 0
	for i, p := range m.Meta {
		metaLen += 4 + len(p.Name) + len(p.Value)
		if !utf8.ValidString(p.Name) || !utf8.ValidString(p.Value) {
			return Corrupt(LayerManifest, "metadata is not valid UTF-8")
		}
		if i > 0 && !(m.Meta[i-1].Name < p.Name) {
			return Corrupt(LayerManifest, "metadata not strictly ordered")
		}
	}
	if metaLen > MaxMetaEncoded {
		return Corrupt(LayerManifest, "metadata is %d bytes encoded, more than %d", metaLen, MaxMetaEncoded)
	}
	if len(m.Segments) == 0 || len(m.Segments) > MaxSegments {
		return Corrupt(LayerManifest, "%d segments", len(m.Segments))
	}
	var total uint64
	salts := make(map[[SaltLen]byte]struct{}, len(m.Segments))
	for i, s := range m.Segments {
		if s.Len == 0 && len(m.Segments) > 1 {
			return Corrupt(LayerManifest, "empty segment %d in a multi-segment object", i)
		}
		if s.Len > MaxSegmentLen {
			return Corrupt(LayerManifest, "segment %d too long", i)
		}
		if _, dup := salts[s.Salt]; dup {
			return Corrupt(LayerManifest, "segment %d repeats a salt", i)
		}
		salts[s.Salt] = struct{}{}
		total += s.Len
	}
	if total != m.Length {
		return Corrupt(LayerManifest, "segment lengths sum to %d, length says %d", total, m.Length)
	}
	return nil
}

// ParseManifest decodes a manifest plaintext.
func ParseManifest(b []byte) (*Manifest, error) {
	r := reader{b: b}
	if v := r.u8(); v != manifestVersion {
		if r.err != nil {
			return nil, Corrupt(LayerManifest, "truncated")
		}
		return nil, Corrupt(LayerManifest, "unsupported manifest version %d", v)
	}
	m := &Manifest{}
	m.Kind = Kind(r.u8())
	r.id(&m.Repo)
	r.id(&m.Object)
	r.id(&m.Bucket)
	m.KeyVersion = r.u32()
	m.BucketName = r.str()
	m.Key = r.str()
	m.ObjectVersion = r.u64()
	m.Modified = r.u64()
	m.ContentType = r.str()
	m.Meta = r.meta()
	m.Length = r.u64()
	ns := int(r.u32())
	if r.err == nil && ns > r.remaining()/(8+SaltLen) {
		return nil, Corrupt(LayerManifest, "segment count %d exceeds the manifest", ns)
	}
	m.Segments = make([]Segment, ns)
	for i := range m.Segments {
		m.Segments[i].Len = r.u64()
		r.bytes(m.Segments[i].Salt[:])
	}
	m.Padding = r.u64()
	if r.err != nil {
		return nil, Corrupt(LayerManifest, "truncated")
	}
	if r.remaining() != 0 {
		return nil, Corrupt(LayerManifest, "%d trailing bytes", r.remaining())
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Chunks returns the number of chunks of a segment of n plaintext bytes.
func Chunks(n uint64) uint64 {
	if n == 0 {
		return 1
	}
	return (n + ChunkSize - 1) / ChunkSize
}

// SegmentCTLen is the ciphertext length of a segment of n plaintext bytes.
func SegmentCTLen(n uint64) uint64 { return n + TagSize*Chunks(n) }

// Padme rounds L up as the Padmé scheme does.
func Padme(L uint64) uint64 {
	if L < 2 {
		return L
	}
	e := uint64(bits.Len64(L) - 1) // floor(log2 L)
	s := uint64(bits.Len64(e))     // floor(log2 E) + 1
	z := e - s
	mask := uint64(1)<<z - 1
	return (L + mask) &^ mask
}

// Sizes is the size arithmetic of one stored object.
type Sizes struct {
	Body        uint64 // header + segment ciphertexts
	ManifestOff uint64 // = Body + Padding
	ManifestLen uint64
	Padding     uint64
	Stored      uint64 // T
}

// ComputeSizes applies the size rule to segment plaintext lengths and the
// manifest plaintext length.
func ComputeSizes(segLens []uint64, manifestPlain int) Sizes {
	var s uint64
	for _, n := range segLens {
		s += SegmentCTLen(n)
	}
	m := uint64(manifestPlain) + TagSize
	u := HeaderLen + s + FooterLen + ManifestBudget(len(segLens))
	t := max(uint64(MinStored), Padme(u))
	pad := t - (HeaderLen + s + m + FooterLen)
	return Sizes{Body: HeaderLen + s, ManifestOff: HeaderLen + s + pad, ManifestLen: m, Padding: pad, Stored: t}
}

// ManifestBudget is the room the size rule sets aside for the manifest of
// an object of nseg segments: the largest possible manifest ciphertext,
// rounded up to whole 4 KiB blocks. Every real manifest fits, so the
// padding is never negative and metadata never changes the stored size.
func ManifestBudget(nseg int) uint64 {
	max := uint64(ManifestBase) + uint64(nseg)*(8+SaltLen) + TagSize
	return ManifestBlk * ((max + ManifestBlk - 1) / ManifestBlk)
}

// Footer is the decrypted footer.
type Footer struct {
	ManifestOff uint64
	ManifestLen uint32
}

// FooterPlainLen is the footer plaintext length.
const FooterPlainLen = 12

// Marshal encodes f.
func (f Footer) Marshal() []byte {
	b := binary.BigEndian.AppendUint64(nil, f.ManifestOff)
	return binary.BigEndian.AppendUint32(b, f.ManifestLen)
}

// ParseFooter decodes a footer plaintext.
func ParseFooter(b []byte) (Footer, error) {
	if len(b) != FooterPlainLen {
		return Footer{}, Corrupt(LayerFooter, "footer plaintext is %d bytes", len(b))
	}
	return Footer{ManifestOff: binary.BigEndian.Uint64(b), ManifestLen: binary.BigEndian.Uint32(b[8:])}, nil
}

// Pin computes the catalog pin of a stored object.
func Pin(header, manifest, footer []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("holdfast/v1/pin"))
	h.Write(header)
	h.Write(manifest)
	h.Write(footer)
	var p [32]byte
	h.Sum(p[:0])
	return p
}

// StoreName is the store name of an object id.
func StoreName(id keys.ID) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 32)
	for i, c := range id {
		b[2*i] = hex[c>>4]
		b[2*i+1] = hex[c&15]
	}
	return string(b)
}

// ParseStoreName returns the object id of a data or system object name, or
// false for any other name.
func ParseStoreName(name string) (keys.ID, bool) {
	var id keys.ID
	if len(name) != 32 {
		return id, false
	}
	for i := 0; i < 32; i++ {
		c := name[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		default:
			return id, false
		}
		id[i/2] |= v << (4 * (1 - uint(i%2)))
	}
	return id, true
}

// appendMeta encodes metadata pairs: a u16 count, then name and value.
func appendMeta(b []byte, meta []MetaPair) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(meta)))
	for _, p := range meta {
		b = appendStr(b, p.Name)
		b = appendStr(b, p.Value)
	}
	return b
}

// appendBytes16 encodes a u16 length and the bytes.
func appendBytes16(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// reader is a bounds-checked decoder; after the first error every read
// returns zero and err stays set.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = errors.New("truncated")
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}
func (r *reader) remaining() int { return len(r.b) - r.off }
func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}
func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}
func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}
func (r *reader) bytes(dst []byte) {
	if p := r.take(len(dst)); p != nil {
		copy(dst, p)
	}
}
func (r *reader) id(dst *keys.ID) { r.bytes(dst[:]) }

// meta reads what appendMeta wrote.
func (r *reader) meta() []MetaPair {
	n := int(r.u16())
	if r.err == nil && n > r.remaining()/4 {
		r.err = errors.New("metadata count exceeds the data")
		return nil
	}
	var ps []MetaPair
	for i := 0; i < n && r.err == nil; i++ {
		ps = append(ps, MetaPair{Name: r.str(), Value: r.str()})
	}
	return ps
}

// bytes16 reads what appendBytes16 wrote.
func (r *reader) bytes16() []byte {
	if p := r.take(int(r.u16())); p != nil {
		return append([]byte(nil), p...)
	}
	return nil
}
func (r *reader) str() string {
	n := int(r.u16())
	if p := r.take(n); p != nil {
		return string(p)
	}
	return ""
}
