package gateway

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/gofiber/fiber/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/s3api/utils"
	"github.com/versity/versitygw/s3err"
	"github.com/versity/versitygw/s3response"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/repo"
)

// Backend serves the S3 API from a Holdfast repository: versitygw's front
// end (embedgw) authenticates and parses each request and calls these
// methods. Everything returned to a client comes from the catalog and the
// authenticated plaintext, never from the provider.
//
// Rules every method follows:
//   - Strings from the request are cloned before they outlive it: the
//     front end hands out views of its reusable request buffers.
//   - Repository calls run under context.WithoutCancel: the front end
//     cancels every request's context as soon as shutdown starts, and a
//     write already under way should finish (shutdown waits for it).
//   - The account is checked again here (defence in depth), on top of the
//     front end's policy evaluation.
type Backend struct {
	backend.BackendUnsupported
	repo   *repo.Repo
	access Access
	owner  string // the front end's root account: the owner of every bucket
	events Events
	guard  *posture.Guard // nil: keys are never sealed (see UseGuard)
	live   bodies         // GET bodies being sent
}

// Access is what the backend asks about access keys.
type Access interface {
	// BucketPolicy is the bucket policy, in AWS policy JSON, that the
	// front end authorizes a request by key against: the statement that
	// grants key what it may do in bucket, alone (never one for an
	// anonymous principal). The authorizer parses it on every request,
	// so it holds no other key's statement, which would change no
	// decision about key's request and cost a parse per key.
	BucketPolicy(bucket, key string) ([]byte, error)
	// Allowed reports whether key may do op in bucket.
	Allowed(key, bucket string, op Op) bool
	// MayOverwrite reports whether key may replace an existing object in
	// bucket (false for inbox keys).
	MayOverwrite(key, bucket string) bool
	// Visible reports whether bucket shows in key's ListBuckets (not for
	// an inbox key, which may only put into it).
	Visible(key, bucket string) bool
	// Suspended reports whether key is refused everything for now (cut
	// off after an audit rate anomaly); Allowed is false for it too.
	Suspended(key string) bool
}

// Op is a kind of request, for Access.Allowed.
type Op int

const (
	OpRead   Op = iota // GetObject, HeadObject
	OpWrite            // PutObject, multipart, copy destination
	OpList             // ListObjects, list multipart uploads
	OpDelete           // DeleteObject(s)
	OpAdmin            // create and delete buckets
)

// Events receives what the operator should hear about: damaged objects
// (an integrity failure on read) and request outcomes for metrics.
type Events interface {
	Integrity(bucket, key string, err error)
	// Request is called when an operation's handler returns (a GET's body
	// is sent after that), with the front end's request id and the access
	// key id (never a secret).
	Request(op, requestID, key string, start time.Time, err error)
	Received(n int64) // body bytes of a stored object
	Sent(n int64)     // body bytes sent to a client
}

// ObjectEvents is implemented by an Events sink that records what each
// operation was on too (the audit log, internal/audit); the backend
// finds it by type assertion. Object is called with Request's arguments
// and the operation's bucket and key: "" where it has none, and both ""
// for the multipart operations (multipart.go reports through done).
// The strings are the sink's to keep.
type ObjectEvents interface {
	// keyUse is set when the request opened an object (unwrapping its data
	// key) although op does not always: HeadObject with partNumber and
	// GetObjectAttributes read the manifest.
	Object(op, requestID, accessKey, bucket, key string, keyUse bool, err error)
}

type noEvents struct{}

func (noEvents) Integrity(string, string, error)                  {}
func (noEvents) Request(string, string, string, time.Time, error) {}
func (noEvents) Received(int64)                                   {}
func (noEvents) Sent(int64)                                       {}

// done reports an operation to the events sink; methods defer it with
// their named error result.
func (b *Backend) done(ctx context.Context, op string, start time.Time, err *error) {
	b.doneOn(ctx, op, "", "", start, err)
}

// doneOn is done for an operation on bucket and key (either may be "").
func (b *Backend) doneOn(ctx context.Context, op, bucket, key string, start time.Time, err *error) {
	id, _ := ctx.Value("request-id").(string)
	acc := account(ctx).Access
	b.events.Request(op, id, acc, start, *err)
	if oe, ok := b.events.(ObjectEvents); ok {
		oe.Object(op, strings.Clone(id), strings.Clone(acc), strings.Clone(bucket), strings.Clone(key), keyUsed(ctx), *err)
	}
}

// Register adds the collectors of a sink that wraps m (the audit log's
// counters) to the metrics /metrics serves.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// NewBackend returns the backend for r; ev may be nil.
func NewBackend(r *repo.Repo, a Access, ev Events) *Backend {
	if ev == nil {
		ev = noEvents{}
	}
	return &Backend{repo: r, access: a, events: ev}
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ Events          = (*Metrics)(nil)
)

func (b *Backend) String() string { return "holdfast" }

// Shutdown is called by the front end when it stops; the repository is
// closed by its owner.
func (b *Backend) Shutdown() {}

// account is the authenticated account of the request.
func account(ctx context.Context) auth.Account {
	a, _ := ctx.Value("account").(auth.Account)
	return a
}

// allowed checks op for the request's account; the root account (only
// the gateway itself knows its secret) may do everything.
func (b *Backend) allowed(ctx context.Context, bucket string, op Op) error {
	a := account(ctx)
	if a.Access != "" && (a.Access == b.owner || b.access.Allowed(a.Access, bucket, op)) {
		return nil
	}
	return s3err.GetAPIError(s3err.ErrAccessDenied)
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return strings.Clone(*s)
}

func ptr[T any](v T) *T { return &v }

