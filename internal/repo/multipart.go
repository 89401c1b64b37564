package repo

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	md5simd "github.com/minio/md5-simd"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
)

// Multipart uploads, as the S3 gateway receives them (docs/design.md §3,
// "S3 multipart"): an object version built from parts that arrive in any
// order, are sent again at will, and may span process restarts.
//
//   - CreateUpload records the upload in the catalog with its object's
//     pending write, before anything is stored, and with it the object's
//     data key — drawn now, wrapped under the bucket key like any object's
//     — and the rest of the header. Then it begins the store's construction
//     of the object (store.PartUploader).
//   - PutPart seals the part as it streams in as one segment, under the key
//     of a fresh random salt, and stores it as part n of the construction;
//     part 1 carries the header before its segment. A part too small for
//     the store's limits (under 5 MiB on S3: it can only be the last), or
//     numbered the store's highest, is held in the home's spool instead
//     and goes up with the trailer. The catalog then records the part
//     (size, plaintext MD5, salt, where it is), replacing an earlier one of
//     its number, whose bytes are deleted.
//   - CompleteUpload checks the client's list against the recorded parts,
//     fixes in the catalog the part list, the time and the object version
//     it will seal (so that a retried completion seals the same manifest:
//     format.md's writer rule), seals the manifest over the chosen parts'
//     segments, has the store complete the object with the tail — a held
//     last part, padding, manifest, footer — and commits the entry and the
//     upload's removal in one transaction.
//   - AbortUpload discards the construction, then the catalog record.
//
// A process killed anywhere leaves the upload recorded (pending, never
// unknown); a new Repo continues it; Cleanup aborts uploads older than
// UploadsConfig.ExpireAfter.

// S3's limits on multipart uploads, which every store applies so that the
// gateway behaves alike on all of them.
const (
	MaxParts    = 10000
	MinPartSize = 5 << 20 // every part of a completed upload but the last
	MaxPartSize = 5 << 30
)

// DefaultUploadExpiry is how long an unfinished upload lives.
const DefaultUploadExpiry = 7 * 24 * time.Hour

// UploadsConfig is the "uploads" section of config.json.
type UploadsConfig struct {
	// ExpireAfter: Cleanup aborts uploads older than this (default 7 days).
	ExpireAfter Duration `json:"expire_after,omitempty"`
}

// Errors of multipart uploads; the gateway maps each to its S3 code.
var (
	// ErrNoSuchUpload (NoSuchUpload): no upload with that id for that
	// bucket and key; completed and aborted uploads are gone too.
	ErrNoSuchUpload = errors.New("no such upload")
	// ErrInvalidPart (InvalidPart): a part the completion names was not
	// uploaded, or its ETag differs.
	ErrInvalidPart = errors.New("invalid part")
	// ErrInvalidPartOrder (InvalidPartOrder): the completion's part
	// numbers do not ascend.
	ErrInvalidPartOrder = errors.New("parts are not in ascending order")
	// ErrEntityTooSmall (EntityTooSmall): a part other than the last is
	// smaller than MinPartSize.
	ErrEntityTooSmall = errors.New("a part other than the last is smaller than 5 MiB")
	// ErrTooManyParts (InvalidArgument): a completion names more than
	// MaxParts parts, or none.
	ErrTooManyParts = errors.New("a completion names more than 10000 parts, or none")
	// ErrInvalidPartNumber (InvalidArgument): a part number outside 1 to
	// MaxParts.
	ErrInvalidPartNumber = errors.New("part number must be 1 to 10000")
	// ErrEntityTooLarge (EntityTooLarge): a part larger than MaxPartSize.
	ErrEntityTooLarge = errors.New("part is larger than 5 GiB")
	// ErrIncompleteBody (IncompleteBody): a part's body was shorter or
	// longer than its declared size; nothing of it was kept.
	ErrIncompleteBody = errors.New("part body differs in length from its declared size")
)

// PartInfo describes an uploaded part.
type PartInfo struct {
	Number   int
	Size     int64  // plaintext bytes
	ETag     string // hex MD5 of the plaintext, unquoted
	Modified time.Time
	Checksum string // PartOptions.Checksum's value, or ""
}

// CompletedPart is one entry of a completion's part list.
type CompletedPart struct {
	Number int
	ETag   string // as the client sends it, quoted or not
}

// UploadInfo describes an upload in progress.
type UploadInfo struct {
	ID, Bucket, Key string
	Initiated       time.Time
}

// attrETag is the attribute (PutOptions.Attrs) holding the object's ETag,
// as the gateway keeps it: unquoted.
const attrETag = "etag"

// uploadOwner is the owner of an upload's pending write. It is not a
// process (an upload outlives the one that began it), so ownerAlive, which
// cannot read it, answers that it may be alive: Cleanup never takes the
// pending write for an orphan. Uploads end by completion, abort or expiry.
func uploadOwner(id string) string { return "multipart upload " + id }

