package stream

import "crypto/cipher"

// SealChunk seals chunk idx of a segment (plaintext pt, at most ChunkSize
// bytes; only the final chunk may be shorter) and appends the ciphertext
// and tag to dst. It is Seal one chunk at a time, for segments too long to
// hold in memory (an S3 part of up to 5 GiB): a caller that seals chunks
// 0, 1, …, n-1 of a segment, the last with final set, produces exactly
// what Seal produces for the whole segment. The caller must never seal two
// different chunks with the same (key, idx, final).
func SealChunk(aead cipher.AEAD, dst, pt []byte, idx uint64, final bool) []byte {
	var n [12]byte
	nonce(&n, idx, final)
	return aead.Seal(dst, n[:], pt, nil)
}
