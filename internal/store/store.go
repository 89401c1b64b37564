package store

import (
	"context"
	"errors"
	"io"
)

// Errors shared by every store. Implementations wrap them with %w so callers
// can test with errors.Is.
var (
	// ErrNotExist: the named object does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrExist: a conditional create found the name taken.
	ErrExist = errors.New("object already exists")
	// ErrInvalidName: the name is not a valid opaque object name.
	ErrInvalidName = errors.New("invalid object name")
	// ErrInvalidRange: a range lies outside the object.
	ErrInvalidRange = errors.New("range outside object")
	// ErrShortWrite: Put's reader delivered a different number of bytes than
	// the declared size; nothing was stored.
	ErrShortWrite = errors.New("object body length does not match declared size")
	// ErrUnavailable: the store could not be reached or did not answer,
	// after whatever retries the store makes. It says nothing about the
	// stored data; trying again later may succeed.
	ErrUnavailable = errors.New("store unavailable")
)

// UnknownSize tells Put to store whatever the reader yields.
const UnknownSize = -1

// ObjectInfo describes one stored object as the store sees it.
type ObjectInfo struct {
	Name string // opaque name, as given to Put
	Size int64  // stored length in bytes
}

// Store holds opaque, immutable objects. Names are chosen by the caller
// (ValidName describes them) and never reused for different contents by
// Holdfast, but a store must not rely on that.
type Store interface {
	// Put stores the bytes read from r under name. With size >= 0 the body
	// must be exactly size bytes (Put reads to EOF to check, so r must end);
	// with size == UnknownSize the body is whatever r yields up to EOF.
	// Put is all or nothing: when it returns nil the whole object is
	// durable and visible; when it returns an error, name holds either its
	// previous state or (if the failure came after the commit point, e.g. a
	// lost response) the complete new object — never a partial one. If r
	// yields a different number of bytes than a declared size, or another
	// size below -1 is given, Put fails with ErrShortWrite and stores
	// nothing. Put replaces an existing object of the same name. Several
	// processes may Put to one store at once.
	Put(ctx context.Context, name string, r io.Reader, size int64) error

	// ReadRange returns length bytes of the object starting at off. A
	// length of -1 reads to the end. A range that starts beyond the end
	// fails with ErrInvalidRange, as do a negative offset and a length
	// below -1; a range that runs past the end is cut at the end (like S3),
	// and one that starts exactly at the end is empty. The caller must close
	// the reader. A missing object fails with ErrNotExist.
	ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)

	// Stat returns the object's stored size, or ErrNotExist.
	Stat(ctx context.Context, name string) (ObjectInfo, error)

	// Delete removes the object. Deleting a missing object fails with
	// ErrNotExist (callers that want idempotence test for it).
	Delete(ctx context.Context, name string) error

	// List calls fn for every object whose name starts with prefix, in
	// lexical order of name. Objects put or deleted while List runs may or
	// may not be seen. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// Close releases the store's resources. Methods called after Close
	// fail.
	Close() error
}

// ValidName reports whether name is acceptable to every store: 1 to 128
// characters from [a-z0-9.-], not starting with '.' or '-'. Holdfast only
// ever uses names of this form, so no store has to escape anything.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 128 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// DeferredSyncer is implemented by stores that can make many objects
// durable at once, which is far cheaper than one Put at a time. Callers
// find it by type assertion.
type DeferredSyncer interface {
	// PutNoSync is Put except that the object, though complete and visible
	// when it returns nil, may be lost or cut short by a power failure (not
	// by a process crash) until Sync returns. Callers must not record the
	// object anywhere durable before Sync.
	PutNoSync(ctx context.Context, name string, r io.Reader, size int64) error
	// Sync makes every object stored by PutNoSync before the call durable.
	Sync(ctx context.Context) error
}

// Janitor is implemented by stores where an interrupted write can leave
// invisible leftovers that still cost storage (S3's incomplete multipart
// uploads). Callers find it by type assertion.
type Janitor interface {
	// AbortIncomplete abandons every leftover of an interrupted write
	// except those for which inProgress(name) is true, and returns how many
	// it abandoned.
	AbortIncomplete(ctx context.Context, inProgress func(name string) bool) (int, error)
}

// Stats counts a store's requests since it was opened.
type Stats struct {
	// Requests is the number of requests sent, retries included.
	Requests int64 `json:"requests"`
	// Retries is the number of requests that repeated an earlier one
	// because it failed (a reset, a timeout, a 5xx answer, throttling, a
	// body cut short).
	Retries int64 `json:"retries"`
}

// StatsReporter is implemented by stores that talk to a server over a
// network and retry what fails. Callers find it by type assertion.
type StatsReporter interface {
	// Stats returns the counts so far. It is safe to call concurrently
	// with any other method.
	Stats() Stats
}
