package format

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"unicode/utf8"

	"github.com/holdfast/holdfast/internal/keys"
)

// CatalogBackup is the plaintext of a catalog backup (kind 3): everything
// the catalog needs to serve reads, in one canonical encoding
// (docs/format.md, "Catalog backup").
type CatalogBackup struct {
	// Version is the backup encoding: 1 or 2; 0 means the current one (2).
	// Version 1 has no Reservations.
	Version  uint8
	Repo     keys.ID
	Sequence uint64
	Created  uint64
	Previous [32]byte // BackupHash of sequence-1; zero for sequence 1
	Buckets  []BackupBucket
	Keys     []BackupKey
	Objects  []BackupObject
	System   []BackupSystem
	// Reservations (version 2) name, for every key that ever had a
	// committed version, the highest version committed before this backup
	// (deleted keys included); sorted by (Bucket, Key).
	Reservations []BackupReservation
}

// BackupReservation says that no version of Bucket/Key up to Version may
// become current unless the backup lists it: such versions were current
// once and have been replaced or deleted.
type BackupReservation struct {
	Bucket, Key string
	Version     uint64
}

// BackupBucket is one bucket; sorted by Name.
type BackupBucket struct {
	Name    string
	ID      keys.ID
	Created uint64
}

// BackupKey is one bucket key version; sorted by (Bucket, Version).
type BackupKey struct {
	Bucket   keys.ID
	Version  uint32
	Wrapped  keys.Wrapped
	KeyCheck [32]byte
	Created  uint64
	State    uint8 // 1 active, 2 decrypt-only, 3 destroyed
	Journal  keys.ID
}

// BackupObject is one current object version; sorted by (Bucket, Key).
type BackupObject struct {
	Bucket, Key string
	Version     uint64
	Object      keys.ID
	Size        uint64
	Stored      uint64
	ManifestOff uint64
	ManifestLen uint64
	Pin         [32]byte
	Commit      [32]byte
	KeyVersion  uint32
	Wrapped     []byte // the data key's wrap under the bucket key (alg 1)
	Modified    uint64
	ContentType string
	Meta        []MetaPair
	Segments    uint32
}

// BackupSystem is one system object (journal entry or marker); sorted by
// Object.
type BackupSystem struct {
	Object      keys.ID
	Kind        Kind
	Pin         [32]byte
	Stored      uint64
	ManifestOff uint64
	ManifestLen uint64
	Created     uint64
}

// The catalog backup encodings: version 1 (no reservations) is still read;
// version 2 is written.
const (
	backupVersion1 = 1
	backupVersion  = 2
)

func (c *CatalogBackup) version() uint8 {
	if c.Version == 0 {
		return backupVersion
	}
	return c.Version
}

const backupHashLabel = "holdfast/v1/backup"

