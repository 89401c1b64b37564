// Package local is the local directory store, the embedded default "cloud":
// a store.Store that keeps each object as one file under a directory it owns.
//
// Layout: an object named "abcdef" lives at dir/ab/abcdef (fanned out by the
// first two characters of its name; a one-character name uses itself). Put
// writes to dir/.tmp first and renames into place, so nothing partial is ever
// visible under an object's name. Files are 0600 and directories 0700.
//
// The package owns that layout and nothing else: it stores opaque bytes under
// opaque names. It must never write outside its directory, never interpret
// object contents, never expose a partially written object under its final
// name, and never build a path from a name that store.ValidName rejects.
//
// Several processes may use one directory at once (the CLI while the
// gateway runs). Temporary files carry their writer's pid; Open removes
// only those whose writer is gone.
package local