// validUploadID: upload ids are 32 lower-case hex characters; anything
// else names no upload (and never reaches a path).
func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// keyedLocks order, within a process, the operations on one upload: its
// completion and abort exclude each other and wait for the part uploads
// in flight (which then record their parts first), and the uploads of
// one part number take turns. Across processes the catalog keeps them
// safe (a completion fixes the parts; a part recorded after it is
// refused) and the store's checks catch the rest (see CompleteParts).
var keyedLocks = struct {
	sync.Mutex
	m map[string]*keyedLock
}{m: map[string]*keyedLock{}}

type keyedLock struct {
	mu   sync.RWMutex
	refs int
}

func lockKey(k string, shared bool) (unlock func()) {
	keyedLocks.Lock()
	l := keyedLocks.m[k]
	if l == nil {
		l = &keyedLock{}
		keyedLocks.m[k] = l
	}
	l.refs++
	keyedLocks.Unlock()
	if shared {
		l.mu.RLock()
	} else {
		l.mu.Lock()
	}
	return func() {
		if shared {
			l.mu.RUnlock()
		} else {
			l.mu.Unlock()
		}
		keyedLocks.Lock()
		if l.refs--; l.refs == 0 {
			delete(keyedLocks.m, k)
		}
		keyedLocks.Unlock()
	}
}

// partStore returns the store's part capability.
func (r *Repo) partStore() (store.PartUploader, error) {
	pu, ok := r.st.(store.PartUploader)
	if !ok {
		return nil, fmt.Errorf("store %s cannot build objects from parts", r.cfg.Store.Describe())
	}
	return pu, nil
}

// uploadMeta is the metadata an upload's object will carry: the user's
// and the attributes (under AttrPrefix), the ETag included.
func uploadMeta(meta, attrs map[string]string) map[string]string {
	m := make(map[string]string, len(meta)+len(attrs))
	for k, v := range meta {
		m[k] = v
	}
	for k, v := range attrs {
		if k != "" && v != "" {
			m[AttrPrefix+k] = v
		}
	}
	return m
}

// CreateUpload begins a multipart upload of bucket/key with o's metadata
// and returns its id. The bucket is created if missing, as Put does.
func (r *Repo) CreateUpload(ctx context.Context, bucket, key string, o PutOptions) (string, error) {
	for attempt := 0; ; attempt++ {
		id, err := r.createUpload(ctx, bucket, key, o)
		// The bucket key version was retired by another process between
		// reading it and recording the upload: nothing was stored; the
		// primary version takes its place.
		if !errors.Is(err, catalog.ErrKeyRetired) || attempt == 3 {
			return id, err
		}
	}
}

func (r *Repo) createUpload(ctx context.Context, bucket, key string, o PutOptions) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	// The metadata must leave room for the ETag the completion adds, and
	// for what the caller's completion will add.
	attrs := copyMap(o.Attrs)
	maps.Copy(attrs, o.CompleteRoom)
	attrs[attrETag] = strings.Repeat("0", 32) + "-" + strconv.Itoa(MaxParts)
	if _, err := metaPairs(o.Meta, attrs); err != nil {
		return "", err
	}
	pu, err := r.partStore()
	if err != nil {
		return "", err
	}
	w, err := r.writer(ctx, bucket)
	if err != nil {
		return "", err
	}
	objID, err := newID()
	if err != nil {
		return "", err
	}
	uid, err := newID()
	if err != nil {
		return "", err
	}
	ad := r.dataAD(w.bucket.ID, w.bk.Version, objID)
	mp, err := object.NewMultipart(func(dek secret.Key) (keys.Alg, []byte, error) {
		wr, err := w.dk.wrap(ctx, ad, dek, o.Seal.Rand)
		return keys.AlgHKDFGCMCommit, wr, err
	}, o.Seal.Rand)
	if err != nil {
		return "", err
	}
	h := mp.Header()
	mp.Wipe()
	attrs = copyMap(o.Attrs)
	delete(attrs, attrETag)
	u := catalog.Upload{ID: hex.EncodeToString(uid[:]), ObjectID: objID, Bucket: w.bucket.Name, Key: key, Created: r.hooks.now(),
		KeyVersion: w.bk.Version, Wrapped: h.Wrapped, Commit: h.Commit, ContentType: o.ContentType,
		Meta: uploadMeta(o.Meta, attrs), Modified: o.Modified}
	if err := r.cat.CreateUpload(ctx, u, uploadOwner(u.ID)); err != nil {
		if errors.Is(err, catalog.ErrKeyRetired) {
			r.forgetBucketKey(w.bucket.ID, w.bk.Version)
		}
		return "", err
	}
	r.hooks.at("upload:created")
	if _, err := r.storeHandle(ctx, pu, u); err != nil {
		// Nothing usable was made: forget the upload.
		_ = r.abortUpload(context.WithoutCancel(ctx), u)
		return "", err
	}
	return u.ID, nil
}

func copyMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	return c
}

// storeHandle returns the store's handle of u's construction, beginning
// it if a crash left the upload without one.
func (r *Repo) storeHandle(ctx context.Context, pu store.PartUploader, u catalog.Upload) (string, error) {
	if u.StoreHandle != "" {
		return u.StoreHandle, nil
	}
	name := format.StoreName(u.ObjectID)
	h, err := pu.CreateParts(ctx, name)
	if err != nil {
		return "", fmt.Errorf("%s/%s: beginning the upload in the store: %w", u.Bucket, u.Key, err)
	}
	got, err := r.cat.SetUploadHandle(ctx, u.ID, h)
	if err != nil || got != h {
		// Another process began it first, or the upload is gone.
		_ = pu.AbortParts(context.WithoutCancel(ctx), name, h)
	}
	if errors.Is(err, catalog.ErrNotFound) {
		return "", fmt.Errorf("upload %s: %w", u.ID, ErrNoSuchUpload)
	}
	return got, err
}

// upload returns the catalog's record of upload id of bucket/key.
func (r *Repo) upload(ctx context.Context, bucket, key, id string) (catalog.Upload, error) {
	if !validUploadID(id) {
		return catalog.Upload{}, fmt.Errorf("upload %q: %w", id, ErrNoSuchUpload)
	}
	u, err := r.cat.GetUpload(ctx, id)
	if errors.Is(err, catalog.ErrNotFound) || err == nil && (u.Bucket != bucket || u.Key != key) {
		return catalog.Upload{}, fmt.Errorf("upload %s of %s/%s: %w", id, bucket, key, ErrNoSuchUpload)
	}
	return u, err
}

// resume unwraps u's data key (under the bucket key version it was
// wrapped with) and returns the upload's sealer and bucket.
func (r *Repo) resume(ctx context.Context, u catalog.Upload) (*object.Multipart, catalog.Bucket, error) {
	b, err := r.cat.GetBucket(ctx, u.Bucket)
	if err != nil {
		return nil, b, fmt.Errorf("upload %s: %w", u.ID, err)
	}
	bks, err := r.cat.BucketKeys(ctx, b.ID)
	if err != nil {
		return nil, b, err
	}
	i := slices.IndexFunc(bks, func(k catalog.BucketKey) bool { return k.Version == u.KeyVersion })
	if i < 0 {
		return nil, b, fmt.Errorf("upload %s: bucket key v%d is not in the catalog", u.ID, u.KeyVersion)
	}
	dk, err := r.dataKeysFor(ctx, bks[i])
	if err != nil {
		return nil, b, err
	}
	dek, err := dk.unwrap(ctx, r.dataAD(b.ID, u.KeyVersion, u.ObjectID), u.Wrapped)
	if err != nil {
		return nil, b, fmt.Errorf("upload %s: unwrapping its data key: %w", u.ID, err)
	}
	mp, err := object.ResumeMultipart(dek, format.Header{Alg: keys.AlgHKDFGCMCommit, Wrapped: u.Wrapped, Commit: u.Commit})
	if err != nil {
		dek.Wipe()
		return nil, b, fmt.Errorf("upload %s: %w", u.ID, err)
	}
	return mp, b, nil
}

// simdMinPart is the smallest part whose ETag digest partMD5 computes on
// the shared md5-simd server.
const simdMinPart = 1 << 20

// md5Server hashes up to 16 streams at once in the vector lanes of one
// core (8 with AVX2 only; crypto/md5 where neither is present).
var md5Server = sync.OnceValue(md5simd.NewServer)

// partMD5 returns the hash for the ETag of a part of size bytes. MD5 is
// serial within a stream (about 0.7 GB/s a core), and it was a third of
// the gateway's CPU for a large upload; but clients send the parts of an
// upload several at once (the AWS CLI ten), and md5-simd hashes such
// concurrent streams side by side, for about a third of the CPU. A small
// part, or a lone stream on the server, is faster on crypto/md5, which
// small parts keep. The caller closes the hash.
func partMD5(size int64) md5simd.Hasher {
	if size < simdMinPart {
		return md5simd.StdlibHasher()
	}
	return md5Server().NewHash()
}

// PutPart stores part n of upload id from src, which must hold exactly
// size bytes, replacing an earlier part n. The part streams: memory does
// not grow with size.
func (r *Repo) PutPart(ctx context.Context, bucket, key, id string, n int, src io.Reader, size int64) (PartInfo, error) {
	return r.PutPartWith(ctx, bucket, key, id, n, src, size, PartOptions{})
}

// PartOptions are what a caller of PutPartWith knows about a part.
type PartOptions struct {
	// MD5, if set, is the MD5 of the part's bytes as src's own check
	// guarantees it: src fails its last Read (instead of returning EOF)
	// unless the bytes it gave have this MD5 — as the S3 front end's
	// Content-MD5 check does. The part's ETag is then MD5, and the part is
	// not hashed a second time.
	MD5 []byte
	// Checksum, if set, is called once src has been read to its end and
	// the part stored, before it is recorded; its value is recorded with
	// the part (on premises, in the catalog) and given back in PartInfo.
	// The caller checks src against it (as for MD5, src fails its last
	// Read on a mismatch, so the part is not recorded).
	Checksum func() string
}

// PutPartWith is PutPart with what the caller knows of the part.
func (r *Repo) PutPartWith(ctx context.Context, bucket, key, id string, n int, src io.Reader, size int64, o PartOptions) (PartInfo, error) {
	if o.MD5 != nil && len(o.MD5) != md5.Size {
		return PartInfo{}, fmt.Errorf("part %d: an MD5 of %d bytes", n, len(o.MD5))
	}
	switch {
	case n < 1 || n > MaxParts:
		return PartInfo{}, fmt.Errorf("part %d: %w", n, ErrInvalidPartNumber)
	case size > MaxPartSize:
		return PartInfo{}, fmt.Errorf("part %d of %d bytes: %w", n, size, ErrEntityTooLarge)
	case size < 0:
		return PartInfo{}, fmt.Errorf("part %d: the size must be given (not %d)", n, size)
	}
	if !validUploadID(id) {
		return PartInfo{}, fmt.Errorf("upload %q: %w", id, ErrNoSuchUpload)
	}
	pu, err := r.partStore()
	if err != nil {
		return PartInfo{}, err
	}
	defer lockKey(id, true)()
	defer lockKey(id+"/"+strconv.Itoa(n), false)()
	u, err := r.upload(ctx, bucket, key, id)
	if err != nil {
		return PartInfo{}, err
	}
	if u.Completing {
		return PartInfo{}, fmt.Errorf("upload %s is being completed: %w", id, ErrNoSuchUpload)
	}
	mp, _, err := r.resume(ctx, u)
	if err != nil {
		return PartInfo{}, err
	}
	defer mp.Wipe()
	var sum hash.Hash
	if o.MD5 == nil {
		h := partMD5(size)
		defer h.Close()
		sum = h
		src = io.TeeReader(src, sum)
	}
	seg, err := mp.Segment(src, size, nil)
	if err != nil {
		return PartInfo{}, err
	}
	// The stored part: its segment, after the header for part 1.
	var body io.Reader = seg
	bodySize := seg.Len()
	if n == 1 {
		body, bodySize = io.MultiReader(bytes.NewReader(mp.HeaderBytes()), seg), bodySize+format.HeaderLen
	}
	lim := pu.PartLimits()
	p := catalog.UploadPart{Number: n, Size: size, Salt: seg.Salt()}
	p.Held = lim.MinSize > 0 && bodySize < lim.MinSize || lim.MaxParts > 0 && n >= lim.MaxParts
	name := format.StoreName(u.ObjectID)
	if p.Held {
		p.Token = fmt.Sprintf("%d-%x", n, p.Salt[:8])
		err = r.holdPart(id, p.Token, body, bodySize)
	} else {
		var handle string
		if handle, err = r.storeHandle(ctx, pu, u); err != nil {
			return PartInfo{}, err
		}
		u.StoreHandle = handle
		if lim.Rewind {
			var sb *spoolBody
			if sb, err = r.newSpoolBody(body, bodySize); err != nil {
				return PartInfo{}, err
			}
			defer sb.Close()
			body = sb
		}
		p.Token, err = pu.UploadPart(ctx, name, handle, n, body, bodySize)
	}
	if err != nil {
		if errors.Is(err, object.ErrSegmentLength) {
			return PartInfo{}, fmt.Errorf("part %d (%d bytes declared): %w: %v", n, size, ErrIncompleteBody, err)
		}
		return PartInfo{}, fmt.Errorf("%s/%s: part %d: %w", bucket, key, n, err)
	}
	r.hooks.at("upload:part-stored")
	if sum != nil {
		p.ETag = hex.EncodeToString(sum.Sum(nil))
	} else {
		p.ETag = hex.EncodeToString(o.MD5)
	}
	if o.Checksum != nil {
		p.Checksum = o.Checksum()
	}
	p.Modified = time.Now().UTC().Round(0) // as the catalog gives it back
	old, err := r.cat.PutUploadPart(ctx, id, p)
	if err != nil {
		r.dropPart(context.WithoutCancel(ctx), pu, u, p)
		if errors.Is(err, catalog.ErrNotFound) || errors.Is(err, catalog.ErrCompleting) {
			return PartInfo{}, fmt.Errorf("upload %s: %w (%v)", id, ErrNoSuchUpload, err)
		}
		return PartInfo{}, err
	}
	if old != nil && (old.Held != p.Held || old.Token != p.Token) {
		r.dropPart(ctx, pu, u, *old)
	}
	return PartInfo{Number: n, Size: size, ETag: p.ETag, Modified: p.Modified, Checksum: p.Checksum}, nil
}