// BackupHash is the hash that freshness records and the next backup's
// Previous field name: SHA-256("holdfast/v1/backup" || plaintext).
func BackupHash(plain []byte) [32]byte {
	h := NewBackupHash()
	h.Write(plain)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// NewBackupHash returns a hash.Hash whose sum over a backup's plaintext,
// written in any pieces, is its BackupHash.
func NewBackupHash() hash.Hash {
	h := sha256.New()
	h.Write([]byte(backupHashLabel))
	return h
}

func idLess(a, b keys.ID) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func backupCorrupt(f string, a ...any) error {
	return Corrupt(LayerManifest, "catalog backup: "+f, a...)
}

// The rules of docs/format.md, "Catalog backup", one part at a time, so
// that Marshal and BackupEncoder check exactly the same things.

func (c *CatalogBackup) validateHead() error {
	if v := c.version(); v != backupVersion1 && v != backupVersion {
		return backupCorrupt("unsupported version %d", v)
	}
	if c.Sequence == 0 {
		return backupCorrupt("sequence zero")
	}
	if (c.Sequence == 1) != (c.Previous == [32]byte{}) {
		return backupCorrupt("previous hash must be zero exactly for the first backup")
	}
	return nil
}

func (c *CatalogBackup) validateBuckets() error {
	for i, b := range c.Buckets {
		if len(b.Name) > MaxBucketLen || !utf8.ValidString(b.Name) || (i > 0 && !(c.Buckets[i-1].Name < b.Name)) {
			return backupCorrupt("bucket %d out of order or invalid", i)
		}
	}
	return nil
}

func (c *CatalogBackup) validateKeys() error {
	for i, k := range c.Keys {
		if i > 0 {
			p := c.Keys[i-1]
			if !(idLess(p.Bucket, k.Bucket) || p.Bucket == k.Bucket && p.Version < k.Version) {
				return backupCorrupt("key %d out of order", i)
			}
		}
		if k.Version == 0 || k.State < 1 || k.State > 3 || k.Wrapped.KEKVersion == 0 ||
			k.Wrapped.Source < keys.SourceKeyring || k.Wrapped.Source > keys.SourceKeyServer ||
			keys.WrappedLen(k.Wrapped.Alg) == 0 || keys.WrappedLen(k.Wrapped.Alg) != len(k.Wrapped.Data) {
			return backupCorrupt("key %d invalid", i)
		}
	}
	return nil
}

// validateObject checks object i, o, which follows prev (nil for the
// first).
func validateBackupObject(i uint64, prev, o *BackupObject) error {
	if prev != nil && !(prev.Bucket < o.Bucket || prev.Bucket == o.Bucket && prev.Key < o.Key) {
		return backupCorrupt("object %d out of order", i)
	}
	m := Manifest{Kind: KindData, BucketName: o.Bucket, Key: o.Key, ObjectVersion: o.Version, ContentType: o.ContentType,
		Meta: o.Meta, Length: o.Size, Segments: []Segment{{Len: o.Size}}}
	if err := m.validate(); err != nil {
		return backupCorrupt("object %d: %v", i, err)
	}
	if o.Version == 0 || o.Segments == 0 || len(o.Wrapped) != keys.WrappedLenHKDFGCMCommit || o.KeyVersion == 0 {
		return backupCorrupt("object %d invalid", i)
	}
	return nil
}

func validateBackupSystem(sys []BackupSystem) error {
	for i, s := range sys {
		if (s.Kind != KindJournal && s.Kind != KindMarker) || (i > 0 && !idLess(sys[i-1].Object, s.Object)) {
			return backupCorrupt("system object %d invalid or out of order", i)
		}
	}
	return nil
}

func (c *CatalogBackup) validate() error {
	if err := c.validateHead(); err != nil {
		return err
	}
	if err := c.validateBuckets(); err != nil {
		return err
	}
	if err := c.validateKeys(); err != nil {
		return err
	}
	for i := range c.Objects {
		var prev *BackupObject
		if i > 0 {
			prev = &c.Objects[i-1]
		}
		if err := validateBackupObject(uint64(i), prev, &c.Objects[i]); err != nil {
			return err
		}
	}
	if err := validateBackupSystem(c.System); err != nil {
		return err
	}
	if c.version() == backupVersion1 && len(c.Reservations) > 0 {
		return backupCorrupt("version 1 has no reservations")
	}
	for i := range c.Reservations {
		var prev *BackupReservation
		if i > 0 {
			prev = &c.Reservations[i-1]
		}
		if err := validateBackupReservation(uint64(i), prev, &c.Reservations[i]); err != nil {
			return err
		}
	}
	return nil
}

func validateBackupReservation(i uint64, prev, r *BackupReservation) error {
	if prev != nil && !(prev.Bucket < r.Bucket || prev.Bucket == r.Bucket && prev.Key < r.Key) {
		return backupCorrupt("reservation %d out of order", i)
	}
	m := Manifest{Kind: KindData, BucketName: r.Bucket, Key: r.Key, ObjectVersion: r.Version, Segments: []Segment{{}}}
	if err := m.validate(); err != nil || r.Version == 0 {
		return backupCorrupt("reservation %d invalid", i)
	}
	return nil
}

func appendBackupReservation(b []byte, r *BackupReservation) []byte {
	b = appendStr(b, r.Bucket)
	b = appendStr(b, r.Key)
	return binary.BigEndian.AppendUint64(b, r.Version)
}

// appendBackupHead encodes everything before the object count: version,
// repository, sequence, created, previous, buckets and keys.
func (c *CatalogBackup) appendHead(b []byte) []byte {
	b = append(b, c.version())
	b = append(b, c.Repo[:]...)
	b = binary.BigEndian.AppendUint64(b, c.Sequence)
	b = binary.BigEndian.AppendUint64(b, c.Created)
	b = append(b, c.Previous[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Buckets)))
	for _, x := range c.Buckets {
		b = appendStr(b, x.Name)
		b = append(b, x.ID[:]...)
		b = binary.BigEndian.AppendUint64(b, x.Created)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Keys)))
	for _, k := range c.Keys {
		b = append(b, k.Bucket[:]...)
		b = binary.BigEndian.AppendUint32(b, k.Version)
		b = append(b, byte(k.Wrapped.Source), byte(k.Wrapped.Alg))
		b = binary.BigEndian.AppendUint32(b, k.Wrapped.KEKVersion)
		b = appendBytes16(b, k.Wrapped.Data)
		b = append(b, k.KeyCheck[:]...)
		b = binary.BigEndian.AppendUint64(b, k.Created)
		b = append(b, k.State)
		b = append(b, k.Journal[:]...)
	}
	return b
}

