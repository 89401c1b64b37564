// Package posture reads the host's security posture for data in process:
// CPU features, hypervisor and confidential-VM type, swap, hibernation,
// core dumps, kdump, kernel lockdown, ptrace scope, CPU vulnerability
// mitigations and this process's own hardening (package harden).
//
// Every check has a stable name (the Check* constants) and one of the
// statuses pass, warn, fail, unknown or info. Checks read files only, all
// under a configurable root (Options.Root), so tests feed a crafted tree.
// The package never changes the host, never runs external programs and
// never decides whether keys may be used: that belongs to the policy,
// which is not built yet (docs/in-process.md).
package posture
