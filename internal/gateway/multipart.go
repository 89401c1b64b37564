package gateway

import (
	"context"
	"errors"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/s3api/utils"
	"github.com/versity/versitygw/s3err"
	"github.com/versity/versitygw/s3response"

	"github.com/holdfast/holdfast/internal/repo"
)

// Multipart uploads map onto the repository's (repo.CreateUpload and
// friends): each part becomes one segment of the object, sealed as it
// arrives under a fresh key; completion writes the manifest. Parts may
// come in any order and be re-sent; a restarted gateway continues an
// upload, since its state is in the catalog and the store.

func (b *Backend) CreateMultipartUpload(ctx context.Context, in s3response.CreateMultipartUploadInput) (_ s3response.InitiateMultipartUploadResult, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "CreateMultipartUpload", bucket, key, time.Now(), &err)
	if err := b.bucketFor(ctx, bucket, OpWrite); err != nil {
		return s3response.InitiateMultipartUploadResult{}, err
	}
	tags, err := parseTagHeader(str(in.Tagging))
	if err != nil {
		return s3response.InitiateMultipartUploadResult{}, err
	}
	sum, err := newUploadChecksum(in.ChecksumAlgorithm, in.ChecksumType)
	if err != nil {
		return s3response.InitiateMultipartUploadResult{}, err
	}
	attrs := headerAttrs(in.ContentEncoding, in.ContentDisposition, in.ContentLanguage, in.CacheControl, in.Expires)
	attrs[attrTagging] = encodeTags(tags)
	attrs[attrUploadChecksum] = sum
	var room map[string]string
	if sum != "" {
		room = map[string]string{attrChecksum: checksumRoom}
	}
	id, err := b.repo.CreateUpload(detached(ctx), bucket, key, repo.PutOptions{ContentType: str(in.ContentType), Meta: cloneMeta(in.Metadata),
		Attrs: attrs, CompleteRoom: room})
	if err != nil {
		return s3response.InitiateMultipartUploadResult{}, s3Error(err, false)
	}
	return s3response.InitiateMultipartUploadResult{Bucket: bucket, Key: key, UploadId: id}, nil
}

func (b *Backend) UploadPart(ctx context.Context, in *s3.UploadPartInput) (_ *s3.UploadPartOutput, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "UploadPart", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return nil, err
	}
	if in.PartNumber == nil || in.ContentLength == nil {
		return nil, s3err.GetAPIError(s3err.ErrInvalidRequest)
	}
	var body io.Reader = in.Body
	if body == nil {
		body = strings.NewReader("")
	}
	body, err = checksumReader(body,
		checksum{in.ChecksumCRC32, utils.HashTypeCRC32}, checksum{in.ChecksumCRC32C, utils.HashTypeCRC32C},
		checksum{in.ChecksumSHA1, utils.HashTypeSha1}, checksum{in.ChecksumSHA256, utils.HashTypeSha256},
		checksum{in.ChecksumCRC64NVME, utils.HashTypeCRC64NVME})
	if err != nil {
		return nil, err
	}
	// The part's checksum: recorded in the upload's algorithm, if it has
	// one, else only answered.
	mpAlg, mpType, err := b.uploadChecksum(ctx, bucket, key, str(in.UploadId))
	if err != nil {
		return nil, err
	}
	sums := requestSums{types.ChecksumAlgorithmCrc32: in.ChecksumCRC32, types.ChecksumAlgorithmCrc32c: in.ChecksumCRC32C,
		types.ChecksumAlgorithmCrc64nvme: in.ChecksumCRC64NVME, types.ChecksumAlgorithmSha1: in.ChecksumSHA1,
		types.ChecksumAlgorithmSha256: in.ChecksumSHA256}
	body, sum, recorded, err := partChecksum(body, mpAlg, mpType, requestAlgorithm(in.ChecksumAlgorithm, sums), sums)
	if err != nil {
		return nil, err
	}
	opts := repo.PartOptions{MD5: contentMD5(ctx)}
	if recorded {
		opts.Checksum = sum
	}
	p, err := b.repo.PutPartWith(detached(ctx), bucket, key, str(in.UploadId), int(*in.PartNumber), b.gated(body), *in.ContentLength, opts)
	if err != nil {
		return nil, s3Error(err, false)
	}
	b.events.Received(p.Size)
	out := &s3.UploadPartOutput{ETag: ptr(`"` + p.ETag + `"`)}
	if sum != nil {
		checksumOut{&out.ChecksumCRC32, &out.ChecksumCRC32C, &out.ChecksumCRC64NVME, &out.ChecksumSHA1, &out.ChecksumSHA256, nil}.set(parseChecksum(sum()))
	}
	return out, nil
}

