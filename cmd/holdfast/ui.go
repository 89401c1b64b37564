package main

// This file owns everything the CLI prints about outcomes: error and hint
// lines, exit codes, JSON output and progress bars.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/harden"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/regfile"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/store"
)

// Exit codes (docs/cli.md, "Exit codes").
const (
	exitOK        = 0 // success; verify: clean
	exitError     = 1 // any other error
	exitUsage     = 2 // bad command line
	exitNotFound  = 3 // no such bucket, object or repository
	exitDamaged   = 4 // stored data failed authentication; verify: damage found
	exitKey       = 5 // wrong passphrase, or the keyring is corrupt or unusable
	exitUnchecked = 6 // could not check: store or catalog unavailable (verify: could not check)
	exitRefused   = 7 // refused to overwrite or to mix repositories, or (recover) to trust catalog backups that may be rolled back, or to handle keys while traced
	exitPosture   = 8 // posture: a check the policy requires did not pass (keyed commands refuse; posture reports)
	exitInterrupt = 130
)

// usageError marks a command-line mistake.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(f string, a ...any) error { return usageError{fmt.Sprintf(f, a...)} }

// exitError carries an explicit exit code (verify's verdicts).
type codeError struct {
	code int
	err  error
}

func (e codeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e codeError) Unwrap() error { return e.err }

// hintedError is err with the exit code and the hint it is reported with.
type hintedError struct {
	code int
	err  error
	hint string
}

func (e hintedError) Error() string { return e.err.Error() }
func (e hintedError) Unwrap() error { return e.err }

// report prints err as one line with a hint where one helps, and returns
// the exit code.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ce codeError
	if errors.As(err, &ce) && ce.err == nil {
		return ce.code
	}
	code, hint := classify(err)
	fmt.Fprintf(stderr, "holdfast: error: %v\n", err)
	if hint != "" {
		fmt.Fprintf(stderr, "holdfast: hint: %s\n", hint)
	}
	return code
}

