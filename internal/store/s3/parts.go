package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/holdfast/holdfast/internal/store"
)

// Objects built from parts (store.PartUploader) are S3 multipart uploads
// that the caller drives part by part: each UploadPart is one provider
// part under the caller's number, its token the provider's ETag, and
// CompleteParts uploads the tail in parts numbered after the last one
// and completes the upload. Unlike Put, whose parts are cut from one
// stream into the store's own buffers, a part here is one request of any
// size up to 5 GiB whose body streams from the caller: it is retried only
// when the caller gives a body that can be read again (an io.ReadSeeker),
// and its deadline grows with its size.

var _ store.PartUploader = (*Store)(nil)

// timeoutKey carries a request deadline longer than Config.Timeout
// (retry.go reads it).
type timeoutKey struct{}

// partTimeoutUnit is the number of bytes one Timeout is granted for: a
// part of n bytes may take Timeout × ceil(n / unit), the same allowance
// per byte as a Put's parts of the default size.
const partTimeoutUnit = 16 << 20

func (s *Store) partContext(ctx context.Context, size int64) context.Context {
	units := max(1, (size+partTimeoutUnit-1)/partTimeoutUnit)
	return context.WithValue(ctx, timeoutKey{}, time.Duration(units)*s.timeout)
}

// unsignedPayload signs a part's request without hashing its body first:
// the body streams (it could not be hashed without being read twice), TLS
// protects the transfer, and Holdfast authenticates every byte itself.
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// PartLimits implements store.PartUploader: S3's limits, and requests
// are retried.
func (s *Store) PartLimits() store.PartLimits {
	return store.PartLimits{MinSize: minPartSize, MaxSize: maxPartSize, MaxParts: maxParts, Rewind: true}
}

// CreateParts implements store.PartUploader with CreateMultipartUpload.
// A repeated request (its answer lost) leaves an empty upload that the
// janitor aborts once name is no longer in progress.
func (s *Store) CreateParts(ctx context.Context, name string) (string, error) {
	if err := s.check("create upload", name); err != nil {
		return "", err
	}
	out, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))})
	if err != nil {
		return "", wrapErr("create upload", name, err)
	}
	if aws.ToString(out.UploadId) == "" {
		return "", fmt.Errorf("s3: create upload %q: no upload id in the answer", name)
	}
	return aws.ToString(out.UploadId), nil
}

// UploadPart implements store.PartUploader with one UploadPart request.
func (s *Store) UploadPart(ctx context.Context, name, handle string, n int, r io.Reader, size int64) (string, error) {
	if err := s.check("upload part", name); err != nil {
		return "", err
	}
	if n < 1 || n > maxParts || size < 0 || size > maxPartSize || handle == "" {
		return "", fmt.Errorf("s3: upload part %d of %q (%d bytes): outside S3's limits", n, name, size)
	}
	var body io.Reader
	rs, seekable := r.(io.ReadSeeker)
	if seekable {
		body = &exactSeeker{rs: rs, want: size}
	} else {
		body = &exactReader{r: r, want: size}
	}
	out, err := s.c.UploadPart(s.partContext(ctx, size), &s3.UploadPartInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name)),
		UploadId: aws.String(handle), PartNumber: aws.Int32(int32(n)), Body: body, ContentLength: aws.Int64(size)}, unsignedPayload)
	if err != nil {
		if berr := bodyErr(body); berr != nil {
			return "", fmt.Errorf("s3: upload part %d of %q: %w", n, name, berr)
		}
		if !seekable && !isClientError(err) && !errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil {
			// One attempt only: the body cannot be sent again.
			err = &unavailableError{detail: "a part whose body cannot be read again is sent once", last: err}
		}
		return "", wrapErr(fmt.Sprintf("upload part %d of", n), name, err)
	}
	if aws.ToString(out.ETag) == "" {
		return "", fmt.Errorf("s3: upload part %d of %q: no ETag in the answer", n, name)
	}
	return aws.ToString(out.ETag), nil
}

func bodyErr(b io.Reader) error {
	switch b := b.(type) {
	case *exactReader:
		return b.err
	case *exactSeeker:
		return b.err
	}
	return nil
}

// isClientError: the server answered 4xx (retrying would not help).
func isClientError(err error) bool {
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() >= 400 && re.HTTPStatusCode() < 500
}

