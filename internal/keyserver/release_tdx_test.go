package keyserver_test

import (
	"testing"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
)

// attestHexMRTD is the MRTD of a TDX quote.
func attestHexMRTD(t *testing.T, raw []byte) []byte {
	t.Helper()
	q, err := tdxabi.QuoteToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	return q.(*tdxpb.QuoteV4).GetTdQuoteBody().GetMrTd()
}
