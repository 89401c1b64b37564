package spread

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/holdfast/holdfast/internal/secret"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/store/local"
	"github.com/holdfast/holdfast/internal/store/storetest"
)

// member wraps a member store: it counts requests and can be taken down
// (every call fails with ErrUnavailable) and brought back.
type member struct {
	inner              store.Store
	down               atomic.Bool
	lists, reads, puts atomic.Int64
	bytesRead          atomic.Int64
}

var errDown = fmt.Errorf("member taken down by the test: %w", store.ErrUnavailable)

func (m *member) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	m.puts.Add(1)
	if m.down.Load() {
		return errDown
	}
	return m.inner.Put(ctx, name, r, size)
}

func (m *member) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	m.reads.Add(1)
	if m.down.Load() {
		return nil, errDown
	}
	rc, err := m.inner.ReadRange(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	m.bytesRead.Add(int64(len(b)))
	return io.NopCloser(bytes.NewReader(b)), err
}

func (m *member) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if m.down.Load() {
		return store.ObjectInfo{}, errDown
	}
	return m.inner.Stat(ctx, name)
}

func (m *member) Delete(ctx context.Context, name string) error {
	if m.down.Load() {
		return errDown
	}
	return m.inner.Delete(ctx, name)
}

func (m *member) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	m.lists.Add(1)
	if m.down.Load() {
		return errDown
	}
	return m.inner.List(ctx, prefix, fn)
}

func (m *member) Close() error { return m.inner.Close() }

func (m *member) reset() {
	m.lists.Store(0)
	m.reads.Store(0)
	m.puts.Store(0)
	m.bytesRead.Store(0)
}

// rig is a spread store over local members in a test directory.
type rig struct {
	s       *Store
	members []*member
	dirs    []string
	queue   string

	mu       sync.Mutex
	problems []Problem
}

func (r *rig) seen() []Problem {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.problems)
}

var fiveMembers = []MemberInfo{
	{"eu-1", "alpha", "EU"},
	{"eu-2", "beta", "EU"},
	{"ch-1", "gamma", "CH"},
	{"us-1", "delta", "US"},
	{"jp-1", "epsilon", "JP"},
}

func testKey(t testing.TB) secret.Key {
	k, err := secret.FromBytes(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return k
}

// newRig makes a 3-of-5 store (K=3, M=2) with a small chunk so that
// objects of a few KiB have many stripes.
func newRig(t testing.TB, chunk int64) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{queue: filepath.Join(dir, "queue")}
	var ms []Member
	for i, mi := range fiveMembers {
		d := filepath.Join(dir, mi.Label)
		ls, err := local.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		m := &member{inner: ls}
		r.members = append(r.members, m)
		r.dirs = append(r.dirs, d)
		ms = append(ms, Member{MemberInfo: fiveMembers[i], Store: m})
	}
	s, err := New(Config{K: 3, M: 2, Members: ms, Chunk: chunk, Key: testKey(t), Replicate: []string{"holdfast-repo-"},
		Queue: r.queue, SpoolDir: dir,
		Warn: func(p Problem) {
			r.mu.Lock()
			r.problems = append(r.problems, p)
			r.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	return r
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newRig(t, 0).s })
}

func TestConformanceParts(t *testing.T) {
	storetest.RunParts(t, func(t *testing.T) store.Store { return newRig(t, 1000).s })
}

// TestConformanceSmallChunk runs the suite with stripes of a few bytes,
// so that every object spans many stripes and short last stripes.
func TestConformanceSmallChunk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newRig(t, 4096+7).s })
}

func body(seed uint64, n int) []byte {
	b := make([]byte, n)
	var key [32]byte
	key[0] = byte(seed)
	rand.NewChaCha8(key).Read(b)
	return b
}

func put(t *testing.T, s store.Store, name string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put(%s): %v", name, err)
	}
}

