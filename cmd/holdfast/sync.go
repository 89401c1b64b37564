package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/repo"
)

// syncCmd is `holdfast sync`. Which way it goes is decided by the first
// argument (docs/cli.md, "sync"): an existing local directory syncs up
// into BUCKET[/PREFIX]; BUCKET[/PREFIX] syncs down into a local directory.
func (e *env) syncCmd() *cobra.Command {
	var del, dry bool
	c := &cobra.Command{
		Use:   "sync [--delete] [--dry-run] LOCALDIR BUCKET[/PREFIX] | BUCKET[/PREFIX] LOCALDIR",
		Short: "Make a bucket prefix match a local directory (up), or a local directory match a prefix (down)",
		Args:  exactArgs(2),
		RunE: func(c *cobra.Command, args []string) (err error) {
			src, dst := args[0], args[1]
			srcIsDir := isDir(src)
			srcBucket, srcPrefix, srcErr := repo.SplitPath(src, true)
			dstBucket, dstPrefix, dstErr := repo.SplitPath(dst, true)
			dstIsFile := existsNotDir(dst)
			upOK := srcIsDir && dstErr == nil
			downOK := srcErr == nil && !dstIsFile
			switch {
			case upOK || downOK:
			case srcIsDir:
				return usagef("syncing up from directory %q: %q is not BUCKET[/PREFIX]: %v", src, dst, dstErr)
			case srcErr == nil:
				return usagef("syncing down from %q: %q exists and is not a directory", src, dst)
			default:
				return usagef("%q is neither a local directory (to sync up) nor BUCKET[/PREFIX] (to sync down)", src)
			}

			ctx := c.Context()
			r, err := e.open(ctx, false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			if downOK {
				_, err := r.Catalog().GetBucket(ctx, srcBucket)
				switch {
				case err == nil && upOK:
					return usagef("%q is both a local directory and a bucket: write the directory as ./%s or as an absolute path to sync it up",
						src, filepath.Clean(src))
				case errors.Is(err, catalog.ErrNotFound) && !upOK && srcIsDir:
					return usagef("syncing up from directory %q: %q is not BUCKET[/PREFIX]: %v", src, dst, dstErr)
				case errors.Is(err, catalog.ErrNotFound) && !upOK:
					return fmt.Errorf("no local directory %q, and bucket %q: %w", src, srcBucket, repo.ErrNotFound)
				case errors.Is(err, catalog.ErrNotFound):
					downOK = false
				case err != nil:
					return err
				}
			}
			if !downOK && !dry {
				// Up writes: first finish what earlier interrupted runs left.
				if _, err := r.Cleanup(ctx); err != nil {
					return fmt.Errorf("cleaning up after an earlier interrupted run: %w", err)
				}
			}
			ctx, postureDone := e.watchPosture(ctx, r)
			s := &syncPrinter{e: e, r: r, up: !downOK, dry: dry}
			opts := repo.SyncOptions{Delete: del, DryRun: dry, FileMode: outputMode(), Report: s.report, Progress: s.bar.add,
				Plan: func(files int, bytes int64) {
					if files > 0 {
						s.bar.set(newBar(e.stderr, e.quiet || e.jsonOut, bytes, "sync"), isTerminal(e.stdout))
					}
				}}
			start := time.Now()
			var sum repo.SyncSummary
			if s.up {
				s.local, s.bucket = src, dstBucket
				sum, err = r.SyncUp(ctx, src, dstBucket, dstPrefix, opts)
			} else {
				s.local, s.bucket = dst, srcBucket
				sum, err = r.SyncDown(ctx, srcBucket, srcPrefix, dst, opts)
			}
			s.bar.finish()
			stopped := ctx.Err()
			if perr := postureDone(); perr != nil {
				err = perr // the posture failed mid-run: the keys are wiped
			} else if err != nil && stopped != nil {
				err = stopped // interrupted: one line, not one per stopped worker
			}
			if perr := s.summary(sum, time.Since(start), err); perr != nil && err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			if sum.Failed > 0 {
				code := exitError
				if sum.Damaged > 0 {
					code = exitDamaged
				}
				if dry {
					return codeError{code, fmt.Errorf("%d file(s) would fail (reported above)", sum.Failed)}
				}
				return codeError{code, fmt.Errorf("%d file(s) failed (reported above); the others were synced", sum.Failed)}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&del, "delete", false, "delete destination files that the source does not have")
	c.Flags().BoolVarP(&dry, "dry-run", "n", false, "print what would be done and change nothing")
	return c
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func existsNotDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// syncPrinter prints a sync's lines and its summary.
type syncPrinter struct {
	e      *env
	r      *repo.Repo // for the store's request and retry counts
	up     bool
	dry    bool
	local  string // the local directory as given
	bucket string
	bar    lineBar
	files  []jsonSyncFile
}

type jsonSyncFile struct {
	Action string `json:"action"`
	Path   string `json:"path,omitempty"` // the local file
	Key    string `json:"key,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (s *syncPrinter) localPath(rel string) string {
	return filepath.Join(s.local, filepath.FromSlash(rel))
}

func (s *syncPrinter) object(key string) string { return s.bucket + "/" + key }

// report prints one file's outcome (the repository calls it from one
// goroutine at a time).
func (s *syncPrinter) report(ev repo.SyncEvent) {
	e := s.e
	j := jsonSyncFile{Action: string(ev.Action), Key: ev.Key, Size: ev.Size}
	if ev.Path != "" {
		j.Path = s.localPath(ev.Path)
	}
	if ev.Err != nil {
		j.Error = ev.Err.Error()
	}
	if e.jsonOut {
		s.files = append(s.files, j)
	}
	// What the line names: the source side's file, or the side that has
	// one.
	what := j.Path
	if (!s.up && ev.Key != "") || what == "" {
		what = s.object(ev.Key)
	}
	dry := ""
	if s.dry {
		dry = "(dry run) "
	}
	switch ev.Action {
	case repo.SyncSkip:
		s.bar.print(true, func() { warnf(e.stderr, "skipped %s: %v", what, ev.Err) })
	case repo.SyncFail:
		s.bar.print(true, func() {
			var de *repo.DamageError
			switch {
			case errors.As(ev.Err, &de):
				fileErrorf(e.stderr, "%v", ev.Err) // names the object itself
			case errors.Is(ev.Err, repo.ErrUnsafeName):
				fileErrorf(e.stderr, "%s: refused: %v", what, ev.Err)
			default:
				fileErrorf(e.stderr, "%s: %v", what, ev.Err)
			}
		})
	}
	if e.quiet || e.jsonOut {
		return
	}
	var line string
	switch ev.Action {
	case repo.SyncUpload:
		line = fmt.Sprintf("%supload: %s to %s", dry, j.Path, s.object(ev.Key))
	case repo.SyncDownload:
		line = fmt.Sprintf("%sdownload: %s to %s", dry, s.object(ev.Key), j.Path)
	case repo.SyncDelete:
		if s.up {
			line = fmt.Sprintf("%sdelete: %s", dry, s.object(ev.Key))
		} else {
			line = fmt.Sprintf("%sdelete: %s", dry, j.Path)
		}
	default:
		return
	}
	s.bar.print(false, func() { fmt.Fprintln(e.stdout, line) })
}

// summary prints the last line (or the JSON document), also after an
// error that stopped the run: it says what was done until then.
func (s *syncPrinter) summary(sum repo.SyncSummary, took time.Duration, runErr error) error {
	e := s.e
	dir := "down"
	if s.up {
		dir = "up"
	}
	if sum.DeletesWithheld > 0 {
		warnf(e.stderr, "--delete: %d deletion(s) withheld because of the failures above", sum.DeletesWithheld)
	}
	if e.jsonOut {
		out := map[string]any{
			"direction": dir, "dry_run": s.dry, "complete": runErr == nil,
			"uploaded": 0, "downloaded": 0, "deleted": sum.Deleted, "unchanged": sum.Unchanged,
			"skipped": sum.Skipped, "failed": sum.Failed, "damaged": sum.Damaged,
			"deletes_withheld": sum.DeletesWithheld, "bytes": sum.Bytes, "seconds": took.Seconds(),
			"files": append([]jsonSyncFile{}, s.files...),
		}
		if s.up {
			out["uploaded"] = sum.Transferred
		} else {
			out["downloaded"] = sum.Transferred
		}
		return printJSON(e.stdout, withStore(s.r, out))
	}
	if e.quiet {
		return nil
	}
	verb := map[bool]string{true: "uploaded", false: "downloaded"}[s.up]
	deleted := "deleted"
	end := fmt.Sprintf("in %.2fs", took.Seconds())
	mode := ""
	if s.dry {
		verb = map[bool]string{true: "to upload", false: "to download"}[s.up]
		deleted, end, mode = "to delete", "nothing changed", " (dry run)"
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		end += ", stopped by the error below"
	} else if runErr != nil {
		end += ", interrupted"
	}
	fmt.Fprintf(e.stdout, "sync %s%s: %d %s (%d bytes), %d %s, %d unchanged, %d skipped, %d failed; %s\n",
		dir, mode, sum.Transferred, verb, sum.Bytes, sum.Deleted, deleted, sum.Unchanged, sum.Skipped, sum.Failed, end)
	return nil
}
