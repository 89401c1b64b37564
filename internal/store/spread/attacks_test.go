package spread

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
)

// The rows of ATTACKS.md that a provider holding one member (or up to M
// of them) can play against the spread store itself, below the
// repository's own authentication (which catches them again: see the
// attack suite). Every attack must end in the right bytes with the
// member reported, or in an error — never in wrong bytes. Each has its
// control beside it: the same read before the attack.

const (
	attackChunk = 1000
	attackSize  = 10_000 // 4 stripes: 3000, 3000, 3000, 1000
)

func attackRig(t *testing.T) (*rig, []byte, []byte) {
	r := newRig(t, attackChunk)
	a, b := body(100, attackSize), body(101, attackSize)
	put(t, r.s, "obja", a)
	put(t, r.s, "objb", b)
	mustGet(t, r.s, "obja", a) // control: intact before the attack
	if p := r.seen(); len(p) != 0 {
		t.Fatalf("problems before the attack: %v", p)
	}
	return r, a, b
}

// wantCaught checks that a deep check finds member j at fault, that name
// reads back exactly, and that the read reported member j. A healthy
// read asks only the data members (0-2): for member 3, member 0 is taken
// down so that its shard is needed; member 4's shard is needed only with
// two others down, one fault more than M, so for it the deep check
// stands alone.
func wantCaught(t *testing.T, r *rig, name string, want []byte, j int) {
	t.Helper()
	rep, err := r.s.Repair(t.Context(), RepairOptions{Deep: true, DryRun: true})
	if err != nil || rep.Members[j].Damaged+rep.Members[j].Missing != 1 || rep.Problems != 1 {
		t.Fatalf("deep check does not find member %d at fault: %+v, %v", j, rep, err)
	}
	if j == 3 {
		r.members[0].down.Store(true)
		defer r.members[0].down.Store(false)
	}
	mustGet(t, r.s, name, want)
	if j == 4 {
		return
	}
	for _, p := range r.seen() {
		if p.Object == name && p.Member == fiveMembers[j].Label {
			return
		}
	}
	t.Fatalf("member %s not reported for %s: %v", fiveMembers[j].Label, name, r.seen())
}

func rewrite(t *testing.T, p string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A5: bits flipped in a shard, on any one member, and on two (M) at once;
// on three (more than M) the stripe cannot be rebuilt: an error, not
// wrong bytes.
func TestAttackA5BitFlips(t *testing.T) {
	for j := range 5 {
		r, a, _ := attackRig(t)
		rewrite(t, r.shardFile(t, j, "obja"), func(b []byte) []byte { b[1] ^= 0x80; return b })
		wantCaught(t, r, "obja", a, j)
	}
	r, a, _ := attackRig(t)
	for _, j := range []int{0, 3} {
		rewrite(t, r.shardFile(t, j, "obja"), func(b []byte) []byte { b[1] ^= 1; return b })
	}
	mustGet(t, r.s, "obja", a)
	rewrite(t, r.shardFile(t, 1, "obja"), func(b []byte) []byte { b[1] ^= 1; return b })
	if got, err := get(t.Context(), r.s, "obja", 0, -1); !errors.Is(err, ErrUnreadable) {
		t.Fatalf("three damaged shards of a stripe: %d bytes, %v; want ErrUnreadable", len(got), err)
	}
	// The other stripes still read: a range that avoids stripe 0.
	if got, err := get(t.Context(), r.s, "obja", 3000, 3000); err != nil || !bytes.Equal(got, a[3000:6000]) {
		t.Fatalf("stripe 1 with stripe 0 beyond repair: %v", err)
	}
}

// A6: stripes of a member object reordered, or the object cut at a stripe
// boundary.
func TestAttackA6ReorderTruncate(t *testing.T) {
	r, a, _ := attackRig(t)
	const blk = attackChunk + TagSize
	rewrite(t, r.shardFile(t, 2, "obja"), func(b []byte) []byte {
		out := append([]byte(nil), b[blk:2*blk]...)
		out = append(out, b[:blk]...)
		return append(out, b[2*blk:]...)
	})
	wantCaught(t, r, "obja", a, 2)

	r, a, _ = attackRig(t)
	rewrite(t, r.shardFile(t, 4, "obja"), func(b []byte) []byte { return b[:2*blk] })
	wantCaught(t, r, "obja", a, 4)
}

// A7: one member's shard of obja replaced by its shard of objb (same
// size), and member 1's shard replaced by member 0's.
func TestAttackA7Swap(t *testing.T) {
	r, a, _ := attackRig(t)
	other, err := os.ReadFile(r.shardFile(t, 3, "objb"))
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, r.shardFile(t, 3, "obja"), func([]byte) []byte { return other })
	wantCaught(t, r, "obja", a, 3)

	r, a, _ = attackRig(t)
	m0, err := os.ReadFile(r.shardFile(t, 0, "obja"))
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, r.shardFile(t, 1, "obja"), func([]byte) []byte { return m0 })
	wantCaught(t, r, "obja", a, 1)
}

