package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/regfile"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/store"
)

func (e *env) homeDir() (string, error) {
	if e.home != "" {
		return filepath.Abs(e.home)
	}
	return repo.DefaultHome()
}

// homeAndPassphrase returns the home directory and the passphrase (a new
// one when isNew is set: asked twice, and held to the passphrase policy).
// The caller clears the passphrase.
func (e *env) homeAndPassphrase(isNew bool) (string, []byte, error) {
	if err := e.hardenForKeys(); err != nil {
		return "", nil, err
	}
	home, err := e.homeDir()
	if err != nil {
		return "", nil, err
	}
	pass, err := keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile, New: isNew})
	return home, pass, err
}

// open opens the repository and finishes what earlier interrupted runs
// left (their pending writes and unremoved old versions).
func (e *env) open(ctx context.Context, cleanup bool) (*repo.Repo, error) {
	o, err := e.openOptions()
	if err != nil {
		return nil, err
	}
	defer clear(o.Passphrase)
	r, err := repo.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	if cleanup {
		if _, err := r.Cleanup(ctx); err != nil {
			r.Close()
			return nil, fmt.Errorf("cleaning up after an earlier interrupted run: %w", err)
		}
	}
	if err := e.autoBackup(ctx, r); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// onObject runs fn for a command on BUCKET/KEY with the repository open;
// cleanup first finishes what earlier interrupted runs left.
func (e *env) onObject(c *cobra.Command, arg string, cleanup bool, fn func(ctx context.Context, r *repo.Repo, bucket, key string) error) (err error) {
	bucket, key, err := repo.SplitPath(arg, false)
	if err != nil {
		return usagef("%v", err)
	}
	ctx := c.Context()
	r, err := e.open(ctx, cleanup)
	if err != nil {
		return err
	}
	defer e.closeRepo(r, &err) // keyslog.go: records the key use
	return fn(ctx, r, bucket, key)
}

func (e *env) initCmd() *cobra.Command {
	var sf storeFlags
	c := &cobra.Command{
		Use:   "init [--store DIR]",
		Short: "Create a home (keyring, catalog) and a repository in a store",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			if _, err := e.keyHome(); err != nil { // keys.go: the key-operation log
				return err
			}
			// An existing home is refused before the passphrase is asked
			// for and the key derivation calibrated.
			if home, err := e.homeDir(); err == nil {
				if err := repo.CheckNewHome(home); err != nil {
					return hintedError{exitRefused, err, "for a new repository use another home (--home DIR or HOLDFAST_HOME)"}
				}
			}
			home, pass, err := e.homeAndPassphrase(true)
			if err != nil {
				return err
			}
			defer clear(pass)
			if !e.quiet && !e.jsonOut {
				fmt.Fprintln(e.stderr, "holdfast: calibrating the passphrase key derivation…")
			}
			s3cfg, err := sf.s3()
			if err != nil {
				return err
			}
			spreadCfg, err := spreadFlag(sf.store) // stores.go
			if err != nil {
				return err
			}
			storeDir := sf.store
			if s3cfg != nil || spreadCfg != nil {
				storeDir = ""
			}
			r, err := repo.Init(c.Context(), repo.InitOptions{Home: home, StorePath: storeDir, S3: s3cfg, Spread: spreadCfg, Passphrase: pass,
				KDF: keyring.Calibrate(keyring.DefaultCalibrationTarget), Hooks: e.hooks})
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			id := r.ID()
			// The repository exists now: unrecorded, it still does.
			rerr := recordKeyOp(home, keys.Op{Op: "create", Repo: id, Source: r.KeySource().Kind(),
				Versions: []uint32{r.KeySource().Primary()}, Detail: "store " + r.StoreDescription()})
			if e.jsonOut {
				if err := printJSON(e.stdout, map[string]string{"home": home, "repository": fmt.Sprintf("%x", id[:])}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "created repository %x\nhome:  %s\nstore: %s\n", id[:], home, r.StoreDescription())
				fmt.Fprintln(e.stdout, "Back up the keyring file and remember the passphrase: without both, the data cannot be read.")
			}
			if rerr != nil {
				return e.unrecorded(rerr)
			}
			return nil
		},
	}
	sf.register(c, "where the repository is stored (default: the directory HOME/store)")
	return c
}

func parseMeta(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--meta wants NAME=VALUE, got %q", kv)
		}
		m[strings.ToLower(k)] = v
	}
	return m, nil
}

