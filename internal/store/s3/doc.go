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
//
// It meets a failing network by retrying (retry.go): a request that fails
// in a way that may pass — a reset, an idle timeout, an answer cut short,
// HTTP 5xx, throttling — is tried again with exponential backoff and
// jitter, within a deadline, and a read whose body breaks resumes where it
// stopped (body.go). It never retries a TLS handshake it refused, never
// lets a cut transfer end as a clean EOF, and reports a request that
// failed after its retries as store.ErrUnavailable. It counts requests and
// retries (Stats).
package s3
