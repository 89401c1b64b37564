package s3

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// body is the reader ReadRange returns. When the transfer breaks — a
// reset, an idle timeout, an answer cut short — it asks again for the
// bytes not yet delivered, from the same object version (If-Match its
// ETag), with the retryer's backoff, until MaxAttempts transfers in a row
// have broken without delivering a byte. It never ends early without an
// error: a body that ends before its Content-Range says is broken too.
type body struct {
	s      *Store
	ctx    context.Context // the GETs' context; Close cancels it
	cancel context.CancelFunc
	name   string
	etag   *string
	off    int64 // the next byte to deliver
	end    int64 // one past the last byte of the range, or -1: not known
	rc     io.ReadCloser
	broken int   // transfers broken in a row without delivering a byte
	last   error // why the last one broke
	err    error // sticky
}

// get asks for [off, end) (end < 0: to the end of the object).
func (s *Store) get(ctx context.Context, name string, off, end int64, etag *string) (*s3.GetObjectOutput, error) {
	rng := fmt.Sprintf("bytes=%d-", off)
	if end >= 0 {
		rng = fmt.Sprintf("bytes=%d-%d", off, end-1)
	}
	return s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name)),
		Range: aws.String(rng), IfMatch: etag})
}

// rangeEnd is one past the last byte of a ranged answer starting at off,
// or -1 when the answer does not say.
func rangeEnd(out *s3.GetObjectOutput, off int64) int64 {
	// Content-Range: bytes FIRST-LAST/SIZE
	if cr, ok := strings.CutPrefix(aws.ToString(out.ContentRange), "bytes "); ok {
		if r, _, ok := strings.Cut(cr, "/"); ok {
			if a, b, ok := strings.Cut(r, "-"); ok {
				first, err1 := strconv.ParseInt(a, 10, 64)
				last, err2 := strconv.ParseInt(b, 10, 64)
				if err1 == nil && err2 == nil && first == off && last >= first {
					return last + 1
				}
			}
		}
	}
	if out.ContentLength != nil && off == 0 {
		return *out.ContentLength
	}
	return -1
}

func (b *body) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		if b.end >= 0 && b.off >= b.end {
			return 0, io.EOF
		}
		if b.rc == nil {
			if b.err = b.resume(); b.err != nil {
				return 0, b.err
			}
		}
		n, err := b.rc.Read(p)
		b.off += int64(n)
		if n > 0 {
			b.broken = 0
		}
		if err == nil || err == io.EOF && (b.end < 0 || b.off == b.end) {
			return n, err
		}
		if b.ctx.Err() != nil {
			b.err = fmt.Errorf("s3: read %q: %w", b.name, b.ctx.Err())
			return n, b.err
		}
		// The transfer broke: the next Read asks for the rest.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.rc.Close()
		b.rc, b.last = nil, err
		b.broken++
		if n > 0 {
			return n, nil
		}
	}
}

// resume asks for the rest of the range after a broken transfer.
func (b *body) resume() error {
	if b.broken >= b.s.maxAttempts {
		return fmt.Errorf("s3: read %q: %w", b.name, &unavailableError{
			detail: fmt.Sprintf("the transfer broke off %s in a row at byte %d", plural(b.broken, "time"), b.off), last: b.last})
	}
	d, err := b.s.retryer.RetryDelay(b.broken, b.last)
	if err != nil {
		return fmt.Errorf("s3: read %q: %w", b.name, err)
	}
	t := time.NewTimer(d)
	select {
	case <-b.ctx.Done():
		t.Stop()
		return fmt.Errorf("s3: read %q: %w", b.name, b.ctx.Err())
	case <-t.C:
	}
	b.s.retries.Add(1)
	out, err := b.s.get(b.ctx, b.name, b.off, b.end, b.etag)
	if err != nil {
		return wrapErr("read", b.name, err)
	}
	b.rc = out.Body
	return nil
}

func (b *body) Close() error {
	b.cancel()
	if b.err == nil {
		b.err = fmt.Errorf("s3: read %q: reader closed", b.name)
	}
	if b.rc != nil {
		b.rc.Close()
		b.rc = nil
	}
	return nil
}
