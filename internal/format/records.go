package format

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/holdfast/holdfast/internal/keys"
)

// RecordType says what a key journal record wraps.
type RecordType uint8

const (
	RecordBucketKey RecordType = 1 // a bucket key under a root key
	RecordDataKey   RecordType = 2 // a data key rewrapped under a bucket key
)

// KeyRecord is the plaintext of a key journal entry (kind 2).
type KeyRecord struct {
	Type       RecordType
	Bucket     keys.ID
	BucketName string
	KeyVersion uint32
	Object     keys.ID
	Wrapped    keys.Wrapped
	KeyCheck   [32]byte
	Created    uint64
}

const recordVersion = 1

// Marshal encodes r.
func (r *KeyRecord) Marshal() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	b := []byte{recordVersion, byte(r.Type)}
	b = append(b, r.Bucket[:]...)
	b = appendStr(b, r.BucketName)
	b = binary.BigEndian.AppendUint32(b, r.KeyVersion)
	b = append(b, r.Object[:]...)
	b = append(b, byte(r.Wrapped.Source), byte(r.Wrapped.Alg))
	b = binary.BigEndian.AppendUint32(b, r.Wrapped.KEKVersion)
	b = appendBytes16(b, r.Wrapped.Data)
	b = append(b, r.KeyCheck[:]...)
	return binary.BigEndian.AppendUint64(b, r.Created), nil
}

func (r *KeyRecord) validate() error {
	switch r.Type {
	case RecordBucketKey:
		if r.Object != (keys.ID{}) {
			return Corrupt(LayerManifest, "bucket key record names an object")
		}
	case RecordDataKey:
		if r.Object == (keys.ID{}) {
			return Corrupt(LayerManifest, "data key record without an object")
		}
		// Wrapped in software under the bucket key version it names.
		if r.Wrapped.Alg != keys.AlgHKDFGCMCommit || r.Wrapped.KEKVersion != r.KeyVersion {
			return Corrupt(LayerManifest, "data key record not wrapped under its bucket key version")
		}
	default:
		return Corrupt(LayerManifest, "unknown key record type %d", r.Type)
	}
	if r.Wrapped.Source < keys.SourceKeyring || r.Wrapped.Source > keys.SourceKeyServer {
		return Corrupt(LayerManifest, "unknown key source %d", r.Wrapped.Source)
	}
	if n := keys.WrappedLen(r.Wrapped.Alg); n == 0 || n != len(r.Wrapped.Data) {
		return Corrupt(LayerManifest, "wrapped key of %d bytes for alg %d", len(r.Wrapped.Data), r.Wrapped.Alg)
	}
	if r.KeyVersion == 0 || r.Wrapped.KEKVersion == 0 || len(r.BucketName) > MaxBucketLen || !utf8.ValidString(r.BucketName) {
		return Corrupt(LayerManifest, "invalid key record")
	}
	return nil
}

