package main

// This file owns `holdfast keyserver` (docs/keyserver.md): the on-prem key
// server that holds a repository's root keys and answers wrap and unwrap
// requests over mutual TLS 1.3, its state directory and enrolled clients,
// and `keyserver join`, which makes a home whose root keys are the
// server's. openKeyServer opens such a home's key source for every other
// command (keys.go openKeySource).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/attest"
	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/hsm"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/repo"
)

// shutdownGrace bounds how long a stopping key server waits for the
// requests in flight.
const shutdownGrace = 30 * time.Second

func (e *env) keyserverCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "keyserver",
		Short: "The on-prem key server: root keys that never leave it, wrap/unwrap over mutual TLS",
		Long: `keyserver runs and administers the key server (docs/keyserver.md):

  keyserver init --dir D --host H [--from-home HOME]   a new state directory (CA, server certificate, root keys, audit log)
  keyserver audit-init --dir D [--checkpoints FILE]    start the audit log of a state directory made without one
  keyserver serve --dir D [--listen ADDR]              answer clients over mutual TLS 1.3
  keyserver enroll NAME --dir D --bucket ID|* --ops wrap,unwrap,data,audit --out DIR
                                                       issue a client certificate with its grant
  keyserver revoke NAME --dir D                        revoke a client's certificate
  keyserver clients --dir D                            list the enrolled clients
  keyserver join --url URL --client-dir DIR            create a repository whose root keys are the server's
  keyserver bucket-id BUCKET                           print a bucket's id (for enroll --bucket)`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(e.keyserverInitCmd(), e.keyserverAuditInitCmd(), e.keyserverServeCmd(), e.keyserverEnrollCmd(), e.keyserverRevokeCmd(),
		e.keyserverClientsCmd(), e.keyserverJoinCmd(), e.keyserverBucketIDCmd())
	return c
}