func (e *env) putCmd() *cobra.Command {
	var recursive bool
	var contentType string
	var meta []string
	c := &cobra.Command{
		Use:   "put [-r] FILE|DIR|- BUCKET/KEY",
		Short: "Encrypt and store a file (- for standard input), or a tree with -r",
		Args:  exactArgs(2),
		RunE: func(c *cobra.Command, args []string) (err error) {
			src, dst := args[0], args[1]
			md, err := parseMeta(meta)
			if err != nil {
				return err
			}
			// As with aws s3 cp: BUCKET/ or BUCKET/PREFIX/ takes the file's name.
			if !recursive && src != "-" && (strings.HasSuffix(dst, "/") || !strings.Contains(dst, "/")) {
				dst = strings.TrimSuffix(dst, "/") + "/" + filepath.Base(src)
			}
			bucket, key, err := repo.SplitPath(dst, recursive)
			if err != nil {
				if src == "-" && !recursive && !strings.Contains(strings.TrimSuffix(dst, "/"), "/") {
					return usagef("put from standard input needs a whole BUCKET/KEY (%q names no key, and there is no file name to take one from)", dst)
				}
				return usagef("%v", err)
			}
			if recursive {
				if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
					return usagef("put -r stores a directory tree, and %q is not a directory: put it without -r", src)
				}
			}
			ctx := c.Context()
			r, err := e.open(ctx, true)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			if recursive {
				return e.putTree(ctx, r, src, bucket, key)
			}
			var in io.Reader = e.stdin
			var size int64 = -1
			if src != "-" {
				f, err := os.Open(src)
				if err != nil {
					return err
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				if fi.IsDir() {
					return usagef("%q is a directory: use put -r", src)
				}
				in, size = f, fi.Size()
				if fi.Mode().IsRegular() && fi.Size() > object.DefaultSegmentSize {
					// More than a segment: sealed where it lies
					// in the page cache, not copied in first, and
					// refused if it changes while it is read. (Not
					// smaller files: mapping one costs more than
					// copying it, and files of /proc and /sys say
					// their size is 0 or 4096 whatever they hold.)
					s, err := regfile.NewSource(f)
					if err != nil {
						return err
					}
					in, size = s, s.Size()
				}
			}
			bar := newBar(e.stderr, e.quiet || e.jsonOut, size, "put "+dst)
			if bar != nil {
				in = countBytes(in, bar)
				defer bar.Finish()
			}
			ent, err := r.Put(ctx, bucket, key, in, repo.PutOptions{ContentType: contentType, Meta: md})
			if err != nil {
				return err
			}
			return e.printEntry(r, ent, "stored")
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "r", false, "store a directory tree under BUCKET/PREFIX")
	c.Flags().StringVar(&contentType, "content-type", "", "content type to record")
	c.Flags().StringArrayVar(&meta, "meta", nil, "user metadata NAME=VALUE (repeatable)")
	return c
}

func (e *env) putTree(ctx context.Context, r *repo.Repo, dir, bucket, prefix string) error {
	type item struct{ path, key string }
	var items []item
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		k := filepath.ToSlash(rel)
		if prefix != "" {
			k = strings.TrimSuffix(prefix, "/") + "/" + k
		}
		if err := repo.ValidateKey(k); err != nil {
			return err
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		items = append(items, item{p, k})
		return nil
	})
	if err != nil {
		return err
	}
	bar := newBar(e.stderr, e.quiet || e.jsonOut, total, "put "+bucket)
	var bytes int64
	start := time.Now()
	puts := make([]repo.PutItem, len(items))
	for i, it := range items {
		p := it.path
		puts[i] = repo.PutItem{Key: it.key, Open: func() (io.ReadCloser, error) { return regfile.Open(p) }}
	}
	err = r.PutMany(ctx, bucket, puts, func(ent catalog.Entry) {
		bytes += ent.Size
		if bar != nil {
			bar.Add64(ent.Size)
		}
	})
	if err != nil {
		return err
	}
	if bar != nil {
		bar.Finish()
	}
	el := time.Since(start)
	if e.jsonOut {
		return printJSON(e.stdout, withStore(r, map[string]any{"files": len(items), "bytes": bytes, "seconds": el.Seconds()}))
	}
	if !e.quiet {
		fmt.Fprintf(e.stdout, "stored %d files (%d bytes) in %s/%s in %.2fs\n", len(items), bytes, bucket, prefix, el.Seconds())
	}
	return nil
}

func (e *env) printEntry(r *repo.Repo, ent catalog.Entry, verb string) error {
	if e.jsonOut {
		return printJSON(e.stdout, entryStoreJSON{entryJSON(ent), storeStats(r)})
	}
	if !e.quiet {
		fmt.Fprintf(e.stdout, "%s %s/%s (%d bytes, version %d)\n", verb, ent.Bucket, ent.Key, ent.Size, ent.Version)
	}
	return nil
}

