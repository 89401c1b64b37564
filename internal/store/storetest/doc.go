// Package storetest owns the one conformance suite that every store.Store
// must pass (Run), and two store wrappers for other packages' tests:
// Counting, which measures traffic, and Faulty, which injects failures (or
// process death) at named points.
//
// The suite tests each method's documented contract, and every negative
// check has a positive control beside it so that a check cannot pass by
// testing nothing. It must never skip a test: a store that cannot pass a
// subtest fails it.
//
// This package is for tests only. Production code must never import it.
package storetest
