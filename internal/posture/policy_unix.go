//go:build unix

package posture

import (
	"io/fs"
	"syscall"
)

// meta returns a file's owner and permissions.
func meta(fi fs.FileInfo) (fileMeta, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileMeta{}, false
	}
	return fileMeta{uid: int(st.Uid), mode: fi.Mode()}, true
}