// detached keeps ctx's values (the account, the request id) without its
// cancellation; see Backend.
func detached(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// ---- buckets ----

// visible refuses a bucket the request's key has no grant on, whether or
// not it exists: a key learns nothing about buckets it may not use.
func (b *Backend) visible(ctx context.Context, bucket string) error {
	a := account(ctx)
	if a.Access == "" || (a.Access != b.owner && !b.anyGrant(a.Access, bucket)) {
		return s3err.GetAPIError(s3err.ErrAccessDenied)
	}
	return b.bucketExists(ctx, bucket)
}

// bucketFor checks that the request's key may do op in bucket, and that
// the bucket exists.
func (b *Backend) bucketFor(ctx context.Context, bucket string, op Op) error {
	if err := b.allowed(ctx, bucket, op); err != nil {
		return err
	}
	return b.bucketExists(ctx, bucket)
}

// headerAttrs are the attributes (repo.PutOptions.Attrs) kept from a
// request's object headers.
func headerAttrs(encoding, disposition, language, cacheControl, expires *string) map[string]string {
	return map[string]string{
		attrContentEncoding: contentEncoding(str(encoding)), attrContentDisposition: str(disposition),
		attrContentLanguage: str(language), attrCacheControl: str(cacheControl), attrExpires: str(expires),
	}
}

func (b *Backend) bucketExists(ctx context.Context, bucket string) error {
	seen, _ := ctx.Value(bucketSeenKey{}).(*bucketSeen)
	if seen != nil {
		if p := seen.name.Load(); p != nil && *p == bucket {
			return nil
		}
	}
	if _, err := b.repo.Bucket(detached(ctx), bucket); err != nil {
		return s3Error(err, true)
	}
	if seen != nil {
		name := strings.Clone(bucket) // bucket may alias a buffer the front end reuses
		seen.name.Store(&name)
	}
	return nil
}

// bucketSeen remembers, for one request, the bucket found to exist: the
// front end asks for the bucket's ACL and policy before the operation
// itself, and each would otherwise read the catalog again.
type bucketSeen struct{ name atomic.Pointer[string] }

type bucketSeenKey struct{}

type contentMD5Key struct{}

// keyUseKey holds, per request, whether it opened an object (markKeyUse).
type keyUseKey struct{}

// markKeyUse records that the request opened an object, unwrapping its
// data key: the audit's rate watch counts it (ObjectEvents).
func markKeyUse(ctx context.Context) {
	if u, ok := ctx.Value(keyUseKey{}).(*atomic.Bool); ok {
		u.Store(true)
	}
}

func keyUsed(ctx context.Context) bool {
	u, ok := ctx.Value(keyUseKey{}).(*atomic.Bool)
	return ok && u.Load()
}

// rememberBucket gives each request its bucketSeen, and keeps the
// Content-MD5 of a PUT that is not a copy (see contentMD5).
func rememberBucket(c fiber.Ctx) error {
	c.Locals(bucketSeenKey{}, new(bucketSeen))
	c.Locals(keyUseKey{}, new(atomic.Bool))
	// Only PutObject and UploadPart (PUT, no copy source) have their body
	// checked against Content-MD5 by the front end. A POST Object (a
	// browser form) carries its file in a form part the header does not
	// describe, and the front end checks nothing there: TestContentMD5.
	put := c.Request().Header.IsPut() && len(c.Request().Header.Peek("X-Amz-Copy-Source")) == 0
	if v := c.Request().Header.Peek("Content-Md5"); put && len(v) > 0 {
		if sum, err := base64.StdEncoding.DecodeString(string(v)); err == nil && len(sum) == md5.Size {
			c.Locals(contentMD5Key{}, sum)
		}
	}
	return c.Next()
}

// contentMD5 is the MD5 a PutObject or UploadPart request's Content-MD5
// header gives for its body, or nil (always nil for other requests). The
// front end checks the body against it (its Content-MD5 reader fails the
// body's last Read with BadDigest on a mismatch, and the repository
// commits only after a clean EOF), so a write that succeeds has exactly
// this MD5 and need not be hashed again for its ETag: TestContentMD5
// holds the front end to it.
func contentMD5(ctx context.Context) []byte {
	sum, _ := ctx.Value(contentMD5Key{}).([]byte)
	return sum
}

// GetBucketAcl is called by the front end on every bucket and object
// request; its error is also the NoSuchBucket answer. A key with no grant
// on the bucket learns nothing about it, not even whether it exists.
func (b *Backend) GetBucketAcl(ctx context.Context, in *s3.GetBucketAclInput) ([]byte, error) {
	if err := b.visible(ctx, str(in.Bucket)); err != nil {
		return nil, err
	}
	return json.Marshal(auth.ACL{Owner: b.owner})
}

func (b *Backend) anyGrant(key, bucket string) bool {
	for _, op := range []Op{OpRead, OpWrite, OpList, OpDelete, OpAdmin} {
		if b.access.Allowed(key, bucket, op) {
			return true
		}
	}
	return false
}

// GetBucketPolicy returns the policy generated from the access keys for
// the request's key: it is how per-key permissions reach the front end's
// authorizer (clients cannot read policies).
func (b *Backend) GetBucketPolicy(ctx context.Context, bucket string) ([]byte, error) {
	if err := b.visible(ctx, bucket); err != nil {
		return nil, err
	}
	return b.access.BucketPolicy(bucket, account(ctx).Access)
}

// Bucket policies and ACLs are derived from `holdfast access`; clients
// cannot set them.
func (b *Backend) PutBucketPolicy(context.Context, string, []byte) error {
	return s3err.GetAPIError(s3err.ErrAccessDenied)
}

func (b *Backend) DeleteBucketPolicy(context.Context, string) error {
	return s3err.GetAPIError(s3err.ErrAccessDenied)
}

func (b *Backend) PutBucketAcl(context.Context, string, []byte) error {
	return s3err.GetAPIError(s3err.ErrAccessDenied)
}

// GetObjectLockConfiguration: no object lock (the front end asks before
// every write and needs this exact error).
func (b *Backend) GetObjectLockConfiguration(context.Context, string) ([]byte, error) {
	return nil, s3err.GetAPIError(s3err.ErrObjectLockConfigurationNotFound)
}

func (b *Backend) GetBucketVersioning(ctx context.Context, bucket string) (s3response.GetBucketVersioningOutput, error) {
	return s3response.GetBucketVersioningOutput{}, b.visible(ctx, bucket)
}

func (b *Backend) ListBuckets(ctx context.Context, in s3response.ListBucketsInput) (_ s3response.ListAllMyBucketsResult, err error) {
	defer b.done(ctx, "ListBuckets", time.Now(), &err)
	bs, err := b.repo.Buckets(detached(ctx))
	if err != nil {
		return s3response.ListAllMyBucketsResult{}, s3Error(err, true)
	}
	a := account(ctx)
	if a.Access != b.owner && b.access.Suspended(a.Access) {
		return s3response.ListAllMyBucketsResult{}, s3err.GetAPIError(s3err.ErrAccessDenied)
	}
	out := s3response.ListAllMyBucketsResult{Owner: s3response.CanonicalUser{ID: a.Access}}
	for _, bk := range bs {
		if !strings.HasPrefix(bk.Name, in.Prefix) {
			continue
		}
		if a.Access != b.owner && !b.access.Visible(a.Access, bk.Name) {
			continue
		}
		out.Buckets.Bucket = append(out.Buckets.Bucket, s3response.ListAllMyBucketsEntry{Name: bk.Name, CreationDate: bk.Created})
	}
	out.Prefix = in.Prefix
	return out, nil
}

func (b *Backend) HeadBucket(ctx context.Context, in *s3.HeadBucketInput) (_ *s3.HeadBucketOutput, err error) {
	defer b.doneOn(ctx, "HeadBucket", str(in.Bucket), "", time.Now(), &err)
	if err := b.visible(ctx, str(in.Bucket)); err != nil {
		return nil, err
	}
	return &s3.HeadBucketOutput{}, nil
}

func (b *Backend) CreateBucket(ctx context.Context, in *s3.CreateBucketInput, _ []byte) (err error) {
	bucket := str(in.Bucket)
	defer b.doneOn(ctx, "CreateBucket", bucket, "", time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpAdmin); err != nil {
		return err
	}
	if _, err := b.repo.CreateBucket(detached(ctx), bucket); err != nil {
		if errors.Is(err, repo.ErrExists) {
			return s3err.GetAPIError(s3err.ErrBucketAlreadyOwnedByYou)
		}
		return s3Error(err, true)
	}
	return nil
}

func (b *Backend) DeleteBucket(ctx context.Context, bucket string) (err error) {
	defer b.doneOn(ctx, "DeleteBucket", bucket, "", time.Now(), &err)
	bucket = strings.Clone(bucket)
	if err := b.allowed(ctx, bucket, OpAdmin); err != nil {
		return err
	}
	return s3Error(b.repo.DeleteBucket(detached(ctx), bucket), true)
}

// ---- objects ----

// Attribute names (repo.PutOptions.Attrs) for what S3 keeps beside the
// user metadata.
const (
	attrETag               = "etag"
	attrContentEncoding    = "content-encoding"
	attrContentDisposition = "content-disposition"
	attrContentLanguage    = "content-language"
	attrCacheControl       = "cache-control"
	attrExpires            = "expires"
	// attrChecksum is the full-object checksum the client had checked
	// when it stored the object: "ALGORITHM VALUE" (checksum.go).
	attrChecksum = "checksum"
	// attrTagging is the object's tag set, in URL query form (tagging.go).
	attrTagging = "tagging"
)

// etag is the object's ETag, quoted: the MD5 of what the client sent, or
// for objects stored otherwise (holdfast put) one derived from the pin,
// with a "-1" suffix so that clients do not take it for an MD5.
func etag(e catalog.Entry) string {
	if t := repo.Attr(e, attrETag); t != "" {
		return `"` + t + `"`
	}
	return `"` + hex.EncodeToString(e.Pin[:16]) + `-1"`
}

func lastModified(e catalog.Entry) time.Time { return e.Modified.UTC().Truncate(time.Second) }

// evalPreconditions is the front end's backend.EvaluatePreconditions with
// If-Unmodified-Since as HTTP defines it: the condition holds when the
// object was not modified after the time given, Last-Modified equal to it
// included (a client sending back the Last-Modified it was given), which
// the front end's evaluator refuses. A condition that holds is passed on
// as one its evaluator also finds true, so its precedence rules apply.
func evalPreconditions(etag string, mod time.Time, p backend.PreConditions) error {
	if p.IfUnmodeSince != nil && !mod.After(*p.IfUnmodeSince) {
		t := mod.Add(time.Second)
		p.IfUnmodeSince = &t
	}
	return backend.EvaluatePreconditions(etag, mod, p)
}

// bodyReader reads a request body for a Put: it counts the bytes and
// hashes them (MD5, for the ETag) unless the front end checks them against
// a Content-MD5 already (sum), and, at the end, refuses a body shorter
// or longer than the declared length. The front end reports a bad payload
// signature or trailing checksum as the error of the last Read, so an
// upload is committed only when the body was read to a clean EOF here.
type bodyReader struct {
	r    io.Reader
	want int64 // -1: unknown
	n    int64
	md5  hash.Hash // nil when sum is known
	sum  []byte    // the body's checked Content-MD5
}

func (br *bodyReader) Read(p []byte) (int, error) {
	n, err := br.r.Read(p)
	br.n += int64(n)
	if br.md5 != nil {
		br.md5.Write(p[:n])
	}
	if br.want >= 0 && br.n > br.want {
		return n, s3err.GetAPIError(s3err.ErrIncompleteBody)
	}
	if err == io.EOF && br.want >= 0 && br.n != br.want {
		return n, s3err.GetAPIError(s3err.ErrIncompleteBody)
	}
	return n, err
}

// checksum is a checksum header the client sent and its algorithm.
type checksum struct {
	v *string
	t utils.HashType
}

// checksumReader wraps r to verify the x-amz-checksum-* headers the client
// sent, if any (the front end leaves those to the backend): the last Read
// fails instead of returning EOF when one does not match.
func checksumReader(r io.Reader, sums ...checksum) (io.Reader, error) {
	for _, c := range sums {
		if c.v != nil && *c.v != "" {
			hr, err := utils.NewHashReader(r, *c.v, c.t)
			if err != nil {
				return nil, s3err.GetAPIError(s3err.ErrInvalidChecksumHeader)
			}
			r = hr
		}
	}
	return r, nil
}

func (b *Backend) PutObject(ctx context.Context, in s3response.PutObjectInput) (_ s3response.PutObjectOutput, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "PutObject", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return s3response.PutObjectOutput{}, err
	}
	dctx := detached(ctx)
	if err := b.bucketExists(ctx, bucket); err != nil {
		return s3response.PutObjectOutput{}, err
	}
	tags, err := parseTagHeader(str(in.Tagging))
	if err != nil {
		return s3response.PutObjectOutput{}, err
	}
	if b.mayOverwrite(ctx, bucket) {
		cur, err := b.repo.Stat(dctx, bucket, key)
		exists := err == nil
		if err != nil && !errors.Is(err, repo.ErrNotFound) {
			return s3response.PutObjectOutput{}, s3Error(err, false)
		}
		var curTag string
		if exists {
			curTag = etag(cur)
		}
		if err := backend.EvaluateObjectPutPreconditions(curTag, in.IfMatch, in.IfNoneMatch, exists); err != nil {
			return s3response.PutObjectOutput{}, err
		}
	} else if err := inboxConditions(in.IfMatch, in.IfNoneMatch); err != nil {
		return s3response.PutObjectOutput{}, err
	}
	want := int64(-1)
	if in.ContentLength != nil {
		want = *in.ContentLength
	}
	var body io.Reader = in.Body
	if body == nil {
		body = strings.NewReader("")
	}
	body, err = checksumReader(body,
		checksum{in.ChecksumCRC32, utils.HashTypeCRC32}, checksum{in.ChecksumCRC32C, utils.HashTypeCRC32C},
		checksum{in.ChecksumSHA1, utils.HashTypeSha1}, checksum{in.ChecksumSHA256, utils.HashTypeSha256},
		checksum{in.ChecksumCRC64NVME, utils.HashTypeCRC64NVME}, checksum{in.ChecksumSHA512, utils.HashTypeSha512},
		checksum{in.ChecksumMD5, utils.HashTypeMd5})
	if err != nil {
		return s3response.PutObjectOutput{}, err
	}
	body, sumAtEOF, err := keepChecksum(body, in)
	if err != nil {
		return s3response.PutObjectOutput{}, err
	}
	br := &bodyReader{r: b.gated(body), want: want, sum: contentMD5(ctx)}
	if br.sum == nil {
		br.md5 = md5.New()
	}
	// The ETag is the MD5 of the body, known only at its end: a reader
	// that fills it in when the body is done, before the repository
	// commits (it commits only after reading to EOF). So is a checksum.
	attrs := headerAttrs(in.ContentEncoding, in.ContentDisposition, in.ContentLanguage, in.CacheControl, in.Expires)
	attrs[attrTagging] = encodeTags(tags)
	// Placeholders as long as the values filled in at the end, so that
	// metadata that cannot fit is refused before the body is read.
	attrs[attrETag] = strings.Repeat("0", 2*md5.Size)
	if sumAtEOF != nil {
		attrs[attrChecksum] = checksumRoom
	}
	src := &etagAtEOF{r: br, attrs: attrs, checksum: sumAtEOF}
	e, err := b.repo.Put(dctx, bucket, key, src, repo.PutOptions{ContentType: str(in.ContentType), Meta: cloneMeta(in.Metadata), Attrs: attrs,
		CreateOnly: b.createOnly(ctx, bucket, in.IfNoneMatch)})
	if err != nil {
		return s3response.PutObjectOutput{}, b.writeError(ctx, bucket, err)
	}
	b.events.Received(e.Size)
	out := s3response.PutObjectOutput{ETag: etag(e), Size: ptr(e.Size)}
	checksumOut{&out.ChecksumCRC32, &out.ChecksumCRC32C, &out.ChecksumCRC64NVME, &out.ChecksumSHA1, &out.ChecksumSHA256, &out.ChecksumType}.fill(e)
	return out, nil
}

