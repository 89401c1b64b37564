package main

import (
	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/harden"
	"github.com/holdfast/holdfast/internal/posture"
)

// hardenForKeys applies process hardening before a command reads a
// passphrase or touches a key, refuses (exit 7) while traced, then applies
// the posture policy (policy.go): exit 8 when a required check fails.
func (e *env) hardenForKeys() error {
	r := harden.Apply()
	if err := r.Refusal(); err != nil {
		return err
	}
	return e.policyGate(&r)
}

func (e *env) postureCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "posture",
		Short: "Report the host's security posture for keys and plaintext in memory, judged by the policy",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			pol, from, err := e.loadPolicy()
			if err != nil {
				return err
			}
			hr := harden.Apply()
			rep := posture.Run(posture.Options{Hardening: &hr})
			return e.printPosture(rep, pol.Evaluate(rep), from)
		},
	}
}
