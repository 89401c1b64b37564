package gateway

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/versity/versitygw/s3err"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/repo"
)

// Object tags. An object's tags are one attribute (attrTagging), kept
// encrypted in its manifest with its other attributes, so they never
// reach the provider in the clear. They are set with the object
// (x-amz-tagging on PutObject, CreateMultipartUpload and, with
// x-amz-tagging-directive REPLACE, CopyObject; a copy keeps its source's
// otherwise) or afterwards by PutObjectTagging and DeleteObjectTagging,
// which seal the object again with the new set (repo.Reseal: the manifest
// is sealed once under the object's data key). Changing tags therefore
// costs a copy of the object; setting the set it already has costs
// nothing.
//
// Tags share the manifest's metadata budget (repo: 2 KiB of names and
// values) with the user metadata and the other attributes: a set that
// does not fit is refused (MetadataTooLarge), and nothing changes.

// S3's limits on an object's tags. Lengths count Unicode characters.
const (
	maxTags        = 10
	maxTagKeyLen   = 128
	maxTagValueLen = 256
)

// tagChars are the characters S3 allows in a tag key or value (the front
// end applies the same rule to a PutObjectTagging body).
var tagChars = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

// parseTagHeader reads x-amz-tagging as S3 does: URL query parameters,
// a name without "=" being a tag with an empty value and empty pieces
// ignored. A value that is not such a query, or repeats a key, is
// InvalidArgument; the limits are checkTags'.
func parseTagHeader(v string) (map[string]string, error) {
	tags := map[string]string{}
	bad := s3err.GetInvalidArgumentErr(s3err.InvalidArgURLEncodedTagging, v)
	for _, piece := range strings.Split(v, "&") {
		if piece == "" {
			continue
		}
		k, val, _ := strings.Cut(piece, "=")
		if k == "" {
			return nil, bad
		}
		k, kerr := url.QueryUnescape(k)
		val, verr := url.QueryUnescape(val)
		if kerr != nil || verr != nil {
			return nil, bad
		}
		if _, dup := tags[k]; dup {
			return nil, bad
		}
		tags[k] = val
	}
	return tags, checkTags(tags)
}

// checkTags applies S3's rules to a tag set: at most 10 tags; keys of 1
// to 128 characters, values of at most 256, both of tagChars; no key
// starting with "aws:", which AWS reserves.
func checkTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return s3err.GetAPIError(s3err.ErrObjectTaggingLimited)
	}
	for k, v := range tags {
		switch {
		case k == "" || utf8.RuneCountInString(k) > maxTagKeyLen || !utf8.ValidString(k) || !tagChars.MatchString(k):
			return s3err.GetInvalidTagErr(s3err.ErrInvalidTagKey, k, "")
		case utf8.RuneCountInString(v) > maxTagValueLen || !utf8.ValidString(v) || !tagChars.MatchString(v):
			return s3err.GetInvalidTagErr(s3err.ErrInvalidTagValue, k, v)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return s3err.InvalidTagError{TagKey: k, APIError: s3err.APIError{Code: "InvalidTag", HTTPStatusCode: 400,
				Description: "Your TagKey cannot be prefixed with aws:"}}
		}
	}
	return nil
}

// encodeTags is the attrTagging value of a tag set: its URL query form,
// sorted by key; "" (no attribute) for no tags.
func encodeTags(tags map[string]string) string {
	q := url.Values{}
	for k, v := range tags {
		q.Set(k, v)
	}
	return q.Encode()
}

// storedTags returns e's tags (an empty set if it has none).
func storedTags(e catalog.Entry) map[string]string {
	tags := map[string]string{}
	q, _ := url.ParseQuery(repo.Attr(e, attrTagging)) // written by encodeTags
	for k, v := range q {
		if len(v) > 0 {
			tags[k] = v[0]
		}
	}
	return tags
}

// tagCount is e's x-amz-tagging-count: nil (no header) without tags.
func tagCount(e catalog.Entry) *int32 {
	if repo.Attr(e, attrTagging) == "" {
		return nil
	}
	return ptr(int32(len(storedTags(e))))
}

// GetObjectTagging answers the tags of an object the key may read.
func (b *Backend) GetObjectTagging(ctx context.Context, bucket, key, versionID string) (_ map[string]string, err error) {
	defer b.doneOn(ctx, "GetObjectTagging", bucket, key, time.Now(), &err)
	bucket, key = strings.Clone(bucket), strings.Clone(key)
	if err := b.allowed(ctx, bucket, OpRead); err != nil {
		return nil, err
	}
	if err := onlyVersion(versionID); err != nil {
		return nil, err
	}
	e, err := b.repo.Stat(detached(ctx), bucket, key)
	if err != nil {
		return nil, s3Error(err, false)
	}
	return storedTags(e), nil
}

// PutObjectTagging replaces an object's tags (the front end has parsed
// and checked the body).
func (b *Backend) PutObjectTagging(ctx context.Context, bucket, key, versionID string, tags map[string]string) (err error) {
	defer b.doneOn(ctx, "PutObjectTagging", bucket, key, time.Now(), &err)
	return b.setTags(ctx, strings.Clone(bucket), strings.Clone(key), versionID, tags)
}

// DeleteObjectTagging removes an object's tags.
func (b *Backend) DeleteObjectTagging(ctx context.Context, bucket, key, versionID string) (err error) {
	defer b.doneOn(ctx, "DeleteObjectTagging", bucket, key, time.Now(), &err)
	return b.setTags(ctx, strings.Clone(bucket), strings.Clone(key), versionID, nil)
}

// setTags gives bucket/key the tag set tags, sealing it again unless it
// has that set already. Tagging an existing object needs Write: a key
// that may not overwrite (an inbox key) is refused before the object is
// looked up, so the answer says nothing of whether the name is taken; it
// sets tags only on the objects it uploads, with the upload.
func (b *Backend) setTags(ctx context.Context, bucket, key, versionID string, tags map[string]string) error {
	if err := b.allowed(ctx, bucket, OpWrite); err != nil {
		return err
	}
	if !b.mayOverwrite(ctx, bucket) {
		return s3err.GetAPIError(s3err.ErrAccessDenied)
	}
	if err := onlyVersion(versionID); err != nil {
		return err
	}
	if err := checkTags(tags); err != nil {
		return err
	}
	if err := b.bucketExists(ctx, bucket); err != nil {
		return err
	}
	v := encodeTags(tags)
	dctx := detached(ctx)
	for tries := 0; ; tries++ {
		rd, err := b.repo.OpenObject(dctx, bucket, key)
		if err != nil {
			b.integrity(bucket, key, err)
			return s3Error(err, false)
		}
		if repo.Attr(rd.Entry, attrTagging) == v {
			rd.Close()
			return nil
		}
		_, err = b.repo.Reseal(dctx, rd, map[string]string{attrTagging: v})
		rd.Close()
		// Written or deleted meanwhile: the tags go on what is there now.
		if errors.Is(err, repo.ErrReplaced) && tries < 2 {
			continue
		}
		if err != nil {
			b.integrity(bucket, key, err)
		}
		return s3Error(err, false)
	}
}