// dropPart deletes the stored bytes of a part nobody will complete. A
// failure leaves them to the completion, abort or janitor.
func (r *Repo) dropPart(ctx context.Context, pu store.PartUploader, u catalog.Upload, p catalog.UploadPart) {
	if p.Held {
		os.Remove(filepath.Join(r.uploadSpool(u.ID), p.Token))
		return
	}
	if u.StoreHandle != "" {
		_ = pu.DeletePart(ctx, format.StoreName(u.ObjectID), u.StoreHandle, store.StoredPart{Number: p.Number, Token: p.Token})
	}
}

// ListParts returns the parts of upload id, by number.
func (r *Repo) ListParts(ctx context.Context, bucket, key, id string) ([]PartInfo, error) {
	if _, err := r.upload(ctx, bucket, key, id); err != nil {
		return nil, err
	}
	ps, err := r.cat.UploadParts(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]PartInfo, len(ps))
	for i, p := range ps {
		out[i] = partInfo(p)
	}
	return out, nil
}

func partInfo(p catalog.UploadPart) PartInfo {
	return PartInfo{Number: p.Number, Size: p.Size, ETag: p.ETag, Modified: p.Modified, Checksum: p.Checksum}
}

// UploadAttr returns the attribute name (PutOptions.Attrs) that upload id
// of bucket/key was created with, or "".
func (r *Repo) UploadAttr(ctx context.Context, bucket, key, id, name string) (string, error) {
	u, err := r.upload(ctx, bucket, key, id)
	if err != nil {
		return "", err
	}
	return u.Meta[AttrPrefix+name], nil
}

// ListUploads returns the uploads in progress in bucket whose key starts
// with prefix, by key and then by initiation.
func (r *Repo) ListUploads(ctx context.Context, bucket, prefix string) ([]UploadInfo, error) {
	if bucket == "" {
		return nil, errors.New("list uploads: no bucket given")
	}
	us, err := r.cat.ListUploads(ctx, bucket, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]UploadInfo, len(us))
	for i, u := range us {
		out[i] = UploadInfo{ID: u.ID, Bucket: u.Bucket, Key: u.Key, Initiated: u.Created}
	}
	return out, nil
}

// checkCompletion matches a completion's list with the recorded parts and
// returns the chosen ones in order.
func checkCompletion(list []CompletedPart, recorded []catalog.UploadPart) ([]catalog.UploadPart, error) {
	if len(list) == 0 || len(list) > MaxParts {
		return nil, fmt.Errorf("%d parts: %w", len(list), ErrTooManyParts)
	}
	byNum := make(map[int]catalog.UploadPart, len(recorded))
	for _, p := range recorded {
		byNum[p.Number] = p
	}
	chosen := make([]catalog.UploadPart, len(list))
	for i, c := range list {
		if i > 0 && c.Number <= list[i-1].Number {
			return nil, fmt.Errorf("part %d after part %d: %w", c.Number, list[i-1].Number, ErrInvalidPartOrder)
		}
		p, ok := byNum[c.Number]
		if !ok {
			return nil, fmt.Errorf("part %d was not uploaded: %w", c.Number, ErrInvalidPart)
		}
		if want := strings.ToLower(strings.Trim(c.ETag, `"`)); want != p.ETag {
			return nil, fmt.Errorf("part %d: ETag %q is not the part's: %w", c.Number, c.ETag, ErrInvalidPart)
		}
		chosen[i] = p
	}
	for _, p := range chosen[:len(chosen)-1] {
		if p.Size < MinPartSize {
			return nil, fmt.Errorf("part %d is %d bytes: %w", p.Number, p.Size, ErrEntityTooSmall)
		}
	}
	if chosen[0].Number != 1 {
		// Part 1 carries the object's header (docs/design.md §3).
		return nil, fmt.Errorf("the first part must be part 1, not %d: %w", chosen[0].Number, ErrInvalidPart)
	}
	return chosen, nil
}

// multipartETag is S3's ETag of a multipart object: the MD5 of the parts'
// binary MD5s, then "-" and the number of parts.
func multipartETag(parts []catalog.UploadPart) string {
	h := md5.New()
	for _, p := range parts {
		b, _ := hex.DecodeString(p.ETag)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts))
}

// CompleteOptions tune CompleteUpload.
type CompleteOptions struct {
	// CreateOnly completes only if bucket/key has no current object;
	// otherwise the upload is abandoned and the error wraps ErrKeyExists.
	// The check is part of the commit (see PutOptions.CreateOnly).
	CreateOnly bool
	// Attrs, if set, is called with the parts the completion chose, in
	// order, before anything is fixed; the attributes it returns are set
	// on the object (an empty value removes one). An error refuses the
	// completion and changes nothing (the upload can be completed with
	// another list), as do attributes that do not fit
	// (ErrMetadataTooLarge; PutOptions.CompleteRoom reserves room at
	// creation). It must be a function of the parts alone: a completion
	// retried after a failure or a restart calls it again with the same
	// parts, and must seal the same manifest.
	Attrs func(parts []PartInfo) (map[string]string, error)
}