// A8: the size in a member name edited (the object padded to match).
func TestAttackA8Size(t *testing.T) {
	r, a, _ := attackRig(t)
	p := r.shardFile(t, 0, "obja")
	mn, _ := parseMemberName(filepath.Base(p))
	mn.size += 2 // still the same stripe count and last shard length
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.s.objSize(publicRef("obja"), mn) != int64(len(b)) {
		t.Fatal("the edit changed the member object's size; pick another")
	}
	if err := os.Rename(p, filepath.Join(filepath.Dir(p), mn.String())); err != nil {
		t.Fatal(err)
	}
	wantCaught(t, r, "obja", a, 0)
	if oi, err := r.s.Stat(t.Context(), "obja"); err != nil || oi.Size != attackSize {
		t.Fatalf("Stat after the size edit: %+v, %v", oi, err)
	}
}

// A9: an object injected on members, named like a shard: not listed.
func TestAttackA9Inject(t *testing.T) {
	r, _, _ := attackRig(t)
	for j := range 5 {
		name := memberName{token: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", size: 10, gen: 1}.String()
		if err := r.members[j].inner.Put(t.Context(), name, bytes.NewReader(make([]byte, 10)), 10); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	r.s.List(t.Context(), "", func(oi store.ObjectInfo) error { names = append(names, oi.Name); return nil })
	if len(names) != 2 {
		t.Fatalf("List after injection: %q", names)
	}
}

// A10: a valid shard copied to a new generation's name (a forged newer
// version) on up to M members: the real current contents win.
func TestAttackA10Copy(t *testing.T) {
	r, a, b := attackRig(t)
	for _, j := range []int{0, 1} {
		src, err := os.ReadFile(r.shardFile(t, j, "objb"))
		if err != nil {
			t.Fatal(err)
		}
		p := r.shardFile(t, j, "obja")
		mn, _ := parseMemberName(filepath.Base(p))
		mn.gen += 1 << 40 // "newer"
		if err := os.WriteFile(filepath.Join(filepath.Dir(p), mn.String()), src, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, r.s, "obja", a)
	mustGet(t, r.s, "objb", b)
}

// A11: shards deleted on M members: the object reads, and repair puts
// them back; on more than M, the read fails — never wrong bytes.
func TestAttackA11Delete(t *testing.T) {
	r, a, _ := attackRig(t)
	for _, j := range []int{1, 4} {
		if err := os.Remove(r.shardFile(t, j, "obja")); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, r.s, "obja", a)
	rep, err := r.s.Repair(t.Context(), RepairOptions{})
	if err != nil || rep.Members[1].Rebuilt != 1 || rep.Members[4].Rebuilt != 1 || !rep.Clean() {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	for _, j := range []int{0, 2, 3} {
		if err := os.Remove(r.shardFile(t, j, "obja")); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := get(t.Context(), r.s, "obja", 0, -1); err == nil {
		t.Fatalf("read with 3 of 5 shards deleted returned %d bytes", len(got))
	}
}

// A12: rolled back on up to M members (the newer generation's shards
// deleted, the older kept): the newer contents are still what reads.
func TestAttackA12Rollback(t *testing.T) {
	r, _, _ := attackRig(t)
	older := map[int]string{}
	for j := range 5 {
		older[j] = r.shardFile(t, j, "obja")
	}
	v2 := body(102, attackSize+5)
	put(t, r.s, "obja", v2) // the old generation's shards stay until repair
	for _, j := range []int{2, 3} {
		dir := filepath.Dir(older[j])
		es, _ := os.ReadDir(dir)
		for _, e := range es {
			if p := filepath.Join(dir, e.Name()); p != older[j] && filepath.Base(p)[:10] == filepath.Base(older[j])[:10] {
				os.Remove(p) // the newer generation's shard
			}
		}
	}
	mustGet(t, r.s, "obja", v2)
	if oi, err := r.s.Stat(t.Context(), "obja"); err != nil || oi.Size != int64(len(v2)) {
		t.Fatalf("Stat after a rollback on 2 members: %+v, %v", oi, err)
	}
}

// A15: members that fail every request: up to M are tolerated.
func TestAttackA15Errors(t *testing.T) {
	r, a, _ := attackRig(t)
	r.members[0].down.Store(true)
	r.members[2].down.Store(true)
	mustGet(t, r.s, "obja", a)
	for _, j := range []int{0, 2} {
		found := false
		for _, p := range r.seen() {
			if p.Member == fiveMembers[j].Label {
				found = true
			}
		}
		if !found {
			t.Fatalf("member %d down and not reported: %v", j, r.seen())
		}
	}
}

// A10 on a replicated object: one member renames its whole copy of the
// marker to a newer generation. Any one copy rebuilds a replicated
// object, but one member must not choose which generation is current.
func TestAttackA10ReplicaShadow(t *testing.T) {
	r := newRig(t, attackChunk)
	marker := "holdfast-repo-0123456789abcdef0123456789abcdef"
	want := body(103, 5000)
	put(t, r.s, marker, want)
	p := r.shardFile(t, 0, marker)
	mn, _ := parseMemberName(filepath.Base(p))
	mn.gen += 1 << 40
	if err := os.Rename(p, filepath.Join(filepath.Dir(p), mn.String())); err != nil {
		t.Fatal(err)
	}
	mustGet(t, r.s, marker, want)
	// With one more member down (the renamed copy is the other fault of
	// M) the rest still agree on the generation.
	r.members[4].down.Store(true)
	mustGet(t, r.s, marker, want)
}
