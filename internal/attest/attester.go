package attest

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-sev-guest/client"
)

// sevGuestDevice is the SEV-SNP guest's attestation device.
const sevGuestDevice = "/dev/sev-guest"

// NewAttester returns the attester of type typ for this host.
func NewAttester(typ string) (Attester, error) {
	switch typ {
	case TypeSEVSNP:
		return SNPAttester{}, nil
	case TypeTDX:
		return nil, fmt.Errorf("attestation type %q: this build gets evidence from SEV-SNP guests only (the key server verifies TDX quotes)", typ)
	}
	return nil, fmt.Errorf("attestation type %q: want %s", typ, TypeSEVSNP)
}

// SNPAttester gets an extended attestation report (the report and the
// host's certificate table) from /dev/sev-guest, at VMPL 0.
type SNPAttester struct{}

func (SNPAttester) Type() string { return TypeSEVSNP }

// Evidence asks the guest device for a report carrying reportData. On a
// host without the device it fails with ErrNoDevice.
func (SNPAttester) Evidence(ctx context.Context, reportData [64]byte) (Evidence, error) {
	if _, err := os.Stat(sevGuestDevice); errors.Is(err, os.ErrNotExist) {
		return Evidence{}, fmt.Errorf("%s: %w (is this an SEV-SNP guest with the sev-guest driver loaded?)", sevGuestDevice, ErrNoDevice)
	}
	qp := &client.LinuxIoctlQuoteProvider{}
	raw, err := qp.GetRawQuoteAtLevel(reportData, 0)
	if err != nil {
		return Evidence{}, fmt.Errorf("getting an SEV-SNP report from %s: %w", sevGuestDevice, err)
	}
	return Evidence{Type: TypeSEVSNP, Report: raw}, nil
}