// CompleteUpload completes upload id with the listed parts, in order, and
// returns the committed entry. A refused list (ErrInvalidPart,
// ErrInvalidPartOrder, ErrEntityTooSmall, ErrTooManyParts) changes
// nothing: the upload can be completed with a correct one. Once a
// completion has begun, the upload's parts are fixed and only the same
// list completes it (a retry after a failure or a restart).
func (r *Repo) CompleteUpload(ctx context.Context, bucket, key, id string, list []CompletedPart, o CompleteOptions) (catalog.Entry, error) {
	u, err := r.upload(ctx, bucket, key, id)
	if err != nil {
		return catalog.Entry{}, err
	}
	pu, err := r.partStore()
	if err != nil {
		return catalog.Entry{}, err
	}
	defer lockKey(id, false)()
	if u, err = r.upload(ctx, bucket, key, id); err != nil { // as it is now
		return catalog.Entry{}, err
	}
	recorded, err := r.cat.UploadParts(ctx, id)
	if err != nil {
		return catalog.Entry{}, err
	}
	chosen, err := checkCompletion(list, recorded)
	if err != nil {
		return catalog.Entry{}, fmt.Errorf("%s/%s: upload %s: %w", bucket, key, id, err)
	}
	meta, err := completedMeta(u, chosen, o.Attrs)
	if err != nil {
		return catalog.Entry{}, fmt.Errorf("%s/%s: upload %s: %w", bucket, key, id, err)
	}
	nums := make([]int, len(chosen))
	for i, p := range chosen {
		nums[i] = p.Number
	}
	if !u.Completing {
		mod := u.Modified
		if mod.IsZero() {
			mod = time.Now()
		}
		u, err = r.cat.BeginComplete(ctx, id, nums, mod)
		if errors.Is(err, catalog.ErrNotFound) {
			return catalog.Entry{}, fmt.Errorf("upload %s: %w", id, ErrNoSuchUpload)
		}
		if err != nil {
			return catalog.Entry{}, err
		}
	}
	if !slices.Equal(u.Parts, nums) {
		return catalog.Entry{}, fmt.Errorf("%s/%s: upload %s is being completed with parts %v: %w", bucket, key, id, u.Parts, ErrInvalidPart)
	}
	r.hooks.at("upload:completing")
	e, err := r.finishUpload(ctx, pu, u, chosen, meta, o)
	if err != nil {
		return catalog.Entry{}, fmt.Errorf("%s/%s: completing upload %s: %w", bucket, key, id, err)
	}
	return e, nil
}

// completedMeta is the metadata of u's object completed from the chosen
// parts: u's, with the multipart ETag and the attributes attrs gives.
func completedMeta(u catalog.Upload, chosen []catalog.UploadPart, attrs func([]PartInfo) (map[string]string, error)) (map[string]string, error) {
	meta := copyMap(u.Meta)
	meta[AttrPrefix+attrETag] = multipartETag(chosen)
	if attrs == nil {
		return meta, nil
	}
	infos := make([]PartInfo, len(chosen))
	for i, p := range chosen {
		infos[i] = partInfo(p)
	}
	extra, err := attrs(infos)
	if err != nil {
		return nil, err
	}
	for k, v := range extra {
		if v == "" {
			delete(meta, AttrPrefix+k)
		} else {
			meta[AttrPrefix+k] = v
		}
	}
	user, all := map[string]string{}, map[string]string{}
	for k, v := range meta {
		if name, ok := cutAttr(k); ok {
			all[name] = v
		} else {
			user[k] = v
		}
	}
	if _, err := metaPairs(user, all); err != nil {
		return nil, err
	}
	return meta, nil
}

