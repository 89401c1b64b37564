package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/repo"
)

// openOptions hardens the process and returns what repo.Open needs: the
// keyring of an unlocked session if there is one (no passphrase, no key
// derivation), else the passphrase. The caller clears o.Passphrase.
func (e *env) openOptions() (repo.OpenOptions, error) {
	if err := e.hardenForKeys(); err != nil {
		return repo.OpenOptions{}, err
	}
	home, err := e.homeDir()
	if err != nil {
		return repo.OpenOptions{}, err
	}
	o := repo.OpenOptions{Home: home, Hooks: e.hooks}
	// A root key in a PKCS#11 token opens with the token's PIN (keys.go).
	if src, err := e.openKeySource(home); err != nil {
		return repo.OpenOptions{}, err
	} else if src != nil {
		o.Keys = src
		return o, nil
	}
	// Any failure here (no session, an unreadable keyring) falls through
	// to the passphrase, whose path reports the keyring's own errors.
	if kr, err := keyring.OpenSession(repo.KeyringPath(home)); err == nil {
		o.Keyring = kr
		return o, nil
	}
	if o.Passphrase, err = keyring.ReadPassphrase(keyring.PassphraseOptions{File: e.passFile}); err != nil {
		return repo.OpenOptions{}, err
	}
	return o, nil
}

const defaultSession = 15 * time.Minute

func (e *env) unlockCmd() *cobra.Command {
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "unlock [--for DURATION]",
		Short: "Derive the keyring key once and keep it in the kernel for this session",
		Long: `unlock asks for the passphrase, derives the keyring's file key (Argon2id) and
keeps that key in the kernel's key retention service for --for (default 15m,
at most 24h). Until then, or until 'holdfast lock', commands run in this
login session open the keyring without asking for the passphrase and without
the derivation. The key stays in kernel memory, usable by processes of this
login session — or, for processes outside any login session (cron, most
containers), by every such process of the same user; the keyring file is
still needed. See docs/cli.md.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if ttl < time.Second || ttl > keyring.MaxSession {
				return usagef("--for must be between 1s and %s, not %s", keyring.MaxSession, ttl)
			}
			home, pass, err := e.homeAndPassphrase(false)
			if err != nil {
				return err
			}
			kr, err := keyring.Open(repo.KeyringPath(home), pass)
			clear(pass)
			if err != nil {
				return err
			}
			defer kr.Close()
			until := time.Now().Add(ttl).Truncate(time.Second)
			if err := kr.Unlock(ttl); err != nil {
				return err
			}
			if e.jsonOut {
				return printJSON(e.stdout, map[string]any{"unlocked": true, "until": until.UTC().Format(time.RFC3339), "seconds": int(ttl.Round(time.Second) / time.Second)})
			}
			if !e.quiet {
				fmt.Fprintf(e.stdout, "unlocked until %s (%s); 'holdfast lock' ends the session now\n", until.Format("15:04:05"), ttl)
			}
			return nil
		},
	}
	c.Flags().DurationVar(&ttl, "for", defaultSession, "how long the session lasts (1s to 24h)")
	return c
}

func (e *env) lockCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lock",
		Short: "End the unlocked session: destroy the keyring key kept in the kernel",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			home, err := e.homeDir()
			if err != nil {
				return err
			}
			had, err := keyring.Lock(repo.KeyringPath(home))
			if err != nil {
				return err
			}
			if e.jsonOut {
				return printJSON(e.stdout, map[string]bool{"locked": had})
			}
			if !e.quiet {
				if had {
					fmt.Fprintln(e.stdout, "locked: the session's key is destroyed")
				} else {
					fmt.Fprintln(e.stdout, "no unlocked session")
				}
			}
			return nil
		},
	}
}
