// Command floor is the least any encrypting copy must do, for comparison
// with holdfast put in the same benchmark run: it maps IN read-only in 4
// MiB pieces (as holdfast put maps a large file, rather than copy it in
// with read(2)), seals each on one of GOMAXPROCS workers with AES-256-GCM
// in 64 KiB chunks (the algorithm and chunk size of Holdfast's format),
// unmaps it, and writes the results to OUT in order — no key hierarchy,
// catalog, header, manifest or padding. Whatever it costs beyond cp is
// the price of encrypting and writing from user memory on this machine.
//
//	floor IN OUT
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

const (
	piece = 4 << 20
	chunk = 64 << 10
)

type job struct {
	pt, ct []byte
	seq    uint64
	done   chan struct{}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: floor IN OUT")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(inPath, outPath string) error {
	in, err := os.Open(inPath)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	workers := runtime.GOMAXPROCS(0)
	inflight := workers + 2
	free := make(chan *job, inflight)
	for range inflight {
		free <- &job{ct: make([]byte, 0, piece+piece/chunk*aead.Overhead())}
	}
	work, order := make(chan *job, inflight), make(chan *job, inflight)
	for range workers {
		go func() {
			nonce := make([]byte, aead.NonceSize())
			for j := range work {
				j.ct = j.ct[:0]
				for off := 0; off < len(j.pt); off += chunk {
					binary.BigEndian.PutUint64(nonce[4:], j.seq+uint64(off/chunk))
					j.ct = aead.Seal(j.ct, nonce, j.pt[off:min(off+chunk, len(j.pt))], nil)
				}
				_ = unix.Munmap(j.pt)
				close(j.done)
			}
		}()
	}
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	var readErr error
	go func() {
		defer close(work)
		defer close(order)
		for off, seq := int64(0), uint64(0); off < size; off, seq = off+piece, seq+piece/chunk {
			j := <-free
			m, err := unix.Mmap(int(in.Fd()), off, int(min(piece, size-off)), unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				readErr = err
				return
			}
			j.pt, j.seq, j.done = m, seq, make(chan struct{})
			order <- j
			work <- j
		}
	}()
	var writeErr error
	for j := range order {
		<-j.done
		if writeErr == nil {
			_, writeErr = out.Write(j.ct)
		}
		free <- j
	}
	if err := out.Close(); writeErr == nil {
		writeErr = err
	}
	if readErr != nil {
		return readErr
	}
	return writeErr
}