// finishUpload seals the trailer of u over the chosen parts, with
// metadata meta, completes the object in the store and commits it.
func (r *Repo) finishUpload(ctx context.Context, pu store.PartUploader, u catalog.Upload, chosen []catalog.UploadPart, meta map[string]string, o CompleteOptions) (catalog.Entry, error) {
	mp, b, err := r.resume(ctx, u)
	if err != nil {
		return catalog.Entry{}, err
	}
	defer mp.Wipe()
	handle, err := r.storeHandle(ctx, pu, u)
	if err != nil {
		return catalog.Entry{}, err
	}
	// The object's segments and stored parts. An empty last part adds
	// nothing (only an empty object has an empty segment); a held part —
	// necessarily the last — goes with the tail.
	var segs []format.Segment
	var stored []store.StoredPart
	var tail readerAts
	for i, p := range chosen {
		last := i == len(chosen)-1
		if p.Size == 0 && len(chosen) > 1 {
			continue
		}
		segs = append(segs, format.Segment{Len: uint64(p.Size), Salt: p.Salt})
		if !p.Held {
			stored = append(stored, store.StoredPart{Number: p.Number, Token: p.Token})
			continue
		}
		if !last {
			return catalog.Entry{}, fmt.Errorf("internal error: part %d is held but not last", p.Number)
		}
		f, err := os.Open(filepath.Join(r.uploadSpool(u.ID), p.Token))
		if err != nil {
			return catalog.Entry{}, fmt.Errorf("part %d, held on premises, is gone (%v): %w", p.Number, err, ErrInvalidPart)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return catalog.Entry{}, err
		}
		want := int64(format.SegmentCTLen(uint64(p.Size)))
		if p.Number == 1 {
			want += format.HeaderLen
		}
		if fi.Size() != want {
			return catalog.Entry{}, fmt.Errorf("part %d, held on premises, is %d bytes, not %d: %w", p.Number, fi.Size(), want, ErrInvalidPart)
		}
		tail = append(tail, sizedReaderAt{f, want})
	}
	pairs := make([]format.MetaPair, 0, len(meta))
	for k, v := range meta {
		pairs = append(pairs, format.MetaPair{Name: k, Value: v})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Name < pairs[j].Name })
	ident := object.Identity{Kind: format.KindData, Repo: r.id, Object: u.ObjectID, Bucket: b.ID, KeyVersion: u.KeyVersion,
		BucketName: u.Bucket, Key: u.Key, ObjectVersion: u.Version}
	res, err := mp.Trailer(ident, object.Attrs{Modified: u.Modified, ContentType: u.ContentType, Meta: pairs}, segs)
	if err != nil {
		return catalog.Entry{}, err
	}
	tail = append(tail,
		sizedReaderAt{mp.Padding(), int64(res.Sizes.Padding)},
		sizedReaderAt{bytes.NewReader(res.ManifestCT), int64(len(res.ManifestCT))},
		sizedReaderAt{bytes.NewReader(res.FooterCT), int64(len(res.FooterCT))})
	name := format.StoreName(u.ObjectID)
	if err := pu.CompleteParts(ctx, name, handle, stored, tail, tail.size()); err != nil {
		if errors.Is(err, store.ErrPartMismatch) {
			return catalog.Entry{}, fmt.Errorf("%w: a part was replaced while the upload completed; send it again (%v)", ErrInvalidPart, err)
		}
		return catalog.Entry{}, err
	}
	r.hooks.at("upload:stored")
	// What the store made must have the length the size rule gives, or the
	// catalog would pin an object no reader accepts.
	info, err := r.st.Stat(ctx, name)
	if err != nil {
		return catalog.Entry{}, err
	}
	if uint64(info.Size) != res.Sizes.Stored {
		r.discardUpload(ctx, u)
		return catalog.Entry{}, fmt.Errorf("internal error: the store completed %d bytes, the size rule says %d; the upload is abandoned", info.Size, res.Sizes.Stored)
	}
	e := catalog.Entry{
		Bucket: u.Bucket, Key: u.Key, Version: u.Version, ObjectID: u.ObjectID, Size: int64(res.Manifest.Length),
		StoredLen: int64(res.Sizes.Stored), ManifestOff: int64(res.Sizes.ManifestOff), ManifestLen: int64(res.Sizes.ManifestLen),
		Pin: res.Pin, Commit: res.Commit, KeyVersion: u.KeyVersion, Wrapped: u.Wrapped,
		Modified: time.Unix(0, int64(res.Manifest.Modified)), ContentType: u.ContentType, Meta: meta,
		Segments: len(res.Manifest.Segments),
	}
	old, err := r.cat.CommitUpload(ctx, u.ID, e, o.CreateOnly)
	switch {
	case errors.Is(err, catalog.ErrKeyExists):
		// A create-only completion found the key taken: the upload ends
		// here, leaving nothing behind.
		r.discardUpload(ctx, u)
		return catalog.Entry{}, err
	case errors.Is(err, catalog.ErrStaleVersion):
		// A newer version of the key was committed since the completion
		// began: this one can never be current, and must go.
		r.discardUpload(ctx, u)
		return catalog.Entry{}, err
	case errors.Is(err, catalog.ErrNotFound):
		// The upload is gone: another process completed it (the same
		// list seals the same object) or aborted it.
		if cur, gerr := r.cat.Get(ctx, u.Bucket, u.Key); gerr == nil && cur.ObjectID == u.ObjectID {
			return cur, nil
		}
		if k, lerr := r.cat.Lookup(ctx, u.ObjectID); lerr == nil && k == catalog.KnownNone {
			// Aborted: nothing records the object any more.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discardTimeout)
			_ = r.st.Delete(dctx, name)
			cancel()
		}
		return catalog.Entry{}, fmt.Errorf("upload %s: %w (%v)", u.ID, ErrNoSuchUpload, err)
	case err != nil:
		return catalog.Entry{}, err
	}
	r.hooks.at("upload:committed")
	os.RemoveAll(r.uploadSpool(u.ID))
	if old != nil {
		r.retire(ctx, old.ObjectID)
	}
	return e, nil
}

