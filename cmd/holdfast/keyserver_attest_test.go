package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/attest"
	"github.com/holdfast/holdfast/internal/attest/attesttest"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keys/remote"
	"github.com/holdfast/holdfast/internal/keyserver"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/secret"
)

// TestKeyServerAttestationShippedRoots: the real `holdfast keyserver
// serve` (this test binary run as holdfast, whose key server code has no
// test hook: SetAttestationRootsForTest lives in a _test.go file of
// internal/keyserver) refuses a report signed by go-sev-guest's test-only
// chain as an untrusted signer, and logs it. The control: the very same
// kind of evidence verifies under the test chain's root in this process,
// so the refusal is the shipped roots' doing, not broken evidence.
func TestKeyServerAttestationShippedRoots(t *testing.T) {
	k := newKSEnv(t)
	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	cvm := filepath.Join(k.dir, "cvm")
	k.ok("keyserver", "enroll", "cvm", "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", cvm)
	m := attesttest.Measurement(0x11)
	pol := keyserver.ReleasePolicy{Version: 1, Clients: map[string]keyserver.ReleaseRule{
		"cvm": {Attestation: &attest.Rule{Type: attest.TypeSEVSNP, Measurements: []attest.HexBytes{m}}}}}
	b, _ := json.Marshal(pol)
	if err := os.WriteFile(filepath.Join(ks, keyserver.ReleasePolicyFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := k.serve(ks, "127.0.0.1:0")
	chain, err := attesttest.DefaultChain()
	if err != nil {
		t.Fatal(err)
	}

	// Control: evidence from the test chain, bound to this client's key,
	// verifies under the test chain's root.
	cert, err := tls.LoadX509KeyPair(filepath.Join(cvm, keyserver.BundleCert), filepath.Join(cvm, keyserver.BundleKey))
	if err != nil {
		t.Fatal(err)
	}
	n := &attest.Nonces{}
	nonce, _, _ := n.Issue("cvm")
	r, err := chain.Report(attest.ReportData(nonce, cert.Leaf.RawSubjectPublicKeyInfo), m, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.Verify(n, &attest.Evidence{Type: attest.TypeSEVSNP, Nonce: nonce, Report: r},
		attest.Check{Rule: *pol.Clients["cvm"].Attestation, Owner: "cvm", SPKI: cert.Leaf.RawSubjectPublicKeyInfo, Roots: chain.Roots()}); err != nil {
		t.Fatalf("control: test-chain evidence under the test root: %v", err)
	}

	c := bundle(cvm)
	c.URL = p.url
	c.Posture = func() posture.Report { return posture.Report{} }
	c.Attester = &attesttest.SNP{Chain: chain, Measurement: m}
	src, err := remote.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	kk, _ := secret.New()
	defer kk.Wipe()
	ad := keys.AD{Purpose: keys.PurposeBucketKey, Repo: src.Repo(), Bucket: keys.ID{1}, KEKVersion: 1, KeyVersion: 1}
	w, err := src.Wrap(context.Background(), 1, ad, kk)
	if err != nil {
		t.Fatal(err)
	}
	before := len(refusals(t, ks))
	_, err = src.Unwrap(context.Background(), w, ad)
	if !errors.Is(err, remote.ErrRefused) || !strings.Contains(err.Error(), "attestation untrusted-signer") {
		t.Fatalf("test-chain evidence at the shipped key server: %v", err)
	}
	rs := refusals(t, ks)
	if len(rs) != before+1 || !strings.HasPrefix(rs[len(rs)-1], "attestation: ") || !strings.Contains(rs[len(rs)-1], "untrusted-signer") {
		t.Fatalf("refusal not logged: %q", rs[before:])
	}
}

// TestKeyServerPostureCLI: a joined home's commands send this host's
// posture; a release policy requiring what this host lacks (a confidential
// VM) makes `holdfast get` fail with the reason, and the refusal is in the
// key server's log. The control: the same get before the policy.
func TestKeyServerPostureCLI(t *testing.T) {
	if r := posture.ReadHost(); func() bool { c, _ := r.Get(posture.CheckCVMType); return c.Status == posture.Pass }() {
		t.Fatal("this host is a confidential VM: the test needs a requirement it fails; change it")
	}
	k := newKSEnv(t)
	ks := filepath.Join(k.dir, "ks")
	k.ok("keyserver", "init", "--dir", ks, "--host", "127.0.0.1")
	cli := filepath.Join(k.dir, "cli")
	k.ok("keyserver", "enroll", "cli", "--dir", ks, "--bucket", "*", "--ops", "wrap,unwrap,data", "--out", cli)
	p := k.serve(ks, "127.0.0.1:0")
	k.ok("keyserver", "join", "--url", p.url, "--client-dir", cli)
	src := filepath.Join(k.dir, "data.bin")
	os.WriteFile(src, []byte("posture-gated bytes"), 0o600)
	k.ok("put", src, "bkt/obj")
	k.ok("get", "bkt/obj", filepath.Join(k.dir, "control.bin"))

	b, _ := json.Marshal(keyserver.ReleasePolicy{Version: 1, Clients: map[string]keyserver.ReleaseRule{
		"cli": {Posture: &keyserver.PostureRule{Require: []string{posture.CheckCVMType}}}}})
	if err := os.WriteFile(filepath.Join(ks, keyserver.ReleasePolicyFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(refusals(t, ks))
	code, _, errs := k.run(nil, "get", "bkt/obj", filepath.Join(k.dir, "refused.bin"))
	if code != exitKey || !strings.Contains(errs, "cvm.type") || !strings.Contains(errs, "refused by the key server") {
		t.Fatalf("get on a host failing the release policy: exit %d\n%s", code, errs)
	}
	rs := refusals(t, ks)
	if len(rs) <= before || !strings.HasPrefix(rs[len(rs)-1], "posture: ") || !strings.Contains(rs[len(rs)-1], `client "cli"`) {
		t.Fatalf("refusal not logged: %q", rs[before:])
	}
	if _, err := os.Stat(filepath.Join(k.dir, "refused.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused get left an output file: %v", err)
	}
}
