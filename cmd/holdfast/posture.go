package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/harden"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/repo"
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

// watchPosture keeps applying the posture policy while a long command
// (sync) runs, as serve does: every posture.DefaultInterval and on every
// SIGHUP, with the policy read anew. When a required check fails it stops
// the command — it cancels the returned context and wipes the
// repository's keys — and done then returns the failure as exit 8, naming
// the check. What was done before stays done: a sync run again carries on.
// done must be called when the command ends.
func (e *env) watchPosture(ctx context.Context, r *repo.Repo) (_ context.Context, done func() error) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &posture.Guard{
		Load: func() (*posture.Policy, error) {
			p, _, err := e.loadPolicy()
			return p, err
		},
		Seal: func(reason error) {
			cancel(&posture.SealedError{Reason: reason})
			r.SealKeys()
		},
		Hup: func(err error) {
			if e.hooks != nil && e.hooks.PostureChecked != nil {
				e.hooks.PostureChecked(err)
			}
		},
	}
	// The command's keys are open: the policy passed when they were
	// unsealed (hardenForKeys), so this first check opens the guard.
	if err := g.Recheck(); err != nil {
		cancel(err)
		return ctx, func() error { return codeError{exitPosture, err} }
	}
	release := takeSIGHUP() // a re-check, not the end of the process
	g.Go(ctx)
	return ctx, func() error {
		cause := context.Cause(ctx)
		cancel(nil)
		release()
		var se *posture.SealedError
		if errors.As(cause, &se) {
			return codeError{exitPosture, fmt.Errorf("stopped: %w; what was done before stays done, run it again once the posture passes", se)}
		}
		return nil
	}
}