// isNoSuchUpload: the upload was completed or aborted.
func isNoSuchUpload(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// DeletePart implements store.PartUploader: S3 replaced the part's bytes
// when its number was uploaded again, and drops the parts a completion
// does not name.
func (s *Store) DeletePart(ctx context.Context, name, handle string, p store.StoredPart) error {
	return s.check("delete part", name)
}

// CompleteParts implements store.PartUploader: the tail goes up in parts
// of at most 5 GiB (each at least 2.5 GiB when there are several),
// numbered from the last part's number plus one, and the upload is
// completed with every part's ETag — which the provider checks, so a part
// replaced by a concurrent upload of its number fails the completion with
// store.ErrPartMismatch instead of completing other bytes than named. A
// completion repeated after its answer was lost finds the upload gone and
// the object in place, and succeeds.
func (s *Store) CompleteParts(ctx context.Context, name, handle string, parts []store.StoredPart, tail io.ReaderAt, tailSize int64) error {
	if err := s.check("complete upload", name); err != nil {
		return err
	}
	if tailSize < 0 || handle == "" {
		return fmt.Errorf("s3: complete upload %q: bad tail size %d or handle", name, tailSize)
	}
	done := make([]types.CompletedPart, 0, len(parts)+1)
	last := 0
	for _, p := range parts {
		if p.Number <= last || p.Number > maxParts {
			return fmt.Errorf("s3: complete upload %q: part %d out of order or range", name, p.Number)
		}
		last = p.Number
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(p.Number)), ETag: aws.String(p.Token)})
	}
	k := (tailSize + maxPartSize - 1) / maxPartSize
	if tailSize == 0 && len(parts) == 0 {
		k = 1 // an upload needs a part
	}
	if int64(last)+k > maxParts {
		return fmt.Errorf("s3: complete upload %q: the tail needs %d parts after part %d, beyond S3's %d", name, k, last, maxParts)
	}
	gone := func(err error) error {
		// Completed by an earlier call whose answer was lost?
		if isNoSuchUpload(err) {
			if _, serr := s.Stat(ctx, name); serr == nil {
				return nil
			}
		}
		return wrapErr("complete upload", name, err)
	}
	for i := int64(0); i < k; i++ {
		off := tailSize * i / k
		n := tailSize*(i+1)/k - off
		num := int32(last + 1 + int(i))
		out, err := s.c.UploadPart(s.partContext(ctx, n), &s3.UploadPartInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name)),
			UploadId: aws.String(handle), PartNumber: aws.Int32(num), Body: io.NewSectionReader(tail, off, n),
			ContentLength: aws.Int64(n)}, unsignedPayload)
		if err != nil {
			return gone(err)
		}
		if aws.ToString(out.ETag) == "" {
			return fmt.Errorf("s3: complete upload %q: part %d: no ETag in the answer", name, num)
		}
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag})
	}
	_, err := s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(s.bucket),
		Key: aws.String(s.key(name)), UploadId: aws.String(handle), MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidPart" {
			return fmt.Errorf("s3: complete upload %q: %w (%v)", name, store.ErrPartMismatch, err)
		}
		return gone(err)
	}
	return nil
}

// AbortParts implements store.PartUploader with AbortMultipartUpload.
func (s *Store) AbortParts(ctx context.Context, name, handle string) error {
	if err := s.check("abort upload", name); err != nil {
		return err
	}
	if handle == "" {
		return nil
	}
	_, err := s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket),
		Key: aws.String(s.key(name)), UploadId: aws.String(handle)})
	if err != nil && !isNoSuchUpload(err) {
		return wrapErr("abort upload", name, err)
	}
	return nil
}

// exactSeeker is exactReader for a body that can be read again: a Seek
// (the SDK rewinds the body before it retries) moves the count with it.
type exactSeeker struct {
	rs   io.ReadSeeker
	want int64
	n    int64
	err  error
}

func (e *exactSeeker) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := exactRead(e.rs, p, e.want, &e.n)
	if err != nil && err != io.EOF {
		e.err = err // the source failed, or is not the declared size: no attempt may send it again
	}
	return n, err
}

func (e *exactSeeker) Seek(off int64, whence int) (int64, error) {
	if e.err != nil {
		return 0, e.err
	}
	pos, err := e.rs.Seek(off, whence)
	if err == nil {
		e.n = pos
	}
	return pos, err
}
