// Package posture reads the host's security posture for data in process:
// CPU features, hypervisor and confidential-VM type, swap, hibernation,
// core dumps, kdump, kernel lockdown, ptrace scope, CPU vulnerability
// mitigations and this process's own hardening (package harden).
//
// Every check has a stable name (the Check* constants) and one of the
// statuses pass, warn, fail, unknown or info. Checks read files only, all
// under a configurable root (Options.Root), so tests feed a crafted tree.
//
// A Policy (a built-in profile, or a policy file read by Parse) gives each
// check a level — require, warn, info or ignore — and judges a Report: keys
// may be unsealed only when every required check passes. A Guard re-checks
// for a long-running process, every interval and on SIGHUP, and seals and
// unseals its keys through callbacks. See docs/in-process.md.
//
// The package never changes the host (ReadHost re-applies this process's
// own hardening, package harden), never runs external programs, never
// holds key material and never prints or exits: callers act on verdicts.
package posture