// contentEncoding drops "aws-chunked", which describes how the request
// body was sent, not the object (as S3 does).
func contentEncoding(v string) string {
	var keep []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "aws-chunked") {
			keep = append(keep, t)
		}
	}
	return strings.Join(keep, ",")
}

// inboxConditions refuses the conditions an inbox key may not send. Such
// a key learns nothing of what its bucket holds before its body is in:
// whether a name is taken is checked only as the object commits (the
// write is create-only), so the one way to find out is to upload to the
// name, which stores the object when the name is free. A precondition
// checked before the body would answer without storing anything, so an
// inbox key may send none but If-None-Match: *, which is what its writes
// mean anyway.
func inboxConditions(ifMatch, ifNoneMatch *string) error {
	if ifMatch != nil || ifNoneMatch != nil && strings.TrimSpace(*ifNoneMatch) != "*" {
		return s3err.GetAPIError(s3err.ErrAccessDenied)
	}
	return nil
}

func (b *Backend) mayOverwrite(ctx context.Context, bucket string) bool {
	a := account(ctx)
	return a.Access == b.owner || b.access.MayOverwrite(a.Access, bucket)
}

// createOnly reports whether a write must not replace an existing object:
// the request's key may not overwrite (an inbox key), or the client sent
// If-None-Match: *. The repository checks it in the same step as the
// commit, so the check made before the body is read (to fail early) is
// not the only one: of two racing creates, one fails.
func (b *Backend) createOnly(ctx context.Context, bucket string, ifNoneMatch *string) bool {
	return !b.mayOverwrite(ctx, bucket) || (ifNoneMatch != nil && strings.TrimSpace(*ifNoneMatch) == "*")
}

