// Command genvectors writes the storage-format test vectors into
// testdata/vectors/ (run from the repository root). With -check it
// regenerates them into a temporary directory and fails on any difference.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/vectors"
)

func main() {
	dir := flag.String("dir", "testdata/vectors", "vector directory")
	check := flag.Bool("check", false, "compare instead of writing")
	flag.Parse()
	obj, kr := filepath.Join(*dir, "object"), filepath.Join(*dir, "keyring")
	var err error
	if *check {
		if err = vectors.Check(obj); err == nil {
			err = vectors.CheckWith(kr, keyring.GenerateVectors)
		}
	} else {
		for _, d := range []string{obj, kr} {
			if err = os.RemoveAll(d); err != nil {
				break
			}
		}
		if err == nil {
			err = vectors.Generate(obj)
		}
		if err == nil {
			err = keyring.GenerateVectors(kr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genvectors:", err)
		os.Exit(1)
	}
}