// ParseKeyRecord decodes a key journal entry plaintext.
func ParseKeyRecord(b []byte) (*KeyRecord, error) {
	rd := reader{b: b}
	if v := rd.u8(); v != recordVersion {
		return nil, Corrupt(LayerManifest, "unsupported key record version %d", v)
	}
	r := &KeyRecord{Type: RecordType(rd.u8())}
	rd.id(&r.Bucket)
	r.BucketName = rd.str()
	r.KeyVersion = rd.u32()
	rd.id(&r.Object)
	r.Wrapped.Source = keys.SourceKind(rd.u8())
	r.Wrapped.Alg = keys.Alg(rd.u8())
	r.Wrapped.KEKVersion = rd.u32()
	r.Wrapped.Data = rd.bytes16()
	rd.bytes(r.KeyCheck[:])
	r.Created = rd.u64()
	if rd.err != nil {
		return nil, Corrupt(LayerManifest, "key record truncated")
	}
	if rd.remaining() != 0 {
		return nil, Corrupt(LayerManifest, "key record has %d trailing bytes", rd.remaining())
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// Marker is the plaintext of the repository marker (kind 4).
type Marker struct {
	Repo    keys.ID
	Created uint64
}

const markerVersion = 1

// MarkerPrefix starts the store name of every repository marker.
const MarkerPrefix = "holdfast-repo-"

// MarkerName is the store name of repo's marker.
func MarkerName(repo keys.ID) string { return MarkerPrefix + StoreName(repo) }

// Marshal encodes m.
func (m Marker) Marshal() []byte {
	b := append([]byte{markerVersion}, m.Repo[:]...)
	return binary.BigEndian.AppendUint64(b, m.Created)
}

// ParseMarker decodes a marker plaintext.
func ParseMarker(b []byte) (Marker, error) {
	rd := reader{b: b}
	var m Marker
	if v := rd.u8(); v != markerVersion {
		return m, Corrupt(LayerManifest, "unsupported marker version %d", v)
	}
	rd.id(&m.Repo)
	m.Created = rd.u64()
	if rd.err != nil || rd.remaining() != 0 {
		return m, Corrupt(LayerManifest, "marker is %d bytes", len(b))
	}
	return m, nil
}

// batchVersion starts a journal entry that holds a batch of data key
// rewraps rather than one record (format.md, "Key journal entry").
const batchVersion = 2

// MaxBatchRecords is the most records one batch entry may hold.
const MaxBatchRecords = 65535

// MarshalKeyBatch encodes recs as one journal entry: all of type 2, of one
// bucket and one bucket key version, in strictly increasing object id
// order.
func MarshalKeyBatch(recs []KeyRecord) ([]byte, error) {
	if err := checkBatch(len(recs), func(i int) *KeyRecord { return &recs[i] }); err != nil {
		return nil, err
	}
	b := []byte{batchVersion}
	b = binary.BigEndian.AppendUint32(b, uint32(len(recs)))
	for i := range recs {
		rb, err := recs[i].Marshal()
		if err != nil {
			return nil, err
		}
		b = appendBytes16(b, rb)
	}
	return b, nil
}

// checkBatch applies a batch's rules to n records.
func checkBatch(n int, rec func(int) *KeyRecord) error {
	if n < 1 || n > MaxBatchRecords {
		return Corrupt(LayerManifest, "key record batch of %d records", n)
	}
	first := rec(0)
	for i := range n {
		r := rec(i)
		if r.Type != RecordDataKey {
			return Corrupt(LayerManifest, "key record batch holds a record of type %d", r.Type)
		}
		if r.Bucket != first.Bucket || r.BucketName != first.BucketName || r.KeyVersion != first.KeyVersion {
			return Corrupt(LayerManifest, "key record batch mixes buckets or key versions")
		}
		if i > 0 && !idLess(rec(i-1).Object, r.Object) {
			return Corrupt(LayerManifest, "key record batch's objects are not in increasing order")
		}
	}
	return nil
}

// ParseJournal decodes a key journal entry plaintext: one key record
// (record version 1) or a batch of data key rewraps (version 2).
func ParseJournal(b []byte) ([]*KeyRecord, error) {
	if len(b) == 0 || b[0] != batchVersion {
		r, err := ParseKeyRecord(b)
		if err != nil {
			return nil, err
		}
		return []*KeyRecord{r}, nil
	}
	rd := reader{b: b[1:]}
	n := rd.u32()
	if rd.err != nil || n < 1 || n > MaxBatchRecords {
		return nil, Corrupt(LayerManifest, "key record batch of %d records", n)
	}
	// Each record takes at least minRecordLen bytes: a count the entry cannot hold is
	// refused before anything is allocated for it.
	if uint64(n)*minRecordLen > uint64(rd.remaining()) {
		return nil, Corrupt(LayerManifest, "key record batch of %d records in %d bytes", n, rd.remaining())
	}
	recs := make([]*KeyRecord, 0, n)
	for range n {
		rb := rd.bytes16()
		if rd.err != nil {
			return nil, Corrupt(LayerManifest, "key record batch truncated")
		}
		r, err := ParseKeyRecord(rb)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if rd.remaining() != 0 {
		return nil, Corrupt(LayerManifest, "key record batch has %d trailing bytes", rd.remaining())
	}
	if err := checkBatch(len(recs), func(i int) *KeyRecord { return recs[i] }); err != nil {
		return nil, err
	}
	return recs, nil
}

// minRecordLen is the shortest encoded key record with its u16 length:
// an empty bucket name and an alg-2 wrap.
const minRecordLen = 2 + 2 + 16 + 2 + 4 + 16 + 2 + 4 + 2 + 60 + 32 + 8
