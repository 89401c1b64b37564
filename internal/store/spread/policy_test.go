package spread

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/store/local"
)

func members(specs ...string) []MemberInfo {
	var out []MemberInfo
	for i, s := range specs {
		prov, jur, _ := strings.Cut(s, "/")
		out = append(out, MemberInfo{Label: "m" + string(rune('a'+i)), Provider: prov, Jurisdiction: jur})
	}
	return out
}

func TestPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		k, m    int
		members []MemberInfo
		refuse  string // "" for accepted; else words the refusal must contain
	}{
		{"3-of-5 in four jurisdictions", 3, 2, members("a/EU", "b/EU", "c/CH", "d/US", "e/JP"), ""},
		{"K shards in one jurisdiction", 3, 2, members("a/EU", "b/EU", "c/EU", "d/US", "e/JP"), `jurisdiction "EU" holds 3 shards`},
		{"K shards in one jurisdiction, spelt differently", 3, 2, members("a/EU", "b/eu ", "c/Eu", "d/US", "e/JP"), `jurisdiction "EU" holds 3`},
		{"K shards at one provider", 3, 2, members("a/EU", "a/CH", "a/US", "d/JP", "e/BR"), `provider "A" holds 3 shards`},
		{"more than M in one jurisdiction", 4, 2, members("a/EU", "b/EU", "c/EU", "d/US", "e/JP", "f/BR"), `jurisdiction "EU" holds 3 shards`},
		{"M shards in one jurisdiction is fine", 4, 2, members("a/EU", "b/EU", "c/CH", "d/US", "e/JP", "f/BR"), ""},
		{"one member too few", 3, 2, members("a/EU", "b/CH", "c/US", "d/JP"), "4 members for k=3 m=2"},
		{"no parity", 2, 0, members("a/EU", "b/CH"), "at least 1 data and 1 parity"},
		{"replication (K=1) puts K in every jurisdiction", 1, 2, members("a/EU", "b/CH", "c/US"), `holds 1 shards`},
		{"duplicate label", 3, 2, []MemberInfo{{"x", "a", "EU"}, {"x", "b", "CH"}, {"y", "c", "US"}, {"z", "d", "JP"}, {"w", "e", "BR"}}, `two members are labelled "x"`},
		{"no jurisdiction", 3, 2, members("a/EU", "b/", "c/US", "d/JP", "e/BR"), "names no jurisdiction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPolicy(tc.k, tc.m, tc.members)
			if tc.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tc.refuse) {
				t.Fatalf("CheckPolicy = %v; want a refusal containing %q", err, tc.refuse)
			}
		})
	}
}

// TestNewChecksPolicy: New refuses a layout the policy refuses, naming the
// jurisdiction; the same members relabelled into a good layout open.
func TestNewChecksPolicy(t *testing.T) {
	r := newRig(t, 0) // five members, EU×2, CH, US, JP: accepted
	r.s.Close()
	var ms []Member
	for i, mi := range fiveMembers {
		mi.Jurisdiction = "EU"
		if i >= 3 {
			mi.Jurisdiction = "US"
		}
		ls, err := local.Open(filepath.Join(t.TempDir(), mi.Label))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, Member{MemberInfo: mi, Store: ls})
	}
	_, err := newStore(Config{K: 3, M: 2, Members: ms, Key: testKey(t)})
	if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), `jurisdiction "EU"`) {
		t.Fatalf("New with 3 shards in EU: %v", err)
	}
	ms[2].Jurisdiction = "CH"
	s, err := New(Config{K: 3, M: 2, Members: ms, Key: testKey(t)})
	if err != nil {
		t.Fatalf("New with EU×2, CH, US×2: %v", err)
	}
	s.Close()
}