// uploadChecksum returns the checksum algorithm and type upload id of
// bucket/key was created with, if any.
func (b *Backend) uploadChecksum(ctx context.Context, bucket, key, id string) (types.ChecksumAlgorithm, types.ChecksumType, error) {
	v, err := b.repo.UploadAttr(detached(ctx), bucket, key, id, attrUploadChecksum)
	if err != nil {
		return "", "", s3Error(err, false)
	}
	alg, typ := uploadChecksum(v)
	return alg, typ, nil
}

// UploadPartCopy makes a part of an upload from a range of a stored
// object (or all of it), as CopyObject makes an object: the source is
// opened, authenticated and decrypted here, and the part sealed under the
// upload's key like any other part. The provider never copies.
func (b *Backend) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput) (_ s3response.CopyPartResult, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "UploadPartCopy", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return s3response.CopyPartResult{}, err
	}
	if in.PartNumber == nil {
		return s3response.CopyPartResult{}, s3err.GetAPIError(s3err.ErrInvalidRequest)
	}
	sb, sk, sv, err := backend.ParseCopySource(str(in.CopySource))
	if err == nil {
		err = onlyVersion(sv)
	}
	if err != nil {
		return s3response.CopyPartResult{}, err
	}
	if err := b.allowed(ctx, sb, OpRead); err != nil {
		return s3response.CopyPartResult{}, err
	}
	mpAlg, _, err := b.uploadChecksum(ctx, bucket, key, str(in.UploadId))
	if err != nil {
		return s3response.CopyPartResult{}, err
	}
	dctx := detached(ctx)
	rd, err := b.repo.OpenObject(dctx, sb, sk)
	if err != nil {
		b.integrity(sb, sk, err)
		return s3response.CopyPartResult{}, s3Error(err, false)
	}
	defer rd.Close()
	if err := copySourceConditions(rd.Entry, backend.PreConditions{
		IfMatch: in.CopySourceIfMatch, IfNoneMatch: in.CopySourceIfNoneMatch,
		IfModSince: in.CopySourceIfModifiedSince, IfUnmodeSince: in.CopySourceIfUnmodifiedSince,
	}); err != nil {
		return s3response.CopyPartResult{}, err
	}
	off, n, err := copySourceRange(rd.Entry.Size, str(in.CopySourceRange))
	if err != nil {
		return s3response.CopyPartResult{}, err
	}
	var src io.Reader
	whole := off == 0 && n == rd.Entry.Size
	if whole {
		// The whole object: decrypted on every core, padding checked.
		pr, copied := b.decrypting(dctx, rd, sb, sk)
		defer func() {
			pr.CloseWithError(errors.New("copy ended"))
			<-copied // the source's keys are wiped (rd.Close) only once it has stopped
		}()
		src = pr
	} else {
		rc, err := rd.Range(dctx, off, n)
		if err != nil {
			b.integrity(sb, sk, err)
			return s3response.CopyPartResult{}, s3Error(err, false)
		}
		defer rc.Close()
		src = rc
	}
	// An upload with a checksum algorithm records the copied part's, as
	// for a part uploaded.
	var opts repo.PartOptions
	if mpAlg != "" {
		if src, opts.Checksum, err = sumAtEnd(src, mpAlg, ""); err != nil {
			return s3response.CopyPartResult{}, err
		}
	}
	p, err := b.repo.PutPartWith(dctx, bucket, key, str(in.UploadId), int(*in.PartNumber), b.gated(src), n, opts)
	if err != nil {
		var de *repo.DamageError
		if errors.As(err, &de) && !whole { // decrypting reports its own
			b.integrity(sb, sk, err)
		}
		return s3response.CopyPartResult{}, s3Error(err, false)
	}
	out := s3response.CopyPartResult{ETag: ptr(`"` + p.ETag + `"`), LastModified: time.Now().UTC().Truncate(time.Second)}
	checksumOut{&out.ChecksumCRC32, &out.ChecksumCRC32C, &out.ChecksumCRC64NVME, &out.ChecksumSHA1, &out.ChecksumSHA256, nil}.set(parseChecksum(p.Checksum))
	return out, nil
}

