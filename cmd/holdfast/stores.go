package main

// This file owns the spread store's commands: `holdfast stores` (where the
// data lives), `holdfast repair` (rebuild missing or damaged shards), and
// the parsing of `init --store spread:FILE`.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/store/spread"
)

// warnSpreadTo prints the spread store's warnings (a member down, a shard
// damaged or missing) on stderr, as the command's other warnings.
func warnSpreadTo(stderr io.Writer) {
	repo.SetSpreadWarn(func(p spread.Problem) {
		warnf(stderr, "spread store: %s (queued for holdfast repair)", p)
	})
}

// spreadPrefix starts a --store value that names a spread layout file.
const spreadPrefix = "spread:"

// spreadFlag returns the spread layout when --store is spread:FILE, else
// nil. FILE is JSON (docs/spread.md): {"k":3,"m":2,"members":[{"label":
// …,"provider":…,"jurisdiction":…,"path":DIR or "s3":{…}}]}. Relative
// member paths are taken from the directory FILE is in. The layout is
// checked against the jurisdiction policy here, before anything is made.
func spreadFlag(storeFlag string) (*repo.SpreadConfig, error) {
	file, ok := strings.CutPrefix(storeFlag, spreadPrefix)
	if !ok {
		return nil, nil
	}
	if file == "" {
		return nil, usagef("--store spread:FILE names no file")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("--store %s: %v", storeFlag, err)
	}
	var c repo.SpreadConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, usagef("--store %s: %v", storeFlag, err)
	}
	if c.KeyVersion != 0 {
		return nil, usagef("--store %s: key_version is set by init, not by the layout file", storeFlag)
	}
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	for i, m := range c.Members {
		if m.Path != "" && !filepath.IsAbs(m.Path) {
			c.Members[i].Path = filepath.Join(dir, m.Path)
		}
	}
	if err := c.Check(); err != nil {
		return nil, usagef("--store %s: %v", storeFlag, err)
	}
	return &c, nil
}

func (e *env) storesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stores",
		Short: "Show where the data lives: each member of a spread store, its provider and jurisdiction, shards held, reachable",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			ctx := c.Context()
			r, err := e.open(ctx, false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			s, ok := r.Spread()
			if !ok {
				if e.jsonOut {
					return printJSON(e.stdout, map[string]string{"store": r.StoreDescription()})
				}
				fmt.Fprintf(e.stdout, "store: %s (a single store, not spread)\n", r.StoreDescription())
				return nil
			}
			lay, err := s.Survey(ctx)
			if err != nil {
				return err
			}
			queued, _ := s.Queued()
			fresh, err := memberFreshness(ctx, r, s)
			if err != nil {
				return err
			}
			if err := e.printLayout(r.SpreadConfig(), lay, fresh, len(queued)); err != nil {
				return err
			}
			for _, m := range lay.Members {
				if !m.Reachable {
					return codeError{code: exitUnchecked}
				}
			}
			return nil
		},
	}
}

// memberRecord is what one member holds of the catalog backups'
// freshness record (docs/spread.md): the copy's generation and the
// backup sequence it records.
type memberRecord struct {
	spread.MemberFreshness
	Sequence uint64 `json:"sequence,omitempty"`
	Invalid  string `json:"invalid,omitempty"` // why the repository refuses the copy
}

// memberFreshness reads every member's copy of the freshness record and
// opens it with the repository's key.
func memberFreshness(ctx context.Context, r *repo.Repo, s *spread.Store) ([]memberRecord, error) {
	by, err := s.FreshnessByMember(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]memberRecord, len(by))
	for j, mf := range by {
		out[j].MemberFreshness = mf
		if mf.Record == nil {
			continue
		}
		if f, err := r.OpenStoreFreshness(mf.Record); err != nil {
			out[j].Invalid = err.Error()
		} else {
			out[j].Sequence = f.Sequence
		}
	}
	return out, nil
}

// recordCell is a member's FRESHNESS cell: the backup sequence its copy
// of the record names, and whether that copy is the current one.
func recordCell(m memberRecord) string {
	switch {
	case !m.Reachable:
		return "-"
	case m.Generation == 0 && m.Damaged > 0:
		return "DAMAGED"
	case m.Generation == 0:
		return "none"
	case m.Invalid != "":
		return "INVALID"
	}
	c := fmt.Sprintf("seq %d", m.Sequence)
	if !m.Current {
		c += " (OLD)"
	}
	if m.Damaged > 0 {
		c += " +damaged"
	}
	return c
}

