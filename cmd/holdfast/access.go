package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/access"
	"github.com/holdfast/holdfast/internal/repo"
)

// Access keys for S3 clients of `holdfast serve`: access add, list and
// revoke. The table and its sealing are internal/access's.

func (e *env) accessCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "access add|list|revoke",
		Short: "Manage the access keys S3 clients of 'holdfast serve' sign requests with",
		Long: `access manages the gateway's access keys: each has an id, a secret (shown
once, when it is made; holdfast keeps it sealed under a key wrapped by the
keyring), a name, and permissions per bucket. A running gateway sees a new or
revoked key within a second. See docs/cli.md, "Access keys".`,
		RunE: func(c *cobra.Command, args []string) error {
			return usagef("usage: holdfast access add|list|revoke (see 'holdfast help access')")
		},
	}
	c.AddCommand(e.accessAddCmd(), e.accessListCmd(), e.accessRevokeCmd())
	return c
}

// openAccess opens the repository and its access table, whose key the
// repository's key source wraps (as `holdfast serve` does). Close the
// table, then the Repo.
func (e *env) openAccess(ctx context.Context) (*repo.Repo, *access.Table, error) {
	r, err := e.open(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	// A record that does not authenticate is shown by list as DAMAGED;
	// the table's log line about it would only repeat that.
	t, err := access.Open(ctx, r.Catalog(), r.ID(), r.KeySource(), access.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, t, nil
}

// onAccess runs fn with the access table open.
func (e *env) onAccess(c *cobra.Command, fn func(ctx context.Context, t *access.Table) error) (err error) {
	ctx := c.Context()
	r, t, err := e.openAccess(ctx)
	if err != nil {
		return err
	}
	defer e.closeRepo(r, &err)
	defer t.Close()
	err = fn(ctx, t)
	if errors.Is(err, access.ErrInvalid) {
		return usagef("%v", err)
	}
	return err
}

func (e *env) accessAddCmd() *cobra.Command {
	var grants, inboxes []string
	var admin bool
	c := &cobra.Command{
		Use:   "add NAME [--bucket BUCKET:PERMS]... [--inbox BUCKET]... [--admin]",
		Short: "Make an access key and print its id and secret (once)",
		Long: `add makes an access key for NAME (whom it is for) and prints its id and its
secret on standard output. The secret is shown this one time: holdfast keeps
it only sealed and cannot show it again.

PERMS is a combination of r (get and head objects), w (put objects, multipart
uploads, overwrite), l (list the bucket and its uploads; the bucket shows in
the key's bucket list) and d (delete objects). BUCKET '*' grants on every
bucket. --inbox BUCKET lets the key put new objects into BUCKET and nothing
else: no get, head, list or overwrite. --admin keys may also create and
delete buckets, and hold every permission on every bucket.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			spec := access.Spec{Name: args[0], Admin: admin}
			for _, s := range grants {
				g, err := access.ParseGrant(s)
				if err != nil {
					return usagef("--bucket: %v", err)
				}
				spec.Grants = append(spec.Grants, g)
			}
			for _, b := range inboxes {
				spec.Grants = append(spec.Grants, access.Grant{Bucket: b, Perms: access.Inbox})
			}
			// A bad command line is refused before the passphrase is read.
			if err := spec.Validate(); err != nil {
				return usagef("%v", err)
			}
			return e.onAccess(c, func(ctx context.Context, t *access.Table) error {
				cred, k, err := t.Add(ctx, spec)
				if err != nil {
					return err
				}
				defer cred.Wipe()
				if e.jsonOut {
					return printJSON(e.stdout, struct {
						ID     string `json:"id"`
						Secret string `json:"secret"`
						access.Key
					}{cred.ID, cred.Secret(), k})
				}
				fmt.Fprintf(e.stdout, "access key id:     %s\nsecret access key: %s\nname:              %s\npermissions:       %s\n",
					cred.ID, cred.Secret(), k.Name, describeGrants(k))
				if !e.quiet {
					fmt.Fprintln(e.stdout, "Keep the secret now: it is shown only this once.")
				}
				return nil
			})
		},
	}
	f := c.Flags()
	f.StringArrayVar(&grants, "bucket", nil, "BUCKET:PERMS, PERMS a combination of r, w, l, d; BUCKET '*' for every bucket (repeatable)")
	f.StringArrayVar(&inboxes, "inbox", nil, "BUCKET the key may put new objects into, and nothing else (repeatable)")
	f.BoolVar(&admin, "admin", false, "the key may create and delete buckets and do everything in every bucket")
	return c
}

// describeGrants says what k may do: "admin", "photos:rl, drop:inbox".
func describeGrants(k access.Key) string {
	if k.Damaged {
		return "DAMAGED: the record does not authenticate and grants nothing; revoke it"
	}
	var parts []string
	if k.Admin {
		parts = append(parts, "admin")
	}
	for _, g := range k.Grants {
		parts = append(parts, g.String())
	}
	return strings.Join(parts, ", ")
}

func (e *env) accessListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the access keys: ids, names, permissions, when made (never secrets)",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return e.onAccess(c, func(ctx context.Context, t *access.Table) error {
				ks, err := t.List(ctx)
				if err != nil {
					return err
				}
				if e.jsonOut {
					return printJSON(e.stdout, ks)
				}
				if len(ks) == 0 {
					if !e.quiet {
						fmt.Fprintln(e.stdout, "no access keys; make one with 'holdfast access add'")
					}
					return nil
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tCREATED\tPERMISSIONS")
				for _, k := range ks {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Created.Local().Format(time.DateTime), describeGrants(k))
				}
				return tw.Flush()
			})
		},
	}
}

func (e *env) accessRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an access key: a running gateway refuses it within a second",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			id := args[0]
			if !access.ValidID(id) {
				return usagef("%q is not an access key id (%d characters A-Z, 0-9; see 'holdfast access list')", id, access.IDLen)
			}
			return e.onAccess(c, func(ctx context.Context, t *access.Table) error {
				if err := t.Revoke(ctx, id); err != nil {
					return err
				}
				if e.jsonOut {
					return printJSON(e.stdout, map[string]string{"revoked": id})
				}
				if !e.quiet {
					fmt.Fprintf(e.stdout, "revoked %s\n", id)
				}
				return nil
			})
		},
	}
}
