package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/access"
	"github.com/holdfast/holdfast/internal/gateway"
	"github.com/holdfast/holdfast/internal/hsm"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
)

// gatewayDir is where serve keeps its certificate, inside the home.
const gatewayDir = "gateway"

type serveFlags struct {
	addr, opsAddr            string
	certFile, keyFile        string
	clientCA                 string
	allowTLS12, insecureHTTP bool
	region, virtualDomain    string
	maxConns, maxReqs        int
	logFormat, logLevel      string
	sampleEvery              time.Duration
	sampleCount              int
	postureEvery             time.Duration
	audit                    auditFlags // audit.go
}

func (e *env) serveCmd() *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve the repository over an S3-compatible HTTPS endpoint",
		Long: `serve runs an S3-compatible endpoint (TLS 1.3) in front of the repository:
point any S3 client at it, and what reaches the store is ciphertext. Access
keys come from 'holdfast access'; on the first run with none, at a terminal,
serve creates an admin key named "default" and prints it once (elsewhere it
makes none: run 'holdfast access add NAME --admin'). Without --cert, serve uses a
self-signed certificate kept in HOME/gateway (made on first run). See
docs/gateway.md.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error { return e.serve(c.Context(), f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:9000", "address of the S3 endpoint")
	fl.StringVar(&f.opsAddr, "ops-addr", "127.0.0.1:9001", "address of /healthz, /readyz and /metrics (\"\": none)")
	fl.StringVar(&f.certFile, "cert", "", "TLS certificate (PEM); default: a self-signed one in HOME/gateway")
	fl.StringVar(&f.keyFile, "key", "", "TLS private key (PEM) for --cert")
	fl.StringVar(&f.clientCA, "client-ca", "", "require client certificates issued by these CAs (PEM): mutual TLS")
	fl.BoolVar(&f.allowTLS12, "allow-tls12", false, "accept TLS 1.2 clients too (TLS 1.3 only by default)")
	fl.BoolVar(&f.insecureHTTP, "insecure-http", false, "serve plain HTTP (loopback addresses only)")
	fl.StringVar(&f.region, "region", "us-east-1", "region clients sign requests for")
	fl.StringVar(&f.virtualDomain, "virtual-domain", "", "also serve virtual-hosted-style requests: BUCKET.DOMAIN addresses BUCKET (the certificate must cover DOMAIN and *.DOMAIN)")
	fl.IntVar(&f.maxConns, "max-connections", 256, "most concurrent client connections")
	fl.IntVar(&f.maxReqs, "max-requests", 128, "most requests in flight; beyond: 503 SlowDown")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug (every request), info, warn or error")
	fl.DurationVar(&f.sampleEvery, "sample-interval", 10*time.Minute, "how often a random sample of objects is read and authenticated (0: never)")
	fl.IntVar(&f.sampleCount, "sample-count", 16, "objects per sample check")
	fl.DurationVar(&f.postureEvery, "posture-interval", posture.DefaultInterval, "how often the host's posture is checked against the policy (and on every SIGHUP); a failed required check seals the keys")
	f.audit.register(c) // audit.go
	return c
}

func (f serveFlags) logger(w *os.File) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, usagef("--log-format %q: want text or json", f.logFormat)
}

func (e *env) serve(ctx context.Context, f serveFlags) (err error) {
	log, err := f.logger(os.Stderr)
	if err != nil {
		return err
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return usagef("--cert and --key go together")
	}
	if d := f.virtualDomain; d != "" && !validDomain(d) {
		return usagef("--virtual-domain %q: want a DNS name such as s3.example.internal (no scheme, port or path)", d)
	}
	if f.insecureHTTP && (f.certFile != "" || f.clientCA != "" || f.allowTLS12) {
		return usagef("--insecure-http serves no TLS: it excludes --cert, --client-ca and --allow-tls12")
	}
	r, err := e.open(ctx, true)
	if err != nil {
		return err
	}
	defer e.closeRepo(r, &err) // keyslog.go: at shutdown, the key use of the whole run
	tbl, err := access.Open(ctx, r.Catalog(), r.ID(), r.KeySource(), access.Options{Log: log})
	if err != nil {
		return err
	}
	defer tbl.Close()

	opts := gateway.Options{Addr: f.addr, AllowTLS12: f.allowTLS12, PlainHTTP: f.insecureHTTP, Region: f.region,
		MaxConnections: f.maxConns, MaxRequests: f.maxReqs, VirtualDomain: f.virtualDomain, IAM: tbl.IAM(), Logger: log}
	var certPath, fingerprint string
	if !f.insecureHTTP {
		var leaf *x509.Certificate
		created := false
		if f.certFile != "" {
			opts.Certificate, leaf, err = gateway.LoadCert(f.certFile, f.keyFile)
			certPath = f.certFile
		} else {
			dir := filepath.Join(r.Home, gatewayDir)
			hosts := hostOf(f.addr)
			if f.virtualDomain != "" {
				hosts = append(hosts, gateway.VirtualDomainHosts(f.virtualDomain)...)
			}
			opts.Certificate, leaf, created, err = gateway.LoadOrCreateCert(dir, hosts)
			certPath = filepath.Join(dir, gateway.CertFile)
		}
		if err != nil {
			return err
		}
		if f.virtualDomain != "" && !gateway.CoversVirtualDomain(leaf, f.virtualDomain) {
			hint := "give --cert and --key for one that does"
			if f.certFile == "" {
				hint = "move it away to have serve make one that does (clients must then trust the new one), or give --cert and --key"
			}
			return usagef("the certificate %s does not cover %s and *.%s, which --virtual-domain needs: %s",
				certPath, f.virtualDomain, f.virtualDomain, hint)
		}
		fingerprint = gateway.Fingerprint(leaf)
		if created {
			log.Info("created a self-signed certificate", "file", certPath, "sha256", fingerprint)
		}
		if f.clientCA != "" {
			pem, err := os.ReadFile(f.clientCA)
			if err != nil {
				return err
			}
			opts.ClientCAs = x509.NewCertPool()
			if !opts.ClientCAs.AppendCertsFromPEM(pem) {
				return usagef("--client-ca %s holds no PEM certificate", f.clientCA)
			}
		}
	}

	// First run at a terminal with no key at all: make an admin key and
	// show it to the person there, once. Elsewhere (a service, a script)
	// no secret is printed; 'holdfast access add' makes keys.
	var first *access.Credentials
	keys, err := tbl.List(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 && isTerminal(e.stdout) {
		if first, _, err = tbl.Add(ctx, access.Spec{Name: "default", Admin: true}); err != nil {
			return err
		}
		defer first.Wipe()
	}

	m := gateway.NewMetrics(log)
	// The audit log, if the home keeps one: an entry per operation, and
	// the rate watch (audit.go).
	ev, acc, closeAudit, err := e.serveAudit(ctx, r, f.audit, m, gateway.TableAccess(tbl), log)
	if err != nil {
		return err
	}
	defer closeAudit()
	be := gateway.NewBackend(r, acc, ev)
	guard, err := e.postureGuard(r, tbl, be, f, log)
	if err != nil {
		return err
	}
	srv, err := gateway.Start(ctx, be, opts)
	if err != nil {
		return err
	}
	defer takeSIGHUP()() // a re-check, not the end of the process
	guard.Go(ctx)
	var ops net.Addr
	if f.opsAddr != "" {
		ready := func() error {
			_, err := guard.Sealed()
			return err
		}
		if ops, err = gateway.OpsServer(ctx, f.opsAddr, m, ready); err != nil {
			_ = srv.Stop()
			return err
		}
	}
	if f.sampleEvery > 0 {
		go (&gateway.Sampler{Repo: r, Interval: f.sampleEvery, Count: f.sampleCount, Metrics: m, Log: log, Guard: guard}).Run(ctx)
	}
	e.printServing(srv.Addr(), ops, f, certPath, fingerprint, first)
	log.Info("serving", "addr", srv.Addr().String())
	err = srv.Wait()
	log.Info("stopped")
	return err
}

// postureGuard makes the guard that keeps serve's keys sealed whenever
// the host's posture fails the policy: it reads the policy anew at each
// check (edit the policy file, send SIGHUP), seals by wiping every key the
// process holds, and unseals by opening the keyring again without a
// person (an unlocked session, --passphrase-file or HOLDFAST_PASSPHRASE).
// Its first check runs here, with the keys serve has just opened.
func (e *env) postureGuard(r *repo.Repo, tbl *access.Table, be *gateway.Backend, f serveFlags, log *slog.Logger) (*posture.Guard, error) {
	if f.postureEvery < 0 {
		return nil, usagef("--posture-interval must not be negative")
	}
	sealer := &gateway.Sealer{Repo: r, Access: tbl, Backend: be, Reopen: e.reopenKeyring(r.Home), Log: log}
	g := &posture.Guard{
		Load: func() (*posture.Policy, error) {
			p, _, err := e.loadPolicy()
			return p, err
		},
		BeginSeal: func(reason error) {
			log.Warn("posture check failed: sealing the keys; requests in flight are stopped", "reason", reason.Error())
		},
		Hup: func(err error) {
			if err != nil {
				log.Warn("posture re-checked on SIGHUP: keys stay sealed", "reason", err.Error())
				return
			}
			log.Info("posture re-checked on SIGHUP: the policy is met")
		},
		Seal:     sealer.Seal,
		Unseal:   sealer.Unseal,
		Interval: f.postureEvery,
		Notify: func(v posture.Verdict) {
			if len(v.Warned) > 0 {
				log.Warn("posture below what the policy recommends; 'holdfast posture' says why", "policy", v.Policy, "checks", judgedList(v.Warned))
			}
		},
	}
	be.UseGuard(g)
	if err := g.Recheck(); err != nil {
		return nil, codeError{exitPosture, err}
	}
	return g, nil
}

// reopenKeyring opens the home's key source again without asking anyone:
// a PKCS#11 token with the PIN from --pin-file or HOLDFAST_PKCS11_PIN; a
// key server with the home's client certificate; a keyring from the session, else from the passphrase file or environment
// serve was started with. A terminal prompt is never shown: nobody may be
// there.
//
// A PIN the token refused is not tried again until it may have changed
// (the PIN file was written since; a PIN from the environment never
// changes): a token locks its user PIN after a few wrong ones, and the
// posture check retries an unseal every interval.
func (e *env) reopenKeyring(home string) func() (repo.RootKeys, error) {
	var refused *pinStamp // the PIN the token last refused, if it did
	return func() (repo.RootKeys, error) {
		if ks, err := repo.LoadKeySource(home); err != nil || ks != nil {
			if err != nil {
				return nil, err
			}
			// A key server needs no secret here: its client certificate
			// is in the home.
			if ks.Type == repo.KeySourceKeyServer {
				return e.openKeySource(home)
			}
			if _, ok := secret.LookupEnv(hsm.PINEnv); !ok && e.pinFile == "" {
				return nil, errors.New("no PIN file (--pin-file) or " + hsm.PINEnv + " to open the PKCS#11 token with")
			}
			stamp := stampPIN(e.pinFile)
			if refused != nil && stamp == *refused {
				where := hsm.PINEnv
				if e.pinFile != "" {
					where = e.pinFile
				}
				return nil, fmt.Errorf("%w: the token refused the PIN from %s before, and it is not tried again until it changes (a token locks its PIN after a few wrong ones)",
					hsm.ErrWrongPIN, where)
			}
			src, err := e.openKeySource(home)
			if errors.Is(err, hsm.ErrWrongPIN) {
				refused = &stamp
			}
			return src, err
		}
		path := repo.KeyringPath(home)
		if kr, err := keyring.OpenSession(path); err == nil {
			return kr, nil
		}
		if _, ok := secret.LookupEnv(keyring.PassphraseEnv); !ok && e.passFile == "" {
			return nil, errors.New("no unlocked session (holdfast unlock), passphrase file or " + keyring.PassphraseEnv + " to open the keyring with")
		}
		pass, err := keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile})
		if err != nil {
			return nil, err
		}
		defer clear(pass)
		return keyring.Open(path, pass)
	}
}

// pinStamp identifies a PIN's source as it was when read: the PIN file's
// identity, size and change times (zero for the environment, which does
// not change while the process runs). It holds nothing of the PIN.
type pinStamp struct {
	dev, ino, size     uint64
	mtimeNs, ctimeNs   int64
	fromFile, statFail bool
}

func stampPIN(file string) pinStamp {
	if file == "" {
		return pinStamp{}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		return pinStamp{fromFile: true, statFail: true}
	}
	return pinStamp{dev: uint64(st.Dev), ino: st.Ino, size: uint64(st.Size), mtimeNs: st.Mtim.Nano(),
		ctimeNs: st.Ctim.Nano(), fromFile: true}
}

// validDomain reports whether d is a DNS name of two or more labels
// (letters, digits and hyphens; no label starting or ending with one).
func validDomain(d string) bool {
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// hostOf returns the host of addr for the certificate's names, unless it
// is a wildcard.
func hostOf(addr string) []string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil || h == "" || h == "0.0.0.0" || h == "::" {
		return nil
	}
	return []string{h}
}

// printServing prints what a newcomer needs to use the endpoint.
func (e *env) printServing(addr, ops net.Addr, f serveFlags, certPath, fingerprint string, first *access.Credentials) {
	scheme := "https"
	if f.insecureHTTP {
		scheme = "http"
	}
	url := fmt.Sprintf("%s://%s", scheme, addr)
	w := e.stdout
	fmt.Fprintf(w, "holdfast serve: S3 endpoint %s", url)
	if fingerprint != "" {
		fmt.Fprintf(w, " (TLS 1.3; certificate SHA-256 %s)", fingerprint)
	}
	fmt.Fprintln(w)
	if f.virtualDomain != "" {
		_, port, _ := net.SplitHostPort(addr.String())
		fmt.Fprintf(w, "  virtual-hosted style: %s://BUCKET.%s:%s (path style too)\n", scheme, f.virtualDomain, port)
	}
	if ops != nil {
		fmt.Fprintf(w, "  health and metrics: http://%s/healthz /readyz /metrics\n", ops)
	}
	if first != nil {
		fmt.Fprintf(w, "  created the first access key, \"default\" (admin); its secret is shown only now:\n")
		fmt.Fprintf(w, "    export AWS_ACCESS_KEY_ID=%s\n", first.ID)
		fmt.Fprintf(w, "    export AWS_SECRET_ACCESS_KEY=%s\n", first.Secret())
	} else {
		fmt.Fprintf(w, "  access keys: holdfast access add NAME --admin (or --bucket B:PERMS) / list / revoke (each client needs one)\n")
	}
	if certPath != "" {
		fmt.Fprintf(w, "    export AWS_CA_BUNDLE=%s\n", certPath)
	}
	// The AWS CLI without a configured region asks for bucket location
	// "aws-global", which a gateway in another region refuses.
	fmt.Fprintf(w, "    export AWS_DEFAULT_REGION=%s\n", f.region)
	fmt.Fprintf(w, "    aws --endpoint-url %s s3 mb s3://my-bucket\n", url)
	fmt.Fprintf(w, "  stop with Ctrl-C (in-flight requests finish first)\n")
}