// writeError is the S3 error of a failed write: a create-only write that
// found the key taken is refused (inbox key) or a failed precondition.
func (b *Backend) writeError(ctx context.Context, bucket string, err error) error {
	if errors.Is(err, repo.ErrKeyExists) {
		if !b.mayOverwrite(ctx, bucket) {
			return s3err.GetAPIError(s3err.ErrAccessDenied)
		}
		return s3err.GetAPIError(s3err.ErrPreconditionFailed)
	}
	return s3Error(err, false)
}

// etagAtEOF records the body's MD5 in attrs when the body ends.
type etagAtEOF struct {
	r        *bodyReader
	attrs    map[string]string
	checksum func() string // the attrChecksum value, or nil
}

func (e *etagAtEOF) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		sum := e.r.sum
		if e.r.md5 != nil {
			sum = e.r.md5.Sum(nil)
		}
		e.attrs[attrETag] = hex.EncodeToString(sum)
		if e.checksum != nil {
			e.attrs[attrChecksum] = e.checksum()
		}
	}
	return n, err
}

func cloneMeta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[strings.ToLower(strings.Clone(k))] = strings.Clone(v)
	}
	return c
}

func (b *Backend) HeadObject(ctx context.Context, in *s3.HeadObjectInput) (_ *s3.HeadObjectOutput, err error) {
	defer b.doneOn(ctx, "HeadObject", str(in.Bucket), str(in.Key), time.Now(), &err)
	bucket, key := str(in.Bucket), str(in.Key)
	if err := b.allowed(ctx, bucket, OpRead); err != nil {
		return nil, err
	}
	if err := onlyVersion(str(in.VersionId)); err != nil {
		return nil, err
	}
	e, err := b.repo.Stat(detached(ctx), bucket, key)
	if err != nil {
		return nil, s3Error(err, false)
	}
	if err := evalPreconditions(etag(e), lastModified(e), backend.PreConditions{
		IfMatch: in.IfMatch, IfNoneMatch: in.IfNoneMatch, IfModSince: in.IfModifiedSince, IfUnmodeSince: in.IfUnmodifiedSince,
	}); err != nil {
		return nil, err
	}
	size := e.Size
	out := &s3.HeadObjectOutput{ContentLength: &size, AcceptRanges: ptr("bytes"), TagCount: tagCount(e)}
	fillHeaders(e, &out.ETag, &out.LastModified, &out.ContentType, &out.Metadata, &out.ContentEncoding,
		&out.ContentDisposition, &out.ContentLanguage, &out.CacheControl, &out.ExpiresString)
	if in.Range != nil && *in.Range != "" {
		off, n, isRange, err := backend.ParseObjectRange(e.Size, *in.Range)
		if err != nil {
			return nil, err
		}
		if isRange {
			out.ContentLength = &n
			out.ContentRange = ptr(fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, e.Size))
		}
	}
	if in.ChecksumMode == types.ChecksumModeEnabled && in.PartNumber == nil && out.ContentRange == nil {
		checksumOut{&out.ChecksumCRC32, &out.ChecksumCRC32C, &out.ChecksumCRC64NVME, &out.ChecksumSHA1, &out.ChecksumSHA256, &out.ChecksumType}.fill(e)
	}
	if in.PartNumber != nil {
		// The parts' sizes are in the manifest, which the catalog does
		// not keep: open the object (checking it, as a GET would).
		markKeyUse(ctx)
		m, err := b.repo.EntryManifest(detached(ctx), e)
		if err != nil {
			b.integrity(bucket, key, err)
			return nil, s3Error(err, false)
		}
		pr, err := partOf(e, m, *in.PartNumber)
		if err != nil {
			return nil, err
		}
		out.ContentLength, out.PartsCount = &pr.n, pr.count
		if e.Size > 0 {
			out.ContentRange = ptr(fmt.Sprintf("bytes %d-%d/%d", pr.off, pr.off+pr.n-1, e.Size))
		}
	}
	return out, nil
}

// partRange is the byte range of one part of an object.
type partRange struct {
	off, n int64
	count  *int32 // the object's parts, for x-amz-mp-parts-count; nil: not a multipart object
}

// partOf finds part number pn (from 1) of e, whose manifest is m, as S3
// serves a GET or HEAD with partNumber. An object completed from a
// multipart upload has an ETag ending "-N" and one segment per part: part
// pn is segment pn. Any other object is one part, the whole of it, with
// no parts count. A part beyond the last is InvalidPartNumber.
func partOf(e catalog.Entry, m *format.Manifest, pn int32) (partRange, error) {
	if pn < 1 {
		return partRange{}, s3err.GetInvalidPartNumberRangeErr(1, pn)
	}
	if parts := multipartCount(e); parts > 0 && parts == len(m.Segments) {
		count := int32(parts)
		if pn > count {
			return partRange{}, s3err.GetInvalidPartNumberRangeErr(count, pn)
		}
		var off int64
		for _, sg := range m.Segments[:pn-1] {
			off += int64(sg.Len)
		}
		return partRange{off: off, n: int64(m.Segments[pn-1].Len), count: &count}, nil
	}
	if pn > 1 {
		return partRange{}, s3err.GetInvalidPartNumberRangeErr(1, pn)
	}
	return partRange{off: 0, n: e.Size}, nil
}

// multipartCount is the number of parts of e if it was completed from a
// multipart upload (its ETag ends "-N"; its manifest then has one segment
// per part), else 0.
func multipartCount(e catalog.Entry) int {
	t := repo.Attr(e, attrETag)
	if i := strings.LastIndexByte(t, '-'); i >= 0 {
		if n, err := strconv.Atoi(t[i+1:]); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

// GetObjectAttributes answers from the catalog (ETag, size, storage
// class, Last-Modified, the checksum the object was stored with, if any)
// and, for an object completed from a multipart upload, from its
// authenticated manifest: its parts, one segment each, paged by
// part-number-marker and max-parts.
func (b *Backend) GetObjectAttributes(ctx context.Context, in *s3.GetObjectAttributesInput) (_ s3response.GetObjectAttributesResponse, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "GetObjectAttributes", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpRead); err != nil {
		return s3response.GetObjectAttributesResponse{}, err
	}
	if err := onlyVersion(str(in.VersionId)); err != nil {
		return s3response.GetObjectAttributesResponse{}, err
	}
	dctx := detached(ctx)
	e, err := b.repo.Stat(dctx, bucket, key)
	if err != nil {
		return s3response.GetObjectAttributesResponse{}, s3Error(err, false)
	}
	size := e.Size
	out := s3response.GetObjectAttributesResponse{ETag: ptr(strings.Trim(etag(e), `"`)), ObjectSize: &size,
		StorageClass: types.StorageClassStandard, LastModified: ptr(lastModified(e))}
	cs := new(types.Checksum)
	if (checksumOut{&cs.ChecksumCRC32, &cs.ChecksumCRC32C, &cs.ChecksumCRC64NVME, &cs.ChecksumSHA1, &cs.ChecksumSHA256, &cs.ChecksumType}).fill(e) {
		out.Checksum = cs
	}
	count := multipartCount(e)
	if count == 0 {
		return out, nil
	}
	marker := 0
	if v := str(in.PartNumberMarker); v != "" {
		m, err := utils.ParseMaxLimiter(v, utils.LimiterTypePartNumberMarker)
		if err != nil {
			return s3response.GetObjectAttributesResponse{}, err
		}
		marker = int(m)
	}
	max := 1000
	if in.MaxParts != nil && *in.MaxParts >= 0 && *in.MaxParts < 1000 {
		max = int(*in.MaxParts)
	}
	// The parts' sizes are in the manifest, which the catalog does not
	// keep: open the object (checking it, as a GET would).
	markKeyUse(ctx)
	m, err := b.repo.EntryManifest(dctx, e)
	if err != nil {
		b.integrity(bucket, key, err)
		return s3response.GetObjectAttributesResponse{}, s3Error(err, false)
	}
	segs := m.Segments
	if len(segs) != count {
		return out, nil
	}
	op := &s3response.ObjectParts{PartNumberMarker: marker, MaxParts: max, Parts: []types.ObjectPart{}}
	for pn := marker + 1; pn <= count; pn++ {
		if len(op.Parts) == max {
			op.IsTruncated = true
			break
		}
		op.Parts = append(op.Parts, types.ObjectPart{PartNumber: ptr(int32(pn)), Size: ptr(int64(segs[pn-1].Len))})
		op.NextPartNumberMarker = pn
	}
	out.ObjectParts = op
	return out, nil
}

func fillHeaders(e catalog.Entry, et **string, mod **time.Time, ct **string, meta *map[string]string,
	enc, disp, lang, cc, exp **string) {
	*et = ptr(etag(e))
	*mod = ptr(lastModified(e))
	ctype := e.ContentType
	if ctype == "" {
		ctype = "binary/octet-stream"
	}
	*ct = &ctype
	*meta = repo.UserMeta(e)
	for _, f := range []struct {
		p    **string
		name string
	}{{enc, attrContentEncoding}, {disp, attrContentDisposition}, {lang, attrContentLanguage}, {cc, attrCacheControl}, {exp, attrExpires}} {
		if v := repo.Attr(e, f.name); v != "" {
			*f.p = ptr(v)
		}
	}
}

func (b *Backend) GetObject(ctx context.Context, in *s3.GetObjectInput) (_ *s3.GetObjectOutput, err error) {
	defer b.doneOn(ctx, "GetObject", str(in.Bucket), str(in.Key), time.Now(), &err)
	bucket, key := str(in.Bucket), str(in.Key)
	if err := b.allowed(ctx, bucket, OpRead); err != nil {
		return nil, err
	}
	if err := onlyVersion(str(in.VersionId)); err != nil {
		return nil, err
	}
	dctx := detached(ctx)
	var (
		e       catalog.Entry
		rd      *repo.Reader
		off, n  int64
		isRange bool
	)
	for tries := 0; ; tries++ {
		if e, err = b.repo.Stat(dctx, bucket, key); err != nil {
			return nil, s3Error(err, false)
		}
		if err := evalPreconditions(etag(e), lastModified(e), backend.PreConditions{
			IfMatch: in.IfMatch, IfNoneMatch: in.IfNoneMatch, IfModSince: in.IfModifiedSince, IfUnmodeSince: in.IfUnmodifiedSince,
		}); err != nil {
			return nil, err
		}
		if off, n, isRange, err = backend.ParseObjectRange(e.Size, str(in.Range)); err != nil {
			return nil, err
		}
		// Opening checks the header, manifest and footer against the
		// catalog's pin: damage found here is a clean S3 error, before
		// any byte is sent. An object replaced since Stat is looked up
		// again (its preconditions and range are the new version's).
		rd, err = b.repo.OpenEntry(dctx, e)
		if err == nil {
			break
		}
		if !errors.Is(err, repo.ErrReplaced) || tries == 2 {
			b.integrity(bucket, key, err)
			return nil, s3Error(err, false)
		}
	}
	var partsCount *int32
	if in.PartNumber != nil { // the front end refuses it with a Range
		var pr partRange
		if pr, err = partOf(e, rd.Manifest(), *in.PartNumber); err != nil {
			rd.Close()
			return nil, err
		}
		off, n, isRange, partsCount = pr.off, pr.n, e.Size > 0, pr.count
	}
	var body *objectBody
	if isRange || n == 0 {
		rc, err := rd.Range(dctx, off, n)
		if err != nil {
			rd.Close()
			b.integrity(bucket, key, err)
			return nil, s3Error(err, false)
		}
		body = b.newObjectBody(rc, rd, bucket, key, nil)
	} else {
		// The whole object: decrypted on every core, padding checked.
		pr, done := b.decrypting(dctx, rd, bucket, key)
		body = b.newObjectBody(pr, rd, bucket, key, done)
	}
	// Read the first authenticated bytes before answering: damage at the
	// start (the first segment is authenticated as a whole) is then a
	// clean S3 error, not a connection cut before the status line.
	if err := body.peek(n); err != nil {
		body.Close()
		return nil, s3Error(err, false)
	}
	out := &s3.GetObjectOutput{Body: body, ContentLength: &n, AcceptRanges: ptr("bytes"), PartsCount: partsCount, TagCount: tagCount(e)}
	fillHeaders(e, &out.ETag, &out.LastModified, &out.ContentType, &out.Metadata, &out.ContentEncoding,
		&out.ContentDisposition, &out.ContentLanguage, &out.CacheControl, &out.ExpiresString)
	if isRange {
		out.ContentRange = ptr(fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, e.Size))
	} else if in.ChecksumMode == types.ChecksumModeEnabled {
		// The whole object: the checksum it was stored with, which the
		// client checks what it receives against.
		checksumOut{&out.ChecksumCRC32, &out.ChecksumCRC32C, &out.ChecksumCRC64NVME, &out.ChecksumSHA1, &out.ChecksumSHA256, &out.ChecksumType}.fill(e)
	}
	return out, nil
}

// objectBody is a GET response body. The front end streams it after the
// handler returns; an error from Read (a chunk that fails
// authentication) makes it cut the connection short of the declared
// length, so the client sees a failed transfer, never a complete-looking
// one, and the damaged chunk's plaintext is never sent.
//
// With a guard (UseGuard) each Read holds a permission, and a seal stops
// the body between reads: its reader is closed, its keys wiped, and the
// next Read fails.
type objectBody struct {
	rc          io.ReadCloser
	rd          *repo.Reader
	b           *Backend
	bucket, key string
	producer    <-chan struct{} // closed when the whole-object decryptor has returned; nil for a range
	head        []byte          // read ahead by peek, not yet sent

	mu      sync.Mutex
	closed  bool
	stopped bool // by a seal
}

// newObjectBody registers the body, so that a seal can stop it.
func (b *Backend) newObjectBody(rc io.ReadCloser, rd *repo.Reader, bucket, key string, producer <-chan struct{}) *objectBody {
	o := &objectBody{rc: rc, rd: rd, b: b, bucket: bucket, key: key, producer: producer}
	if b.guard != nil {
		b.live.add(o)
	}
	return o
}