// copySourceRange parses x-amz-copy-source-range as S3 does: empty for
// the whole object, else bytes=FIRST-LAST, both given, within the object.
func copySourceRange(size int64, v string) (off, n int64, err error) {
	if v == "" {
		return 0, size, nil
	}
	first, last, ok := strings.Cut(strings.TrimPrefix(v, "bytes="), "-")
	if !strings.HasPrefix(v, "bytes=") || !ok || !digits(first) || !digits(last) {
		return 0, 0, s3err.GetInvalidArgumentErr(s3err.InvalidArgCopySourceRange, v)
	}
	f, ferr := strconv.ParseInt(first, 10, 64)
	l, lerr := strconv.ParseInt(last, 10, 64)
	switch {
	case ferr != nil || lerr != nil || l < f:
		return 0, 0, s3err.GetInvalidArgumentErr(s3err.InvalidArgCopySourceRange, v)
	case l >= size:
		return 0, 0, s3err.GetInvalidArgExceedingRange(size)
	}
	return f, l - f + 1, nil
}

// digits reports whether s is a non-empty run of ASCII digits.
func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (b *Backend) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput) (_ s3response.CompleteMultipartUploadResult, _ string, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "CompleteMultipartUpload", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return s3response.CompleteMultipartUploadResult{}, "", err
	}
	if !b.mayOverwrite(ctx, bucket) {
		if err := inboxConditions(in.IfMatch, in.IfNoneMatch); err != nil {
			return s3response.CompleteMultipartUploadResult{}, "", err
		}
	} else if in.IfMatch != nil {
		// If-Match: complete only over the object the client names, as a
		// PUT does (If-None-Match: * is checked with the commit).
		cur, err := b.repo.Stat(detached(ctx), bucket, key)
		exists := err == nil
		if err != nil && !errors.Is(err, repo.ErrNotFound) {
			return s3response.CompleteMultipartUploadResult{}, "", s3Error(err, false)
		}
		var curTag string
		if exists {
			curTag = etag(cur)
		}
		if err := backend.EvaluateObjectPutPreconditions(curTag, in.IfMatch, nil, exists); err != nil {
			return s3response.CompleteMultipartUploadResult{}, "", err
		}
	}
	if in.MultipartUpload == nil || len(in.MultipartUpload.Parts) == 0 {
		return s3response.CompleteMultipartUploadResult{}, "", s3err.GetAPIError(s3err.ErrMalformedXML)
	}
	list := make([]repo.CompletedPart, 0, len(in.MultipartUpload.Parts))
	for _, p := range in.MultipartUpload.Parts {
		if p.PartNumber == nil {
			return s3response.CompleteMultipartUploadResult{}, "", s3err.GetAPIError(s3err.ErrMalformedXML)
		}
		list = append(list, repo.CompletedPart{Number: int(*p.PartNumber), ETag: str(p.ETag)})
	}
	mpAlg, mpType, err := b.uploadChecksum(ctx, bucket, key, str(in.UploadId))
	if err != nil {
		return s3response.CompleteMultipartUploadResult{}, "", err
	}
	if in.ChecksumType != "" && in.ChecksumType != mpType {
		typ := mpType
		if typ == "" {
			typ = "null"
		}
		return s3response.CompleteMultipartUploadResult{}, "", s3err.GetChecksumTypeMismatchOnMpErr(typ)
	}
	e, err := b.repo.CompleteUpload(detached(ctx), bucket, key, str(in.UploadId), list, repo.CompleteOptions{
		CreateOnly: b.createOnly(ctx, bucket, in.IfNoneMatch), Attrs: completionChecksum(in, mpAlg, mpType)})
	if err != nil {
		return s3response.CompleteMultipartUploadResult{}, "", b.writeError(ctx, bucket, err)
	}
	out := s3response.CompleteMultipartUploadResult{Bucket: &bucket, Key: &key, ETag: ptr(etag(e))}
	var typ types.ChecksumType
	if (checksumOut{&out.ChecksumCRC32, &out.ChecksumCRC32C, &out.ChecksumCRC64NVME, &out.ChecksumSHA1, &out.ChecksumSHA256, &typ}).fill(e) {
		out.ChecksumType = &typ
	}
	return out, "", nil
}

func (b *Backend) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput) (err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "AbortMultipartUpload", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return err
	}
	return s3Error(b.repo.AbortUpload(detached(ctx), bucket, key, str(in.UploadId)), false)
}

