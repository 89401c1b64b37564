package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/holdfast/holdfast/internal/offheap"
)

// S3's limits on multipart uploads: parts per upload, and the size of
// every part but the last.
const (
	maxParts    = 10000
	minPartSize = 5 << 20
	maxPartSize = 5 << 30
)

// partPool holds a store's part buffers: at most keep of them exist at
// once, outside the Go heap, and none is ever unmapped while the store is
// open, so a transport that still reads a request body after the request
// returned reads valid memory. Memory for uploads is therefore exactly
// PartSize × (Concurrency+1), however many objects are in flight and
// however long they are.
type partPool struct {
	pool   *offheap.Pool
	tokens chan struct{} // one per buffer that may be out
}

func newPartPool(size, keep int) *partPool {
	p := &partPool{pool: offheap.NewPool(size, keep), tokens: make(chan struct{}, keep)}
	for range keep {
		p.tokens <- struct{}{}
	}
	return p
}

// get waits for a buffer.
func (p *partPool) get(ctx context.Context) ([]byte, error) {
	select {
	case <-p.tokens:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b, err := p.pool.Get()
	if err != nil {
		p.tokens <- struct{}{}
	}
	return b, err
}

// tryGet returns a buffer if one is free now.
func (p *partPool) tryGet() ([]byte, bool, error) {
	select {
	case <-p.tokens:
	default:
		return nil, false, nil
	}
	b, err := p.pool.Get()
	if err != nil {
		p.tokens <- struct{}{}
		return nil, false, err
	}
	return b, true, nil
}

func (p *partPool) put(b []byte) {
	p.pool.Put(b)
	p.tokens <- struct{}{}
}

// upload streams body into key. A body that fits in one part goes up in
// one PutObject; a longer one in a multipart upload whose parts are read
// into the store's part buffers and sent up to Concurrency at a time. Each
// request's body is a seekable buffer, so the SDK's retryer can resend it.
// On any failure the multipart upload is aborted: nothing partial is left
// visible, and what an abort cannot remove (the process dies first) the
// next AbortIncomplete does.
//
// An upload never waits for a buffer while it holds one: after the first,
// it takes a free buffer from the pool if there is one and otherwise
// reuses the buffer of one of its own parts when that part is done. So
// concurrent uploads share the buffers without deadlock.
func (s *Store) upload(ctx context.Context, key string, body io.Reader) error {
	first, err := s.parts.get(ctx)
	if err != nil {
		return err
	}
	n, rerr := io.ReadFull(body, first)
	switch {
	case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
		defer s.parts.put(first)
		_, err := s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
			Body: bytes.NewReader(first[:n]), ContentLength: aws.Int64(int64(n))})
		return err
	case rerr != nil:
		s.parts.put(first)
		return rerr
	}
	created, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		s.parts.put(first)
		return err
	}
	u := &multipart{s: s, key: key, id: created.UploadId, results: make(chan partResult, s.concurrency)}
	u.ctx, u.cancel = context.WithCancel(ctx)
	defer u.cancel()
	// Take every free buffer this upload may use at once, so that a lone
	// upload's memory does not depend on how fast the server answers.
	for range s.concurrency {
		b, ok, err := s.parts.tryGet()
		if err != nil || !ok {
			break
		}
		u.spare = append(u.spare, b)
	}
	err = u.run(body, first)
	if err != nil {
		// Abort even when ctx is done, but not forever.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if _, aerr := s.c.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket),
			Key: aws.String(key), UploadId: u.id}); aerr != nil {
			err = fmt.Errorf("%w (and aborting the upload failed: %v; the next cleanup removes it)", err, aerr)
		}
	}
	return err
}

// abortTimeout bounds the abort of a failed upload.
const abortTimeout = 30 * time.Second

type partResult struct {
	num  int32
	etag *string
	buf  []byte
	err  error
}

type multipart struct {
	s        *Store
	key      string
	id       *string
	ctx      context.Context
	cancel   context.CancelFunc
	results  chan partResult
	inflight int
	spare    [][]byte
	done     []types.CompletedPart
	err      error
}

func (u *multipart) run(body io.Reader, first []byte) error {
	defer func() {
		for u.inflight > 0 {
			u.collect()
		}
		for _, b := range u.spare {
			u.s.parts.put(b)
		}
	}()
	u.send(1, first, len(first))
	for num := int32(2); ; num++ {
		b, err := u.buffer()
		if err != nil {
			return err
		}
		n, rerr := io.ReadFull(body, b)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			u.spare = append(u.spare, b)
			return rerr
		}
		if n == 0 {
			u.spare = append(u.spare, b)
			break
		}
		if num > maxParts {
			u.spare = append(u.spare, b)
			return fmt.Errorf("object is larger than %d parts of %d bytes: raise the part size", maxParts, len(b))
		}
		u.send(num, b, n)
		if rerr != nil {
			break
		}
	}
	for u.inflight > 0 {
		u.collect()
	}
	if u.err != nil {
		return u.err
	}
	slices.SortFunc(u.done, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	_, err := u.s.c.CompleteMultipartUpload(u.ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(u.s.bucket),
		Key: aws.String(u.key), UploadId: u.id, MultipartUpload: &types.CompletedMultipartUpload{Parts: u.done}})
	return err
}

// buffer returns a buffer for the next part: a free one from the pool
// while fewer than Concurrency parts are in flight (and this upload holds
// fewer than Concurrency+1), else a spare one of this upload's, or else
// the buffer of the next part of this upload to finish.
func (u *multipart) buffer() ([]byte, error) {
	for {
		if u.err != nil {
			return nil, u.err
		}
		// The pool first: an upload long enough to fill Concurrency parts
		// then always ends up using the same number of buffers, so its
		// memory does not depend on how fast the server answered.
		if u.inflight < u.s.concurrency && len(u.spare)+u.inflight < u.s.concurrency+1 {
			b, ok, err := u.s.parts.tryGet()
			if err != nil {
				return nil, err
			}
			if ok {
				return b, nil
			}
		}
		if n := len(u.spare); n > 0 {
			b := u.spare[n-1]
			u.spare = u.spare[:n-1]
			return b, nil
		}
		if u.inflight == 0 {
			return nil, errors.New("internal error: multipart upload holds no buffer")
		}
		u.collect()
	}
}

func (u *multipart) send(num int32, b []byte, n int) {
	u.inflight++
	go func() {
		out, err := u.s.c.UploadPart(u.ctx, &s3.UploadPartInput{Bucket: aws.String(u.s.bucket), Key: aws.String(u.key),
			UploadId: u.id, PartNumber: aws.Int32(num), Body: bytes.NewReader(b[:n]), ContentLength: aws.Int64(int64(n))})
		r := partResult{num: num, buf: b, err: err}
		if err == nil {
			r.etag = out.ETag
		}
		u.results <- r
	}()
}

// collect waits for one part to finish and keeps its buffer as a spare.
func (u *multipart) collect() {
	r := <-u.results
	u.inflight--
	u.spare = append(u.spare, r.buf[:cap(r.buf)])
	switch {
	case r.err != nil:
		if u.err == nil {
			u.err = fmt.Errorf("part %d: %w", r.num, r.err)
			u.cancel()
		}
	case r.etag == nil:
		if u.err == nil {
			u.err = fmt.Errorf("part %d: no ETag in the response", r.num)
			u.cancel()
		}
	default:
		u.done = append(u.done, types.CompletedPart{PartNumber: aws.Int32(r.num), ETag: r.etag})
	}
}