func (e *env) keyserverInitCmd() *cobra.Command {
	var dir, fromHome, cp string
	var hosts []string
	c := &cobra.Command{
		Use:   "init --dir D --host NAME|IP... [--from-home HOME]",
		Short: "Make a key server's state directory: its CA, server certificate and root keys",
		Long: `init makes the state directory D (mode 0700): a CA (ECDSA P-256), a server
certificate for the --host names and addresses, an empty client list, the
root keys in a keyring file sealed under the passphrase
(HOLDFAST_PASSPHRASE, --passphrase-file or the prompt), the
key-operation log, and the tamper-evident audit log in D/audit (its key
K_0 sealed under the root key; checkpoints copied to --checkpoints,
default D/audit-checkpoints.log: put it on another machine). With --from-home, the keyring file of that repository
home is copied in (it must open with the passphrase): the server then
holds that repository's root keys. Without it, a new repository id and
root key are made; 'keyserver join' then creates the repository.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if dir == "" || len(hosts) == 0 {
				return usagef("--dir and at least one --host are required")
			}
			if err := e.hardenForKeys(); err != nil {
				return err
			}
			o := keyserver.InitOptions{Hosts: hosts, AuditCheckpoints: cp}
			var ksrc *repo.KeySourceConfig
			var err error
			if fromHome != "" {
				if ksrc, err = repo.LoadKeySource(fromHome); err != nil {
					return err
				}
				if ksrc != nil && ksrc.Type != repo.KeySourcePKCS11 {
					return usagef("--from-home %s: its root keys are on a key server already", fromHome)
				}
			}
			if ksrc != nil {
				// A token's home (keys ceremony): the server uses the token.
				src, err := e.openKeySource(fromHome)
				if err != nil {
					return err
				}
				defer src.Close()
				o.FromToken = &keyserver.TokenSource{URI: ksrc.URI, StateFile: repo.PKCS11StatePath(fromHome), Keys: src}
			} else {
				pass, err := keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile, New: fromHome == ""})
				if err != nil {
					return err
				}
				defer clear(pass)
				o.Passphrase = pass
				if fromHome != "" {
					o.FromKeyring = repo.KeyringPath(fromHome)
				} else {
					o.KDF = keyring.Calibrate(keyring.DefaultCalibrationTarget)
				}
			}
			id, err := keyserver.Init(dir, o)
			if errors.Is(err, keyserver.ErrExists) {
				return codeError{code: exitRefused, err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "key server state in %s\nrepository %x\nBack up the whole directory (docs/keyserver.md, \"Backup\"), and remember the passphrase.\n", dir, id[:])
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "state directory to create")
	c.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP address for the server certificate (repeatable)")
	c.Flags().StringVar(&fromHome, "from-home", "", "hold the root keys of this repository home: a copy of its keyring, or the PKCS#11 token it uses (keys ceremony)")
	c.Flags().StringVar(&cp, "checkpoints", "", "file the audit log's checkpoints are copied to (default D/audit-checkpoints.log)")
	return c
}

func (e *env) keyserverAuditInitCmd() *cobra.Command {
	var dir, cp string
	c := &cobra.Command{
		Use:   "audit-init --dir D [--checkpoints FILE]",
		Short: "Start the tamper-evident audit log of a key server's state directory",
		Long: `audit-init starts D/audit, the key server's audit log, in a state directory
made before 'keyserver init' made one: a random K_0 sealed under the
keyring's primary root key (the passphrase opens it), the genesis
checkpoint, and the writer's state. Checkpoints are copied to --checkpoints
(default D/audit-checkpoints.log; put it on another machine). A running
server starts writing to it at its next start (a graceful restart is
enough). Exit 7 if D already holds one ('holdfast audit verify --dir D').`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			if err := e.hardenForKeys(); err != nil {
				return err
			}
			kr, err := e.openKeyServerRoot(dir)
			if err != nil {
				return err
			}
			err = keyserver.InitAuditWith(dir, kr, cp)
			kr.Close()
			if errors.Is(err, audit.ErrExists) {
				return codeError{code: exitRefused, err: err}
			}
			if err != nil {
				return err
			}
			if cp == "" {
				cp = audit.DefaultCheckpoints(dir)
			}
			fmt.Fprintf(e.stdout, "created audit log %s\ncheckpoints copied to %s\n", keyserver.Dir(dir).AuditDir(), cp)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "key server state directory")
	c.Flags().StringVar(&cp, "checkpoints", "", "file the checkpoints are copied to (default D/audit-checkpoints.log)")
	return c
}

// registerKeyServerAudit registers serve's audit options, named as
// 'holdfast serve' names its own.
func registerKeyServerAudit(c *cobra.Command, o *keyserver.AuditOptions) {
	fl := c.Flags()
	fl.IntVar(&o.Every, "audit-checkpoint-every", audit.DefaultEvery, "audit entries between two checkpoints")
	fl.DurationVar(&o.Interval, "audit-checkpoint-interval", time.Minute, "also checkpoint this often while entries come (0: only every N and at shutdown)")
	fl.IntVar(&o.Queue, "audit-queue", 65536, "audit entries waiting to be written (releases wait for room)")
	fl.DurationVar(&o.Rate.Window, "audit-rate-window", time.Minute, "window over which each client's releases (root and data-key unwraps) are counted")
	fl.Float64Var(&o.Rate.Floor, "audit-rate-floor", 1000, "least baseline, in releases per window")
	fl.Float64Var(&o.Rate.Factor, "audit-rate-factor", 10, "a client over factor × its baseline (or the floor) in a window is an anomaly")
	fl.DurationVar(&o.Rate.CutOff, "audit-rate-cutoff", 0, "refuse an anomalous client's releases for this long, or until SIGHUP (0: warn only)")
}

func (e *env) keyserverServeCmd() *cobra.Command {
	var dir, listen, opsListen string
	var ao keyserver.AuditOptions
	c := &cobra.Command{
		Use:   "serve --dir D [--listen ADDR] [--ops-listen ADDR]",
		Short: "Answer wrap and unwrap requests over mutual TLS 1.3",
		Long: `serve opens the state directory's keyring (passphrase from
HOLDFAST_PASSPHRASE, --passphrase-file or the prompt) and answers the key
server API on --listen (mutual TLS 1.3), and /healthz and /metrics on
--ops-listen (plain HTTP; keep it on the loopback or a management network).
release-policy.json in D, if present, gates key releases on the client's
posture and attestation (docs/keyserver.md, "Posture and attestation"); it
is re-read whenever it changes.
Every key operation and refusal goes to D/audit, the audit log, if D keeps
one (keyserver init makes it; audit-init for older directories), before
the answer: a release it cannot take is not made. Each answer carries the
newest checkpoint, which clients keep. A client whose releases pass
--audit-rate-factor × its baseline is an anomaly (logged, counted, an
audit entry); with --audit-rate-cutoff its releases are refused for that
long, or until SIGHUP (docs/keyserver.md, "Rate anomalies").
SIGHUP re-reads clients.json and the keyring (clients.json is also re-read
whenever it changes), and lifts every rate cut-off. SIGTERM or SIGINT stops accepting, finishes the
requests in flight (up to 30 s), wipes the keys and exits 0.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			if err := e.hardenForKeys(); err != nil {
				return err
			}
			kr, err := e.openKeyServerRoot(dir)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			srv, err := keyserver.Open(dir, nil, keyserver.Options{Log: log, Audit: ao, Keys: kr})
			if err != nil {
				kr.Close()
				return err
			}
			return e.runKeyServer(c.Context(), srv, log, listen, opsListen)
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "state directory (keyserver init)")
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:7443", "address of the mutual-TLS API")
	c.Flags().StringVar(&opsListen, "ops-listen", "127.0.0.1:7444", "address of /healthz and /metrics (plain HTTP); empty: none")
	registerKeyServerAudit(c, &ao)
	return c
}