func get(ctx context.Context, s store.Store, name string, off, length int64) ([]byte, error) {
	rc, err := s.ReadRange(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func mustGet(t *testing.T, s store.Store, name string, want []byte) {
	t.Helper()
	got, err := get(t.Context(), s, name, 0, -1)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %s: %d bytes, want %d (contents differ)", name, len(got), len(want))
	}
}

// TestDegradedReads takes every pair of members down in turn: every
// object still reads, byte-exact; three down and it fails, as it must.
func TestDegradedReads(t *testing.T) {
	r := newRig(t, 1000)
	objs := map[string][]byte{}
	for i, n := range []int{0, 1, 2999, 3000, 3001, 50_000} {
		name := fmt.Sprintf("obj%d", i)
		objs[name] = body(uint64(i), n)
		put(t, r.s, name, objs[name])
	}
	long := strings.Repeat("l", 100)
	objs[long] = body(99, 12345)
	put(t, r.s, long, objs[long])
	for a := range 5 {
		for b := a + 1; b < 5; b++ {
			r.members[a].down.Store(true)
			r.members[b].down.Store(true)
			for name, want := range objs {
				mustGet(t, r.s, name, want)
				if oi, err := r.s.Stat(t.Context(), name); err != nil || oi.Size != int64(len(want)) {
					t.Fatalf("members %d,%d down: Stat(%s) = %+v, %v", a, b, name, oi, err)
				}
			}
			var listed []string
			if err := r.s.List(t.Context(), "", func(oi store.ObjectInfo) error {
				listed = append(listed, oi.Name)
				return nil
			}); err != nil || len(listed) != len(objs) {
				t.Fatalf("members %d,%d down: List = %q, %v", a, b, listed, err)
			}
			r.members[a].down.Store(false)
			r.members[b].down.Store(false)
		}
	}
	// Three down is one more than M: the object cannot be read.
	for _, j := range []int{0, 2, 4} {
		r.members[j].down.Store(true)
	}
	if _, err := get(t.Context(), r.s, "obj5", 0, -1); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("read with 3 of 5 members down: %v; want ErrUnavailable", err)
	}
	// Control: the same with one of them back.
	r.members[4].down.Store(false)
	mustGet(t, r.s, "obj5", objs["obj5"])
}

