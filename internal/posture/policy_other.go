//go:build !unix

package posture

import "io/fs"

// meta reports that files have no Unix owner here: policy files are not
// checked for who could change them (docs/in-process.md, "Policy files").
func meta(fs.FileInfo) (fileMeta, bool) { return fileMeta{}, false }