// runKeyServer serves until ctx ends (SIGTERM, SIGINT), then drains.
func (e *env) runKeyServer(ctx context.Context, srv *keyserver.Server, log *slog.Logger, listen, opsListen string) error {
	defer srv.Close()
	ln, url, err := keyserver.Listen(listen)
	if err != nil {
		return err
	}
	// The handshake is bounded by the smallest of the read timeouts; every
	// valid request is small, so a slow one is an attack or a dead peer.
	hs := &http.Server{Handler: srv.Handler(), TLSConfig: srv.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)} // handshake refusals are logged by the server itself
	errc := make(chan error, 2)
	go func() { errc <- hs.ServeTLS(srv.Listener(ln), "", "") }()
	var ops *http.Server
	if opsListen != "" {
		oln, err := net.Listen("tcp", opsListen)
		if err != nil {
			hs.Close()
			return err
		}
		ops = &http.Server{Handler: srv.OpsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- ops.Serve(oln) }()
		fmt.Fprintf(e.stdout, "health and metrics: http://%s/healthz\n", oln.Addr())
	}
	repoID := srv.Repo()
	fmt.Fprintf(e.stdout, "key server %s\nrepository %x\n  stop with SIGTERM; SIGHUP re-reads clients.json and the keyring\n", url, repoID[:])
	defer takeSIGHUP()() // a reload, not the end of the process
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := srv.Reload(); err != nil {
				log.Error("reload failed; the previous state stays in force", "error", err.Error())
			} else {
				log.Info("reloaded clients.json and the keyring; rate cut-offs lifted")
			}
			continue
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				return err
			}
		case <-ctx.Done():
		}
		break
	}
	// Stop taking requests, let those in flight finish with their keys,
	// then wipe.
	srv.Draining()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err = hs.Shutdown(sctx)
	if ops != nil {
		ops.Shutdown(sctx)
	}
	log.Info("key server stopped")
	return err
}

