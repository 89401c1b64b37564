package s3

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"

	"github.com/holdfast/holdfast/internal/store"
)

// Config says where the store is and how to reach it.
type Config struct {
	Bucket   string
	Prefix   string // prepended to every object name; "" or ending in "/"
	Endpoint string // https://host[:port]; "" for AWS
	Region   string
	// PathStyle addresses the bucket in the path (custom endpoints,
	// IP addresses) instead of the host name.
	PathStyle bool
	// AllowHTTP permits a plain-http endpoint, and only on a loopback
	// address.
	AllowHTTP bool
	// AllowTLS12 permits TLS 1.2; TLS 1.3 is required otherwise.
	AllowTLS12 bool
	// CABundle is a PEM file of certificate authorities to trust instead
	// of the system's.
	CABundle string
	// PinSPKI, if set, lists base64 SHA-256 digests of the acceptable
	// server public keys (SubjectPublicKeyInfo); any other key is refused.
	PinSPKI []string
	// PartSize and Concurrency bound a multipart upload's memory to
	// PartSize × Concurrency. Defaults: 16 MiB and 4.
	PartSize    int64
	Concurrency int

	// Faults (see retry.go). Zero values take the defaults.
	//
	// MaxAttempts bounds the attempts of one request, the first included
	// (default 10). MaxBackoff caps the random wait between attempts
	// (default 20 s). IdleTimeout fails an attempt whose connection moves
	// no byte for that long (default 30 s). Timeout is the deadline of one
	// request with all its attempts and waits (default 5 min).
	MaxAttempts int
	MaxBackoff  time.Duration
	IdleTimeout time.Duration
	Timeout     time.Duration
}

// Errors a configuration can be refused with.
var (
	ErrInsecureEndpoint = errors.New("refusing an insecure endpoint")
	ErrPinMismatch      = errors.New("server key does not match the pinned key")
)

// Store is a store.Store in an S3 bucket.
type Store struct {
	closed atomic.Bool
	c      *s3.Client
	hc     *http.Client // c's HTTP client; Close releases its idle connections
	// parts holds the buffers of uploads: PartSize × (Concurrency+1).
	parts       *partPool
	concurrency int
	listPage    int32 // objects per listing page; 0: the server's default (1000)
	bucket      string
	prefix      string

	// Faults (retry.go).
	retryer           *retry.Standard
	maxAttempts       int
	timeout           time.Duration
	requests, retries atomic.Int64
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.Janitor       = (*Store)(nil)
	_ store.StatsReporter = (*Store)(nil)
)