// printLayout prints the members table (or JSON).
func (e *env) printLayout(c *repo.SpreadConfig, lay *spread.Layout, fresh []memberRecord, queued int) error {
	if e.jsonOut {
		return printJSON(e.stdout, struct {
			*spread.Layout
			Freshness []memberRecord `json:"freshness_record"`
			Queued    int            `json:"queued_for_repair"`
		}{lay, fresh, queued})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tPROVIDER\tJURISDICTION\tSHARDS HELD\tMISSING\tFRESHNESS\tREACHABLE\tWHERE")
	for i, m := range lay.Members {
		reach := "yes"
		if !m.Reachable {
			reach = "NO"
		}
		where := ""
		if c != nil && i < len(c.Members) {
			cm := c.Members[i]
			where = repo.StoreConfig{Type: "local", Path: cm.Path}.Describe()
			if cm.S3 != nil {
				where = repo.StoreConfig{Type: "s3", S3: cm.S3}.Describe()
				if u, err := url.Parse(cm.S3.Endpoint); err == nil && u.Host != "" {
					where += " at " + u.Host
				}
			}
		}
		rec := "-"
		if i < len(fresh) {
			rec = recordCell(fresh[i])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", m.Label, m.Provider, m.Jurisdiction, m.Shards, m.Missing, rec, reach, where)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "\n%d-of-%d: any %d members rebuild every object, up to %d may be lost; a write needs %d members.\n",
		lay.K, lay.K+lay.M, lay.K, lay.M, lay.Quorum)
	fmt.Fprintf(e.stdout, "%d objects", lay.Objects)
	if n := len(lay.Unreadable); n > 0 {
		fmt.Fprintf(e.stdout, ", %d UNREADABLE with the members reachable now", n)
	}
	if queued > 0 {
		fmt.Fprintf(e.stdout, ", %d queued for repair (run holdfast repair)", queued)
	}
	fmt.Fprintln(e.stdout, ".")
	return nil
}

func (e *env) repairCmd() *cobra.Command {
	var o spread.RepairOptions
	c := &cobra.Command{
		Use:   "repair [--deep] [--dry-run] [--prune]",
		Short: "Rebuild missing or damaged shards of a spread store onto recovered or replacement members",
		Long: `Repair lists every member of the spread store and, for every object, rebuilds
the shards that members lack (or hold damaged) from K authentic shards on the
others, and removes superseded generations. Objects queued by earlier reads and
writes (a damaged shard seen, a member down) have every shard read and
authenticated; --deep does that for every object.

Exit status: 0 all members hold an authentic current shard of every object;
4 some object cannot be rebuilt, or a rebuild failed; 6 a member could not be
reached (run repair again once it is back).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			ctx := c.Context()
			r, err := e.open(ctx, false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			s, ok := r.Spread()
			if !ok {
				return usagef("repair: store %s is not a spread store", r.StoreDescription())
			}
			// The bar is made at the first object, when the total is known.
			var bar *progressbar.ProgressBar
			o.Progress = func(p spread.RepairProgress) {
				if bar == nil {
					bar = newCountBar(e.stderr, e.quiet || e.jsonOut, int64(p.Total), "repair")
				}
				if bar != nil {
					bar.Set(p.Done)
				}
			}
			rep, err := s.Repair(ctx, o)
			if bar != nil {
				bar.Finish()
			}
			if rep == nil {
				return err
			}
			if perr := e.printRepair(rep, o); perr != nil && err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			return repairVerdict(rep, o.DryRun)
		},
	}
	fl := c.Flags()
	fl.BoolVar(&o.Deep, "deep", false, "read and authenticate every shard on every member (reads every object from every member)")
	fl.BoolVar(&o.DryRun, "dry-run", false, "report what is wrong, change nothing")
	fl.BoolVar(&o.Prune, "prune", false, "remove the shards of objects that cannot be rebuilt (every member reachable)")
	return c
}

// repairVerdict is repair's exit status (like verify's).
func repairVerdict(rep *spread.RepairReport, dryRun bool) error {
	switch {
	case len(rep.Unreadable) > 0 || len(rep.Failed) > 0:
		return codeError{code: exitDamaged}
	case dryRun && rep.Problems > 0:
		return codeError{code: exitDamaged}
	}
	for _, m := range rep.Members {
		if !m.Reachable {
			return codeError{code: exitUnchecked}
		}
	}
	return nil
}

func (e *env) printRepair(rep *spread.RepairReport, o spread.RepairOptions) error {
	if e.jsonOut {
		return printJSON(e.stdout, rep)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tJURISDICTION\tREACHABLE\tSHARDS\tMISSING\tDAMAGED\tREBUILT\tSTALE REMOVED")
	for _, m := range rep.Members {
		reach := "yes"
		if !m.Reachable {
			reach = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", m.Label, m.Jurisdiction, reach, m.Shards, m.Missing, m.Damaged, m.Rebuilt, m.Stale)
	}
	tw.Flush()
	if o.DryRun {
		fmt.Fprintf(e.stdout, "\n%d objects checked, %d need repair (dry run: nothing changed)", rep.Objects, rep.Problems)
	} else {
		fmt.Fprintf(e.stdout, "\n%d objects checked, %d repaired, %s of shards rebuilt", rep.Objects, rep.Repaired, humanBytes(rep.BytesRebuilt))
	}
	if rep.Pruned > 0 {
		fmt.Fprintf(e.stdout, ", %d deleted objects' leftovers removed", rep.Pruned)
	}
	fmt.Fprintln(e.stdout, ".")
	if fr := rep.Freshness; fr != nil && fr.Generation != 0 {
		switch {
		case len(fr.Rebuilt) > 0:
			fmt.Fprintf(e.stdout, "freshness record: written back to %s (held by %d members before)\n", strings.Join(fr.Rebuilt, ", "), fr.Agreed)
		case len(fr.Lacking) > 0:
			fmt.Fprintf(e.stdout, "freshness record: missing or old on %s\n", strings.Join(fr.Lacking, ", "))
		}
	}
	for _, m := range rep.Members {
		if !m.Reachable {
			fmt.Fprintf(e.stdout, "member %s unreachable: %s\n", m.Label, m.Error)
		}
	}
	for _, name := range rep.Unreadable {
		fmt.Fprintf(e.stdout, "UNREADABLE %s: too few authentic shards on the members reachable now\n", name)
	}
	for _, f := range rep.Failed {
		fmt.Fprintf(e.stdout, "FAILED %s\n", f)
	}
	return nil
}

// humanBytes prints n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