// discardUpload removes a completed object that must not be committed,
// then the upload.
func (r *Repo) discardUpload(ctx context.Context, u catalog.Upload) {
	ctx = context.WithoutCancel(ctx)
	u.Completing = true
	_ = r.abortUpload(ctx, u)
}

// AbortUpload discards upload id: its parts, in the store and held, and
// its record. Aborting an upload whose completion had begun removes what
// the completion stored.
func (r *Repo) AbortUpload(ctx context.Context, bucket, key, id string) error {
	u, err := r.upload(ctx, bucket, key, id)
	if err != nil {
		return err
	}
	defer lockKey(id, false)()
	if u, err = r.upload(ctx, bucket, key, id); err != nil { // as it is now
		return err
	}
	return r.abortUpload(ctx, u)
}

// abortUpload ends upload u: the catalog first, then the store. Of an
// abort and a completion racing in two processes, the one whose
// transaction removes the upload's record wins: the completion commits
// only an upload that is still recorded, and an abort that finds the
// record gone (completed meanwhile) leaves the object alone — it is the
// key's current version. Removing the record makes a completion's stored
// object garbage in the same transaction (catalog.DeleteUpload), so a
// crash before the store deletion leaves garbage for Cleanup, never an
// object the catalog does not know.
func (r *Repo) abortUpload(ctx context.Context, u catalog.Upload) error {
	name := format.StoreName(u.ObjectID)
	gone, _, err := r.cat.DeleteUpload(ctx, u.ID)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil // completed or aborted by another process
	}
	if err != nil {
		return err
	}
	if u.StoreHandle != "" {
		pu, err := r.partStore()
		if err != nil {
			return err
		}
		if err := pu.AbortParts(ctx, name, u.StoreHandle); err != nil && !isNotExist(err) {
			return fmt.Errorf("aborting upload %s: %w", u.ID, err)
		}
	}
	if gone.Completing || u.Completing {
		if err := r.st.Delete(ctx, name); err != nil && !isNotExist(err) {
			return fmt.Errorf("aborting upload %s: %w", u.ID, err)
		}
		if gone.Completing {
			_ = r.cat.ForgetGarbage(ctx, u.ObjectID)
		}
	}
	os.RemoveAll(r.uploadSpool(u.ID))
	return nil
}

// uploadExpiry is how old an upload Cleanup aborts.
func (r *Repo) uploadExpiry() time.Duration {
	if c := r.cfg.Uploads; c != nil && c.ExpireAfter > 0 {
		return time.Duration(c.ExpireAfter)
	}
	return DefaultUploadExpiry
}

// expireUploads aborts the uploads older than the expiry (part of
// Cleanup) and removes spool files nothing refers to. It returns how many
// uploads it aborted.
func (r *Repo) expireUploads(ctx context.Context) (int, error) {
	us, err := r.cat.ListUploads(ctx, "", "")
	if err != nil {
		return 0, err
	}
	n := 0
	live := map[string]bool{}
	cutoff := r.hooks.now().Add(-r.uploadExpiry())
	for _, u := range us {
		if u.Created.Before(cutoff) {
			unlock := lockKey(u.ID, false)
			now, err := r.cat.GetUpload(ctx, u.ID) // as it is now
			if err == nil {
				err = r.abortUpload(ctx, now)
			}
			unlock()
			switch {
			case err == nil:
				n++
				continue
			case errors.Is(err, catalog.ErrNotFound): // completed or aborted meanwhile
				continue
			}
		}
		live[u.ID] = true
	}
	r.cleanSpool(func(id string) bool {
		if live[id] {
			return true
		}
		// Created since the listing?
		_, err := r.cat.GetUpload(ctx, id)
		return !errors.Is(err, catalog.ErrNotFound)
	})
	return n, nil
}

// uploadFindings reports every upload in progress as pending (part of
// Verify), and takes its object out of the listing: an upload whose
// completion stored the object but was not committed yet shows there.
func (r *Repo) uploadFindings(ctx context.Context, listed map[string]int64) ([]Finding, error) {
	us, err := r.cat.ListUploads(ctx, "", "")
	if err != nil {
		return nil, err
	}
	var fs []Finding
	for _, u := range us {
		name := format.StoreName(u.ObjectID)
		delete(listed, name)
		detail := fmt.Sprintf("multipart upload %s, begun %s", u.ID, u.Created.Format(time.RFC3339))
		if u.Completing {
			detail += ", completing"
		}
		fs = append(fs, Finding{Bucket: u.Bucket, Key: u.Key, Kind: "multipart upload", Name: name, Status: StatusPending, Detail: detail})
	}
	return fs, nil
}