// New returns the store described by c. Credentials come from the standard
// AWS chain (environment, shared config and credentials files, profile).
func New(ctx context.Context, c Config) (*Store, error) {
	if c.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if c.AllowTLS12 {
		tlsCfg.MinVersion = tls.VersionTLS12
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("s3: endpoint %q is not a URL", redact(c.Endpoint))
		}
		switch u.Scheme {
		case "https":
		case "http":
			if !c.AllowHTTP {
				return nil, fmt.Errorf("s3: endpoint %q is plain http (allow it explicitly, for a loopback address only): %w", redact(c.Endpoint), ErrInsecureEndpoint)
			}
			if !isLoopback(u.Hostname()) {
				return nil, fmt.Errorf("s3: plain http is allowed only to a loopback address, not %q: %w", u.Hostname(), ErrInsecureEndpoint)
			}
		default:
			return nil, fmt.Errorf("s3: endpoint %q: scheme must be https", redact(c.Endpoint))
		}
	}
	if c.CABundle != "" {
		pem, err := os.ReadFile(c.CABundle)
		if err != nil {
			return nil, fmt.Errorf("s3: reading CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3: CA bundle %q holds no certificate", c.CABundle)
		}
		tlsCfg.RootCAs = pool
	}
	if len(c.PinSPKI) > 0 {
		pins := map[string]bool{}
		for _, p := range c.PinSPKI {
			pins[p] = true
		}
		tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrPinMismatch
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
			if !pins[base64.StdEncoding.EncodeToString(sum[:])] {
				return ErrPinMismatch
			}
			return nil
		}
	}
	attempts, maxBackoff, idle, timeout := c.MaxAttempts, c.MaxBackoff, c.IdleTimeout, c.Timeout
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	if maxBackoff <= 0 {
		maxBackoff = DefaultMaxBackoff
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	st := &Store{bucket: c.Bucket, prefix: c.Prefix, retryer: newRetryer(attempts, maxBackoff), maxAttempts: attempts, timeout: timeout}
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.TLSClientConfig = tlsCfg
	})
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region), awsconfig.WithHTTPClient(hc))
	if err != nil {
		return nil, fmt.Errorf("s3: loading AWS configuration: %w", err)
	}
	if cfg.Credentials != nil {
		cfg.Credentials = quietCredentials{cfg.Credentials}
	}
	// The S3 client's own HTTP client starts from the transport the SDK
	// configured (AWS_CA_BUNDLE included), with fault handling added.
	bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		return nil, fmt.Errorf("s3: unexpected HTTP client %T", cfg.HTTPClient)
	}
	sc := st.httpClient(bc.GetTransport(), idle)
	st.hc = sc
	cl := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
		// Holdfast authenticates every byte itself and TLS protects the
		// transfer: no extra checksum headers go out, none are demanded
		// back, and the SDK logs nothing (it would log to our stderr).
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.Logger = logging.Nop{}
		o.ClientLogMode = 0
		o.HTTPClient = sc
		o.Retryer = st.retryer
		o.RetryMaxAttempts = 0 // ours, not $AWS_MAX_ATTEMPTS
		o.APIOptions = append(o.APIOptions, st.addMiddleware)
	})
	part, conc := c.PartSize, c.Concurrency
	if part <= 0 {
		part = 16 << 20
	}
	if conc <= 0 {
		conc = 4
	}
	if part < minPartSize || part > maxPartSize {
		return nil, fmt.Errorf("s3: part size %d is outside S3's limits (%d to %d bytes)", part, minPartSize, int64(maxPartSize))
	}
	st.c, st.parts, st.concurrency = cl, newPartPool(int(part), conc+1), conc
	return st, nil
}

// Stats implements store.StatsReporter.
func (s *Store) Stats() store.Stats {
	return store.Stats{Requests: s.requests.Load(), Retries: s.retries.Load()}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redact drops user information from a URL before it is shown.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}

func (s *Store) key(name string) string { return s.prefix + name }

func (s *Store) check(op, name string) error {
	if s.closed.Load() {
		return fmt.Errorf("s3: %s %q: store is closed", op, name)
	}
	if !store.ValidName(name) {
		return fmt.Errorf("s3: %s %q: %w", op, name, store.ErrInvalidName)
	}
	return nil
}

// wrapErr maps S3 answers onto the store's errors.
// innermost is the error at the end of err's chain: the cause without the
// SDK's wrapping ("x509: certificate signed by unknown authority").
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// quietCredentials keeps a credential_process's output out of errors:
// when the process fails, or prints something that is not credentials,
// the SDK's error quotes what it printed, which may hold a secret key —
// and store errors reach the terminal and the gateway's log.
type quietCredentials struct{ aws.CredentialsProvider }

func (q quietCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := q.CredentialsProvider.Retrieve(ctx)
	var pe *processcreds.ProviderError
	if errors.As(err, &pe) {
		return c, errors.New("the credential_process named in the AWS config failed or did not print credentials (what it printed is not shown: it may hold a secret)")
	}
	return c, err
}

func wrapErr(op, name string, err error) error {
	var ue *unavailableError
	if errors.As(err, &ue) {
		// Without the SDK's "operation error S3: …" wrapping.
		return fmt.Errorf("s3: %s %q: %w", op, name, ue)
	}
	if tlsRefused(err) {
		// Nothing was sent: the endpoint is not the one we trust. Name the
		// reason without the SDK's layers of wrapping.
		return fmt.Errorf("s3: %s %q: the endpoint's TLS handshake was refused, nothing was sent (%w): %w", op, name, innermost(err), store.ErrUnavailable)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("s3: %s %q: %w", op, name, store.ErrNotExist)
		case http.StatusRequestedRangeNotSatisfiable:
			return fmt.Errorf("s3: %s %q: %w", op, name, store.ErrInvalidRange)
		case http.StatusPreconditionFailed:
			return fmt.Errorf("s3: %s %q: the object changed while it was read: %w", op, name, err)
		}
	}
	return fmt.Errorf("s3: %s %q: %w", op, name, err)
}