func appendBackupObject(b []byte, o *BackupObject) []byte {
	b = appendStr(b, o.Bucket)
	b = appendStr(b, o.Key)
	b = binary.BigEndian.AppendUint64(b, o.Version)
	b = append(b, o.Object[:]...)
	for _, v := range []uint64{o.Size, o.Stored, o.ManifestOff, o.ManifestLen} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = append(b, o.Pin[:]...)
	b = append(b, o.Commit[:]...)
	b = binary.BigEndian.AppendUint32(b, o.KeyVersion)
	b = appendBytes16(b, o.Wrapped)
	b = binary.BigEndian.AppendUint64(b, o.Modified)
	b = appendStr(b, o.ContentType)
	b = appendMeta(b, o.Meta)
	return binary.BigEndian.AppendUint32(b, o.Segments)
}

func appendBackupSystem(b []byte, sys []BackupSystem) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(sys)))
	for _, s := range sys {
		b = append(b, s.Object[:]...)
		b = append(b, byte(s.Kind))
		b = append(b, s.Pin[:]...)
		for _, v := range []uint64{s.Stored, s.ManifestOff, s.ManifestLen, s.Created} {
			b = binary.BigEndian.AppendUint64(b, v)
		}
	}
	return b
}

// Marshal encodes c.
func (c *CatalogBackup) Marshal() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	b := c.appendHead(nil)
	b = binary.BigEndian.AppendUint64(b, uint64(len(c.Objects)))
	for i := range c.Objects {
		b = appendBackupObject(b, &c.Objects[i])
	}
	b = appendBackupSystem(b, c.System)
	if c.version() >= backupVersion {
		b = binary.BigEndian.AppendUint64(b, uint64(len(c.Reservations)))
		for i := range c.Reservations {
			b = appendBackupReservation(b, &c.Reservations[i])
		}
	}
	return b, nil
}

// BackupEncoder writes a catalog backup's plaintext to an io.Writer piece
// by piece, for catalogs too large to hold in memory: the bytes are those
// Marshal produces for the same backup, and every piece is checked by the
// same rules as it is written. Use NewBackupEncoder, then Object for each
// object in order, then System, then Reservation for each reservation in
// order, then Finish. It writes version 2.
type BackupEncoder struct {
	w      io.Writer
	h      hash.Hash
	buf    []byte
	want   uint64 // objects announced
	n      uint64 // objects written
	prev   BackupObject
	err    error
	closed bool
	// After System: reservations announced and written, and the last one.
	system        bool
	resWant, resN uint64
	prevRes       BackupReservation
}

// backupFlush is how much the encoder buffers before it writes.
const backupFlush = 64 << 10

// NewBackupEncoder validates and writes the head of c (everything up to
// and including the object count, which is objects); c.Objects and
// c.System must be empty: they follow through Object and Finish.
func NewBackupEncoder(w io.Writer, c *CatalogBackup, objects uint64) (*BackupEncoder, error) {
	if len(c.Objects) != 0 || len(c.System) != 0 || len(c.Reservations) != 0 || c.version() != backupVersion {
		return nil, errors.New("catalog backup encoder: version 2 only; objects, system objects and reservations are written separately")
	}
	for _, err := range []error{c.validateHead(), c.validateBuckets(), c.validateKeys()} {
		if err != nil {
			return nil, err
		}
	}
	e := &BackupEncoder{w: w, h: NewBackupHash(), want: objects}
	e.buf = binary.BigEndian.AppendUint64(c.appendHead(make([]byte, 0, backupFlush)), objects)
	return e, e.flush(false)
}

