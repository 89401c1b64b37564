package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/repo"
)

// keyList is what `holdfast keys list` prints: every root key version and
// every bucket key version, with what each protects.
type keyList struct {
	Root    []rootKeyRow   `json:"root_keys"`
	Buckets []bucketKeyRow `json:"bucket_keys"`
}

type rootKeyRow struct {
	Version    uint32    `json:"version"`
	State      string    `json:"state"`
	Primary    bool      `json:"primary"`
	Created    time.Time `json:"created"`
	BucketKeys int       `json:"bucket_keys"` // bucket key versions wrapped under it
	Objects    int64     `json:"objects"`     // current objects under those
}

type bucketKeyRow struct {
	Bucket      string    `json:"bucket"`
	Version     uint32    `json:"version"`
	State       string    `json:"state"`
	Primary     bool      `json:"primary"`
	Created     time.Time `json:"created"`
	RootVersion uint32    `json:"root_version"` // the root key version it is wrapped under
	Objects     int64     `json:"objects"`      // current objects whose data keys it wraps
}

// bucketKeyStates names the catalog's bucket key states.
var bucketKeyStates = map[int]string{1: "active", 2: "decrypt-only", 3: "destroyed"}

func (e *env) keysListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List root and bucket key versions: state, creation time, what each protects",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) (err error) {
			ctx := c.Context()
			r, err := e.open(ctx, false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			l, err := listKeys(ctx, r)
			if err != nil {
				return err
			}
			if e.jsonOut {
				return printJSON(e.stdout, l)
			}
			for _, k := range l.Root {
				fmt.Fprintf(e.stdout, "root key v%d  %s  created %s  wraps %d bucket key version(s), %d object(s)\n",
					k.Version, stateText(k.State, k.Primary), k.Created.Local().Format(time.DateTime), k.BucketKeys, k.Objects)
			}
			for _, k := range l.Buckets {
				fmt.Fprintf(e.stdout, "bucket %s key v%d  %s  created %s  under root v%d  protects %d object(s)\n",
					k.Bucket, k.Version, stateText(k.State, k.Primary), k.Created.Local().Format(time.DateTime), k.RootVersion, k.Objects)
			}
			return nil
		},
	}
}

func stateText(state string, primary bool) string {
	if primary {
		return state + " (primary)"
	}
	return state
}

// listKeys gathers the key list from the key source and the catalog.
func listKeys(ctx context.Context, r *repo.Repo) (keyList, error) {
	l := keyList{Root: []rootKeyRow{}, Buckets: []bucketKeyRow{}}
	cat := r.Catalog()
	counts, err := cat.CountByKeyVersion(ctx)
	if err != nil {
		return l, err
	}
	buckets, err := cat.Buckets(ctx)
	if err != nil {
		return l, err
	}
	perRoot := map[uint32]*rootKeyRow{}
	primary := r.KeySource().Primary()
	for _, v := range r.RootKeyVersions() {
		l.Root = append(l.Root, rootKeyRow{Version: v.Version, State: v.State.String(), Primary: v.Version == primary, Created: v.Created.UTC()})
	}
	for i := range l.Root {
		perRoot[l.Root[i].Version] = &l.Root[i]
	}
	for _, b := range buckets {
		bks, err := cat.BucketKeys(ctx, b.ID)
		if err != nil {
			return l, err
		}
		primaryVer := uint32(0) // new writes take the newest active version
		for _, bk := range bks {
			if bk.State == 1 {
				primaryVer = max(primaryVer, bk.Version)
			}
		}
		for _, bk := range bks {
			row := bucketKeyRow{Bucket: b.Name, Version: bk.Version, State: bucketKeyStates[bk.State], Primary: bk.Version == primaryVer,
				Created: bk.Created.UTC(), RootVersion: bk.Wrapped.KEKVersion, Objects: counts[b.Name][bk.Version]}
			if row.State == "" {
				row.State = fmt.Sprintf("state %d", bk.State)
			}
			l.Buckets = append(l.Buckets, row)
			if rk := perRoot[row.RootVersion]; rk != nil {
				rk.BucketKeys++
				rk.Objects += row.Objects
			}
		}
	}
	return l, nil
}

func (e *env) keysRotateCmd() *cobra.Command {
	var bucket string
	var cf ceremonyFlags
	c := &cobra.Command{
		Use:   "rotate [--bucket B]",
		Short: "Make a new root key version (or, with --bucket, a new key version of bucket B) primary for new writes",
		Long: `keys rotate makes a new key version primary for everything written from
now on; what was written before keeps its key records and still reads.
Without --bucket it rotates the root key: older root versions become
decrypt-only. With --bucket it makes a new key version of that bucket,
wrapped under the primary root key, and writes its key journal entry to
the store. No object body is rewritten.

With a root key in a PKCS#11 token, which cannot make a new version by
itself, rotating the root key is a key ceremony: the new version is
generated in protected memory, split into shares written to --out DIR
(--shares N, --threshold K; they are its only backup), imported into the
token non-extractable, and wiped.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) (err error) {
			ctx := c.Context()
			r, err := e.openForKeyOp(ctx)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			op := keys.Op{Op: "rotate", Repo: r.ID(), Source: r.KeySource().Kind()}
			var j map[string]any
			var text string
			if bucket == "" {
				rotate, err := e.rotator(r, cf)
				if err != nil {
					return err
				}
				v, err := rotate()
				if err != nil {
					return err
				}
				op.Versions, op.Detail = []uint32{v}, fmt.Sprintf("root key v%d primary; older versions decrypt only", v)
				j, text = map[string]any{"root_key": v}, fmt.Sprintf("root key v%d is primary; older versions decrypt only", v)
			} else {
				v, err := r.RotateBucketKey(ctx, bucket)
				if err != nil {
					return err
				}
				root := r.KeySource().Primary()
				op.Versions, op.Detail = []uint32{root}, fmt.Sprintf("bucket %q key v%d primary, under root key v%d", bucket, v, root)
				j, text = map[string]any{"bucket": bucket, "bucket_key": v},
					fmt.Sprintf("bucket %s key v%d is primary for new writes; older versions still decrypt", bucket, v)
			}
			// The new version exists now: unrecorded, it still is.
			return e.doneKeyOp(r.Home, op, j, text)
		},
	}
	c.Flags().StringVar(&bucket, "bucket", "", "rotate this bucket's key instead of the root key")
	cf.register(c)
	return c
}
