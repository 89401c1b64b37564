package remote

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/holdfast/holdfast/internal/keyserver/api"
)

// CatalogHead asks the server for the newest catalog head it has
// recorded (has false: none yet).
func (s *Source) CatalogHead(ctx context.Context) (seq uint64, hash [32]byte, has bool, err error) {
	var h api.CatalogHead
	if err := s.do(ctx, http.MethodGet, api.PathCatalogHead, nil, &h); err != nil {
		return 0, hash, false, fmt.Errorf("reading the catalog head: %w", err)
	}
	return h.Seq, h.Hash, h.Has, nil
}

// RecordCatalogHead reports the head of a commit. A head the server
// already holds a newer one than is accepted; one it holds with another
// hash is refused (keyring.ErrFreshnessRollback: the catalog forked).
func (s *Source) RecordCatalogHead(ctx context.Context, seq uint64, hash [32]byte) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(s.attempts)*s.hc.Timeout)
		defer cancel()
	}
	var out api.CatalogHead
	if err := s.do(ctx, http.MethodPost, api.PathCatalogHead, api.CatalogHead{Has: true, Seq: seq, Hash: hash}, &out); err != nil {
		return fmt.Errorf("recording the catalog head: %w", err)
	}
	return nil
}
