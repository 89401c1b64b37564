package spread

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrPolicy is wrapped by every refusal of a layout by the jurisdiction
// policy.
var ErrPolicy = errors.New("spread layout refused by the jurisdiction policy")

// MemberInfo is what the policy and the layout table know of a member.
type MemberInfo struct {
	Label        string `json:"label"`
	Provider     string `json:"provider"`
	Jurisdiction string `json:"jurisdiction"`
}

// CheckPolicy checks a layout of k data and m parity shards over members,
// member i holding shard i of every object:
//
//   - there are exactly k+m members, 1 ≤ k, 1 ≤ m, k+m ≤ 255, with
//     distinct non-empty labels and non-empty providers and jurisdictions;
//   - no jurisdiction and no provider holds k or more shards of an object,
//     so that no single court order (or provider) can rebuild even the
//     ciphertext;
//   - no jurisdiction and no provider holds more than m shards, so that
//     losing all of one of them loses nothing.
//
// The refusal names the jurisdiction or provider at fault.
func CheckPolicy(k, m int, members []MemberInfo) error {
	if k < 1 || m < 1 {
		return fmt.Errorf("%w: need at least 1 data and 1 parity shard, got k=%d m=%d", ErrPolicy, k, m)
	}
	if k+m > 255 {
		return fmt.Errorf("%w: k+m=%d exceeds 255 shards", ErrPolicy, k+m)
	}
	if len(members) != k+m {
		return fmt.Errorf("%w: %d members for k=%d m=%d; each member holds one shard, so there must be exactly %d", ErrPolicy, len(members), k, m, k+m)
	}
	labels := map[string]bool{}
	for i, mb := range members {
		switch {
		case strings.TrimSpace(mb.Label) == "":
			return fmt.Errorf("%w: member %d has no label", ErrPolicy, i)
		case labels[mb.Label]:
			return fmt.Errorf("%w: two members are labelled %q", ErrPolicy, mb.Label)
		case strings.TrimSpace(mb.Provider) == "":
			return fmt.Errorf("%w: member %q names no provider", ErrPolicy, mb.Label)
		case strings.TrimSpace(mb.Jurisdiction) == "":
			return fmt.Errorf("%w: member %q names no jurisdiction", ErrPolicy, mb.Label)
		}
		labels[mb.Label] = true
	}
	if err := checkGroups("jurisdiction", k, m, members, func(mb MemberInfo) string { return mb.Jurisdiction }); err != nil {
		return err
	}
	return checkGroups("provider", k, m, members, func(mb MemberInfo) string { return mb.Provider })
}

// checkGroups counts the shards each group (jurisdiction or provider)
// holds and refuses the first group over a limit, in name order so that
// the message does not depend on member order.
func checkGroups(kind string, k, m int, members []MemberInfo, group func(MemberInfo) string) error {
	held := map[string][]string{}
	for _, mb := range members {
		g := normGroup(group(mb))
		held[g] = append(held[g], mb.Label)
	}
	names := make([]string, 0, len(held))
	for g := range held {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		n := len(held[g])
		if n >= k {
			return fmt.Errorf("%w: %s %q holds %d shards of every object (members %s); %d are enough to rebuild it, so it must hold at most %d",
				ErrPolicy, kind, g, n, strings.Join(held[g], ", "), k, k-1)
		}
		if n > m {
			return fmt.Errorf("%w: %s %q holds %d shards of every object (members %s); losing it would lose data, since only %d may be lost",
				ErrPolicy, kind, g, n, strings.Join(held[g], ", "), m)
		}
	}
	return nil
}

// normGroup makes "EU", "eu" and " eu " one jurisdiction (or provider):
// a spelling difference must not let a layout through.
func normGroup(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }
