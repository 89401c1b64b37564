package keyserver

import (
	"time"

	"github.com/holdfast/holdfast/internal/attest"
)

// SetAttestationRootsForTest makes s verify attestation evidence against
// roots instead of the AMD and Intel roots embedded in go-sev-guest and
// go-tdx-guest. It exists only in this package's test binary: a shipped
// key server has no way to trust other roots.
func SetAttestationRootsForTest(s *Server, roots attest.Roots) { s.rel.roots.Store(&roots) }

// SetAttestationTimeForTest makes s check evidence certificates at t
// instead of now (test binary only, like SetAttestationRootsForTest).
func SetAttestationTimeForTest(s *Server, t time.Time) { s.rel.certTime.Store(&t) }
