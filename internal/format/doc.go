// Package format owns the byte layout of everything Holdfast stores
// (docs/format.md): the object header, manifest and footer, the key journal
// record, the catalog backup, the repository marker, the audit checkpoint,
// the size and padding rule and the pin.
//
// It parses and marshals with exactly one valid encoding per value and does
// no I/O and no cryptography beyond the derivations the layout names. It
// must never accept a value it would not itself produce.
package format
