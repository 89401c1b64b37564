// Package object seals plaintext into stored objects and opens them again
// (docs/format.md, "Stored object" and "Reading an object"): the data key's
// derived keys, the parallel segment pipeline, padding, manifest and footer,
// and range reads that decrypt only the chunks they cover.
//
// It never releases a plaintext byte before the header, manifest and footer
// have been authenticated (and, when the caller gives one, the pin checked),
// and never one from a chunk whose tag did not verify. It does not choose
// names, versions or keys: the repository layer does.
package object
