// Package keys owns the key hierarchy's vocabulary: the Source interface
// that every holder of root keys implements (the passphrase-sealed keyring
// file, and later a PKCS#11 HSM and the on-prem key server), wrapped-key
// records, the associated data that binds a wrap to its place in the
// hierarchy, and the software key-wrap construction used wherever a
// wrapping key is held in software.
//
// This package must never persist, log or export key material; it hands out
// secret.Key values only.
package keys