// Put implements store.Store. The body streams up in one PutObject for a
// small object, in a multipart upload (aborted on failure) for a large one,
// with memory fixed at part size × (concurrency+1) (see upload).
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := s.check("put", name); err != nil {
		return err
	}
	if size < store.UnknownSize {
		return fmt.Errorf("s3: put %q: negative size %d: %w", name, size, store.ErrShortWrite)
	}
	body := &exactReader{r: r, want: size}
	if err := s.upload(ctx, s.key(name), body); err != nil {
		if body.err != nil {
			return fmt.Errorf("s3: put %q: %w", name, body.err)
		}
		return wrapErr("put", name, err)
	}
	return nil
}

// exactReader fails the read (so the upload fails and nothing is stored)
// when the body is longer or shorter than declared.
type exactReader struct {
	r    io.Reader
	want int64 // UnknownSize: anything
	n    int64
	err  error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := exactRead(e.r, p, e.want, &e.n)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// exactRead reads from r into p for a body that must be exactly want
// bytes (UnknownSize: anything); *n counts what was read. A body with more
// bytes fails before its last declared byte is handed over, so the
// request is cut short on the wire and the server stores nothing: a
// failure noticed only after the whole declared length was sent would
// leave a complete, wrong request that the server may act on after the
// caller has moved on (a short part uploaded over a good one).
func exactRead(r io.Reader, p []byte, want int64, n *int64) (int, error) {
	if want < 0 {
		m, err := r.Read(p)
		*n += int64(m)
		return m, err
	}
	if left := want - *n; int64(len(p)) > left {
		p = p[:left]
	}
	if len(p) == 0 {
		if more(r) {
			return 0, fmt.Errorf("more than %d bytes: %w", want, store.ErrShortWrite)
		}
		return 0, io.EOF
	}
	m, err := r.Read(p)
	*n += int64(m)
	switch {
	case err == io.EOF && *n != want:
		return m, fmt.Errorf("got %d of %d bytes: %w", *n, want, store.ErrShortWrite)
	case err != nil && err != io.EOF:
		return m, err
	case *n == want && err == nil && more(r):
		// The last declared bytes are withheld: see above.
		return 0, fmt.Errorf("more than %d bytes: %w", want, store.ErrShortWrite)
	}
	return m, err
}

// more reports whether r has another byte (consuming it).
func more(r io.Reader) bool {
	var one [1]byte
	for range 100 {
		m, err := r.Read(one[:])
		if m > 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// ReadRange implements store.Store with a ranged GetObject.
func (s *Store) ReadRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := s.check("read", name); err != nil {
		return nil, err
	}
	if off < 0 || length < -1 {
		return nil, fmt.Errorf("s3: read %q: range %d+%d: %w", name, off, length, store.ErrInvalidRange)
	}
	if length == 0 {
		info, err := s.Stat(ctx, name)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, fmt.Errorf("s3: read %q: offset %d beyond %d bytes: %w", name, off, info.Size, store.ErrInvalidRange)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	b := &body{s: s, name: name, off: off, end: -1}
	if length > 0 {
		b.end = off + length
	}
	b.ctx, b.cancel = context.WithCancel(ctx)
	out, err := s.get(b.ctx, name, off, b.end, nil)
	if err != nil {
		b.cancel()
		err = wrapErr("read", name, err)
		if errors.Is(err, store.ErrInvalidRange) {
			// S3 refuses a range that starts exactly at the end; the
			// store contract makes that an empty read.
			if info, serr := s.Stat(ctx, name); serr == nil && off == info.Size {
				return io.NopCloser(strings.NewReader("")), nil
			}
		}
		return nil, err
	}
	b.rc, b.etag, b.end = out.Body, out.ETag, rangeEnd(out, off)
	return b, nil
}

// Stat implements store.Store with HeadObject.
func (s *Store) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	if err := s.check("stat", name); err != nil {
		return store.ObjectInfo{}, err
	}
	out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))})
	if err != nil {
		return store.ObjectInfo{}, wrapErr("stat", name, err)
	}
	return store.ObjectInfo{Name: name, Size: aws.ToInt64(out.ContentLength)}, nil
}

