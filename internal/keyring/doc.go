// Package keyring owns the passphrase-sealed keyring file, Holdfast's
// embedded default key source (docs/format-keyring.md): one repository's
// versioned root keys, which of them is primary, and the freshness record
// of the catalog backup — the one place a storage provider cannot roll
// back.
//
// The file is sealed with AES-256-GCM under a key derived from the
// passphrase with Argon2id. Open bounds the Argon2id parameters both ways
// before it derives anything: a floor against downgrade and a ceiling
// against denial of service. Only a test binary may lower the floor, through
// SetInsecureTestParamsForTesting.
//
// A *Keyring implements keys.Source: root keys wrap and unwrap other keys
// inside it and never leave it. The package also reads passphrases
// (ReadPassphrase), holds a passphrase being chosen to the policy
// (CheckNewPassphrase: length, repeats, runs, common words; docs/cli.md,
// "Passphrases") and generates the format's test vectors
// (GenerateVectors). Create and ChangePassphrase take any non-empty
// passphrase: the policy is applied where a person chooses one.
//
// This package must never write key material or a passphrase anywhere but
// into the sealed file, never print or log either, never change the file
// on disk when an Open fails, never replace an existing keyring on Create,
// and never accept a file whose KDF parameters are out of bounds.
package keyring
