package api

import "time"

// PathCatalogHead: GET reads the newest catalog head the server has
// recorded, POST records one (after a commit).
const PathCatalogHead = "/v1/catalog-head"

// CatalogHead is a catalog's head (catalog.Head) on the wire: the
// sequence number of its newest commit and the hash chained through every
// commit. Time is when the server recorded it.
type CatalogHead struct {
	Has  bool      `json:"has"`
	Seq  uint64    `json:"seq"`
	Hash [32]byte  `json:"hash"`
	Time time.Time `json:"time"`
}