// Delete implements store.Store. S3 deletes a missing key without
// complaint, so a HeadObject first tells the caller it was missing. A
// retried DELETE whose first answer was lost deletes nothing more.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.check("delete", name); err != nil {
		return err
	}
	if _, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))}); err != nil {
		return wrapErr("delete", name, err)
	}
	_, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.key(name))})
	if err != nil {
		return wrapErr("delete", name, err)
	}
	return nil
}

// List implements store.Store with paginated ListObjectsV2 (S3 lists keys
// in byte order). Keys under the prefix that are not valid names are not
// Holdfast's and are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	return s.pages(ctx, prefix, func(o types.Object) error {
		name := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
		if !store.ValidName(name) {
			return nil
		}
		return fn(store.ObjectInfo{Name: name, Size: aws.ToInt64(o.Size)})
	})
}

// ListStrangers implements store.StrangerLister: the keys under the prefix
// that are not object names Holdfast writes (List skips them).
func (s *Store) ListStrangers(ctx context.Context, fn func(name string, size int64) error) error {
	return s.pages(ctx, "", func(o types.Object) error {
		name := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
		if store.ValidName(name) {
			return nil
		}
		return fn(name, aws.ToInt64(o.Size))
	})
}

// ErrListingLoops: the provider's listing asked to be continued from the
// token it was just asked with, so it would never end.
var ErrListingLoops = errors.New("the store's listing repeats itself")

// pages calls fn with every key of the listing under prefix, page by
// page. A page that says the listing goes on must give a token that
// continues it: one that is missing, or the very token that page was
// asked with, would end the listing early unnoticed or ask for the same
// page for ever, so either fails the listing.
func (s *Store) pages(ctx context.Context, prefix string, fn func(types.Object) error) error {
	if s.closed.Load() {
		return errors.New("s3: list: store is closed")
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix + prefix)}
	if s.listPage > 0 {
		in.MaxKeys = aws.Int32(s.listPage)
	}
	for n := 1; ; n++ {
		page, err := s.c.ListObjectsV2(ctx, in)
		if err != nil {
			return wrapErr("list", prefix, err)
		}
		for _, o := range page.Contents {
			if err := fn(o); err != nil {
				return err
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		next := aws.ToString(page.NextContinuationToken)
		switch {
		case next == "":
			return fmt.Errorf("s3: list %q: page %d says the listing goes on but gives no token to continue it: %w", prefix, n, ErrListingLoops)
		case next == aws.ToString(in.ContinuationToken):
			return fmt.Errorf("s3: list %q: page %d asks to be continued from the token it was asked with: %w", prefix, n, ErrListingLoops)
		}
		in.ContinuationToken = aws.String(next)
	}
}

// AbortIncomplete implements store.Janitor: it aborts the incomplete
// multipart uploads under the prefix (left by a writer killed mid-upload)
// except those of writes still in progress.
func (s *Store) AbortIncomplete(ctx context.Context, inProgress func(name string) bool) (int, error) {
	n := 0
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix)}
	for {
		out, err := s.c.ListMultipartUploads(ctx, in)
		if err != nil {
			return n, wrapErr("list uploads", s.prefix, err)
		}
		for _, u := range out.Uploads {
			name := strings.TrimPrefix(aws.ToString(u.Key), s.prefix)
			if !store.ValidName(name) || inProgress(name) {
				continue
			}
			if _, err := s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.bucket),
				Key: u.Key, UploadId: u.UploadId}); err != nil {
				return n, wrapErr("abort upload", name, err)
			}
			n++
		}
		if !aws.ToBool(out.IsTruncated) {
			return n, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// Close implements store.Store.
// It closes the store's idle connections to the provider.
func (s *Store) Close() error {
	s.closed.Store(true)
	if s.hc != nil {
		s.hc.CloseIdleConnections()
	}
	return nil
}