func (o *objectBody) Read(p []byte) (int, error) {
	if g := o.b.guard; g != nil {
		release, err := g.Acquire()
		if err != nil {
			return 0, err
		}
		defer release()
	}
	o.mu.Lock()
	stopped := o.stopped
	o.mu.Unlock()
	if stopped {
		return 0, errSealing
	}
	if len(o.head) > 0 {
		n := copy(p, o.head)
		o.head = o.head[n:]
		o.b.events.Sent(int64(n))
		return n, nil
	}
	n, err := o.rc.Read(p)
	if n > 0 {
		o.b.events.Sent(int64(n))
	}
	return n, err
}

// decrypting decrypts rd, the opened bucket/key, into the returned pipe
// on its own goroutine (WriteTo: every chunk authenticated before it is
// written; a failure reported as an integrity event and passed to the
// reader). done is closed when the goroutine has returned: rd's keys may
// be wiped only then. Closing the pipe's reader stops it.
func (b *Backend) decrypting(ctx context.Context, rd *repo.Reader, bucket, key string) (*io.PipeReader, <-chan struct{}) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := rd.WriteTo(ctx, pw)
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			b.integrity(bucket, key, err)
		}
		pw.CloseWithError(err)
	}()
	return pr, done
}

// peek reads the first bytes of the body (up to 64 KiB of its n), which
// Read then sends first. It runs in the GET handler, under the request's
// permission.
func (o *objectBody) peek(n int64) error {
	if n == 0 {
		return nil
	}
	buf := make([]byte, min(n, 64<<10))
	k, err := io.ReadAtLeast(o.rc, buf, 1)
	if err != nil && !(err == io.EOF && k > 0) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	o.head = buf[:k]
	return nil
}

// Close closes the reader and wipes its keys (once; a seal may have
// done it already).
func (o *objectBody) Close() error {
	o.b.live.remove(o)
	return o.close()
}

// stop is a seal's Close: no Read is in progress (the seal holds the
// guard), and every later Read fails.
func (o *objectBody) stop() {
	o.mu.Lock()
	o.stopped = true
	o.mu.Unlock()
	_ = o.close()
}

func (o *objectBody) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	clear(o.head) // plaintext read ahead and never sent
	o.head = nil
	err := o.rc.Close()
	if o.producer != nil {
		// The decryptor stops at its next write into the closed pipe;
		// its keys are wiped only once it has.
		<-o.producer
	}
	o.rd.Close()
	return err
}

func (b *Backend) integrity(bucket, key string, err error) {
	var de *repo.DamageError
	if errors.As(err, &de) {
		b.events.Integrity(bucket, key, err)
	}
}

func (b *Backend) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput) (_ *s3.DeleteObjectOutput, err error) {
	defer b.doneOn(ctx, "DeleteObject", str(in.Bucket), str(in.Key), time.Now(), &err)
	bucket, key := str(in.Bucket), str(in.Key)
	if err := b.allowed(ctx, bucket, OpDelete); err != nil {
		return nil, err
	}
	if err := onlyVersion(str(in.VersionId)); err != nil {
		return nil, err
	}
	if err := b.deleteObject(ctx, bucket, key); err != nil {
		return nil, err
	}
	return &s3.DeleteObjectOutput{}, nil
}

// deleteObject deletes bucket/key; deleting a missing key succeeds, as in S3.
func (b *Backend) deleteObject(ctx context.Context, bucket, key string) error {
	if err := b.bucketExists(ctx, bucket); err != nil {
		return err
	}
	_, err := b.repo.Delete(detached(ctx), bucket, key)
	if err != nil && !errors.Is(err, repo.ErrNotFound) {
		return s3Error(err, false)
	}
	return nil
}

func (b *Backend) DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput) (_ s3response.DeleteResult, err error) {
	bucket := str(in.Bucket)
	defer b.doneOn(ctx, "DeleteObjects", bucket, "", time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpDelete); err != nil {
		return s3response.DeleteResult{}, err
	}
	var res s3response.DeleteResult
	if in.Delete == nil {
		return res, nil
	}
	quiet, err := deleteQuiet(ctx)
	if err != nil {
		return res, err
	}
	for _, o := range in.Delete.Objects {
		key := str(o.Key)
		err := onlyVersion(str(o.VersionId))
		if err == nil {
			err = b.deleteObject(ctx, bucket, key)
		}
		if err != nil {
			code, msg := "InternalError", "delete failed"
			var se s3err.S3Error // an S3 answer: its code and message
			if errors.As(err, &se) {
				code, msg = se.BaseError().Code, se.BaseError().Description
			}
			// The entry echoes the version the request named: the front
			// end matches answers to requests by key and version.
			res.Error = append(res.Error, types.Error{Key: ptr(key), VersionId: o.VersionId, Code: ptr(code), Message: ptr(msg)})
			continue
		}
		if !quiet { // quiet: only the errors are answered
			res.Deleted = append(res.Deleted, types.DeletedObject{Key: ptr(key), VersionId: o.VersionId})
		}
	}
	return res, nil
}

// CopyObject re-encrypts: the source is read and authenticated here and
// written as a new object under a new data key. The provider never copies.
func (b *Backend) CopyObject(ctx context.Context, in s3response.CopyObjectInput) (_ s3response.CopyObjectOutput, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "CopyObject", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return s3response.CopyObjectOutput{}, err
	}
	sb, sk, sv, err := backend.ParseCopySource(str(in.CopySource))
	if err == nil {
		err = onlyVersion(sv)
	}
	if err != nil {
		return s3response.CopyObjectOutput{}, err
	}
	if err := b.allowed(ctx, sb, OpRead); err != nil {
		return s3response.CopyObjectOutput{}, err
	}
	dctx := detached(ctx)
	if err := b.bucketExists(ctx, bucket); err != nil {
		return s3response.CopyObjectOutput{}, err
	}
	// An inbox destination is create-only, checked as the copy commits
	// (inboxConditions says why not before).
	rd, err := b.repo.OpenObject(dctx, sb, sk)
	if err != nil {
		b.integrity(sb, sk, err)
		return s3response.CopyObjectOutput{}, s3Error(err, false)
	}
	defer rd.Close()
	src := rd.Entry
	if err := copySourceConditions(src, backend.PreConditions{
		IfMatch: in.CopySourceIfMatch, IfNoneMatch: in.CopySourceIfNoneMatch,
		IfModSince: in.CopySourceIfModifiedSince, IfUnmodeSince: in.CopySourceIfUnmodifiedSince,
	}); err != nil {
		return s3response.CopyObjectOutput{}, err
	}
	opts := repo.PutOptions{ContentType: src.ContentType, Meta: repo.UserMeta(src), Attrs: map[string]string{}}
	for _, a := range []string{attrETag, attrChecksum, attrTagging, attrContentEncoding, attrContentDisposition, attrContentLanguage, attrCacheControl, attrExpires} {
		opts.Attrs[a] = repo.Attr(src, a)
	}
	if in.TaggingDirective == types.TaggingDirectiveReplace {
		tags, err := parseTagHeader(str(in.Tagging))
		if err != nil {
			return s3response.CopyObjectOutput{}, err
		}
		opts.Attrs[attrTagging] = encodeTags(tags)
	}
	if in.MetadataDirective == types.MetadataDirectiveReplace {
		opts.ContentType, opts.Meta = str(in.ContentType), cloneMeta(in.Metadata)
		opts.Attrs[attrContentEncoding], opts.Attrs[attrContentDisposition] = str(in.ContentEncoding), str(in.ContentDisposition)
		opts.Attrs[attrContentLanguage], opts.Attrs[attrCacheControl] = str(in.ContentLanguage), str(in.CacheControl)
		opts.Attrs[attrExpires] = str(in.Expires)
	} else if sb == bucket && sk == key {
		return s3response.CopyObjectOutput{}, s3err.GetAPIError(s3err.ErrInvalidCopyDest)
	}
	opts.CreateOnly = b.createOnly(ctx, bucket, nil)
	pr, copied := b.decrypting(dctx, rd, sb, sk)
	e, err := b.repo.Put(dctx, bucket, key, pr, opts)
	pr.CloseWithError(errors.New("copy ended"))
	<-copied // the source's keys are wiped (rd.Close) only once it has stopped
	if err != nil {
		return s3response.CopyObjectOutput{}, b.writeError(ctx, bucket, err)
	}
	return s3response.CopyObjectOutput{CopyObjectResult: &s3response.CopyObjectResult{ETag: ptr(etag(e)), LastModified: ptr(lastModified(e))}}, nil
}

