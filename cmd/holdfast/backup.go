package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/repo"
)

// Catalog backups: the backup command, the automatic backup after
// commands that change the catalog, and what recover says about them.

func (e *env) backupCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "backup",
		Short: "Write a catalog backup to the store and record it in the keyring",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			ctx := c.Context()
			r, err := e.open(ctx, true)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			res, err := r.Backup(ctx)
			if err != nil {
				return err
			}
			if e.jsonOut {
				return printJSON(e.stdout, res)
			}
			if !e.quiet {
				fmt.Fprintf(e.stdout, "catalog backup %d: %d objects in %d buckets, %d bytes stored as %s; recorded in the keyring",
					res.Sequence, res.Objects, res.Buckets, res.Stored, res.Object)
				if res.StoreRecorded {
					fmt.Fprint(e.stdout, " and on the store's members")
				}
				switch {
				case res.Removed == 1:
					fmt.Fprint(e.stdout, "; 1 older backup removed")
				case res.Removed > 1:
					fmt.Fprintf(e.stdout, "; %d older backups removed", res.Removed)
				}
				fmt.Fprintln(e.stdout)
			}
			return nil
		},
	}
	return c
}

// autoBackup makes r back the catalog up as it closes, if the command
// changed it and the policy (config.json "backup") asks for it. A failed
// backup is a warning: what the command did is done.
func (e *env) autoBackup(ctx context.Context, r *repo.Repo) error {
	return r.AutoBackup(ctx, func(res *repo.BackupResult, err error) {
		if err != nil {
			warnf(e.stderr, "the automatic catalog backup failed: %v; run 'holdfast backup' to try again", err)
		}
	})
}

func backupTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// printRecover prints recover's report as text.
func (e *env) printRecover(rep *repo.RecoverReport) {
	w := e.stdout
	switch {
	case rep.Backup != nil:
		fmt.Fprintf(w, "catalog backup: sequence %d of %s", rep.Backup.Sequence, backupTime(rep.Backup.Created))
		switch rep.Freshness {
		case repo.FreshnessVerified:
			fmt.Fprintf(w, ", verified against the keyring's freshness record (sequence %d)\n", rep.Keyring.Sequence)
		case repo.FreshnessVerifiedByStore:
			printVerifiedByStore(w, rep)
		default:
			fmt.Fprintln(w, ", NOT verified")
		}
	default:
		fmt.Fprintln(w, "catalog backup: none found; recovered by scanning the store alone, which cannot tell a deleted or rolled-back object from a current one")
	}
	if rep.Freshness == repo.FreshnessUnverified {
		fmt.Fprintf(w, "freshness unverified (accepted with --accept-unverified-freshness): %s\n", rep.FreshnessProblem)
		if rep.Newest != nil {
			fmt.Fprintf(w, "newest catalog backup found: sequence %d of %s\n", rep.Newest.Sequence, backupTime(rep.Newest.Created))
		} else {
			fmt.Fprintln(w, "newest catalog backup found: none")
		}
	}
	fmt.Fprintf(w, "recovered %d objects (%d bytes) in %d buckets; %d found after the backup; %d older versions removed; %d unknown store objects ignored\n",
		rep.Objects, rep.Bytes, rep.Buckets, rep.AfterBackup, rep.Superseded, len(rep.Unknown))
	if rep.Backup != nil && rep.Backup.Encoding == 1 {
		fmt.Fprintf(w, "note         catalog backup %d predates version reservations: a version replaced or deleted before it that the provider put back cannot be told from a current one (the next backup closes this)\n", rep.Backup.Sequence)
	}
	if rep.Stale > 0 {
		fmt.Fprintf(w, "stale        %d stored versions the catalog backup rules out (replaced or deleted before it; put back or never removed): not recovered, deleted from the store\n", rep.Stale)
	}
	for _, m := range rep.Missing {
		fmt.Fprintf(w, "missing      %s (in the catalog backup, no longer stored: deleted after the backup, or lost; not recovered)\n", m)
	}
	for _, m := range rep.Unreadable {
		fmt.Fprintf(w, "unreadable   %s (in the catalog backup; the store holds something other than its object under its name: kept, and 'holdfast verify' reports it)\n", m)
	}
	for _, m := range rep.MissingSystem {
		fmt.Fprintf(w, "missing      %s (a key journal entry the backup lists; the keys it held are recovered from the backup)\n", m)
	}
	for _, b := range rep.IgnoredBackups {
		fmt.Fprintf(w, "ignored      %s (catalog backup %d of %s, not linked to the one used)\n", b.Object, b.Sequence, backupTime(b.Created))
	}
	for _, u := range rep.Unknown {
		fmt.Fprintf(w, "unknown      %s (not written by this repository, or failed authentication)\n", u)
	}
	switch {
	case rep.NewBackup != nil && rep.NewBackupError == "":
		fmt.Fprintf(w, "new catalog backup: sequence %d, recorded in the keyring", rep.NewBackup.Sequence)
		if rep.NewBackup.StoreRecorded {
			fmt.Fprint(w, " and on the store's members")
		}
		fmt.Fprintln(w)
	case rep.NewBackupError != "":
		warnf(e.stderr, "the catalog was recovered, but the new catalog backup failed: %s; run 'holdfast backup'", rep.NewBackupError)
	}
}

// printVerifiedByStore ends recover's backup line when the backup was
// verified against the freshness record the store's members keep.
func printVerifiedByStore(w io.Writer, rep *repo.RecoverReport) {
	st := rep.StoreRecord
	fmt.Fprintf(w, ", verified against the freshness record held by the store's members (sequence %d, agreed by %d of %d members); ",
		st.Sequence, st.Agreed, st.Members)
	if rep.Keyring == nil {
		fmt.Fprintln(w, "the keyring holds none")
	} else {
		fmt.Fprintf(w, "the keyring's record is older (sequence %d)\n", rep.Keyring.Sequence)
	}
}
