// Command holdfast keeps data in untrusted object storage: encrypted on
// premises, authenticated on every read. See README.md and docs/cli.md.
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/hsm"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
	"github.com/holdfast/holdfast/internal/secret"
)

func main() {
	takeSecretsFromEnv()
	// Every key is wiped before the process ends, on a signal too (wipe.go).
	os.Exit(wipingKeys(func() int { return Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, nil) }))
}

// takeSecretsFromEnv keeps the secrets given in the environment in memory
// and takes them out of it, so that no process holdfast starts inherits
// them (an AWS credential_process, say): secret.CaptureEnv.
func takeSecretsFromEnv() {
	secret.CaptureEnv(keyring.PassphraseEnv, hsm.PINEnv, NewPassphraseEnv)
}

// env is what every command shares.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	home           string
	passFile       string
	pinFile        string // --pin-file: the PKCS#11 token's PIN (keys.go)
	policy         string // --policy: a profile name or a policy file (policy.go)
	jsonOut        bool
	quiet          bool
	hooks          *repo.Hooks
}

// Main runs the CLI and returns its exit code. hooks are test hooks; the
// real binary passes nil.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, hooks *repo.Hooks) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one ends the process at once.
		<-ctx.Done()
		stop()
	}()
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, hooks: hooks}
	warnSpreadTo(stderr) // stores.go
	root := &cobra.Command{
		Use:           "holdfast",
		Short:         "Zero-knowledge storage in untrusted clouds",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usagef("%v", err) })
	pf := root.PersistentFlags()
	pf.StringVar(&e.home, "home", "", "home directory (config, keyring, catalog); default $HOLDFAST_HOME or ~/.config/holdfast")
	pf.StringVar(&e.passFile, "passphrase-file", "", "read the passphrase from the first line of this file (mode 0600)")
	pf.StringVar(&e.pinFile, "pin-file", "", "read the PKCS#11 token PIN from the first line of this file (mode 0600)")
	pf.StringVar(&e.policy, "policy", "", "posture policy: baseline, confidential or a policy file; default $HOLDFAST_POLICY, HOME/policy, baseline")
	pf.BoolVar(&e.jsonOut, "json", false, "print results as JSON")
	pf.BoolVarP(&e.quiet, "quiet", "q", false, "no progress output")
	root.AddCommand(
		e.initCmd(), e.putCmd(), e.getCmd(), e.catCmd(), e.lsCmd(), e.rmCmd(), e.rbCmd(), e.statCmd(),
		e.verifyCmd(), e.recoverCmd(), e.syncCmd(), e.backupCmd(), e.postureCmd(),
		e.unlockCmd(), e.lockCmd(),
		e.accessCmd(),
		e.serveCmd(),
		e.storesCmd(), e.repairCmd(), // stores.go
		e.keysCmd(),  // keys.go
		e.shredCmd(), // keyslife.go
		e.auditCmd(),
		e.keyserverCmd(), // keyserver.go
	)
	err := root.ExecuteContext(ctx)
	if err != nil && isCobraUsage(err) {
		err = usagef("%v", err)
	}
	return report(stderr, err)
}

const version = "0.1.0"

func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d: usage: %s", c.Name(), n, len(args), c.UseLine())
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("usage: %s", c.UseLine())
		}
		return nil
	}
}

// isCobraUsage recognises cobra's own argument errors (unknown command).
func isCobraUsage(err error) bool {
	var ue usageError
	var ce codeError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return false
	}
	// Cobra's own messages start so; an error of ours may contain the
	// words anywhere ("the policy requires …").
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires "} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}
