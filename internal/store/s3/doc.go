// Package s3 is the store in any S3-compatible service (AWS S3, versitygw,
// and the like), through the AWS SDK for Go v2.
//
// It holds opaque names and ciphertext only, and sends the provider only
// what the S3 API needs: the bucket, the object key (prefix + opaque
// name), the ciphertext and the SDK's checksums of that ciphertext — no
// user metadata, no tags, no plaintext checksums. Every connection is TLS
// 1.3 unless the caller explicitly allows TLS 1.2; plain HTTP is refused
// except, when explicitly allowed, to a loopback address. It never logs or
// prints credentials.
package s3
