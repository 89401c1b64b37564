package store

import "context"

// StrangerLister is implemented by stores that can name what they hold
// that Holdfast never writes: under an S3 prefix, keys that are not valid
// object names (a "folder" such as evil/object); in a local store, files
// and directories that do not fit its layout. List skips them, since no
// read ever serves them; verify reports them, since only the provider can
// have put them there. Callers find it by type assertion.
type StrangerLister interface {
	// ListStrangers calls fn for every such entry, with a name that says
	// where it is (relative to the store) and its size. An error from fn
	// stops the listing and is returned.
	ListStrangers(ctx context.Context, fn func(name string, size int64) error) error
}