func (e *env) keyserverEnrollCmd() *cobra.Command {
	var dir, out, ops string
	var buckets []string
	var versions []uint
	c := &cobra.Command{
		Use:   "enroll NAME --dir D --bucket ID|* --ops wrap,unwrap,data --out DIR",
		Short: "Issue a client certificate and record what the client may do",
		Long: `enroll issues a client certificate for NAME signed by the key server's CA
and writes the bundle (client.key, client.crt, ca.crt; mode 0600) into
--out. The grant: --bucket takes bucket ids ('holdfast keyserver bucket-id
BUCKET' prints one) or '*' for every bucket and the repository's system
keys, which a home that opens the repository (put, get, …) needs; --ops
takes wrap, unwrap (root-level), data (data keys only, under a bucket
key the server opens itself) and audit (with unwrap: open the audit log's
key, which '*' alone does not allow); --versions limits the root key
versions.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if dir == "" || out == "" {
				return usagef("--dir and --out are required")
			}
			g := keyserver.Grant{Buckets: buckets, Ops: strings.Split(ops, ",")}
			for _, v := range versions {
				g.Versions = append(g.Versions, uint32(v))
			}
			if err := g.Validate(); err != nil {
				return usagef("%v", err)
			}
			cl, err := keyserver.Dir(dir).Enroll(args[0], g, out)
			if errors.Is(err, keyserver.ErrExists) {
				return codeError{code: exitRefused, err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "enrolled %q serial %s until %s\nbundle: %s\n", cl.Name, cl.Serial, cl.Expires.Format(time.DateOnly), out)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "key server state directory")
	c.Flags().StringVar(&out, "out", "", "directory for the client bundle")
	c.Flags().StringSliceVar(&buckets, "bucket", nil, "bucket id (32 hex digits) or '*' (repeatable)")
	c.Flags().StringVar(&ops, "ops", "wrap,unwrap,data", "operations: wrap, unwrap, data, audit")
	c.Flags().UintSliceVar(&versions, "versions", nil, "root key versions allowed (default: all)")
	return c
}

func (e *env) keyserverRevokeCmd() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "revoke NAME --dir D",
		Short: "Revoke a client's certificate (a running server refuses it from its next request)",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			serials, err := keyserver.Dir(dir).Revoke(args[0])
			if errors.Is(err, keyserver.ErrNoClient) {
				return codeError{code: exitNotFound, err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "revoked %q (serial %s)\n", args[0], strings.Join(serials, ", "))
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "key server state directory")
	return c
}

func (e *env) keyserverClientsCmd() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "clients --dir D",
		Short: "List the enrolled clients and their grants",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			cls, err := keyserver.Dir(dir).Clients()
			if err != nil {
				return err
			}
			if e.jsonOut {
				return printJSON(e.stdout, cls)
			}
			tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSERIAL\tSTATE\tEXPIRES\tBUCKETS\tOPS\tVERSIONS")
			for _, cl := range cls {
				state := "live"
				if cl.Revoked != nil {
					state = "revoked " + cl.Revoked.Format(time.DateOnly)
				}
				vs := "all"
				if len(cl.Grant.Versions) > 0 {
					vs = strings.Trim(strings.Join(strings.Fields(fmt.Sprint(cl.Grant.Versions)), ","), "[]")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cl.Name, cl.Serial, state, cl.Expires.Format(time.DateOnly),
					strings.Join(cl.Grant.Buckets, ","), strings.Join(cl.Grant.Ops, ","), vs)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "key server state directory")
	return c
}

// keyServerConfig is the keysource.json of a home on the key server at
// url with the client bundle in dir.
func keyServerConfig(url, dir string) (repo.KeySourceConfig, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return repo.KeySourceConfig{}, err
	}
	return repo.KeySourceConfig{Version: 1, Type: repo.KeySourceKeyServer, URL: url,
		ClientCert: filepath.Join(abs, keyserver.BundleCert), ClientKey: filepath.Join(abs, keyserver.BundleKey),
		CA: filepath.Join(abs, keyserver.BundleCA)}, nil
}

// openKeyServer opens a home's key server source. A refusal is a key
// error (exit 5), as is a server that cannot be reached
// (keys.ErrUnavailable).
func openKeyServer(home string, ks repo.KeySourceConfig) (repo.RootKeys, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*remote.DefaultTimeout)
	defer cancel()
	cfg := remote.Config{URL: ks.URL, CertFile: ks.Path(home, ks.ClientCert),
		KeyFile: ks.Path(home, ks.ClientKey), CAFile: ks.Path(home, ks.CA),
		CheckpointFile: filepath.Join(home, remote.CheckpointFileName)}
	if ks.Attestation != "" {
		a, err := attest.NewAttester(ks.Attestation)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(home, repo.KeySourceFile), err)
		}
		cfg.Attester = a
	}
	src, err := remote.Open(ctx, cfg)
	if errors.Is(err, remote.ErrRefused) {
		return nil, codeError{code: exitKey, err: err}
	}
	if err != nil {
		return nil, err
	}
	return src, nil
}

func (e *env) keyserverJoinCmd() *cobra.Command {
	var sf storeFlags
	var cf catalogFlags
	var url, clientDir string
	var attach bool
	c := &cobra.Command{
		Use:   "join --url https://HOST:PORT --client-dir DIR [--store DIR] [--catalog-url postgres://… --catalog-ca F --catalog-cert F --catalog-key F [--attach]]",
		Short: "Create a repository whose root keys are held by a key server",
		Long: `join creates a new repository (as init does) in the home, whose root keys
are the key server's: the home gets keysource.json naming the server and
the client bundle (from 'keyserver enroll', with --bucket '*' and --ops
wrap,unwrap,data), and no keyring file. Every command then asks the
server for root-level wraps and unwraps, and for every data key's wrap
and unwrap (the server opens the bucket keys; the home never does);
nothing in the home can open the data without it.

With --catalog-url (and the CA, certificate and key to reach it over
mutual TLS), the catalog is kept on PostgreSQL on premises instead of in
the home, and every commit's head is recorded on the key server. With
--attach, join makes a home for the repository that database already
holds (a further gateway for it, on the same store): nothing is created.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			if url == "" || clientDir == "" {
				return usagef("--url and --client-dir are required")
			}
			home, s3cfg, err := e.newHomeWithoutKeyring(sf)
			if err != nil {
				return err
			}
			ks, err := keyServerConfig(url, clientDir)
			if err != nil {
				return err
			}
			cc, err := cf.config()
			if err != nil {
				return err
			}
			if attach && (cc == nil || sf.store == "") {
				return usagef("--attach needs the shared catalog (--catalog-url …) and the repository's --store")
			}
			src, err := openKeyServer(home, ks)
			if err != nil {
				return err
			}
			if err := repo.SaveKeySource(home, ks); err != nil {
				src.Close()
				return err
			}
			storeDir := sf.store
			if s3cfg != nil {
				storeDir = ""
			}
			var r *repo.Repo
			if attach {
				r, err = repo.Attach(c.Context(), repo.AttachOptions{Home: home, Catalog: cc, StorePath: storeDir, S3: s3cfg, Keys: src, Hooks: e.hooks})
				if err != nil {
					src.Close()
				}
			} else {
				r, err = repo.Init(c.Context(), repo.InitOptions{Home: home, StorePath: storeDir, S3: s3cfg, Keys: src, Catalog: cc, Hooks: e.hooks})
			}
			if err != nil {
				os.Remove(filepath.Join(home, repo.KeySourceFile))
				return err
			}
			defer e.closeRepo(r, &err)
			id := r.ID()
			op, verb := "create", "created"
			if attach {
				op, verb = "attach", "attached to"
			}
			rerr := recordKeyOp(home, keys.Op{Op: op, Repo: id, Source: keys.SourceKeyServer,
				Versions: []uint32{src.Primary()}, Detail: "store " + r.StoreDescription() + "; catalog " + r.CatalogDescription() + "; root keys on the key server " + url})
			if e.jsonOut {
				if err := printJSON(e.stdout, map[string]string{"home": home, "repository": fmt.Sprintf("%x", id[:]), "key_server": url,
					"catalog": r.CatalogDescription()}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "%s repository %x\nhome:    %s\nstore:   %s\ncatalog: %s\nroot keys: the key server %s\n", verb, id[:], home, r.StoreDescription(), r.CatalogDescription(), url)
			}
			if rerr != nil {
				return e.unrecorded(rerr)
			}
			return nil
		},
	}
	sf.register(c, "where the repository is stored (default: the directory HOME/store)")
	c.Flags().StringVar(&url, "url", "", "the key server's https://HOST:PORT")
	c.Flags().StringVar(&clientDir, "client-dir", "", "the client bundle from 'keyserver enroll --out'")
	cf.register(c)
	c.Flags().BoolVar(&attach, "attach", false, "make a home for the repository the shared catalog already holds (another gateway)")
	return c
}

