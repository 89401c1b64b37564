package main

// This file owns what follows a rotation (docs/keys.md, "Key versions"):
// `keys rewrap`, `keys retire`, and `holdfast shred`.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
)

func (e *env) keysRewrapCmd() *cobra.Command {
	var bucket string
	c := &cobra.Command{
		Use:   "rewrap [--bucket B]",
		Short: "Re-wrap what older key versions protect under the primary versions, without touching any object body",
		Long: `keys rewrap moves everything an older key version protects under the
primary one, so that the older version can be retired:

  - every bucket key version wrapped under an older root key version is
    wrapped again under the primary root key (a new key journal entry; the
    old one is deleted), and the key journal's batches and the repository
    marker are sealed again under it;
  - every object whose data key is wrapped under an older key version of
    its bucket gets a new key record under the bucket's primary version:
    in the catalog, and in the store's key journal in batches (a few
    hundred bytes per object). No object body is read or rewritten.

With --bucket only that bucket's objects are rewrapped. Objects written or
replaced while it runs are written under the primary version already.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) (err error) {
			ctx := c.Context()
			r, err := e.openForKeyOp(ctx)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			var rep repo.RewrapReport
			if bucket == "" {
				if rep, err = r.RewrapRoot(ctx); err != nil {
					return err
				}
				if err := e.resealAudit(ctx, r); err != nil {
					return err
				}
			}
			buckets := []string{bucket}
			if bucket == "" {
				bl, err := r.Buckets(ctx)
				if err != nil {
					return err
				}
				buckets = buckets[:0]
				for _, b := range bl {
					buckets = append(buckets, b.Name)
				}
			}
			progress := func(b string, done int) {
				if !e.quiet && isTerminal(e.stderr) {
					fmt.Fprintf(e.stderr, "\rrewrapping %s: %d objects", b, done)
				}
			}
			for _, b := range buckets {
				br, err := r.RewrapBucket(ctx, b, progress)
				rep.Objects += br.Objects
				rep.Skipped += br.Skipped
				rep.Entries += br.Entries
				if err != nil {
					return err
				}
			}
			if !e.quiet && isTerminal(e.stderr) && rep.Objects+rep.Skipped > 0 {
				fmt.Fprintln(e.stderr)
			}
			op := keys.Op{Op: "rewrap", Repo: r.ID(), Source: r.KeySource().Kind(), Versions: []uint32{r.KeySource().Primary()},
				Detail: fmt.Sprintf("objects=%d bucket-keys=%d sealed-again=%d journal-entries=%d", rep.Objects, rep.BucketKeys, rep.SystemObjects, rep.Entries)}
			if bucket != "" {
				op.Detail = fmt.Sprintf("bucket %q ", bucket) + op.Detail
			}
			return e.doneKeyOp(r.Home, op, rep, fmt.Sprintf("rewrapped %d object data keys and %d bucket key versions, sealed %d key journal entries again; %d key journal entries written, no object body touched",
				rep.Objects, rep.BucketKeys, rep.SystemObjects, rep.Entries))
		},
	}
	c.Flags().StringVar(&bucket, "bucket", "", "rewrap only this bucket's objects")
	return c
}

// openForKeyOp opens the repository for a key operation, once its
// key-operation log is known to take a record.
func (e *env) openForKeyOp(ctx context.Context) (*repo.Repo, error) {
	if _, err := e.keyHome(); err != nil {
		return nil, err
	}
	return e.open(ctx, false)
}

// doneKeyOp records op in home's key-operation log and prints the outcome
// (j with --json, else text). The operation is done either way: a log
// that could not record it is a warning and exit 1.
func (e *env) doneKeyOp(home string, op keys.Op, j any, text string) error {
	rerr := recordKeyOp(home, op)
	var err error
	if e.jsonOut {
		err = printJSON(e.stdout, j)
	} else {
		_, err = fmt.Fprintln(e.stdout, text)
	}
	if err != nil {
		return err
	}
	if rerr != nil {
		return e.unrecorded(rerr)
	}
	return nil
}

// ceremonyFlags are the share options of a rotation ceremony: a key
// source that cannot make a root key version itself (a PKCS#11 token)
// gets one made in protected memory, split into shares, then imported.
type ceremonyFlags struct {
	n, k int
	out  string
}

func (f *ceremonyFlags) register(c *cobra.Command) {
	c.Flags().IntVar(&f.n, "shares", 5, "with a PKCS#11 root key: how many shares of the new root key version to write")
	c.Flags().IntVar(&f.k, "threshold", 3, "with a PKCS#11 root key: how many shares restore it")
	c.Flags().StringVar(&f.out, "out", "", "with a PKCS#11 root key: the directory to write the new version's shares into")
}

// rotator returns how to make a new root key version for r: the key
// source's own rotation, or a rotation ceremony into the token.
func (e *env) rotator(r *repo.Repo, f ceremonyFlags) (func() (uint32, error), error) {
	a, ok := r.RootAdder()
	if !ok {
		return r.RotateRootKey, nil
	}
	if f.out == "" {
		return nil, usagef("the root key is in a PKCS#11 token, which cannot make a new version by itself: a rotation is a key ceremony; give --out DIR (and --shares N --threshold K) for the new version's shares")
	}
	if f.k < 2 || f.k > f.n || f.n > 255 {
		return nil, usagef("need 2 <= --threshold <= --shares <= 255, not threshold %d of %d", f.k, f.n)
	}
	return func() (uint32, error) { return e.rotationCeremony(r, a, f) }, nil
}

// rotationCeremony makes root key version a.NextVersion() in protected
// memory, writes its shares (they are its only backup: the token never
// gives it back), imports it into the token as primary, and wipes it.
func (e *env) rotationCeremony(r *repo.Repo, a repo.RootAdder, f ceremonyFlags) (uint32, error) {
	v := a.NextVersion()
	k, err := secret.New()
	if err != nil {
		return 0, err
	}
	m := keyring.Material{Repo: r.ID(), Primary: v, Roots: []keyring.RootMaterial{{
		Info: keyring.RootKeyInfo{Version: v, Created: time.Now().UTC().Truncate(time.Second), State: keyring.StateActive}, Key: k}}}
	defer m.Wipe()
	set, err := writeShares(keys.SourcePKCS11, m, f.n, f.k, f.out)
	if err != nil {
		return 0, err
	}
	if err := r.AddRootKey(m.Roots[0]); err != nil {
		set.remove()
		return 0, pinError(err)
	}
	if err := e.reportShares(set); err != nil {
		return v, err
	}
	return v, nil
}

// parseVersion reads "v3" or "3".
func parseVersion(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "v"), 10, 32)
	if err != nil || n == 0 {
		return 0, usagef("%q is not a key version (v1, v2, …)", s)
	}
	return uint32(n), nil
}

func (e *env) keysRetireCmd() *cobra.Command {
	var bucket string
	c := &cobra.Command{
		Use:   "retire [--bucket B] vN",
		Short: "Destroy a key version that nothing depends on any more",
		Long: `keys retire destroys an old key version: root key vN, or with --bucket
key version vN of bucket B. It refuses (exit 7), naming what is left,
while anything still depends on the version — a bucket key wrapped under
the root version, an object, upload or write in flight under the bucket
version — and it never retires a primary version (rotate first). Run
keys rewrap first.

A root key version is destroyed in the keyring (catalog backups sealed
under it are replaced by a new one and deleted). A bucket key version's
record is zeroed in the catalog and its key journal entries are deleted
from the store. Copies the provider kept of those journal entries open
only under the root key versions that wrapped them; holdfast shred
destroys those too.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) (err error) {
			v, err := parseVersion(args[0])
			if err != nil {
				return err
			}
			ctx := c.Context()
			r, err := e.openForKeyOp(ctx)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			op := keys.Op{Op: "retire", Repo: r.ID(), Source: r.KeySource().Kind()}
			var text string
			if bucket == "" {
				// The audit log's key must not be stranded under v.
				if err := e.resealAudit(ctx, r); err != nil {
					return err
				}
				if err := r.RetireRootKey(ctx, v); err != nil {
					return err
				}
				op.Versions, op.Detail = []uint32{v}, fmt.Sprintf("root key v%d destroyed", v)
				text = fmt.Sprintf("root key v%d destroyed", v)
			} else {
				n, err := r.RetireBucketKey(ctx, bucket, v)
				if err != nil {
					return err
				}
				op.Detail = fmt.Sprintf("bucket %q key v%d destroyed; %d key journal entries deleted", bucket, v, n)
				text = fmt.Sprintf("bucket %s key v%d destroyed; %d key journal entries deleted from the store", bucket, v, n)
			}
			return e.doneKeyOp(r.Home, op, map[string]any{"retired": v, "bucket": bucket}, text)
		},
	}
	c.Flags().StringVar(&bucket, "bucket", "", "retire a key version of this bucket instead of a root key version")
	return c
}

