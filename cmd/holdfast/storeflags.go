package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/repo"
)

// storeFlags are the options that choose and reach a store.
type storeFlags struct {
	store       string
	endpoint    string
	region      string
	pathStyle   bool
	allowHTTP   bool
	allowTLS12  bool
	caBundle    string
	pins        []string
	partMiB     int64
	concurrency int
	maxAttempts int
	timeout     time.Duration
	idleTimeout time.Duration
}

func (f *storeFlags) register(c *cobra.Command, what string) {
	fl := c.Flags()
	fl.StringVar(&f.store, "store", "", what+": a directory, or s3://BUCKET/PREFIX")
	fl.StringVar(&f.endpoint, "s3-endpoint", "", "S3 endpoint URL (default: AWS)")
	fl.StringVar(&f.region, "s3-region", "", "S3 region (default us-east-1)")
	fl.BoolVar(&f.pathStyle, "s3-path-style", false, "address the bucket in the path, not the host name")
	fl.BoolVar(&f.allowHTTP, "s3-allow-http", false, "allow a plain-http endpoint, on a loopback address only")
	fl.BoolVar(&f.allowTLS12, "s3-allow-tls12", false, "allow TLS 1.2 (TLS 1.3 is required otherwise)")
	fl.StringVar(&f.caBundle, "s3-ca-bundle", "", "PEM file of certificate authorities to trust for the endpoint")
	fl.StringArrayVar(&f.pins, "s3-pin", nil, "accept only this server key: base64 SHA-256 of its SubjectPublicKeyInfo (repeatable)")
	fl.Int64Var(&f.partMiB, "s3-part-size", 0, "multipart part size in MiB (default 16)")
	fl.IntVar(&f.concurrency, "s3-concurrency", 0, "parts uploaded at once (default 4)")
	fl.IntVar(&f.maxAttempts, "s3-max-attempts", 0, "attempts of one request before it fails, the first included (default 10)")
	fl.DurationVar(&f.timeout, "s3-timeout", 0, "deadline of one request, all attempts and waits included (default 5m)")
	fl.DurationVar(&f.idleTimeout, "s3-idle-timeout", 0, "an attempt fails after this long without an answer moving 64 KiB (default 30s)")
}

// s3 returns the S3 settings when --store names an S3 bucket, else nil.
func (f *storeFlags) s3() (*repo.S3Config, error) {
	rest, ok := strings.CutPrefix(f.store, "s3://")
	if !ok {
		return nil, nil
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return nil, usagef("--store %q names no bucket", f.store)
	}
	if f.maxAttempts < 0 || f.timeout < 0 || f.idleTimeout < 0 {
		return nil, usagef("--s3-max-attempts, --s3-timeout and --s3-idle-timeout must not be negative")
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &repo.S3Config{Bucket: bucket, Prefix: prefix, Endpoint: f.endpoint, Region: f.region, PathStyle: f.pathStyle,
		AllowHTTP: f.allowHTTP, AllowTLS12: f.allowTLS12, CABundle: f.caBundle, PinSPKI: f.pins,
		PartSize: f.partMiB << 20, Concurrency: f.concurrency, MaxAttempts: f.maxAttempts,
		Timeout: repo.Duration(f.timeout), IdleTimeout: repo.Duration(f.idleTimeout)}, nil
}

// catalogFlags name a catalog kept on PostgreSQL (repo.CatalogConfig).
type catalogFlags struct {
	url, ca, cert, key string
}

func (f *catalogFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.url, "catalog-url", "", "keep the catalog on PostgreSQL: postgres://USER@HOST:PORT/DB (no password: mutual TLS)")
	fl.StringVar(&f.ca, "catalog-ca", "", "PEM file: the CA the PostgreSQL server's certificate must chain to")
	fl.StringVar(&f.cert, "catalog-cert", "", "PEM file: this client's certificate for PostgreSQL")
	fl.StringVar(&f.key, "catalog-key", "", "PEM file: its private key")
}

// config returns the catalog settings, or nil when no --catalog-url was
// given.
func (f *catalogFlags) config() (*repo.CatalogConfig, error) {
	if f.url == "" {
		if f.ca != "" || f.cert != "" || f.key != "" {
			return nil, usagef("--catalog-ca, --catalog-cert and --catalog-key go with --catalog-url")
		}
		return nil, nil
	}
	if f.ca == "" || f.cert == "" || f.key == "" {
		return nil, usagef("--catalog-url needs --catalog-ca, --catalog-cert and --catalog-key (mutual TLS)")
	}
	return &repo.CatalogConfig{Type: repo.CatalogPostgres, URL: f.url, CA: f.ca, Cert: f.cert, Key: f.key}, nil
}
