// Package access owns the access keys that S3 clients of `holdfast serve`
// sign their requests with: the table of keys (an id, a sealed secret, a
// name, when it was made, and per-bucket permissions), the bucket policies
// and the checks the gateway derives from it, and the adapter that lets
// versitygw's S3 front end authenticate requests against it (iam.go).
//
// The table lives in the catalog (catalog.AccessStore), so the CLI and any
// number of gateways share it; a gateway sees a change within MaxStale.
// Each secret is sealed with AES-256-GCM under the table key, with the
// repository id, the key's id and its permissions as associated data; the
// table key is wrapped by the repository's key source (keys.Source, purpose
// keys.PurposeAccessTable). A secret leaves the package only once, in the
// Credentials that Add returns; the gateway gets SigV4 signing keys derived
// for one day, region and service, never the secret itself.
//
// This package must never write a secret in the clear to disk, log one, or
// put one in an error; never grant anonymous access; and never let a
// record it cannot authenticate grant anything.
package access
