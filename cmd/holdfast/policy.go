package main

// The posture policy in force (docs/in-process.md, "Policy") and the gate
// that keeps keyed commands from unsealing keys where it is not met.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/holdfast/holdfast/internal/harden"
	"github.com/holdfast/holdfast/internal/posture"
)

// policyEnv names a profile or policy file when --policy is not given.
const policyEnv = "HOLDFAST_POLICY"

// loadPolicy returns the policy in force and where it came from: --policy,
// else $HOLDFAST_POLICY, else the file HOME/policy if it exists, else the
// baseline profile. A policy that cannot be loaded, or a file that
// someone other than this user or root could change, is exit 2.
func (e *env) loadPolicy() (*posture.Policy, string, error) {
	arg, from := e.policy, "from --policy"
	if arg == "" {
		arg, from = os.Getenv(policyEnv), "from "+policyEnv
	}
	if arg == "" {
		if home, err := e.homeDir(); err == nil { // no home: no home policy
			f := filepath.Join(home, "policy") // absolute: never taken for a profile name
			// Lstat: a link to a missing file is a policy that cannot be
			// loaded, not a reason to fall back to baseline.
			if _, err := os.Lstat(f); !errors.Is(err, fs.ErrNotExist) {
				arg, from = f, "from the home directory"
			}
		}
	}
	if arg == "" {
		arg, from = posture.ProfileBaseline, "the default"
	}
	p, err := posture.Load(arg)
	if err != nil {
		return nil, "", codeError{exitUsage, err}
	}
	return p, from, nil
}

// policyGate judges this host's posture (hr is this process's hardening)
// by the policy in force, before any passphrase is read or keyring opened.
// A required check that does not pass refuses the command (exit 8, naming
// the check and the fix); warn-level checks that do not pass are one
// warning line.
func (e *env) policyGate(hr *harden.Report) error {
	p, _, err := e.loadPolicy()
	if err != nil {
		return err
	}
	v := p.Evaluate(posture.Run(posture.Options{Hardening: hr}))
	if err := v.Err(); err != nil {
		return codeError{exitPosture, err}
	}
	if len(v.Warned) > 0 {
		warnf(e.stderr, "posture below what policy %q recommends: %s; 'holdfast posture' says why", v.Policy, judgedList(v.Warned))
	}
	return nil
}

// judgedList is "name (value), …" with the status for an empty value.
func judgedList(js []posture.Judged) string {
	var s []string
	for _, j := range js {
		v := j.Value
		if v == "" || j.Status == posture.Unknown {
			v = string(j.Status)
		}
		s = append(s, fmt.Sprintf("%s (%s)", j.Name, v))
	}
	return strings.Join(s, ", ")
}

// judgedNames is the names of js, never nil (for JSON).
func judgedNames(js []posture.Judged) []string {
	s := []string{}
	for _, j := range js {
		s = append(s, j.Name)
	}
	return s
}

// postureOut is `holdfast posture --json`.
type postureOut struct {
	Checks       []posture.Judged `json:"checks"`
	Failed       []string         `json:"failed"` // checks whose status is fail
	Policy       string           `json:"policy"`
	PolicySource string           `json:"policy_source"`
	Verdict      string           `json:"verdict"` // pass: every require met
	Unmet        []string         `json:"unmet"`   // required checks that did not pass
	Warned       []string         `json:"warned"`  // warn-level checks that did not pass
	Error        string           `json:"error,omitempty"`
}

// printPosture prints a judged report and returns the exit status:
// exit 8 when a required check did not pass.
func (e *env) printPosture(rep posture.Report, v posture.Verdict, from string) error {
	verr := v.Err()
	verdict := map[bool]string{true: "pass", false: "fail"}[v.Pass()]
	if e.jsonOut {
		out := postureOut{
			Checks: v.Checks, Failed: append([]string{}, rep.Failed()...), Policy: v.Policy, PolicySource: from,
			Verdict: verdict, Unmet: judgedNames(v.Unmet), Warned: judgedNames(v.Warned),
		}
		if verr != nil {
			out.Error = verr.Error()
		}
		if err := printJSON(e.stdout, out); err != nil {
			return err
		}
		if verr != nil {
			return codeError{code: exitPosture}
		}
		return nil
	}
	for _, j := range v.Checks {
		fmt.Fprintf(e.stdout, "%-8s %-8s %-19s %s\n", j.Status, j.Level, j.Name, j.Detail)
	}
	line := fmt.Sprintf("policy %q (%s): %s", v.Policy, from, verdict)
	if len(v.Unmet) > 0 {
		line += "; unmet: " + strings.Join(judgedNames(v.Unmet), ", ")
	}
	if len(v.Warned) > 0 {
		line += "; warn: " + strings.Join(judgedNames(v.Warned), ", ")
	}
	fmt.Fprintln(e.stdout, line)
	if verr != nil {
		return codeError{exitPosture, verr}
	}
	return nil
}