// onlyVersion refuses a version id other than "null": buckets here are
// never versioned, so every object has the one version S3 calls "null",
// and a request for any other (a GET, a DELETE, a copy source) is
// answered as S3 answers it for an unversioned bucket, rather than
// carried out on the current object.
func onlyVersion(v string) error {
	if v == "" || v == "null" {
		return nil
	}
	return s3err.InvalidArgumentError{ArgumentName: "versionId", ArgumentValue: v, Description: "Invalid version id specified"}
}

// copySourceConditions evaluates a copy source's x-amz-copy-source-if-*
// conditions against src. One that fails is 412, whichever it is: 304 (a
// GET's answer to If-None-Match and If-Modified-Since) is no answer to a
// copy.
func copySourceConditions(src catalog.Entry, p backend.PreConditions) error {
	err := evalPreconditions(etag(src), lastModified(src), p)
	var ae s3err.APIError
	if errors.As(err, &ae) && ae.Code == "NotModified" {
		err = s3err.GetAPIError(s3err.ErrPreconditionFailed)
	}
	return err
}

// ---- listings ----

// list walks bucket's objects under prefix after startAfter, folding keys
// that contain delim after the prefix into common prefixes, until max
// entries (objects and prefixes) are found. It returns whether more
// remain and the last key or prefix returned, for the next page.
func (b *Backend) list(ctx context.Context, bucket, prefix, delim, startAfter string, max int,
	obj func(catalog.Entry), pfx func(string)) (truncated bool, last string, err error) {
	if max <= 0 {
		max = 1000
	}
	count := 0
	errFull := errors.New("page full")
	after := startAfter
	for {
		restart := ""
		err = b.repo.Catalog().List(detached(ctx), bucket, prefix, after, func(e catalog.Entry) error {
			if count == max {
				truncated = true
				return errFull
			}
			if cp, ok := commonPrefix(e.Key, prefix, delim); ok {
				if cp <= startAfter {
					return nil
				}
				pfx(cp)
				count++
				last = cp
				// Skip the rest of this common prefix: restart after it.
				restart = cp + "\xff"
				return errFull
			}
			obj(e)
			count++
			last = e.Key
			return nil
		})
		if errors.Is(err, errFull) {
			err = nil
			if restart != "" && !truncated {
				after = restart
				continue
			}
		}
		return truncated, last, err
	}
}

// commonPrefix is the common prefix key (which starts with prefix) is
// folded into in a listing under prefix with delimiter delim: key up to
// and including the first delim after prefix. ok is false when delim is
// empty or does not occur there, and key is listed as itself. A folded
// key whose common prefix is not after the listing's marker was listed
// on an earlier page, as that prefix.
func commonPrefix(key, prefix, delim string) (cp string, ok bool) {
	if delim == "" {
		return "", false
	}
	i := strings.Index(key[len(prefix):], delim)
	if i < 0 {
		return "", false
	}
	return key[:len(prefix)+i+len(delim)], true
}

func (b *Backend) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input) (_ s3response.ListObjectsV2Result, err error) {
	bucket := str(in.Bucket)
	defer b.doneOn(ctx, "ListObjectsV2", bucket, "", time.Now(), &err)
	if err := b.bucketFor(ctx, bucket, OpList); err != nil {
		return s3response.ListObjectsV2Result{}, err
	}
	prefix, delim := str(in.Prefix), str(in.Delimiter)
	after := str(in.StartAfter)
	if tok := str(in.ContinuationToken); tok != "" {
		k, err := hex.DecodeString(tok)
		if err != nil {
			return s3response.ListObjectsV2Result{}, s3err.GetAPIError(s3err.ErrInvalidRequest)
		}
		after = max(after, string(k))
	}
	maxKeys := 1000
	if in.MaxKeys != nil && *in.MaxKeys >= 0 && *in.MaxKeys < 1000 {
		maxKeys = int(*in.MaxKeys)
	}
	enc, encType, err := listEncoding(ctx)
	if err != nil {
		return s3response.ListObjectsV2Result{}, err
	}
	out := s3response.ListObjectsV2Result{Name: &bucket, Prefix: ptr(enc(prefix)), MaxKeys: ptr(int32(maxKeys)), EncodingType: encType}
	if delim != "" {
		out.Delimiter = ptr(enc(delim))
	}
	if in.StartAfter != nil {
		out.StartAfter = ptr(enc(str(in.StartAfter)))
	}
	if in.ContinuationToken != nil {
		out.ContinuationToken = ptr(str(in.ContinuationToken))
	}
	if maxKeys == 0 {
		out.KeyCount, out.IsTruncated = ptr(int32(0)), ptr(false)
		return out, nil
	}
	truncated, last, err := b.list(ctx, bucket, prefix, delim, after, maxKeys,
		func(e catalog.Entry) { out.Contents = append(out.Contents, listEntry(e, enc)) },
		func(p string) {
			out.CommonPrefixes = append(out.CommonPrefixes, types.CommonPrefix{Prefix: ptr(enc(p))})
		})
	if err != nil {
		return s3response.ListObjectsV2Result{}, s3Error(err, true)
	}
	out.KeyCount = ptr(int32(len(out.Contents) + len(out.CommonPrefixes)))
	out.IsTruncated = &truncated
	if truncated {
		out.NextContinuationToken = ptr(hex.EncodeToString([]byte(last)))
	}
	return out, nil
}

func (b *Backend) ListObjects(ctx context.Context, in *s3.ListObjectsInput) (_ s3response.ListObjectsResult, err error) {
	bucket := str(in.Bucket)
	defer b.doneOn(ctx, "ListObjects", bucket, "", time.Now(), &err)
	if err := b.bucketFor(ctx, bucket, OpList); err != nil {
		return s3response.ListObjectsResult{}, err
	}
	prefix, delim, marker := str(in.Prefix), str(in.Delimiter), str(in.Marker)
	maxKeys := 1000
	if in.MaxKeys != nil && *in.MaxKeys >= 0 && *in.MaxKeys < 1000 {
		maxKeys = int(*in.MaxKeys)
	}
	enc, encType, err := listEncoding(ctx)
	if err != nil {
		return s3response.ListObjectsResult{}, err
	}
	out := s3response.ListObjectsResult{Name: &bucket, Prefix: ptr(enc(prefix)), Marker: ptr(enc(marker)),
		MaxKeys: ptr(int32(maxKeys)), EncodingType: encType}
	if delim != "" {
		out.Delimiter = ptr(enc(delim))
	}
	if maxKeys == 0 {
		out.IsTruncated = ptr(false)
		return out, nil
	}
	truncated, last, err := b.list(ctx, bucket, prefix, delim, marker, maxKeys,
		func(e catalog.Entry) { out.Contents = append(out.Contents, listEntry(e, enc)) },
		func(p string) {
			out.CommonPrefixes = append(out.CommonPrefixes, types.CommonPrefix{Prefix: ptr(enc(p))})
		})
	if err != nil {
		return s3response.ListObjectsResult{}, s3Error(err, true)
	}
	out.IsTruncated = &truncated
	if truncated {
		out.NextMarker = ptr(enc(last))
	}
	return out, nil
}

