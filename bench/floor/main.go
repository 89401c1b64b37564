// Command floor is the least any encrypting copy must do, for comparison
// with holdfast put in the same benchmark run: it reads IN in 4 MiB
// pieces, seals each on one of GOMAXPROCS workers with AES-256-GCM in
// 64 KiB chunks (the algorithm and chunk size of Holdfast's format), and
// writes the results to OUT in order — no key hierarchy, catalog,
// header, manifest or padding. Whatever it costs beyond cp is the price
// of reading into user memory, encrypting and writing back on this
// machine.
//
//	floor IN OUT
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
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
		free <- &job{pt: make([]byte, piece), ct: make([]byte, 0, piece+piece/chunk*aead.Overhead())}
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
				close(j.done)
			}
		}()
	}
	var readErr error
	go func() {
		defer close(work)
		defer close(order)
		for seq := uint64(0); ; seq += piece / chunk {
			j := <-free
			n, err := io.ReadFull(in, j.pt[:piece])
			if n == 0 {
				if err != io.EOF {
					readErr = err
				}
				return
			}
			if err != nil && err != io.ErrUnexpectedEOF {
				readErr = err
				return
			}
			j.pt, j.seq, j.done = j.pt[:n], seq, make(chan struct{})
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
		j.pt = j.pt[:cap(j.pt)]
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
