package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/versity/versitygw/s3err"
)

// Metrics are the gateway's Prometheus metrics. They count what the
// backend sees: each S3 operation with its outcome, the bytes of object
// bodies, integrity failures, and the periodic sample check.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	bytesIn       prometheus.Counter
	bytesOut      prometheus.Counter
	integrity     prometheus.Counter
	sampled       *prometheus.CounterVec
	sealed        prometheus.Gauge
	refusedSealed prometheus.Counter
	log           *slog.Logger
	lastSample    atomic.Int64
}

// NewMetrics makes the metrics on a registry of their own (with the Go
// runtime's and the process's collectors).
func NewMetrics(log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_gateway_requests_total",
			Help: "S3 operations handled, by operation and S3 result code (ok for success)."}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "holdfast_gateway_request_seconds",
			Help:    "Time to handle an S3 operation, up to the start of a response body.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"op"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_gateway_received_bytes_total",
			Help: "Plaintext bytes of object bodies received from clients."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_gateway_sent_bytes_total",
			Help: "Authenticated plaintext bytes of object bodies sent to clients."}),
		integrity: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_gateway_integrity_failures_total",
			Help: "Reads refused because the stored object failed authentication."}),
		sampled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_gateway_sample_checks_total",
			Help: "Objects checked by the periodic sampled verify, by status."}, []string{"status"}),
		sealed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "holdfast_gateway_keys_sealed",
			Help: "1 while keys are sealed because the host's posture fails the policy (requests are refused), else 0."}),
		refusedSealed: prometheus.NewCounter(prometheus.CounterOpts{Name: "holdfast_gateway_sealed_refusals_total",
			Help: "Requests refused with 503 because keys were sealed."}),
		log: log,
	}
	m.reg.MustRegister(m.requests, m.latency, m.bytesIn, m.bytesOut, m.integrity, m.sampled, m.sealed, m.refusedSealed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Integrity implements Events.
func (m *Metrics) Integrity(bucket, key string, err error) {
	m.integrity.Inc()
	// The names are the client's; they are logged on premises only.
	m.log.Error("integrity failure: a stored object failed authentication", "bucket", bucket, "key", key, "error", err.Error())
}

// Request implements Events: it counts the operation and logs it (at
// debug level when it succeeded, info when the client erred, error for
// the gateway's own failures). Object names are not logged.
func (m *Metrics) Request(op, requestID, key string, start time.Time, err error) {
	d := time.Since(start)
	code, level := "ok", slog.LevelDebug
	if err != nil {
		code, level = "InternalError", slog.LevelError
		var ae s3err.APIError
		if errors.As(err, &ae) {
			code = ae.Code
			if ae.HTTPStatusCode < 500 {
				level = slog.LevelInfo
			}
		}
	}
	m.requests.WithLabelValues(op, code).Inc()
	m.latency.WithLabelValues(op).Observe(d.Seconds())
	m.log.Log(context.Background(), level, "request", "op", op, "code", code, "request_id", requestID,
		"access_key", key, "ms", float64(d.Microseconds())/1000)
}

// Received and Sent implement Events.
func (m *Metrics) Received(n int64) { m.bytesIn.Add(float64(n)) }
func (m *Metrics) Sent(n int64)     { m.bytesOut.Add(float64(n)) }

// KeysSealed and RefusedSealed count sealing (see Backend.UseGuard).
func (m *Metrics) KeysSealed(sealed bool) {
	v := 0.0
	if sealed {
		v = 1
	}
	m.sealed.Set(v)
}
func (m *Metrics) RefusedSealed() { m.refusedSealed.Inc() }

// Sampled counts one object checked by the periodic sample check.
func (m *Metrics) Sampled(status string) { m.sampled.WithLabelValues(status).Inc() }

// OpsServer serves /healthz (the process is up), /readyz (the gateway
// serves requests: started, and ready says yes) and /metrics, on a
// listener of its own so that none of these paths can hide a bucket.
func OpsServer(ctx context.Context, addr string, m *Metrics, ready func() error) (net.Addr, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr(), nil
}
