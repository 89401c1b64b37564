// Package attacks is the provider-as-attacker suite: for every row A1-A15
// of ATTACKS.md a test plays the provider, edits the store behind
// Holdfast's back (the local directory store, and an S3 bucket on
// versitygw), then reads through the holdfast CLI, through `holdfast
// serve` and through `holdfast verify`, beside a positive control. The
// tests are the package; README.md has one row per attack.
//
// Nothing in the holdfast binary imports this package.
package attacks
