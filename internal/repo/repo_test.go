package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

var pass = []byte("correct horse battery staple")

func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		os.Exit(crashChild())
	}
	restore := keyring.SetInsecureTestParamsForTesting()
	code := m.Run()
	restore()
	os.Exit(code)
}

type env struct {
	t     testing.TB
	home  string
	store string
	r     *Repo
	hooks *Hooks
}

func newEnv(t testing.TB) *env {
	t.Helper()
	d := t.TempDir()
	e := &env{t: t, home: filepath.Join(d, "home"), store: filepath.Join(d, "store")}
	r, err := Init(context.Background(), InitOptions{Home: e.home, StorePath: e.store, Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	t.Cleanup(func() { e.r.Close() })
	return e
}

// reopen closes and opens the repository again (a new process would).
func (e *env) reopen() {
	e.t.Helper()
	e.r.Close()
	r, err := Open(context.Background(), OpenOptions{Home: e.home, Passphrase: pass, Hooks: e.hooks})
	if err != nil {
		e.t.Fatal(err)
	}
	e.r = r
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (e *env) put(bucket, key string, data []byte) {
	e.t.Helper()
	if _, err := e.r.Put(context.Background(), bucket, key, bytes.NewReader(data), PutOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(bucket, key string) ([]byte, error) {
	ctx := context.Background()
	rd, err := e.r.OpenObject(ctx, bucket, key)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var buf bytes.Buffer
	_, err = rd.WriteTo(ctx, &buf)
	return buf.Bytes(), err
}

func (e *env) mustGet(bucket, key string, want []byte) {
	e.t.Helper()
	got, err := e.get(bucket, key)
	if err != nil {
		e.t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	if !bytes.Equal(got, want) {
		e.t.Fatalf("get %s/%s: %d bytes differ from the %d put", bucket, key, len(got), len(want))
	}
}

// storePath is the file of a store object in the local store.
func (e *env) storePath(name string) string {
	return filepath.Join(e.store, name[:2], name)
}

func (e *env) nameOf(bucket, key string) string {
	ent, err := e.r.Stat(context.Background(), bucket, key)
	if err != nil {
		e.t.Fatal(err)
	}
	return format.StoreName(ent.ObjectID)
}

func (e *env) verify() (VerifySummary, []Finding) {
	e.t.Helper()
	var fs []Finding
	sum, err := e.r.Verify(context.Background(), VerifyOptions{}, func(f Finding) { fs = append(fs, f) })
	if err != nil {
		e.t.Fatal(err)
	}
	return sum, fs
}

func (e *env) mustVerifyClean() {
	e.t.Helper()
	sum, fs := e.verify()
	if sum.Damaged() || len(fs) != 0 {
		e.t.Fatalf("verify not clean: %+v", fs)
	}
}

func TestPutGetSizes(t *testing.T) {
	e := newEnv(t)
	sizes := []int{0, 1, 65535, 65536, 65537, 10 << 20}
	data := map[int][]byte{}
	for _, n := range sizes {
		data[n] = random(n)
		e.put("sizes", fmt.Sprintf("f%d", n), data[n])
	}
	// Multi-segment objects: default segments (10 MiB is 3 segments) and
	// small ones with an uneven tail.
	multi := random(5*65536 + 77)
	if _, err := e.r.Put(context.Background(), "sizes", "multi", bytes.NewReader(multi), PutOptions{Seal: object.SealOptions{SegmentSize: 2 * 65536}}); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	for _, n := range sizes {
		e.mustGet("sizes", fmt.Sprintf("f%d", n), data[n])
	}
	e.mustGet("sizes", "multi", multi)
	ent, _ := e.r.Stat(context.Background(), "sizes", "multi")
	big, _ := e.r.Stat(context.Background(), "sizes", "f10485760")
	if ent.Segments != 3 || big.Segments != 3 {
		t.Fatalf("segments: %d and %d", ent.Segments, big.Segments)
	}
	e.mustVerifyClean()
}

func TestInitRefusals(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// A second init of the same home refuses and changes nothing.
	kr, _ := os.ReadFile(filepath.Join(e.home, KeyringFile))
	_, err := Init(ctx, InitOptions{Home: e.home, StorePath: e.store, Passphrase: pass, KDF: keyring.Calibrate(0)})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	if kr2, _ := os.ReadFile(filepath.Join(e.home, KeyringFile)); !bytes.Equal(kr, kr2) {
		t.Fatal("second init changed the keyring")
	}
	// Another home on a store that holds this repository refuses.
	other := filepath.Join(t.TempDir(), "home2")
	_, err = Init(ctx, InitOptions{Home: other, StorePath: e.store, Passphrase: pass, KDF: keyring.Calibrate(0)})
	if !errors.Is(err, ErrOtherRepository) {
		t.Fatalf("init on a used store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, KeyringFile)); err == nil {
		t.Fatal("refused init left a keyring behind")
	}
	// Control: the same new home on an empty store succeeds.
	r, err := Init(ctx, InitOptions{Home: other, StorePath: filepath.Join(t.TempDir(), "s"), Passphrase: pass, KDF: keyring.Calibrate(0)})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func TestWrongPassphrase(t *testing.T) {
	e := newEnv(t)
	e.put("b12", "k", []byte("x"))
	e.r.Close()
	kp := filepath.Join(e.home, KeyringFile)
	before, _ := os.ReadFile(kp)
	_, err := Open(context.Background(), OpenOptions{Home: e.home, Passphrase: []byte("wrong")})
	if !errors.Is(err, keyring.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if after, _ := os.ReadFile(kp); !bytes.Equal(before, after) {
		t.Fatal("keyring changed")
	}
	e.reopen() // control: the right passphrase opens it
	e.mustGet("b12", "k", []byte("x"))
}

// TestStoreRevealsNothing: no plaintext, no names, sizes only by class.
func TestStoreRevealsNothing(t *testing.T) {
	e := newEnv(t)
	marker := []byte("PLAINTEXT-MARKER-0123456789")
	body := bytes.Repeat(marker, 4000)
	e.put("secret-bucket", "private/folder/report.txt", body)
	e.put("secret-bucket", "private/folder/empty.txt", nil)
	var sizes []int64
	for _, n := range []int{65535, 65536, 65537, 66000, 67000} {
		k := fmt.Sprintf("class/%d", n)
		e.put("secret-bucket", k, random(n))
		ent, _ := e.r.Stat(context.Background(), "secret-bucket", k)
		sizes = append(sizes, ent.StoredLen)
		want := format.ComputeSizes([]uint64{uint64(n)}, 0).Stored
		if uint64(ent.StoredLen) != want {
			t.Fatalf("%d stored as %d, the formula says %d", n, ent.StoredLen, want)
		}
	}
	for _, s := range sizes {
		if s != sizes[0] {
			t.Fatalf("sizes within one class differ: %v", sizes)
		}
	}
	// Metadata does not change the stored size.
	if _, err := e.r.Put(context.Background(), "secret-bucket", "class/meta", bytes.NewReader(random(65537)),
		PutOptions{ContentType: strings.Repeat("t", 250), Meta: map[string]string{"x-note": strings.Repeat("m", 2000)}}); err != nil {
		t.Fatal(err)
	}
	if ent, _ := e.r.Stat(context.Background(), "secret-bucket", "class/meta"); ent.StoredLen != sizes[0] {
		t.Fatalf("metadata changed the stored size: %d vs %d", ent.StoredLen, sizes[0])
	}
	// Control for the grep below: the plaintext really is findable when present.
	if !bytes.Contains(body, marker) {
		t.Fatal("control failed")
	}
	needles := [][]byte{marker, []byte("secret-bucket"), []byte("private"), []byte("report.txt"), []byte("folder"), []byte("x-note")}
	err := filepath.Walk(e.store, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains([]byte(p), n) {
				t.Errorf("path %q reveals %q", p, n)
			}
		}
		if fi.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s contains %q", p, n)
			}
		}
		if fi.Size()%256 != 0 {
			t.Errorf("%s has an unpadded size %d", p, fi.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRangeReadCost: reading 1 byte at 10 MiB of a 100 MiB object reads at
// most two chunks plus header, manifest and footer, counted at the store.
func TestRangeReadCost(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	data := random(100 << 20)
	e.put("big", "obj", data)
	var cnt *storetest.Counting
	e.hooks = &Hooks{WrapStore: func(s store.Store) store.Store { cnt = storetest.NewCounting(s); return cnt }}
	e.reopen()
	ent, _ := e.r.Stat(ctx, "big", "obj")
	cnt.Reset()
	rd, err := e.r.OpenObject(ctx, "big", "obj")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rd.Range(ctx, 10<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	rd.Close()
	if err != nil || len(got) != 1 || got[0] != data[10<<20] {
		t.Fatalf("range read: %v %v", got, err)
	}
	limit := int64(2*format.ChunkCTSize+format.HeaderLen+format.FooterLen) + int64(format.ManifestBudget(ent.Segments)) + 1
	if n := cnt.BytesRead.Load(); n > limit || n == 0 {
		t.Fatalf("read %d bytes from the store for 1 byte; limit %d", n, limit)
	}
	t.Logf("1 byte at 10 MiB of 100 MiB: %d bytes read from the store in %d requests", cnt.BytesRead.Load(), cnt.Reads.Load())
	// Control: a full read does read the whole object.
	cnt.Reset()
	if _, err := e.get("big", "obj"); err != nil {
		t.Fatal(err)
	}
	if cnt.BytesRead.Load() < 100<<20 {
		t.Fatalf("full read counted only %d bytes", cnt.BytesRead.Load())
	}
}

func TestRecover(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	objs := map[string][]byte{}
	for i, n := range []int{0, 1, 70000, 5 << 20} {
		k := fmt.Sprintf("dir/obj%d", i)
		objs[k] = random(n)
		e.put("alpha", k, objs[k])
		e.put("beta", k, objs[k])
	}
	// Overwrite one, and leave its old version in the store (as a crash
	// before the old version's deletion would): recovery must pick the
	// newest version and remove the old one.
	oldName := e.nameOf("alpha", "dir/obj1")
	oldBytes, err := os.ReadFile(e.storePath(oldName))
	if err != nil {
		t.Fatal(err)
	}
	objs["dir/obj1"] = []byte("second version")
	e.put("alpha", "dir/obj1", objs["dir/obj1"])
	e.put("beta", "dir/obj1", objs["dir/obj1"])
	if err := os.WriteFile(e.storePath(oldName), oldBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Put(ctx, "alpha", "meta", bytes.NewReader([]byte("m")), PutOptions{ContentType: "text/plain", Meta: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	e.r.Close()
	// The home burns down; only the keyring file was backed up.
	kr, err := os.ReadFile(filepath.Join(e.home, KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(e.home); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(e.home, 0o700)
	os.WriteFile(filepath.Join(e.home, KeyringFile), kr, 0o600)
	r, rep, err := Recover(ctx, RecoverOptions{Home: e.home, StorePath: e.store, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	if rep.Objects != 2*len(objs)+1 || rep.Buckets != 2 || len(rep.Unknown) != 0 || rep.Superseded != 1 {
		t.Fatalf("recover report %+v", rep)
	}
	if _, err := os.Stat(e.storePath(oldName)); !os.IsNotExist(err) {
		t.Fatalf("the superseded version is still stored: %v", err)
	}
	e.reopen()
	for k, v := range objs {
		e.mustGet("alpha", k, v)
		e.mustGet("beta", k, v)
	}
	ent, err := e.r.Stat(ctx, "alpha", "meta")
	if err != nil || ent.ContentType != "text/plain" || ent.Meta["a"] != "b" {
		t.Fatalf("metadata not recovered: %+v %v", ent, err)
	}
	e.mustVerifyClean()
	// Writes continue with versions above the recovered ones.
	e.put("alpha", "dir/obj1", []byte("third"))
	e.mustGet("alpha", "dir/obj1", []byte("third"))
	// A second recover over an existing catalog refuses.
	if _, _, err := Recover(ctx, RecoverOptions{Home: e.home, Passphrase: pass}); !errors.Is(err, ErrExists) {
		t.Fatalf("recover over a catalog: %v", err)
	}
}

func TestRecoverRefusesOtherKeyring(t *testing.T) {
	ctx := context.Background()
	a, b := newEnv(t), newEnv(t)
	a.put("data", "k", []byte("a"))
	b.r.Close()
	home := filepath.Join(t.TempDir(), "h")
	os.MkdirAll(home, 0o700)
	kr, _ := os.ReadFile(filepath.Join(b.home, KeyringFile))
	os.WriteFile(filepath.Join(home, KeyringFile), kr, 0o600)
	if _, _, err := Recover(ctx, RecoverOptions{Home: home, StorePath: a.store, Passphrase: pass}); !errors.Is(err, ErrOtherRepository) {
		t.Fatalf("recover with another repository's keyring: %v", err)
	}
	// Control: the right store recovers.
	r, _, err := Recover(ctx, RecoverOptions{Home: home, StorePath: b.store, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
