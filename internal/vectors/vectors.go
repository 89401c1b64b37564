package vectors

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
)

// Case is one object vector as recorded in index.json.
type Case struct {
	Name       string `json:"name"`
	File       string `json:"file"`
	StoreName  string `json:"store_name"`
	Comment    string `json:"comment,omitempty"`
	Purpose    int    `json:"purpose"`     // 1 data key under bucket key, 3 system key under root key
	KEK        string `json:"kek"`         // hex wrapping key (bucket key or root key)
	KEKVersion uint32 `json:"kek_version"` // its version
	Repo       string `json:"repo"`
	BucketID   string `json:"bucket_id"`
	ObjectID   string `json:"object_id"`
	Expect     string `json:"expect"` // "ok" or "reject"
	Layer      string `json:"layer,omitempty"`

	// For "ok": what a reader must find.
	Kind          int               `json:"kind,omitempty"`
	Bucket        string            `json:"bucket,omitempty"`
	Key           string            `json:"key,omitempty"`
	ObjectVersion uint64            `json:"object_version,omitempty"`
	Modified      uint64            `json:"modified,omitempty"`
	ContentType   string            `json:"content_type,omitempty"`
	Meta          map[string]string `json:"meta,omitempty"`
	Length        uint64            `json:"length,omitempty"`
	Segments      []uint64          `json:"segments,omitempty"`
	StoredLength  uint64            `json:"stored_length,omitempty"`
	Padding       uint64            `json:"padding,omitempty"`
	PlainSHA256   string            `json:"plaintext_sha256,omitempty"`
	Pin           string            `json:"pin,omitempty"`
}

// Index is index.json.
type Index struct {
	Format  int    `json:"format_version"`
	Comment string `json:"comment"`
	Cases   []Case `json:"cases"`
}

type gen struct {
	rnd  *rand.ChaCha8
	repo keys.ID
	out  string
	idx  Index
}

func (g *gen) Read(p []byte) (int, error) { return g.rnd.Read(p) }

func (g *gen) id() keys.ID {
	var id keys.ID
	g.rnd.Read(id[:])
	return id
}

func (g *gen) key() secret.Key {
	k, _ := secret.NewFrom(g)
	return k
}

func keyHex(k secret.Key) string {
	var s string
	_ = k.Use(func(b []byte) error { s = hex.EncodeToString(b); return nil })
	return s
}

// plaintext returns n deterministic bytes.
func plaintext(n int, seed byte) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{seed})
	r.Read(b)
	return b
}

type spec struct {
	name, comment string
	kind          format.Kind
	bucketName    string
	key           string
	version       uint64
	contentType   string
	meta          []format.MetaPair
	plain         []byte
	segSize       int
}

type sealed struct {
	c     Case
	data  []byte
	kek   secret.Key
	ad    keys.AD
	res   *object.Result
	plain []byte
}

func (g *gen) seal(s spec) (*sealed, error) {
	kek := g.key()
	kv := uint32(1 + g.rnd.Uint64()%3)
	obj := g.id()
	var bucket keys.ID
	purpose := keys.PurposeSystemKey
	if s.kind == format.KindData {
		bucket = g.id()
		purpose = keys.PurposeDataKey
	}
	if s.kind == format.KindMarker {
		obj = g.repo
	}
	ad := keys.AD{Purpose: purpose, Repo: g.repo, Bucket: bucket, KEKVersion: kv, Object: obj}
	ident := object.Identity{Kind: s.kind, Repo: g.repo, Object: obj, Bucket: bucket, KeyVersion: kv,
		BucketName: s.bucketName, Key: s.key, ObjectVersion: max(s.version, 1)}
	wrap := func(dek secret.Key) (keys.Alg, []byte, error) {
		w, err := keys.WrapSoftware(kek, ad, dek, g)
		return keys.AlgHKDFGCMCommit, w, err
	}
	mod := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	sl, err := object.NewSealer(bytes.NewReader(s.plain), ident, object.Attrs{Modified: mod, ContentType: s.contentType, Meta: s.meta},
		wrap, object.SealOptions{Rand: g, Workers: 1, SegmentSize: s.segSize})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := sl.WriteTo(&buf); err != nil {
		return nil, err
	}
	res := sl.Result()
	name := format.StoreName(obj)
	if s.kind == format.KindMarker {
		name = format.MarkerName(g.repo)
	}
	sum := sha256.Sum256(s.plain)
	c := Case{Name: s.name, File: s.name + ".bin", StoreName: name, Comment: s.comment, Purpose: int(purpose),
		KEK: keyHex(kek), KEKVersion: kv, Repo: hex.EncodeToString(g.repo[:]), BucketID: hex.EncodeToString(bucket[:]),
		ObjectID: hex.EncodeToString(obj[:]), Expect: "ok", Kind: int(s.kind), Bucket: s.bucketName, Key: s.key,
		ObjectVersion: max(s.version, 1), Modified: uint64(mod.UnixNano()), ContentType: s.contentType,
		Length: res.Manifest.Length, StoredLength: res.Sizes.Stored, Padding: res.Sizes.Padding,
		PlainSHA256: hex.EncodeToString(sum[:]), Pin: hex.EncodeToString(res.Pin[:])}
	for _, sg := range res.Manifest.Segments {
		c.Segments = append(c.Segments, sg.Len)
	}
	if len(s.meta) > 0 {
		c.Meta = map[string]string{}
		for _, p := range s.meta {
			c.Meta[p.Name] = p.Value
		}
	}
	return &sealed{c: c, data: buf.Bytes(), kek: kek, ad: ad, res: res, plain: s.plain}, nil
}