func (e *BackupEncoder) flush(all bool) error {
	if e.err != nil {
		return e.err
	}
	if !all && len(e.buf) < backupFlush {
		return nil
	}
	e.h.Write(e.buf)
	if _, err := e.w.Write(e.buf); err != nil {
		e.err = err
		return err
	}
	e.buf = e.buf[:0]
	return nil
}

// Object validates and writes the next object; objects come in (bucket,
// key) order, no more than announced.
func (e *BackupEncoder) Object(o *BackupObject) error {
	if e.err != nil {
		return e.err
	}
	if e.n == e.want {
		e.err = backupCorrupt("more objects than the %d announced", e.want)
		return e.err
	}
	var prev *BackupObject
	if e.n > 0 {
		prev = &e.prev
	}
	if err := validateBackupObject(e.n, prev, o); err != nil {
		e.err = err
		return err
	}
	e.buf = appendBackupObject(e.buf, o)
	e.prev = BackupObject{Bucket: o.Bucket, Key: o.Key}
	e.n++
	return e.flush(false)
}

// System writes the system objects, which follow the objects, and the
// count of the reservations that follow them. It fails if fewer objects
// were written than announced.
func (e *BackupEncoder) System(sys []BackupSystem, reservations uint64) error {
	if e.err == nil && (e.system || e.n != e.want) {
		e.err = backupCorrupt("%d objects written, %d announced", e.n, e.want)
	}
	if e.err == nil {
		e.err = validateBackupSystem(sys)
	}
	if e.err != nil {
		return e.err
	}
	e.system, e.resWant = true, reservations
	e.buf = binary.BigEndian.AppendUint64(appendBackupSystem(e.buf, sys), reservations)
	return e.flush(false)
}

// Reservation validates and writes the next reservation; they come in
// (bucket, key) order, no more than announced.
func (e *BackupEncoder) Reservation(r *BackupReservation) error {
	if e.err == nil && !e.system {
		e.err = errors.New("catalog backup encoder: reservation before system objects")
	}
	if e.err == nil && e.resN == e.resWant {
		e.err = backupCorrupt("more reservations than the %d announced", e.resWant)
	}
	if e.err != nil {
		return e.err
	}
	var prev *BackupReservation
	if e.resN > 0 {
		prev = &e.prevRes
	}
	if err := validateBackupReservation(e.resN, prev, r); err != nil {
		e.err = err
		return err
	}
	e.buf = appendBackupReservation(e.buf, r)
	e.prevRes = BackupReservation{Bucket: r.Bucket, Key: r.Key}
	e.resN++
	return e.flush(false)
}

// Finish ends the backup and returns the backup hash of everything
// written. It fails unless System ran and every announced reservation was
// written.
func (e *BackupEncoder) Finish() ([32]byte, error) {
	var sum [32]byte
	if e.err == nil && (!e.system || e.resN != e.resWant) {
		e.err = backupCorrupt("%d reservations written, %d announced", e.resN, e.resWant)
	}
	if e.err != nil {
		return sum, e.err
	}
	if err := e.flush(true); err != nil {
		return sum, err
	}
	e.err = errors.New("catalog backup encoder: finished")
	e.h.Sum(sum[:0])
	return sum, nil
}

// BackupHeadLen is the length of a catalog backup's fixed head: version,
// repository id, sequence, created and previous hash.
const BackupHeadLen = 1 + 16 + 8 + 8 + 32