func (b *Backend) ListParts(ctx context.Context, in *s3.ListPartsInput) (_ s3response.ListPartsResult, err error) {
	bucket, key := str(in.Bucket), str(in.Key)
	defer b.doneOn(ctx, "ListParts", bucket, key, time.Now(), &err)
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return s3response.ListPartsResult{}, err
	}
	ps, err := b.repo.ListParts(detached(ctx), bucket, key, str(in.UploadId))
	if err != nil {
		return s3response.ListPartsResult{}, s3Error(err, false)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Number < ps[j].Number })
	marker := 0
	if m := str(in.PartNumberMarker); m != "" {
		for _, c := range m {
			if c < '0' || c > '9' {
				return s3response.ListPartsResult{}, s3err.GetAPIError(s3err.ErrInvalidRequest)
			}
			marker = marker*10 + int(c-'0')
			if marker > 10000 {
				return s3response.ListPartsResult{}, s3err.GetAPIError(s3err.ErrInvalidRequest)
			}
		}
	}
	maxParts := 1000
	if in.MaxParts != nil && *in.MaxParts > 0 && *in.MaxParts < 1000 {
		maxParts = int(*in.MaxParts)
	}
	mpAlg, mpType, err := b.uploadChecksum(ctx, bucket, key, str(in.UploadId))
	if err != nil {
		return s3response.ListPartsResult{}, err
	}
	out := s3response.ListPartsResult{Bucket: bucket, Key: key, UploadID: str(in.UploadId), PartNumberMarker: marker, MaxParts: maxParts,
		ChecksumAlgorithm: mpAlg, ChecksumType: mpType}
	for _, p := range ps {
		if p.Number <= marker {
			continue
		}
		if len(out.Parts) == maxParts {
			out.IsTruncated = true
			break
		}
		part := s3response.Part{PartNumber: p.Number, LastModified: p.Modified, ETag: `"` + p.ETag + `"`, Size: p.Size}
		checksumOut{&part.ChecksumCRC32, &part.ChecksumCRC32C, &part.ChecksumCRC64NVME, &part.ChecksumSHA1, &part.ChecksumSHA256, nil}.set(parseChecksum(p.Checksum))
		out.Parts = append(out.Parts, part)
		out.NextPartNumberMarker = p.Number
	}
	return out, nil
}

func (b *Backend) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput) (_ s3response.ListMultipartUploadsResult, err error) {
	bucket := str(in.Bucket)
	defer b.doneOn(ctx, "ListMultipartUploads", bucket, "", time.Now(), &err)
	if err := b.bucketFor(ctx, bucket, OpList); err != nil {
		return s3response.ListMultipartUploadsResult{}, err
	}
	enc, encType, err := listEncoding(ctx)
	if err != nil {
		return s3response.ListMultipartUploadsResult{}, err
	}
	prefix := str(in.Prefix)
	ups, err := b.repo.ListUploads(detached(ctx), bucket, prefix)
	if err != nil {
		return s3response.ListMultipartUploadsResult{}, s3Error(err, true)
	}
	sort.Slice(ups, func(i, j int) bool {
		if ups[i].Key != ups[j].Key {
			return ups[i].Key < ups[j].Key
		}
		return ups[i].ID < ups[j].ID
	})
	keyMarker, idMarker := str(in.KeyMarker), str(in.UploadIdMarker)
	maxUploads := 1000
	if in.MaxUploads != nil && *in.MaxUploads > 0 && *in.MaxUploads < 1000 {
		maxUploads = int(*in.MaxUploads)
	}
	delim := str(in.Delimiter)
	out := s3response.ListMultipartUploadsResult{Bucket: bucket, Prefix: enc(prefix), Delimiter: enc(delim), KeyMarker: enc(keyMarker),
		UploadIDMarker: idMarker, MaxUploads: maxUploads, EncodingType: string(encType)}
	// Uploads whose key holds the delimiter after the prefix are folded
	// into common prefixes as ListObjects folds keys (commonPrefix); each
	// prefix counts as one entry, and a page that ends with one gives it
	// as the next key marker, with no upload id marker.
	lastCP := ""
	for _, u := range ups {
		if !strings.HasPrefix(u.Key, prefix) ||
			keyMarker != "" && (u.Key < keyMarker || (u.Key == keyMarker && (idMarker == "" || u.ID <= idMarker))) {
			continue
		}
		cp, folded := commonPrefix(u.Key, prefix, delim)
		if folded && (cp == lastCP || cp <= keyMarker) {
			continue // listed already, on this page or an earlier one
		}
		if len(out.Uploads)+len(out.CommonPrefixes) == maxUploads {
			out.IsTruncated = true
			break
		}
		if folded {
			out.CommonPrefixes = append(out.CommonPrefixes, s3response.CommonPrefix{Prefix: enc(cp)})
			out.NextKeyMarker, out.NextUploadIDMarker = enc(cp), ""
			lastCP = cp
			continue
		}
		out.Uploads = append(out.Uploads, s3response.Upload{Key: enc(u.Key), UploadID: u.ID, Initiated: u.Initiated})
		out.NextKeyMarker, out.NextUploadIDMarker = enc(u.Key), u.ID
	}
	return out, nil
}
