package spread

import "testing"

// TestPruneNeedsEveryMember: repair --prune removes shards that nothing
// can rebuild only when every member answered. Two members of a 3-of-5
// store briefly down leave an object readable by only two holders during
// the repair; pruning it then destroyed it for good. Control: the same
// repair with every member up keeps it, and once the members are back
// the object reads whole either way.
func TestPruneNeedsEveryMember(t *testing.T) {
	for _, down := range [][]int{{2, 3}, nil} {
		r := newRig(t, 1000)
		want := body(9, 5000)
		r.members[4].down.Store(true)
		put(t, r.s, "x", want) // on members 0..3
		r.members[4].down.Store(false)
		for _, j := range down {
			r.members[j].down.Store(true)
		}
		rep, err := r.s.Repair(t.Context(), RepairOptions{Prune: true})
		for _, j := range down {
			r.members[j].down.Store(false)
		}
		if err != nil {
			t.Fatalf("members down %v: repair: %v", down, err)
		}
		if rep.Pruned != 0 {
			t.Errorf("members down %v: %d objects pruned", down, rep.Pruned)
		}
		if got, err := get(t.Context(), r.s, "x", 0, -1); err != nil || string(got) != string(want) {
			t.Fatalf("members down %v: x after the repair: %d bytes, %v", down, len(got), err)
		}
	}
}
