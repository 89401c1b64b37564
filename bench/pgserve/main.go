// Command pgserve runs a throwaway PostgreSQL cluster for the benchmarks
// (internal/testutil/pgtest: 127.0.0.1, mutual TLS only), creates the
// databases named on the command line, writes how to reach each to a
// JSON file, and stops the cluster on SIGINT or SIGTERM.
//
//	pgserve -out dbs.json holdfast [more…]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/holdfast/holdfast/internal/testutil/pgtest"
)

func main() {
	out := flag.String("out", "", "write the databases (url, ca, cert, key) here as JSON")
	flag.Parse()
	if err := run(*out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "pgserve:", err)
		os.Exit(1)
	}
}

func run(out string, names []string) error {
	if out == "" || len(names) == 0 {
		return fmt.Errorf("usage: pgserve -out FILE DB...")
	}
	s, err := pgtest.Launch(pgtest.Options{})
	if err != nil {
		return err
	}
	defer s.Stop()
	dbs := map[string]pgtest.Database{}
	for _, n := range names {
		d, err := s.CreateDatabase(n)
		if err != nil {
			return err
		}
		dbs[n] = d
	}
	b, err := json.MarshalIndent(dbs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o600); err != nil {
		return err
	}
	fmt.Println("pgserve: ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}
