package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// chtime FILE TIME sets a file's modification time (RFC 3339, with
// nanoseconds if wanted), so that scripts control what sync compares.
func cmdChtime(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: chtime FILE TIME")
	}
	t, err := time.Parse(time.RFC3339Nano, args[1])
	ts.Check(err)
	ts.Check(os.Chtimes(ts.MkAbs(args[0]), time.Time{}, t))
}

// mtime FILE prints the file's modification time (RFC 3339, UTC, with
// nanoseconds).
func cmdMtime(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mtime FILE")
	}
	fi, err := os.Lstat(ts.MkAbs(args[0]))
	ts.Check(err)
	fmt.Fprintln(ts.Stdout(), fi.ModTime().UTC().Format(time.RFC3339Nano))
}

// badname DIR writes a file in DIR whose name is not valid UTF-8 (as
// Latin-1 names from old systems are), which cannot be an object key.
func cmdBadname(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: badname DIR")
	}
	ts.Check(os.WriteFile(filepath.Join(ts.MkAbs(args[0]), "caf\xe9.txt"), []byte("latin-1\n"), 0o644))
}
