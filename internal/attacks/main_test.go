package attacks

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testutil/versitygw"
)

// holdfastBin is the holdfast binary built from the current tree by
// TestMain: the suite attacks what ships, run as a subprocess.
var holdfastBin string

// suiteDir holds the binary and every world's home and store; it is
// removed when the suite ends.
var suiteDir string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacks:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "holdfast-attacks-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	suiteDir = dir
	holdfastBin = filepath.Join(dir, "holdfast")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", holdfastBin, "./cmd/holdfast")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build ./cmd/holdfast: %v\n%s", err, out)
	}
	// The S3 credentials reach in-process code (repo.Init of S3 worlds)
	// through the standard AWS chain, as they reach the CLI.
	for k, v := range awsEnv() {
		os.Setenv(k, v)
	}
	code := m.Run()
	stopShared()
	return code, nil
}

// awsEnv is the environment that gives the store's S3 credentials to
// holdfast and nothing else from the machine's AWS configuration.
func awsEnv() map[string]string {
	return map[string]string{
		"AWS_ACCESS_KEY_ID":           versitygw.AccessKey,
		"AWS_SECRET_ACCESS_KEY":       versitygw.SecretKey,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_REGION":                  "us-east-1",
	}
}

// logCorpus collects every log line the suite produced (CLI standard
// error, the gateway's output, versitygw's log) for A4.
type logCorpus struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *logCorpus) add(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b.Write(b)
	c.b.WriteByte('\n')
}

func (c *logCorpus) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.b.Bytes())
}

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

var logs logCorpus

// secretsMu guards secrets: every secret value the suite knows of, by a
// name for messages, that must never reach the store or a log (A4).
var (
	secretsMu sync.Mutex
	secrets   = map[string][]byte{"store S3 secret": []byte(versitygw.SecretKey)}
)

func addSecret(name string, v []byte) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secrets[name] = bytes.Clone(v)
}

// worlds are every repository the suite made, for A4's sweep.
var (
	worldsMu sync.Mutex
	worlds   []*world
)

func register(w *world) {
	worldsMu.Lock()
	defer worldsMu.Unlock()
	worlds = append(worlds, w)
}