func (g *gen) write(c Case, data []byte) error {
	g.idx.Cases = append(g.idx.Cases, c)
	return os.WriteFile(filepath.Join(g.out, c.File), data, 0o644)
}

// negative records a rejected variant of s.
func (g *gen) negative(s *sealed, name string, layer format.Layer, comment string, data []byte, edit func(*Case)) error {
	c := Case{Name: name, File: name + ".bin", StoreName: s.c.StoreName, Comment: comment, Purpose: s.c.Purpose,
		KEK: s.c.KEK, KEKVersion: s.c.KEKVersion, Repo: s.c.Repo, BucketID: s.c.BucketID, ObjectID: s.c.ObjectID,
		Expect: "reject", Layer: string(layer)}
	if edit != nil {
		edit(&c)
	}
	return g.write(c, data)
}

func flip(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0x01
	return c
}

// Generate writes the object vectors into dir (created if needed).
func Generate(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	g := &gen{rnd: rand.NewChaCha8([32]byte{'h', 'o', 'l', 'd', 'f', 'a', 's', 't', 1}), out: dir}
	g.repo = g.id()
	g.idx = Index{Format: format.Version, Comment: "Holdfast storage format v1 vectors; see docs/format.md. Generated by go run ./internal/vectors/cmd/genvectors; do not edit."}

	pos := []spec{
		{name: "data-empty", kind: format.KindData, bucketName: "photos", key: "empty", version: 1, plain: nil},
		{name: "data-1", kind: format.KindData, bucketName: "photos", key: "a/one-byte", version: 3, plain: plaintext(1, 1)},
		{name: "data-65535", kind: format.KindData, bucketName: "photos", key: "chunk-minus-1", version: 1, plain: plaintext(65535, 2)},
		{name: "data-65536", kind: format.KindData, bucketName: "photos", key: "chunk", version: 1, plain: plaintext(65536, 3)},
		{name: "data-65537", kind: format.KindData, bucketName: "photos", key: "chunk-plus-1", version: 1, plain: plaintext(65537, 4)},
		{name: "data-meta", kind: format.KindData, bucketName: "docs", key: "reports/2026/q3.pdf", version: 7, plain: plaintext(1000, 5),
			contentType: "application/pdf", meta: []format.MetaPair{{Name: "author", Value: "ops team"}, {Name: "project", Value: "holdfast"}},
			comment: "content type and user metadata"},
		{name: "data-multisegment", kind: format.KindData, bucketName: "backups", key: "db.dump", version: 2, plain: plaintext(300000, 6),
			segSize: 131072, comment: "three segments of 131072, 131072 and 37856 bytes"},
		{name: "data-multisegment-aligned", kind: format.KindData, bucketName: "backups", key: "aligned", version: 1, plain: plaintext(262144, 7),
			segSize: 131072, comment: "two full segments, each ending on a chunk boundary"},
	}
	var base []*sealed
	for _, s := range pos {
		sl, err := g.seal(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := g.write(sl.c, sl.data); err != nil {
			return err
		}
		base = append(base, sl)
	}
	// System objects.
	jrec := format.KeyRecord{Type: format.RecordBucketKey, Bucket: g.id(), BucketName: "photos", KeyVersion: 1,
		Wrapped: keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: 1, Data: make([]byte, keys.WrappedLenHKDFGCMCommit)},
		Created: uint64(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixNano())}
	g.rnd.Read(jrec.Wrapped.Data)
	g.rnd.Read(jrec.KeyCheck[:])
	jplain, err := jrec.Marshal()
	if err != nil {
		return err
	}
	mk := format.Marker{Repo: g.repo, Created: jrec.Created}
	bk := format.CatalogBackup{Version: 1, Repo: g.repo, Sequence: 2, Created: jrec.Created,
		Buckets: []format.BackupBucket{{Name: "docs", ID: g.id(), Created: jrec.Created}, {Name: "photos", ID: jrec.Bucket, Created: jrec.Created}},
		Keys:    []format.BackupKey{{Bucket: jrec.Bucket, Version: 1, Wrapped: jrec.Wrapped, KeyCheck: jrec.KeyCheck, Created: jrec.Created, State: 1, Journal: g.id()}},
		Objects: []format.BackupObject{
			{Bucket: "photos", Key: "a/one-byte", Version: 3, Object: g.id(), Size: 1, Stored: 4352, ManifestOff: 4108, ManifestLen: 216,
				KeyVersion: 1, Wrapped: make([]byte, keys.WrappedLenHKDFGCMCommit), Modified: jrec.Created, Segments: 1},
			{Bucket: "photos", Key: "b", Version: 1, Object: g.id(), Size: 1000, Stored: 5376, ManifestOff: 5132, ManifestLen: 216,
				KeyVersion: 1, Wrapped: make([]byte, keys.WrappedLenHKDFGCMCommit), Modified: jrec.Created, ContentType: "image/jpeg",
				Meta: []format.MetaPair{{Name: "camera", Value: "x100"}}, Segments: 1},
		},
		System: []format.BackupSystem{{Object: g.id(), Kind: format.KindJournal, Stored: 4608, ManifestOff: 4364, ManifestLen: 216, Created: jrec.Created}},
	}
	g.rnd.Read(bk.Previous[:])
	for i := range bk.Objects {
		g.rnd.Read(bk.Objects[i].Pin[:])
		g.rnd.Read(bk.Objects[i].Commit[:])
		g.rnd.Read(bk.Objects[i].Wrapped)
	}
	g.rnd.Read(bk.System[0].Pin[:])
	bplain, err := bk.Marshal()
	if err != nil {
		return err
	}
	for _, s := range []spec{
		{name: "journal-entry", kind: format.KindJournal, plain: jplain, comment: "key journal entry: a bucket key record (its wrapped bytes are random filler)"},
		{name: "marker", kind: format.KindMarker, plain: mk.Marshal(), comment: "repository marker; stored under holdfast-repo-<repo id>"},
		{name: "catalog-backup", kind: format.KindBackup, plain: bplain, comment: "catalog backup, sequence 2 (pins, commitments and wraps are random filler)"},
	} {
		sl, err := g.seal(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := g.write(sl.c, sl.data); err != nil {
			return err
		}
	}

	one, multi, aligned, small := base[1], base[6], base[7], base[4]
	d := one.data
	n := len(d)
	H := format.HeaderLen
	mOff, mLen := int(one.res.Sizes.ManifestOff), int(one.res.Sizes.ManifestLen)
	negs := []struct {
		name    string
		layer   format.Layer
		comment string
		data    []byte
		edit    func(*Case)
	}{
		{"neg-header-magic", format.LayerHeader, "magic altered", flip(d, 0), nil},
		{"neg-header-version", format.LayerHeader, "format version byte set to 0 (downgrade attempt)", func() []byte { c := bytes.Clone(d); c[8] = 0; return c }(), nil},
		{"neg-header-version2", format.LayerHeader, "format version byte set to 2 (unknown)", func() []byte { c := bytes.Clone(d); c[8] = 2; return c }(), nil},
		{"neg-header-alg", format.LayerHeader, "unknown wrap algorithm 9", func() []byte { c := bytes.Clone(d); c[9] = 9; return c }(), nil},
		{"neg-header-reserved", format.LayerHeader, "reserved byte not zero", flip(d, 11), nil},
		{"neg-header-short", format.LayerSize, "object shorter than the 4096-byte minimum", d[:100], nil},
		{"neg-unwrap-salt", format.LayerUnwrap, "bit flipped in the wrap salt", flip(d, 12), nil},
		{"neg-unwrap-ct", format.LayerUnwrap, "bit flipped in the wrapped data key", flip(d, 12+70), nil},
		{"neg-unwrap-moved", format.LayerUnwrap, "a valid object presented under another name (the object id in the AD differs)", d,
			func(c *Case) { c.StoreName = "0123456789abcdef0123456789abcdef"; c.ObjectID = c.StoreName }},
		{"neg-unwrap-wrongkey", format.LayerUnwrap, "the wrapping key is another bucket's", d,
			func(c *Case) { c.KEK = keyHex(base[2].kek) }},
		{"neg-unwrap-wrongversion", format.LayerUnwrap, "the reader asks for another key version", d,
			func(c *Case) { c.KEKVersion++ }},
		{"neg-commit", format.LayerCommit, "bit flipped in the data key commitment", flip(d, 124), nil},
		{"neg-footer-bit", format.LayerFooter, "bit flipped in the footer", flip(d, n-5), nil},
		{"neg-footer-truncated", format.LayerFooter, "last byte cut off", d[:n-1], nil},
		{"neg-footer-appended", format.LayerFooter, "one byte appended", append(bytes.Clone(d), 0), nil},
		{"neg-manifest-bit", format.LayerManifest, "bit flipped in the manifest", flip(d, mOff+mLen/2), nil},
		{"neg-chunk-bit", format.LayerChunk, "bit flipped in the only chunk", flip(d, H), nil},
		{"neg-padding-bit", format.LayerPadding, "bit flipped in the padding", flip(d, H+17+3), nil},
	}
	// Chunk-level attacks on the 65537-byte object (two chunks) and on the
	// multi-segment objects.
	sd := small.data
	c1 := H + format.ChunkCTSize
	negs = append(negs, struct {
		name    string
		layer   format.Layer
		comment string
		data    []byte
		edit    func(*Case)
	}{"neg-chunk-swap-tags", format.LayerChunk, "the two chunks' last 16 bytes (tags) exchanged", func() []byte {
		c := bytes.Clone(sd)
		t0 := bytes.Clone(c[c1-16 : c1])
		t1 := bytes.Clone(c[c1+17-16 : c1+17])
		copy(c[c1-16:c1], t1)
		copy(c[c1+17-16:c1+17], t0)
		return c
	}(), nil})
	md := multi.data
	s0 := H
	s1 := s0 + int(format.SegmentCTLen(131072))
	s2 := s1 + int(format.SegmentCTLen(131072))
	ad := aligned.data
	a1 := H + int(format.SegmentCTLen(131072))
	a2 := a1 + int(format.SegmentCTLen(131072))
	negs = append(negs, []struct {
		name    string
		layer   format.Layer
		comment string
		data    []byte
		edit    func(*Case)
	}{
		{"neg-segments-reordered", format.LayerChunk, "segments 0 and 1 (equal length) exchanged", func() []byte {
			c := bytes.Clone(md)
			copy(c[s0:s1], md[s1:s2])
			copy(c[s1:s2], md[s0:s1])
			return c
		}(), nil},
		{"neg-chunks-reordered", format.LayerChunk, "chunks 0 and 1 of segment 0 exchanged", func() []byte {
			c := bytes.Clone(md)
			copy(c[s0:s0+format.ChunkCTSize], md[s0+format.ChunkCTSize:s0+2*format.ChunkCTSize])
			copy(c[s0+format.ChunkCTSize:s0+2*format.ChunkCTSize], md[s0:s0+format.ChunkCTSize])
			return c
		}(), nil},
		{"neg-chunk-duplicated", format.LayerChunk, "chunk 0 of segment 1 overwritten with chunk 0 of segment 0", func() []byte {
			c := bytes.Clone(md)
			copy(c[s1:s1+format.ChunkCTSize], md[s0:s0+format.ChunkCTSize])
			return c
		}(), nil},
		{"neg-segment-dropped", format.LayerSize, "segment 1 cut out (the object shrinks; the footer no longer fits)", append(bytes.Clone(ad[:a1]), ad[a2:]...), nil},
		{"neg-cut-at-chunk-boundary", format.LayerFooter, "object cut at the end of segment 0, a chunk boundary", bytes.Clone(ad[:a1]), nil},
	}...)
	for _, x := range negs {
		if err := g.negative(one, x.name, x.layer, x.comment, x.data, x.edit); err != nil {
			return err
		}
	}
	// Fix up the owners of the chunk-level cases: they derive from other
	// positives, whose keys and ids they must carry.
	for i := range g.idx.Cases {
		c := &g.idx.Cases[i]
		var src *sealed
		switch c.Name {
		case "neg-chunk-swap-tags":
			src = small
		case "neg-segments-reordered", "neg-chunks-reordered", "neg-chunk-duplicated":
			src = multi
		case "neg-segment-dropped", "neg-cut-at-chunk-boundary":
			src = aligned
		}
		if src != nil {
			c.StoreName, c.KEK, c.KEKVersion, c.Repo, c.BucketID, c.ObjectID = src.c.StoreName, src.c.KEK, src.c.KEKVersion, src.c.Repo, src.c.BucketID, src.c.ObjectID
		}
	}
	// Crafted with the data key: structurally valid objects whose
	// authenticated contents break a rule.
	crafted, err := g.craft(one)
	if err != nil {
		return err
	}
	for _, x := range crafted {
		if err := g.write(x.c, x.data); err != nil {
			return err
		}
	}
	// The catalog backup in format version 2 (with reservations), made
	// last so that every vector before it stays as it was.
	bk2 := bk
	bk2.Version, bk2.Sequence, bk2.Previous = 2, 3, format.BackupHash(bplain)
	bk2.Reservations = []format.BackupReservation{{Bucket: "docs", Key: "deleted/report.pdf", Version: 4},
		{Bucket: "photos", Key: "a/one-byte", Version: 3}, {Bucket: "photos", Key: "b", Version: 2}}
	b2plain, err := bk2.Marshal()
	if err != nil {
		return err
	}
	sl, err := g.seal(spec{name: "catalog-backup-v2", kind: format.KindBackup, plain: b2plain,
		comment: "catalog backup version 2, sequence 3, with version reservations (pins, commitments and wraps are random filler)"})
	if err != nil {
		return err
	}
	if err := g.write(sl.c, sl.data); err != nil {
		return err
	}
	// A key journal entry holding a batch of data key rewraps, made after
	// everything else so that every vector before it stays as it was.
	batch := make([]format.KeyRecord, 3)
	for i := range batch {
		batch[i] = format.KeyRecord{Type: format.RecordDataKey, Bucket: jrec.Bucket, BucketName: "photos", KeyVersion: 2,
			Object: g.id(), Wrapped: keys.Wrapped{Source: keys.SourceKeyring, Alg: keys.AlgHKDFGCMCommit, KEKVersion: 2,
				Data: make([]byte, keys.WrappedLenHKDFGCMCommit)}, Created: jrec.Created}
		g.rnd.Read(batch[i].Wrapped.Data)
		g.rnd.Read(batch[i].KeyCheck[:])
	}
	slices.SortFunc(batch, func(a, b format.KeyRecord) int { return bytes.Compare(a.Object[:], b.Object[:]) })
	bbplain, err := format.MarshalKeyBatch(batch)
	if err != nil {
		return err
	}
	sl, err = g.seal(spec{name: "journal-batch", kind: format.KindJournal, plain: bbplain,
		comment: "key journal entry: a batch of three data key rewraps under bucket key version 2 (wrapped bytes are random filler)"})
	if err != nil {
		return err
	}
	if err := g.write(sl.c, sl.data); err != nil {
		return err
	}
	// An audit checkpoint, made last so that every vector before it stays
	// as it was. The line has the audit log's shape; its head and MAC are
	// random filler (this layer does not read the line).
	var head, lmac [32]byte
	g.rnd.Read(head[:])
	g.rnd.Read(lmac[:])
	cp := format.AuditCheckpoint{Repo: g.repo, Line: fmt.Appendf(nil,
		`{"seq":412,"time":"2026-11-27T12:00:00.123456789Z","kind":"checkpoint","op":"checkpoint","prev":"%x","mac":"%x"}`, head, lmac)}
	cplain, err := cp.Marshal()
	if err != nil {
		return err
	}
	sl, err = g.seal(spec{name: "audit-checkpoint", kind: format.KindCheckpoint, plain: cplain,
		comment: "audit checkpoint: a checkpoint line of the audit log (its prev and mac are random filler)"})
	if err != nil {
		return err
	}
	if err := g.write(sl.c, sl.data); err != nil {
		return err
	}
	b, err := json.MarshalIndent(g.idx, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.json"), append(b, '\n'), 0o644)
}

type craftedCase struct {
	c    Case
	data []byte
}

// craft re-encrypts the manifest and footer of s (with its data key, which
// the generator can unwrap) to produce authenticated-but-invalid objects.
func (g *gen) craft(s *sealed) ([]craftedCase, error) {
	h, err := format.ParseHeader(s.data[:format.HeaderLen])
	if err != nil {
		return nil, err
	}
	dek, err := keys.UnwrapSoftware(s.kek, s.ad, h.Wrapped)
	if err != nil {
		return nil, err
	}
	hb := s.data[:format.HeaderLen]
	build := func(m *format.Manifest, plainOverride []byte) ([]byte, error) {
		plain := plainOverride
		if plain == nil {
			var err error
			if plain, err = m.Marshal(); err != nil {
				return nil, err
			}
		}
		mct, fct, err := object.SealTrailer(dek, hb, plain, s.res.Sizes.ManifestOff)
		if err != nil {
			return nil, err
		}
		out := bytes.Clone(s.data[:s.res.Sizes.ManifestOff])
		out = append(out, mct...)
		return append(out, fct...), nil
	}
	clone := func() *format.Manifest {
		m := *s.res.Manifest
		m.Segments = append([]format.Segment(nil), m.Segments...)
		return &m
	}
	var out []craftedCase
	add := func(name string, layer format.Layer, comment string, data []byte) {
		c := s.c
		c.Name, c.File, c.Comment, c.Expect, c.Layer = name, name+".bin", comment, "reject", string(layer)
		c.Kind, c.Bucket, c.Key, c.ObjectVersion, c.Modified, c.ContentType, c.Meta = 0, "", "", 0, 0, "", nil
		c.Length, c.Segments, c.StoredLength, c.Padding, c.PlainSHA256, c.Pin = 0, nil, 0, 0, "", ""
		out = append(out, craftedCase{c, data})
	}
	// Identity: the manifest names another object id than the key slot.
	m := clone()
	m.Object[0] ^= 1
	d, err := build(m, nil)
	if err != nil {
		return nil, err
	}
	add("neg-identity-object", format.LayerIdentity, "manifest names another object id than the wrap's associated data", d)
	m = clone()
	m.Bucket[0] ^= 1
	if d, err = build(m, nil); err != nil {
		return nil, err
	}
	add("neg-identity-bucket", format.LayerIdentity, "manifest names another bucket id than the wrap's associated data", d)
	m = clone()
	m.Repo[0] ^= 1
	if d, err = build(m, nil); err != nil {
		return nil, err
	}
	add("neg-identity-repo", format.LayerIdentity, "manifest names another repository", d)
	// Manifest structure: trailing byte (one valid encoding only).
	m = clone()
	plain, _ := m.Marshal()
	if d, err = build(nil, append(plain, 0)); err != nil {
		return nil, err
	}
	add("neg-manifest-trailing", format.LayerManifest, "manifest plaintext with one trailing byte", d)
	// Size: the manifest claims one byte less padding.
	m = clone()
	m.Padding--
	if d, err = build(m, nil); err != nil {
		return nil, err
	}
	add("neg-size-padding", format.LayerSize, "manifest's padding length disagrees with the size rule", d)
	// Size: the segment length claims one byte more (and the total too).
	m = clone()
	m.Segments[0].Len++
	m.Length++
	if d, err = build(m, nil); err != nil {
		return nil, err
	}
	add("neg-size-length", format.LayerSize, "manifest claims one more plaintext byte than the body holds", d)
	return out, nil
}

// Check regenerates the object vectors into a temporary directory and
// reports the first file that differs from dir.
func Check(dir string) error { return CheckWith(dir, Generate) }

// CheckWith is Check for any deterministic generator.
func CheckWith(dir string, generate func(string) error) error {
	tmp, err := os.MkdirTemp("", "holdfast-vectors-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := generate(tmp); err != nil {
		return err
	}
	want, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	have, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(want) != len(have) {
		return fmt.Errorf("%s holds %d files, the generator makes %d", dir, len(have), len(want))
	}
	for _, e := range want {
		a, err := os.ReadFile(filepath.Join(tmp, e.Name()))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s differs from what the generator makes", filepath.Join(dir, e.Name()))
		}
	}
	return nil
}