// shardFile returns the path of member j's (only) member object of a
// direct-named object, found by decoding the names in its directory.
func (r *rig) shardFile(t *testing.T, j int, name string) string {
	t.Helper()
	var found []string
	filepath.WalkDir(r.dirs[j], func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		mn, ok := parseMemberName(d.Name())
		if !ok {
			return nil
		}
		if got, err := r.s.keys.nameOfToken(j, mn.token); err == nil && got == name {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("member %d holds %d shard objects of %s, want 1", j, len(found), name)
	}
	return found[0]
}

// TestDamagedShardCaughtByMAC damages a shard on one member in a way a
// checksum could not catch — the provider flips bytes and recomputes the
// SHA-256 "checksum" in the tag's place — and checks that the read still
// succeeds, names the member and stripe, and that repair rewrites it.
func TestDamagedShardCaughtByMAC(t *testing.T) {
	r := newRig(t, 1000)
	want := body(1, 10_000) // 4 stripes of 3000 bytes, the last 1000
	put(t, r.s, "victim", want)
	put(t, r.s, "bystander", body(2, 5000))
	// Control: an undamaged store reads without any problem reported.
	mustGet(t, r.s, "victim", want)
	if p := r.seen(); len(p) != 0 {
		t.Fatalf("problems reported on a healthy store: %v", p)
	}
	rep, err := r.s.Repair(t.Context(), RepairOptions{Deep: true, DryRun: true})
	if err != nil || !rep.Clean() || rep.Problems != 0 {
		t.Fatalf("deep check of a healthy store: %+v, %v", rep, err)
	}

	const j, stripe = 1, 2
	p := r.shardFile(t, j, "victim")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	g := r.s.geometry(publicRef("victim"), int64(len(want)))
	off := g.offset(stripe)
	shard := raw[off : off+g.shardLen(stripe)]
	shard[17] ^= 0x40
	// A provider that knows the layout recomputes what it can: here a
	// SHA-256 of the shard in the tag's place.
	sum := sha256.Sum256(shard)
	copy(raw[off+g.shardLen(stripe):], sum[:])
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	mustGet(t, r.s, "victim", want)
	var hit *Problem
	for _, pr := range r.seen() {
		if pr.Object == "victim" {
			hit = &pr
		}
	}
	if hit == nil || hit.Member != "eu-2" || hit.Stripe != stripe || !errors.Is(hit.Err, ErrDamaged) {
		t.Fatalf("reported problems %v; want member eu-2, stripe %d damaged", r.seen(), stripe)
	}
	q, _ := r.s.Queued()
	if !slices.Contains(q, "victim") {
		t.Fatalf("repair queue %q lacks the damaged object", q)
	}

	rep, err = r.s.Repair(t.Context(), RepairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Members[j].Damaged != 1 || rep.Members[j].Rebuilt != 1 || !rep.Clean() {
		t.Fatalf("repair: %+v", rep)
	}
	fixed, err := os.ReadFile(r.shardFile(t, j, "victim"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(fixed, raw) {
		t.Fatal("repair left the damaged shard in place")
	}
	rep, err = r.s.Repair(t.Context(), RepairOptions{Deep: true, DryRun: true})
	if err != nil || !rep.Clean() || rep.Problems != 0 {
		t.Fatalf("deep check after repair: %+v, %v", rep, err)
	}
	if q, _ := r.s.Queued(); len(q) != 0 {
		t.Fatalf("repair queue after repair: %q", q)
	}
	// The member's own shard now reads without help: with the other data
	// shards' members down, member j's shard is needed.
	r.members[0].down.Store(true)
	r.members[2].down.Store(true)
	mustGet(t, r.s, "victim", want)
}

// TestDegradedWriteAndRepair writes with one member down (allowed: the
// quorum is 4), with two down (refused), and repairs the missed shard.
func TestDegradedWriteAndRepair(t *testing.T) {
	r := newRig(t, 1000)
	r.members[3].down.Store(true)
	want := body(3, 7777)
	put(t, r.s, "degraded", want)
	if q, _ := r.s.Queued(); !slices.Contains(q, "degraded") {
		t.Fatalf("degraded write not queued: %q", q)
	}
	r.members[4].down.Store(true)
	err := r.s.Put(t.Context(), "refused", bytes.NewReader(want), int64(len(want)))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Put with 2 of 5 members down: %v; want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "us-1") || !strings.Contains(err.Error(), "jp-1") {
		t.Fatalf("refusal does not name the members down: %v", err)
	}
	r.members[3].down.Store(false)
	r.members[4].down.Store(false)
	// The refused write left nothing behind that a read could see.
	if _, err := r.s.Stat(t.Context(), "refused"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat(refused) after a refused write: %v; want ErrNotExist", err)
	}
	lay, err := r.s.Survey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if lay.Members[3].Shards != 0 || lay.Members[3].Missing != 1 || lay.Members[0].Shards != 1 {
		t.Fatalf("survey before repair: %+v", lay.Members)
	}
	var progress []RepairProgress
	rep, err := r.s.Repair(t.Context(), RepairOptions{Progress: func(p RepairProgress) { progress = append(progress, p) }})
	if err != nil || rep.Members[3].Rebuilt != 1 || !rep.Clean() {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	if len(progress) != 1 || progress[0].Done != 1 || progress[0].Total != 1 || progress[0].Rebuilt == 0 {
		t.Fatalf("progress: %+v", progress)
	}
	lay, err = r.s.Survey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range lay.Members {
		if m.Shards != 1 || m.Missing != 0 || !m.Reachable {
			t.Fatalf("survey after repair: %+v", lay.Members)
		}
	}
	// The rebuilt shard is a real one: read with two other members down,
	// one of them a data member, so member 3's parity shard is needed.
	r.members[0].down.Store(true)
	r.members[4].down.Store(true)
	mustGet(t, r.s, "degraded", want)
}

// TestDeleteWithMemberDown deletes while a member is down; repair
// removes its leftover shard.
func TestDeleteWithMemberDown(t *testing.T) {
	r := newRig(t, 1000)
	put(t, r.s, "gone", body(4, 5000))
	put(t, r.s, "kept", body(5, 5000))
	r.members[2].down.Store(true)
	if err := r.s.Delete(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	r.members[2].down.Store(false)
	if _, err := r.s.Stat(t.Context(), "gone"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after a degraded delete: %v", err)
	}
	entries := func() int {
		n := 0
		r.members[2].inner.List(t.Context(), "", func(store.ObjectInfo) error { n++; return nil })
		return n
	}
	if n := entries(); n != 2 {
		t.Fatalf("member 2 holds %d objects before repair, want 2 (kept and the leftover)", n)
	}
	rep, err := r.s.Repair(t.Context(), RepairOptions{})
	if err != nil || rep.Pruned != 1 || !rep.Clean() {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	if n := entries(); n != 1 {
		t.Fatalf("member 2 holds %d objects after repair, want 1", n)
	}
}

// TestRangeReadFetchesOnlyWhatItNeeds counts requests and bytes per
// member for a small range in the middle of a large object.
func TestRangeReadFetchesOnlyWhatItNeeds(t *testing.T) {
	const chunk = 1000
	r := newRig(t, chunk)
	want := body(6, 300_000) // 100 stripes of 3000 bytes
	put(t, r.s, "big", want)
	for _, m := range r.members {
		m.reset()
	}
	// Bytes 150100..150300 lie in stripe 50 only.
	got, err := get(t.Context(), r.s, "big", 150_100, 200)
	if err != nil || !bytes.Equal(got, want[150_100:150_300]) {
		t.Fatalf("range read: %d bytes, %v", len(got), err)
	}
	for j, m := range r.members {
		wantReads, wantBytes := int64(1), int64(chunk+TagSize)
		if j >= 3 { // parity members are not asked while data members answer
			wantReads, wantBytes = 0, 0
		}
		if m.reads.Load() != wantReads || m.bytesRead.Load() != wantBytes {
			t.Fatalf("member %d: %d reads, %d bytes; want %d, %d", j, m.reads.Load(), m.bytesRead.Load(), wantReads, wantBytes)
		}
		if j >= 3 && m.lists.Load() != 0 {
			t.Fatalf("member %d listed %d times for a healthy read", j, m.lists.Load())
		}
	}
	// A range across two stripes fetches exactly two shards per member.
	for _, m := range r.members {
		m.reset()
	}
	got, err = get(t.Context(), r.s, "big", 3*3000-5, 10)
	if err != nil || !bytes.Equal(got, want[3*3000-5:3*3000+5]) {
		t.Fatalf("range read across stripes: %d bytes, %v", len(got), err)
	}
	if m := r.members[0]; m.reads.Load() != 1 || m.bytesRead.Load() != 2*(chunk+TagSize) {
		t.Fatalf("member 0: %d reads, %d bytes; want 1, %d", m.reads.Load(), m.bytesRead.Load(), 2*(chunk+TagSize))
	}
	// With data member 1 down, one parity member steps in for it.
	r.members[1].down.Store(true)
	for _, m := range r.members {
		m.reset()
	}
	got, err = get(t.Context(), r.s, "big", 150_100, 200)
	if err != nil || !bytes.Equal(got, want[150_100:150_300]) {
		t.Fatalf("range read with member 1 down: %d bytes, %v", len(got), err)
	}
	used := 0
	for _, m := range r.members {
		if m.bytesRead.Load() > 0 {
			used++
		}
	}
	if used != 3 {
		t.Fatalf("%d members sent shards, want 3", used)
	}
}

// TestReplicatedSystemObjects: the marker prefix is stored whole on every
// member, so one authentic copy reads it (once K members agree on its
// generation): with two members down and the copies of two others
// damaged, the fifth's is enough. An erasure-coded object (the control)
// is not readable so.
func TestReplicatedSystemObjects(t *testing.T) {
	r := newRig(t, 1000)
	marker := "holdfast-repo-0123456789abcdef0123456789abcdef"
	want := body(7, 4500)
	put(t, r.s, marker, want)
	put(t, r.s, "data", want)
	for _, name := range []string{marker, "data"} {
		for _, j := range []int{1, 2} {
			p := r.shardFile(t, j, name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[0] ^= 1
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.members[3].down.Store(true)
	r.members[4].down.Store(true)
	mustGet(t, r.s, marker, want)
	if _, err := get(t.Context(), r.s, "data", 0, -1); !errors.Is(err, ErrUnreadable) {
		t.Fatalf("erasure-coded object with 1 authentic shard of 5: %v; want ErrUnreadable", err)
	}
	st, err := os.Stat(r.shardFile(t, 0, marker))
	if err != nil || st.Size() != r.s.geometry(publicRef(marker), 4500).memberSize() || st.Size() < 4500 {
		t.Fatalf("replica on member 0: %v, %v", st, err)
	}
}

// TestNamesAreOpaqueAndDistinct: no member name contains the object name,
// and each member names the same object differently.
func TestNamesAreOpaqueAndDistinct(t *testing.T) {
	r := newRig(t, 0)
	name := "0123456789abcdef0123456789abcdef"
	put(t, r.s, name, body(8, 100))
	seen := map[string]bool{}
	for j := range r.members {
		mn, ok := parseMemberName(filepath.Base(r.shardFile(t, j, name)))
		if !ok || strings.Contains(mn.String(), name[:8]) {
			t.Fatalf("member %d name %q", j, mn)
		}
		if seen[mn.token] {
			t.Fatalf("member %d reuses a token", j)
		}
		seen[mn.token] = true
		if !store.ValidName(mn.String()) {
			t.Fatalf("member name %q is not a valid store name", mn)
		}
	}
	// The longest direct name and the longest name give valid member
	// names at the largest size and generation.
	for _, n := range []string{strings.Repeat("z", maxDirectName), strings.Repeat("y", 128)} {
		tok, _, err := r.s.keys.token(4, n)
		if err != nil {
			t.Fatal(err)
		}
		mn := memberName{token: tok, size: 1<<63 - 1, gen: 1<<64 - 1, hashed: len(n) > maxDirectName}
		if !store.ValidName(mn.String()) {
			t.Fatalf("member name for a %d-byte name is invalid: %d chars", len(n), len(mn.String()))
		}
	}
}

// TestForeignKeyObjectsAreIgnored: a member object made under another
// key is neither listed nor read.
func TestForeignKeyObjectsAreIgnored(t *testing.T) {
	r := newRig(t, 0)
	put(t, r.s, "mine", body(9, 10))
	other, err := secret.FromBytes(bytes.Repeat([]byte{8}, 32))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Wipe()
	ks, err := deriveKeys(other)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.wipe()
	tok, _, _ := ks.token(0, "theirs")
	r.members[0].inner.Put(t.Context(), memberName{token: tok, size: 0, gen: 1}.String(), bytes.NewReader(nil), 0)
	lay, err := r.s.Survey(t.Context())
	if err != nil || lay.Objects != 1 || lay.Members[0].Foreign != 1 {
		t.Fatalf("survey: %+v, %v", lay, err)
	}
}

func secretForFuzz() (keySet, error) {
	k, err := secret.FromBytes(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		return keySet{}, err
	}
	defer k.Wipe()
	return deriveKeys(k)
}