type jsonEntry struct {
	Bucket      string            `json:"bucket"`
	Key         string            `json:"key"`
	Size        int64             `json:"size"`
	Version     uint64            `json:"version"`
	Modified    time.Time         `json:"modified"`
	ContentType string            `json:"content_type,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	StoredSize  int64             `json:"stored_size"`
	Object      string            `json:"object"`
	Segments    int               `json:"segments"`
}

// entryStoreJSON is an entry and what it took of the store.
type entryStoreJSON struct {
	jsonEntry
	Store *store.Stats `json:"store,omitempty"`
}

// storeStats returns the store's request and retry counts for --json
// output, or nil for a store that keeps none (a local directory).
func storeStats(r *repo.Repo) *store.Stats {
	if st, ok := r.StoreStats(); ok {
		return &st
	}
	return nil
}

// withStore adds "store" (storeStats) to a JSON object when there is one.
func withStore(r *repo.Repo, m map[string]any) map[string]any {
	if st := storeStats(r); st != nil {
		m["store"] = st
	}
	return m
}

func entryJSON(e catalog.Entry) jsonEntry {
	return jsonEntry{Bucket: e.Bucket, Key: e.Key, Size: e.Size, Version: e.Version, Modified: e.Modified.UTC(),
		ContentType: e.ContentType, Meta: e.Meta, StoredSize: e.StoredLen, Object: fmt.Sprintf("%x", e.ObjectID[:]), Segments: e.Segments}
}

func (e *env) getCmd() *cobra.Command {
	var rng string
	c := &cobra.Command{
		Use:   "get BUCKET/KEY FILE|DIR|- [--range START-END]",
		Short: "Fetch, authenticate and decrypt an object (or a byte range of it) into a file (- for standard output)",
		Args:  exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return e.onObject(c, args[0], false, func(ctx context.Context, r *repo.Repo, bucket, key string) error {
				rd, err := r.OpenObject(ctx, bucket, key)
				if err != nil {
					return err
				}
				defer rd.Close()
				// The range is checked before any output file is made.
				body, err := objectBody(ctx, rd, rng, args[0])
				if err != nil {
					return err
				}
				out := args[1]
				if out == "-" {
					_, err := body.writeTo(ctx, e.stdout)
					return err
				}
				// Into an existing directory: under the key's last element.
				if fi, err := os.Stat(out); err == nil && fi.IsDir() {
					out = filepath.Join(out, path.Base(key))
				}
				// Through a temporary file renamed into place only when every
				// byte authenticated: a failed or interrupted get leaves no
				// output file.
				err = atomicfile.Write(out, atomicfile.Options{Mode: outputMode()}, func(w io.Writer) error {
					bar := newBar(e.stderr, e.quiet || e.jsonOut, body.n, "get "+args[0])
					if bar != nil {
						w = io.MultiWriter(w, bar)
						defer bar.Finish()
					}
					_, err := body.writeTo(ctx, w)
					return err
				})
				if err != nil || !e.jsonOut {
					return err
				}
				return printJSON(e.stdout, struct {
					entryStoreJSON
					File string `json:"file"`
				}{entryStoreJSON{entryJSON(rd.Entry), storeStats(r)}, out})
			})
		},
	}
	c.Flags().StringVar(&rng, "range", "", "only bytes START-END (inclusive), START- or -SUFFIX")
	return c
}

// body is what get and cat write of an object: all of it, or the byte
// range --range names (off, n).
type body struct {
	rd     *repo.Reader
	ranged bool
	off, n int64
}

// objectBody checks --range spec (empty: the whole object) against the
// object obj that rd reads.
func objectBody(ctx context.Context, rd *repo.Reader, spec, obj string) (body, error) {
	if spec == "" {
		return body{rd: rd, n: rd.Entry.Size}, nil
	}
	off, n, err := parseRange(spec, obj, rd.Entry.Size)
	if err != nil {
		return body{}, err
	}
	return body{rd: rd, ranged: true, off: off, n: n}, nil
}

// writeTo authenticates and writes the body to w.
func (b body) writeTo(ctx context.Context, w io.Writer) (int64, error) {
	if !b.ranged {
		return b.rd.WriteTo(ctx, w)
	}
	rc, err := b.rd.Range(ctx, b.off, b.n)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(w, rc)
}

// outputMode is the mode a new file gets by default: 0666 less the umask.
func outputMode() os.FileMode {
	u := syscall.Umask(0)
	syscall.Umask(u)
	return 0o666 &^ os.FileMode(u)
}

// parseRange parses START-END (inclusive, like HTTP), START- or -SUFFIX
// of the object obj of size bytes. An END past the end is cut to it, as in
// HTTP; a START past it cannot be satisfied (rangeNotSatisfiable).
func parseRange(s, obj string, size int64) (off, n int64, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, usagef("--range wants START-END, START- or -SUFFIX, got %q", s)
	}
	switch {
	case a == "" && b != "":
		suf, err := strconv.ParseInt(b, 10, 64)
		if err != nil || suf <= 0 {
			return 0, 0, usagef("bad --range %q", s)
		}
		if suf > size {
			suf = size
		}
		return size - suf, suf, nil
	case a != "":
		off, err = strconv.ParseInt(a, 10, 64)
		if err != nil || off < 0 {
			return 0, 0, usagef("bad --range %q", s)
		}
		if off >= size && size > 0 || off > size {
			return 0, 0, rangeNotSatisfiable(s, obj, off, size)
		}
		if b == "" {
			return off, size - off, nil
		}
		end, err := strconv.ParseInt(b, 10, 64)
		if err != nil || end < off {
			return 0, 0, usagef("bad --range %q", s)
		}
		return off, min(end, size-1) - off + 1, nil
	}
	return 0, 0, usagef("bad --range %q", s)
}

// rangeNotSatisfiable is S3's InvalidRange (HTTP 416) for the command
// line: the range asked for starts past the object's last byte. A usage
// error (exit 2), with the object's size and the range in the message.
func rangeNotSatisfiable(spec, obj string, start, size int64) error {
	if size == 0 {
		return hintedError{exitUsage,
			fmt.Errorf("range not satisfiable: --range %s starts at byte %d, but %s is empty (0 bytes)", spec, start, obj),
			"an empty object has no bytes to give: cat it without --range"}
	}
	return hintedError{exitUsage,
		fmt.Errorf("range not satisfiable: --range %s starts at byte %d, but %s is %d bytes (bytes 0-%d)", spec, start, obj, size, size-1),
		fmt.Sprintf("ask for a range that starts at byte %d at most: --range START-END, START- or -N (the last N bytes)", size-1)}
}

func (e *env) catCmd() *cobra.Command {
	var rng string
	c := &cobra.Command{
		Use:   "cat BUCKET/KEY [--range START-END]",
		Short: "Write an object (or a byte range of it) to standard output",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return e.onObject(c, args[0], false, func(ctx context.Context, r *repo.Repo, bucket, key string) error {
				rd, err := r.OpenObject(ctx, bucket, key)
				if err != nil {
					return err
				}
				defer rd.Close()
				body, err := objectBody(ctx, rd, rng, args[0])
				if err != nil {
					return err
				}
				_, err = body.writeTo(ctx, e.stdout)
				return err
			})
		},
	}
	c.Flags().StringVar(&rng, "range", "", "bytes START-END (inclusive), START- or -SUFFIX")
	return c
}

func (e *env) lsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "ls [BUCKET[/PREFIX]]",
		Short: "List buckets, or the objects in a bucket",
		Args:  rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) (err error) {
			ctx := c.Context()
			r, err := e.open(ctx, false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			cat := r.Catalog()
			if len(args) == 0 {
				bs, err := cat.Buckets(ctx)
				if err != nil {
					return err
				}
				if e.jsonOut {
					out := []map[string]any{}
					for _, b := range bs {
						out = append(out, map[string]any{"bucket": b.Name, "created": b.Created.UTC()})
					}
					return printJSON(e.stdout, out)
				}
				for _, b := range bs {
					fmt.Fprintf(e.stdout, "%s  %s\n", b.Created.UTC().Format(time.DateTime), b.Name)
				}
				return nil
			}
			bucket, prefix, err := repo.SplitPath(args[0], true)
			if err != nil {
				return usagef("%v", err)
			}
			if _, err := cat.GetBucket(ctx, bucket); err != nil {
				if errors.Is(err, catalog.ErrNotFound) {
					return fmt.Errorf("bucket %q: %w", bucket, repo.ErrNotFound)
				}
				return err
			}
			out := []jsonEntry{}
			err = cat.List(ctx, bucket, prefix, "", func(ent catalog.Entry) error {
				if e.jsonOut {
					out = append(out, entryJSON(ent))
					return nil
				}
				_, err := fmt.Fprintf(e.stdout, "%s %12d  %s\n", ent.Modified.UTC().Format(time.DateTime), ent.Size, ent.Key)
				return err
			})
			if err != nil {
				return err
			}
			if e.jsonOut {
				return printJSON(e.stdout, out)
			}
			return nil
		},
	}
	return c
}

func (e *env) rmCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "rm BUCKET/KEY",
		Short: "Delete an object",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return e.onObject(c, args[0], true, func(ctx context.Context, r *repo.Repo, bucket, key string) error {
				ent, err := r.Delete(ctx, bucket, key)
				if err != nil {
					return err
				}
				return e.printEntry(r, ent, "deleted")
			})
		},
	}
	return c
}

func (e *env) rbCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rb BUCKET",
		Short: "Remove an empty bucket",
		Long: `rb removes a bucket that holds no object (rm its objects first). Its
key versions stay in the catalog and the key journal; to make what a
bucket held unrecoverable, shred it instead.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) (err error) {
			if err := repo.ValidateBucket(args[0]); err != nil {
				return usagef("%v", err)
			}
			ctx := c.Context()
			r, err := e.open(ctx, true)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			if err := r.DeleteBucket(ctx, args[0]); err != nil {
				return err
			}
			if !e.quiet {
				fmt.Fprintf(e.stdout, "removed bucket %s\n", args[0])
			}
			return nil
		},
	}
}