// ParseCatalogBackupHead decodes the fixed head of a catalog backup
// plaintext (its first BackupHeadLen bytes; b may be longer) and checks
// its rules: the result has Repo, Sequence, Created and Previous only.
// Recovery uses it to rank backups without decoding them whole.
func ParseCatalogBackupHead(b []byte) (*CatalogBackup, error) {
	if len(b) < BackupHeadLen {
		return nil, backupCorrupt("truncated")
	}
	r := reader{b: b[:BackupHeadLen]}
	v := r.u8()
	if v != backupVersion1 && v != backupVersion {
		return nil, Corrupt(LayerManifest, "unsupported catalog backup version %d", v)
	}
	c := &CatalogBackup{Version: v}
	r.id(&c.Repo)
	c.Sequence = r.u64()
	c.Created = r.u64()
	r.bytes(c.Previous[:])
	if err := c.validateHead(); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseCatalogBackup decodes a catalog backup plaintext.
func ParseCatalogBackup(b []byte) (*CatalogBackup, error) {
	r := reader{b: b}
	v := r.u8()
	if v != backupVersion1 && v != backupVersion {
		return nil, Corrupt(LayerManifest, "unsupported catalog backup version %d", v)
	}
	c := &CatalogBackup{Version: v}
	r.id(&c.Repo)
	c.Sequence = r.u64()
	c.Created = r.u64()
	r.bytes(c.Previous[:])
	n := int(r.u32())
	if n > r.remaining()/(2+16+8) {
		return nil, Corrupt(LayerManifest, "catalog backup truncated")
	}
	for i := 0; i < n && r.err == nil; i++ {
		x := BackupBucket{Name: r.str()}
		r.id(&x.ID)
		x.Created = r.u64()
		c.Buckets = append(c.Buckets, x)
	}
	n = int(r.u32())
	if n > r.remaining()/(16+4+2+4+2+32+8+1+16) {
		return nil, Corrupt(LayerManifest, "catalog backup truncated")
	}
	for i := 0; i < n && r.err == nil; i++ {
		var k BackupKey
		r.id(&k.Bucket)
		k.Version = r.u32()
		k.Wrapped.Source = keys.SourceKind(r.u8())
		k.Wrapped.Alg = keys.Alg(r.u8())
		k.Wrapped.KEKVersion = r.u32()
		k.Wrapped.Data = r.bytes16()
		r.bytes(k.KeyCheck[:])
		k.Created = r.u64()
		k.State = r.u8()
		r.id(&k.Journal)
		c.Keys = append(c.Keys, k)
	}
	n64 := r.u64()
	if n64 > uint64(r.remaining()/(2+2+8+16+32+64+4+2+8+2+2+4)) {
		return nil, Corrupt(LayerManifest, "catalog backup truncated")
	}
	for i := uint64(0); i < n64 && r.err == nil; i++ {
		o := BackupObject{Bucket: r.str(), Key: r.str(), Version: r.u64()}
		r.id(&o.Object)
		o.Size, o.Stored, o.ManifestOff, o.ManifestLen = r.u64(), r.u64(), r.u64(), r.u64()
		r.bytes(o.Pin[:])
		r.bytes(o.Commit[:])
		o.KeyVersion = r.u32()
		o.Wrapped = r.bytes16()
		o.Modified = r.u64()
		o.ContentType = r.str()
		o.Meta = r.meta()
		o.Segments = r.u32()
		c.Objects = append(c.Objects, o)
	}
	n = int(r.u32())
	if n > r.remaining()/(16+1+32+32) {
		return nil, Corrupt(LayerManifest, "catalog backup truncated")
	}
	for i := 0; i < n && r.err == nil; i++ {
		var s BackupSystem
		r.id(&s.Object)
		s.Kind = Kind(r.u8())
		r.bytes(s.Pin[:])
		s.Stored, s.ManifestOff, s.ManifestLen, s.Created = r.u64(), r.u64(), r.u64(), r.u64()
		c.System = append(c.System, s)
	}
	if v >= backupVersion {
		n64 := r.u64()
		if n64 > uint64(r.remaining()/(2+2+8)) {
			return nil, Corrupt(LayerManifest, "catalog backup truncated")
		}
		for i := uint64(0); i < n64 && r.err == nil; i++ {
			c.Reservations = append(c.Reservations, BackupReservation{Bucket: r.str(), Key: r.str(), Version: r.u64()})
		}
	}
	if r.err != nil {
		return nil, Corrupt(LayerManifest, "catalog backup truncated")
	}
	if r.remaining() != 0 {
		return nil, Corrupt(LayerManifest, "catalog backup has %d trailing bytes", r.remaining())
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}
