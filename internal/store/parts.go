package store

import (
	"context"
	"errors"
	"io"
)

// ErrPartMismatch: CompleteParts was given a part token that no longer
// names the stored bytes of its part (another upload of the same number
// replaced them meanwhile). Nothing was completed; uploading the part
// again and completing with the new token succeeds.
var ErrPartMismatch = errors.New("stored part differs from the one named")

// PartLimits are a store's rules for objects built from parts.
type PartLimits struct {
	// MinSize is the smallest size of a part other than the last one an
	// object is completed with (S3: 5 MiB); 0 means any size.
	MinSize int64
	// MaxSize is the largest part (S3: 5 GiB); 0 means no limit.
	MaxSize int64
	// MaxParts is the highest part number, which also bounds the parts
	// the tail of CompleteParts may take (S3: 10,000); 0 means no limit.
	MaxParts int
	// Rewind says that the store may send a part's body more than once
	// (it retries requests that fail in passing): it does so only when
	// UploadPart is given an io.ReadSeeker, and otherwise makes a single
	// attempt.
	Rewind bool
}

// StoredPart names one uploaded part of an object under construction.
type StoredPart struct {
	Number int
	Token  string // what UploadPart returned for it
}

// PartUploader is implemented by stores that can build one object from
// parts uploaded separately, in any order and from several processes
// (S3's multipart upload). Callers find it by type assertion. The object
// becomes visible only at CompleteParts, all or nothing as with Put; until
// then its parts are invisible to List and Stat. What an interrupted
// construction leaves behind is abandoned by Janitor.AbortIncomplete
// unless its name is in progress.
type PartUploader interface {
	// PartLimits returns the store's rules for parts.
	PartLimits() PartLimits

	// CreateParts begins an object to be built under name and returns the
	// handle that names the construction in the calls below. The handle
	// is opaque; the caller keeps it to continue in another process.
	CreateParts(ctx context.Context, name string) (handle string, err error)

	// UploadPart stores part number n (1 ≤ n ≤ MaxParts) of the object:
	// exactly size bytes read from r (ErrShortWrite otherwise, and nothing
	// is stored), and returns a token naming the stored bytes. A part may
	// be uploaded again under the same number; whether the earlier bytes
	// are replaced at once (S3) or kept until DeletePart (a store that
	// gives each upload its own token) is the store's business — the
	// token says which bytes CompleteParts uses. Uploads of different
	// numbers may run concurrently.
	UploadPart(ctx context.Context, name, handle string, n int, r io.Reader, size int64) (token string, err error)

	// DeletePart forgets the bytes of a part that a later upload of its
	// number superseded. Where that upload replaced them already it does
	// nothing; bytes not deleted are dropped at completion or abort.
	DeletePart(ctx context.Context, name, handle string, p StoredPart) error

	// CompleteParts makes name the concatenation of parts, in the order
	// given (ascending numbers), followed by the first tailSize bytes of
	// tail, which the store splits as its limits need (under S3, into
	// parts numbered after the last of parts: the caller leaves room
	// below MaxParts). Every part given must be at least MinSize bytes
	// (the tail ends the object, so none of them is last). It is all or
	// nothing, like Put; afterwards the handle is gone. Called again after
	// it succeeded (its answer was lost), it succeeds and leaves the
	// object as it is (the caller gives the same parts and tail).
	CompleteParts(ctx context.Context, name, handle string, parts []StoredPart, tail io.ReaderAt, tailSize int64) error

	// AbortParts discards everything uploaded under handle. Aborting a
	// handle that is gone (aborted or completed before) is not an error.
	AbortParts(ctx context.Context, name, handle string) error
}