func (e *env) statCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "stat BUCKET/KEY",
		Short: "Show an object's catalog record",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return e.onObject(c, args[0], false, func(ctx context.Context, r *repo.Repo, bucket, key string) error {
				ent, err := r.Stat(ctx, bucket, key)
				if err != nil {
					return err
				}
				if e.jsonOut {
					return printJSON(e.stdout, entryJSON(ent))
				}
				j := entryJSON(ent)
				fmt.Fprintf(e.stdout, "object:       %s/%s\nsize:         %d\nversion:      %d\nmodified:     %s\n", j.Bucket, j.Key, j.Size, j.Version, j.Modified.Format(time.RFC3339Nano))
				if j.ContentType != "" {
					fmt.Fprintf(e.stdout, "content-type: %s\n", j.ContentType)
				}
				for k, v := range j.Meta {
					fmt.Fprintf(e.stdout, "meta:         %s=%s\n", k, v)
				}
				fmt.Fprintf(e.stdout, "stored as:    %s (%d bytes, %d segments)\n", j.Object, j.StoredSize, j.Segments)
				return nil
			})
		},
	}
	return c
}

func (e *env) recoverCmd() *cobra.Command {
	var sf storeFlags
	var acceptUnverified bool
	c := &cobra.Command{
		Use:   "recover [--store DIR] [--accept-unverified-freshness]",
		Short: "Rebuild a lost catalog from the store with the keyring",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			// The keys come first: without them nothing can be recovered,
			// and the passphrase is not asked for in vain.
			if home, err := e.homeDir(); err == nil {
				ks, _ := repo.LoadKeySource(home)
				if _, serr := os.Stat(repo.KeyringPath(home)); ks == nil && errors.Is(serr, fs.ErrNotExist) {
					return hintedError{exitKey, fmt.Errorf("no keyring at %s to recover with", repo.KeyringPath(home)),
						"copy your keyring backup there (its directory mode 0700), or rebuild it from key shares with 'holdfast keys restore'"}
				}
			}
			home, pass, src, err := e.homeAndKeys() // keys.go: keyring or PKCS#11
			if err != nil {
				return err
			}
			defer clear(pass)
			s3cfg, err := sf.s3()
			if err != nil {
				if src != nil {
					src.Close()
				}
				return err
			}
			storeDir := sf.store
			if s3cfg != nil {
				storeDir = ""
			}
			r, rep, err := repo.Recover(c.Context(), repo.RecoverOptions{Home: home, StorePath: storeDir, S3: s3cfg, Passphrase: pass,
				Keys: src, AcceptUnverifiedFreshness: acceptUnverified, Hooks: e.hooks})
			if errors.Is(err, repo.ErrStoreUnavailable) && sf.store == "" && s3cfg == nil {
				return hintedError{exitUnchecked, err, "pass --store DIR (or s3://BUCKET/PREFIX, or spread:FILE) naming where the repository is stored"}
			}
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			if e.jsonOut {
				return printJSON(e.stdout, rep)
			}
			e.printRecover(rep)
			return nil
		},
	}
	sf.register(c, "where the repository is stored (default: the config's, else the directory HOME/store)")
	c.Flags().BoolVar(&acceptUnverified, "accept-unverified-freshness", false,
		"recover even if the store's catalog backups cannot be checked against the keyring's freshness record, or the newer one a spread store's members keep (none, older, or not linked)")
	return c
}
