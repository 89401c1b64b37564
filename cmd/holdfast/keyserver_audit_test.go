package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/keys/remote"
)

// auditLog is the key server's audit log, as 'audit show --dir --json'
// prints it.
func auditLog(t *testing.T, k *ksEnv, ks string) []audit.Entry {
	t.Helper()
	var es []audit.Entry
	if err := json.Unmarshal([]byte(k.ok("--json", "audit", "show", "--dir", ks)), &es); err != nil {
		t.Fatalf("audit show --dir --json: %v", err)
	}
	return es
}

// testKeyServerAuditAfterRestart: two server processes appended to one
// audit log at once during the graceful restart (each queues, and waits
// for, its own appends; the flock serialises them and each append
// re-reads the state under it): the log verifies, against the server's
// off-box copy and the joined home's copy, and holds both starts and the
// old process's stop.
func testKeyServerAuditAfterRestart(t *testing.T, k *ksEnv, ks string) {
	home := filepath.Join(k.dir, "home")
	out := k.ok("audit", "verify", "--dir", ks, "--checkpoints", filepath.Join(home, remote.CheckpointFileName))
	if !strings.Contains(out, "intact") || !strings.Contains(out, "checkpoint copy "+filepath.Join(home, remote.CheckpointFileName)) {
		t.Fatalf("audit verify --dir after the restart:\n%s", out)
	}
	n := map[string]int{}
	for _, e := range auditLog(t, k, ks) {
		n[e.Op]++
	}
	if n["keyserver-start"] < 2 || n["keyserver-stop"] < 1 || n["release"] < 12 {
		t.Fatalf("the audit log after a graceful restart: %v", n)
	}
}