// shredWarning is printed after every shred.
const shredWarning = `Key backups (share sets from 'holdfast keys backup' or a key ceremony) made
before this shred hold the destroyed root key versions %s: with a copy of the
store they undo this shred. Make a new share set now ('holdfast keys backup')
and destroy every older one. Copies of the keyring file made before the shred
(other disks, backups of the home) undo it the same way.
`

func (e *env) shredCmd() *cobra.Command {
	var yes bool
	var cf ceremonyFlags
	c := &cobra.Command{
		Use:   "shred BUCKET[/KEY] --yes",
		Short: "Make an object or a whole bucket unrecoverable, even from every copy the provider kept",
		Long: `shred destroys data by destroying its keys (crypto-shredding), so that
no copy the provider kept — old bodies, old catalog backups, old key
journal entries — can be decrypted again:

  BUCKET/KEY  the bucket's other objects move to a fresh bucket key
              version (rewrap), then every older version of the bucket
              key is destroyed and the object is deleted;
  BUCKET      every object of the bucket is deleted and every version of
              its bucket key is destroyed, then the bucket.

Then a fresh root key version is made primary, everything else is
rewrapped under it, and every older root key version is destroyed, since
those wrapped the destroyed bucket keys in the key journal the provider
may have copied. Last, the catalog forgets the shredded names, so no
later catalog backup names them. A key removed earlier with rm can be
shredded too: the keys that wrapped its old copies are destroyed. A
shred that stops part way says so; run it again to finish it. Key
backups made before a shred can undo it: shred says so and names them.
Multipart uploads in the bucket must be completed or aborted first. It needs --yes. With a root key in a PKCS#11 token the
fresh root version is made by a rotation ceremony: --out DIR (with
--shares and --threshold) receives its shares.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) (err error) {
			bucket, key, perr := repo.SplitPath(args[0], true)
			if perr != nil {
				return usagef("%v", perr)
			}
			if !yes {
				return usagef("shred destroys data for good: run it again with --yes")
			}
			ctx := c.Context()
			r, err := e.openForKeyOp(ctx)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			rotate, err := e.rotator(r, cf)
			if err != nil {
				return err
			}
			rep, err := r.Shred(ctx, bucket, key, repo.ShredOptions{RotateRoot: rotate,
				BeforeRootRetire: func() error { return e.resealAudit(ctx, r) }})
			if err != nil {
				return err
			}
			what := bucket
			if key != "" {
				what += "/" + key
			}
			old := versionList(rep.RootVersions)
			// Said first: whatever happens to the output, it must not be missed.
			fmt.Fprintf(e.stderr, shredWarning, old)
			op := keys.Op{Op: "shred", Repo: r.ID(), Source: r.KeySource().Kind(), Versions: rep.RootVersions,
				Detail: fmt.Sprintf("%q: objects=%d bucket-key-versions-destroyed=%s root-versions-destroyed=%s new-root=v%d rewrapped-objects=%d",
					what, rep.Objects, versionList(rep.BucketVersions), old, rep.NewRoot, rep.Rewrapped.Objects)}
			return e.doneKeyOp(r.Home, op, rep, fmt.Sprintf("shredded %s: %d objects deleted; bucket key versions %s and root key versions %s destroyed; %d other objects rewrapped; root key v%d is primary",
				what, rep.Objects, versionList(rep.BucketVersions), old, rep.Rewrapped.Objects, rep.NewRoot))
		},
	}
	c.Flags().BoolVar(&yes, "yes", false, "confirm: the data cannot be brought back")
	cf.register(c)
	return c
}

func versionList(vs []uint32) string {
	if len(vs) == 0 {
		return "none"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprintf("v%d", v)
	}
	return strings.Join(s, ", ")
}
