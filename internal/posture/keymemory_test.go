package posture

import "testing"

func TestKeyMemory(t *testing.T) {
	for _, c := range []struct {
		backing string
		status  Status
	}{
		{"memfd_secret", Pass},
		{"mlock", Warn},
		{"unlocked", Warn},
		{"heap", Warn},
		{"none", Warn},
	} {
		got := KeyMemory(c.backing, "why")
		if got.Name != CheckKeyMemory || got.Status != c.status || got.Value != c.backing || got.Detail == "" {
			t.Errorf("KeyMemory(%q) = %+v, want status %s", c.backing, got, c.status)
		}
	}
}
