package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/harden"
	"github.com/holdfast/holdfast/internal/posture"
)

// hardenForKeys applies process hardening before a command reads a
// passphrase or touches a key, and refuses (exit 7) while traced. A
// measure that did not take effect is a warning, not a refusal, until the
// policy file decides (docs/in-process.md).
func (e *env) hardenForKeys() error {
	r := harden.Apply()
	if err := r.Refusal(); err != nil {
		return err
	}
	if !r.InEffect() {
		warnf(e.stderr, "process hardening incomplete: %s", r.Missing())
	}
	return nil
}

func (e *env) postureCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "posture",
		Short: "Report the host's security posture for keys and plaintext in memory",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			hr := harden.Apply()
			rep := posture.Run(posture.Options{Hardening: &hr})
			failed := rep.Failed()
			if e.jsonOut {
				if err := printJSON(e.stdout, struct {
					posture.Report
					Failed []string `json:"failed"`
				}{rep, append([]string{}, failed...)}); err != nil {
					return err
				}
			} else {
				for _, ch := range rep.Checks {
					fmt.Fprintf(e.stdout, "%-8s %-19s %s\n", ch.Status, ch.Name, ch.Detail)
				}
			}
			if len(failed) > 0 {
				if e.jsonOut {
					return codeError{code: exitPosture}
				}
				return codeError{exitPosture, fmt.Errorf("posture: failed: %s", strings.Join(failed, ", "))}
			}
			return nil
		},
	}
}