// TestKeyServerAudit: the key server keeps the audit log of every key
// operation; a joined home keeps the checkpoints the server hands out,
// byte for byte the log's; `audit verify --dir` finds an edited,
// deleted or swapped entry (naming the first bad one) and a cut tail
// (naming the checkpoint it cannot reach). A tail cut together with the
// server's off-box copy is found only with the client's copy: verify
// without it (the control) says intact.
func TestKeyServerAudit(t *testing.T) {
	k := newKSEnv(t)
	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	cli := filepath.Join(k.dir, "cli")
	k.ok("keyserver", "enroll", "cli", "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", cli)
	p := k.serve(ks, "127.0.0.1:0", "--audit-checkpoint-every", "3")
	k.ok("keyserver", "join", "--url", p.url, "--client-dir", cli)
	src := filepath.Join(k.dir, "data.bin")
	os.WriteFile(src, []byte("audited bytes"), 0o600)
	for i := range 4 {
		k.ok("put", src, fmt.Sprintf("bkt/o%d", i))
		k.ok("get", fmt.Sprintf("bkt/o%d", i), filepath.Join(k.dir, "got.bin"))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("keyserver serve on SIGTERM: %v", err)
	}

	logPath := filepath.Join(ks, "audit", audit.LogName)
	offBox := audit.DefaultCheckpoints(ks)
	clientCopy := filepath.Join(k.dir, "home", remote.CheckpointFileName)
	logBytes, _ := os.ReadFile(logPath)
	offBytes, _ := os.ReadFile(offBox)
	lines := strings.SplitAfter(string(logBytes), "\n")
	lines = lines[:len(lines)-1] // after the last newline: ""
	inLog := map[string]int{}    // line → its seq
	for i, l := range lines {
		inLog[strings.TrimSuffix(l, "\n")] = i
	}

	// The home's copy: several checkpoints, each a line of the log.
	cb, err := os.ReadFile(clientCopy)
	if err != nil {
		t.Fatalf("the joined home kept no checkpoint: %v", err)
	}
	clientLines := strings.Split(strings.TrimSpace(string(cb)), "\n")
	if len(clientLines) < 3 {
		t.Fatalf("the joined home kept %d checkpoints", len(clientLines))
	}
	clientNewest := 0
	for _, l := range clientLines {
		seq, ok := inLog[l]
		if !ok || !strings.Contains(l, `"kind":"checkpoint"`) {
			t.Fatalf("a client checkpoint is not a log line: %q", l)
		}
		clientNewest = max(clientNewest, seq)
	}
	if fi, _ := os.Stat(clientCopy); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the client copy's mode: %v", fi.Mode())
	}

	// The control: intact, with the off-box copy and the client's.
	out := k.ok("audit", "verify", "--dir", ks, "--checkpoints", clientCopy)
	if !strings.Contains(out, "intact") {
		t.Fatalf("audit verify --dir: %s", out)
	}
	es := auditLog(t, k, ks)
	ops := map[string]int{}
	for _, e := range es {
		ops[string(e.Kind)+"/"+e.Op]++
	}
	if ops["key/release"] < 4 || ops["key/make"] < 1 || ops["key/enroll"] != 1 || ops["key/keyserver-init"] != 1 || ops["key/keyserver-stop"] != 1 {
		t.Fatalf("the audit log's entries: %v", ops)
	}
	if show := k.ok("audit", "show", "--dir", ks, "--since", "1h"); !strings.Contains(show, "release") {
		t.Fatalf("audit show --dir: %s", show)
	}

	// A release entry to tamper with, not the first nor the last line.
	at := -1
	for i, l := range lines[:len(lines)-2] {
		if strings.Contains(l, `"op":"release"`) {
			at = i
			break
		}
	}
	if at < 1 {
		t.Fatal("no release entry in the log")
	}
	write := func(ls []string, cp []string) {
		t.Helper()
		if err := os.WriteFile(logPath, []byte(strings.Join(ls, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		if cp != nil {
			if err := os.WriteFile(offBox, []byte(strings.Join(cp, "")), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	restore := func() {
		os.WriteFile(logPath, logBytes, 0o600)
		os.WriteFile(offBox, offBytes, 0o600)
	}
	damaged := func(want string, args ...string) string {
		t.Helper()
		code, out, errs := k.run(nil, append([]string{"audit", "verify", "--dir", ks}, args...)...)
		if code != exitDamaged || !strings.Contains(errs, want) {
			t.Fatalf("verify: exit %d, want %d naming %q:\n%s%s", code, exitDamaged, want, out, errs)
		}
		return errs
	}
	line := fmt.Sprintf("the first bad entry is line %d (seq %d)", at+1, at)

	edited := append([]string{}, lines...)
	edited[at] = strings.Replace(edited[at], `"actor":"cli"`, `"actor":"cl1"`, 1)
	if edited[at] == lines[at] {
		t.Fatalf("the release entry names no actor cli: %s", lines[at])
	}
	write(edited, nil)
	damaged(line + ": the MAC does not match")
	restore()

	deleted := append(append([]string{}, lines[:at]...), lines[at+1:]...)
	write(deleted, nil)
	damaged(line + fmt.Sprintf(": seq %d where %d belongs", at+1, at))
	restore()

	swapped := append([]string{}, lines...)
	swapped[at], swapped[at+1] = swapped[at+1], swapped[at]
	write(swapped, nil)
	damaged(line + fmt.Sprintf(": seq %d where %d belongs", at+1, at))
	restore()

	// The tail cut before the client's newest checkpoint: the off-box
	// copy names the newest it cannot reach.
	cut := -1 // the last checkpoint line before the client's newest
	for i := clientNewest - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"kind":"checkpoint"`) {
			cut = i
			break
		}
	}
	write(lines[:cut+1], nil)
	damaged("the log does not reach checkpoint seq")
	damaged(offBox + " line")
	restore()

	// The tail and the off-box copy cut together (an intruder with the
	// server's disk): without a client's copy, nothing shows (exit 0);
	// with it, the checkpoint it holds past the cut is named, in its file.
	var offCut []string
	for _, l := range strings.SplitAfter(string(offBytes), "\n") {
		seq, ok := audit.ParseCheckpoint([]byte(strings.TrimSuffix(l, "\n")))
		if l != "" && (!ok || int(seq) <= cut) {
			offCut = append(offCut, l)
		}
	}
	write(lines[:cut+1], offCut)
	if out := k.ok("audit", "verify", "--dir", ks); !strings.Contains(out, "intact") {
		t.Fatalf("the control, without a client's copy: %s", out)
	}
	errs := damaged(fmt.Sprintf("the log does not reach checkpoint seq %d (%s line", clientNewest, clientCopy), "--checkpoints", clientCopy)
	if !strings.Contains(errs, "its tail was cut") {
		t.Fatalf("the cut is not named as one: %s", errs)
	}
	restore()
	k.ok("audit", "verify", "--dir", ks, "--checkpoints", clientCopy)
}