func classify(err error) (int, string) {
	var ce codeError
	var ue usageError
	var de *repo.DamageError
	var he hintedError
	switch {
	case errors.As(err, &he):
		return he.code, he.hint
	case errors.Is(err, remote.ErrRefused):
		return exitKey, "the key server refused this client; its key-operation log says why (certificate, grant, posture or attestation)"
	case errors.As(err, &ce):
		return ce.code, ""
	case errors.As(err, &ue):
		return exitUsage, "run 'holdfast help' for usage"
	case errors.As(err, &de):
		return exitDamaged, "the provider changed or lost this object; run 'holdfast verify' for the full picture"
	case errors.Is(err, repo.ErrDamaged):
		return exitDamaged, "run 'holdfast verify' for the full picture"
	case errors.Is(err, keyring.ErrWeakPassphrase):
		return exitUsage, fmt.Sprintf("choose a passphrase of at least %d characters that is not built from common passwords: four or five unrelated words are easy to remember and hard to guess (docs/cli.md, \"Passphrases\")", keyring.MinPassphraseChars)
	case errors.Is(err, keyring.ErrWrongPassphrase):
		return exitKey, "check the passphrase (HOLDFAST_PASSPHRASE, --passphrase-file or the prompt)"
	case errors.Is(err, keyring.ErrCorrupt), errors.Is(err, keyring.ErrUnsupported), errors.Is(err, keyring.ErrKDFParams):
		return exitKey, "restore the keyring file from your backup"
	case errors.Is(err, keys.ErrNotMyKey), errors.Is(err, keys.ErrUnavailable):
		return exitKey, ""
	case errors.Is(err, repo.ErrUnverifiedFreshness):
		return exitRefused, "recovery can check the store's catalog backups only against a keyring that recorded them (the copy from the lost home, or a later one); if you accept the store as it is, run recover again with --accept-unverified-freshness"
	case errors.Is(err, harden.ErrTraced):
		return exitRefused, "run holdfast without a debugger, strace or other ptrace tracer attached"
	case errors.Is(err, repo.ErrKeyInUse):
		return exitRefused, "run 'holdfast keys rewrap' first, and rotate before retiring a primary version; 'holdfast keys list' shows what each version protects"
	case errors.Is(err, syscall.EADDRINUSE):
		return exitError, "another process listens on that address; choose another with --addr (or --ops-addr, --listen)"
	case errors.Is(err, repo.ErrBucketNameReserved):
		return exitUsage, "bucket names follow S3's rules, which also the gateway holds to; choose another name"
	case errors.Is(err, repo.ErrBucketNotEmpty):
		return exitRefused, "delete its objects first (holdfast rm), or shred the bucket (holdfast shred BUCKET --yes)"
	case errors.Is(err, repo.ErrUploadsInProgress), errors.Is(err, repo.ErrRotateUnsupported):
		return exitRefused, ""
	case errors.Is(err, repo.ErrKeyRetired):
		return exitKey, "the key version was retired; 'holdfast keys list' shows the versions"
	case errors.Is(err, repo.ErrCatalogRolledBack):
		return exitRefused, ""
	case errors.Is(err, repo.ErrOtherRepository):
		return exitRefused, "use an empty store, or the keyring of the repository it holds"
	case errors.Is(err, repo.ErrExists), errors.Is(err, keyring.ErrExists):
		return exitRefused, ""
	case errors.Is(err, repo.ErrNotFound), errors.Is(err, catalog.ErrNotFound):
		return exitNotFound, ""
	case errors.Is(err, context.Canceled):
		return exitInterrupt, ""
	case errors.Is(err, repo.ErrStoreUnavailable):
		return exitUnchecked, "mount or reconnect the store, or fix the path in HOME/config.json"
	case errors.Is(err, store.ErrNotExist):
		return exitUnchecked, ""
	}
	return exitError, ""
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether f is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newBar returns a byte progress bar on stderr when it is a terminal, or
// nil. A nil bar is safe to use.
func newBar(stderr io.Writer, quiet bool, total int64, desc string) *progressbar.ProgressBar {
	if quiet || !isTerminal(stderr) {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)
}

// countBytes has bar count the bytes read from in. A regfile.Source
// counts them itself, and so goes on handing out views of its file.
func countBytes(in io.Reader, bar *progressbar.ProgressBar) io.Reader {
	if s, ok := in.(*regfile.Source); ok {
		s.SetProgress(func(n int64) { _ = bar.Add64(n) })
		return s
	}
	return io.TeeReader(in, bar)
}

// newCountBar is newBar for a count of objects.
func newCountBar(stderr io.Writer, quiet bool, total int64, desc string) *progressbar.ProgressBar {
	if quiet || !isTerminal(stderr) {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)
}

// warnf prints a warning line: something was left alone, nothing failed.
func warnf(stderr io.Writer, f string, a ...any) {
	fmt.Fprintf(stderr, "holdfast: warning: "+f+"\n", a...)
}

// fileErrorf prints the error line of one file of a command that goes on
// with the others (and reports the count at the end).
func fileErrorf(stderr io.Writer, f string, a ...any) {
	fmt.Fprintf(stderr, "holdfast: error: "+f+"\n", a...)
}

// lineBar is a progress bar (possibly nil) on standard error, shared by
// goroutines, with the lines printed while it runs: a line to the bar's
// terminal clears the bar first, so lines and bar never mix.
type lineBar struct {
	mu        sync.Mutex
	bar       *progressbar.ProgressBar
	stdoutTTY bool // standard output is a terminal too
}

func (l *lineBar) set(b *progressbar.ProgressBar, stdoutTTY bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bar, l.stdoutTTY = b, stdoutTTY
}

func (l *lineBar) add(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar != nil {
		l.bar.Add64(n)
	}
}

// print runs fn, which prints lines to standard error (toStderr) or
// standard output, with the bar out of their way.
func (l *lineBar) print(toStderr bool, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar != nil && (toStderr || l.stdoutTTY) {
		l.bar.Clear()
	}
	fn()
}

func (l *lineBar) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar != nil {
		l.bar.Finish()
		l.bar = nil
	}
}