func (e *env) keyserverBucketIDCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bucket-id BUCKET",
		Short: "Print a bucket's id, for 'keyserver enroll --bucket'",
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) (err error) {
			r, err := e.open(c.Context(), false)
			if err != nil {
				return err
			}
			defer e.closeRepo(r, &err)
			b, err := r.Catalog().GetBucket(c.Context(), args[0])
			if err != nil {
				return fmt.Errorf("bucket %q: %w", args[0], err)
			}
			fmt.Fprintf(e.stdout, "%x\n", b.ID[:])
			return nil
		},
	}
}

// openKeyServerRoot opens the root keys of key server state directory
// dir: the PKCS#11 token it names (its PIN from --pin-file,
// HOLDFAST_PKCS11_PIN or the prompt), or its keyring file (the
// passphrase). The caller closes them.
func (e *env) openKeyServerRoot(dir string) (keyserver.RootKeys, error) {
	tok, err := keyserver.Dir(dir).Token()
	if err != nil {
		return nil, err
	}
	if tok != nil {
		u, err := hsm.ParseURI(tok.URI)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, keyserver.TokenFile), err)
		}
		pin, err := hsm.ReadPIN(e.pinFile, u.Token)
		if err != nil {
			return nil, err
		}
		defer clear(pin)
		s, err := hsm.Open(keyserver.Dir(dir).TokenStatePath(), u, pin, hsm.Options{})
		if err != nil { // no typed nil in the interface
			return nil, pinError(err)
		}
		return s, nil
	}
	pass, err := keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile})
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	return keyring.Open(filepath.Join(dir, keyserver.KeyringFile), pass)
}
