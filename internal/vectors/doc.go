// Package vectors generates the storage-format test vectors in
// testdata/vectors/ deterministically: positive objects of every kind and
// boundary size, and negative ones, each naming the layer of
// docs/format.md's reading procedure that must reject it.
//
// The vectors are a contract with every past and future reader: CI
// regenerates them and fails on any difference, reads them with the Go
// code, and reads them with tools/pydecode, which is written from the spec
// alone. This package must never be used to write real data: its
// randomness is a fixed stream.
package vectors
