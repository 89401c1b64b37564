package repo

import (
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/store"
)

var (
	// ErrNotFound: no such bucket or object in the catalog.
	ErrNotFound = errors.New("not found")
	// ErrExists: init found an existing home.
	ErrExists = errors.New("already exists")
	// ErrOtherRepository: the store holds another repository's marker.
	ErrOtherRepository = errors.New("store holds another repository")
	// ErrStoreUnavailable: the store cannot be reached (the store's own
	// error, so that store failures after retries are this too).
	ErrStoreUnavailable = store.ErrUnavailable
	// ErrReplaced: the object was replaced while it was being opened or
	// read, and its old version removed; opening it again reads the new
	// one.
	ErrReplaced = errors.New("replaced while being read")
	// ErrMetadataTooLarge: an object's user metadata and attributes
	// together exceed what its manifest keeps (docs/format.md, "Manifest").
	ErrMetadataTooLarge = errors.New("metadata too large")
	// ErrDamaged is wrapped by every DamageError.
	ErrDamaged = errors.New("stored data is damaged")
	// errTransient: a read failed in a way that says nothing about the
	// stored data (a cut transfer); trying again may succeed.
	errTransient = errors.New("try again")
)

// Status is verify's verdict on one object.
type Status string

const (
	StatusOK         Status = "ok"
	StatusMissing    Status = "missing"
	StatusAltered    Status = "altered"
	StatusTruncated  Status = "truncated"
	StatusRolledBack Status = "rolled-back"
	StatusSwapped    Status = "swapped"
	StatusUnknown    Status = "unknown"
	StatusPending    Status = "pending"
)

// Describe says in words what a status means for the reader.
func (s Status) Describe() string {
	switch s {
	case StatusMissing:
		return "the store no longer holds it: deleted by the provider"
	case StatusAltered:
		return "its stored bytes were altered"
	case StatusTruncated:
		return "its stored bytes were truncated"
	case StatusRolledBack:
		return "the store holds an older version of it: rolled back"
	case StatusSwapped:
		return "the store holds another object's data in its place: swapped or moved"
	case StatusUnknown:
		return "the store holds an object this repository never wrote: injected, or an old deleted version put back"
	case StatusPending:
		return "a write of it is in progress"
	case StatusUnchecked:
		return "could not be checked: the store did not answer for it"
	}
	return "intact"
}

// DamageError reports an object that failed authentication, with what
// verify would call it.
type DamageError struct {
	Bucket, Key string
	Name        string // store name
	Status      Status
	Layer       format.Layer // which check failed, for the log
	Err         error
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("%s/%s: %s", e.Bucket, e.Key, e.Status.Describe())
}

func (e *DamageError) Unwrap() []error { return []error{ErrDamaged, e.Err} }