// ListObjectVersions lists a bucket as S3 lists one that never had
// versioning enabled (GetBucketVersioning says so): each object is one
// version, its id "null", the latest, and there are no delete markers.
// key-marker pages as ListObjects' marker does (with version-id-marker
// "null", the only version of the marker's key is behind it too).
func (b *Backend) ListObjectVersions(ctx context.Context, in *s3.ListObjectVersionsInput) (_ s3response.ListVersionsResult, err error) {
	bucket := str(in.Bucket)
	defer b.doneOn(ctx, "ListObjectVersions", bucket, "", time.Now(), &err)
	if err := b.bucketFor(ctx, bucket, OpList); err != nil {
		return s3response.ListVersionsResult{}, err
	}
	prefix, delim, marker := str(in.Prefix), str(in.Delimiter), str(in.KeyMarker)
	switch v := str(in.VersionIdMarker); {
	case v != "" && marker == "":
		return s3response.ListVersionsResult{}, s3err.InvalidArgumentError{ArgumentName: "version-id-marker", ArgumentValue: v,
			Description: "A version-id marker cannot be specified without a key marker."}
	case v != "" && v != "null":
		// No version but "null" was ever listed here.
		return s3response.ListVersionsResult{}, s3err.InvalidArgumentError{ArgumentName: "version-id-marker", ArgumentValue: v,
			Description: "Invalid version id specified"}
	}
	maxKeys := 1000
	if in.MaxKeys != nil && *in.MaxKeys >= 0 && *in.MaxKeys < 1000 {
		maxKeys = int(*in.MaxKeys)
	}
	enc, encType, err := listEncoding(ctx)
	if err != nil {
		return s3response.ListVersionsResult{}, err
	}
	out := s3response.ListVersionsResult{Name: &bucket, Prefix: ptr(enc(prefix)), KeyMarker: ptr(enc(marker)),
		VersionIdMarker: in.VersionIdMarker, MaxKeys: ptr(int32(maxKeys)), EncodingType: encType}
	if delim != "" {
		out.Delimiter = ptr(enc(delim))
	}
	if maxKeys == 0 {
		out.IsTruncated = ptr(false)
		return out, nil
	}
	lastIsObject := false
	truncated, last, err := b.list(ctx, bucket, prefix, delim, marker, maxKeys,
		func(e catalog.Entry) {
			out.Versions = append(out.Versions, s3response.ObjectVersion{Key: ptr(enc(e.Key)), VersionId: ptr("null"),
				IsLatest: ptr(true), ETag: ptr(etag(e)), Size: ptr(e.Size), LastModified: ptr(lastModified(e)),
				StorageClass: types.ObjectVersionStorageClassStandard})
			lastIsObject = true
		},
		func(p string) {
			out.CommonPrefixes = append(out.CommonPrefixes, types.CommonPrefix{Prefix: ptr(enc(p))})
			lastIsObject = false
		})
	if err != nil {
		return s3response.ListVersionsResult{}, s3Error(err, true)
	}
	out.IsTruncated = &truncated
	if truncated {
		out.NextKeyMarker = ptr(enc(last))
		if lastIsObject {
			out.NextVersionIdMarker = ptr("null")
		}
	}
	return out, nil
}

// listEntry is e as a listing shows it, its key written by enc.
func listEntry(e catalog.Entry, enc func(string) string) s3response.Object {
	return s3response.Object{Key: ptr(enc(e.Key)), ETag: ptr(etag(e)), Size: ptr(e.Size),
		LastModified: ptr(lastModified(e)), StorageClass: types.ObjectStorageClassStandard}
}

// ---- errors ----

// s3Error maps a repository error to an S3 error. bucketLevel says a
// not-found is about the bucket.
func s3Error(err error, bucketLevel bool) error {
	if err == nil {
		return nil
	}
	var se s3err.S3Error // the front end's own answers, such as a body's BadDigest
	var de *repo.DamageError
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &de):
		return s3err.APIError{Code: "InternalError", HTTPStatusCode: http.StatusInternalServerError,
			Description: fmt.Sprintf("The stored object failed authentication (%s); holdfast refuses to return it.", de.Status)}
	case errors.Is(err, repo.ErrMetadataTooLarge):
		return s3err.APIError{Code: "MetadataTooLarge", HTTPStatusCode: http.StatusBadRequest,
			Description: "The object's metadata, headers and tags together exceed the 2 KiB that Holdfast keeps with an object."}
	case errors.Is(err, repo.ErrBucketNotEmpty):
		return s3err.GetAPIError(s3err.ErrBucketNotEmpty)
	case errors.Is(err, repo.ErrNoSuchUpload):
		return s3err.GetAPIError(s3err.ErrNoSuchUpload)
	case errors.Is(err, repo.ErrInvalidPartOrder):
		return s3err.GetAPIError(s3err.ErrInvalidPartOrder)
	case errors.Is(err, repo.ErrInvalidPart):
		return s3err.GetAPIError(s3err.ErrInvalidPart)
	case errors.Is(err, repo.ErrEntityTooSmall):
		return s3err.GetAPIError(s3err.ErrEntityTooSmall)
	case errors.Is(err, repo.ErrEntityTooLarge):
		return s3err.GetAPIError(s3err.ErrEntityTooLarge)
	case errors.Is(err, repo.ErrIncompleteBody):
		return s3err.GetAPIError(s3err.ErrIncompleteBody)
	case errors.Is(err, repo.ErrInvalidPartNumber), errors.Is(err, repo.ErrTooManyParts):
		return s3err.GetAPIError(s3err.ErrInvalidRequest)
	case errors.Is(err, repo.ErrNotFound) && bucketLevel:
		return s3err.GetAPIError(s3err.ErrNoSuchBucket)
	case errors.Is(err, repo.ErrNotFound):
		return s3err.GetAPIError(s3err.ErrNoSuchKey)
	case errors.Is(err, repo.ErrStoreUnavailable):
		return s3err.APIError{Code: "ServiceUnavailable", HTTPStatusCode: http.StatusServiceUnavailable,
			Description: "The backing store is not reachable; try again."}
	case errors.Is(err, repo.ErrReplaced):
		return s3err.APIError{Code: "SlowDown", HTTPStatusCode: http.StatusServiceUnavailable,
			Description: "The object was replaced again and again while it was being read; retry."}
	case errors.Is(err, catalog.ErrStaleVersion):
		// Two writes of one key overlapped and the one that began later
		// committed first: this one was not stored. Clients retry a
		// SlowDown, and the retry is then the newest write.
		return s3err.APIError{Code: "SlowDown", HTTPStatusCode: http.StatusServiceUnavailable,
			Description: "A concurrent write of this key committed first; this one was not stored. Retry it."}
	}
	return s3err.GetAPIError(s3err.ErrInternalError)
}
