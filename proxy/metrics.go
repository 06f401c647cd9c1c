package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the proxy's Prometheus collectors. Label values come only
// from fixed sets (decisions, reasons, modes, directions) and slot names.
type metrics struct {
	requests *prometheus.CounterVec   // decision, slot
	bytes    *prometheus.CounterVec   // direction, decision, slot
	denials  *prometheus.CounterVec   // reason
	tunnels  *prometheus.GaugeVec     // mode
	latency  *prometheus.HistogramVec // decision
	scrubbed *prometheus.CounterVec   // slot, where
	gatherer prometheus.Gatherer

	// The children observe adds to, by (decision, slot), and the latency
	// histogram's by decision: WithLabelValues checks and hashes its labels
	// and locks its vector on every call, three times per request.
	mu        sync.RWMutex
	series    map[[2]string]*requestSeries
	latencyBy map[string]prometheus.Observer
}

// requestSeries are the children of requests and bytes for one (decision,
// slot). The byte counters are made on their first use, as WithLabelValues
// would make them, so that a series appears in the output only once counted.
type requestSeries struct {
	requests prometheus.Counter
	up, down atomic.Pointer[prometheus.Counter]
}

// seriesFor returns the cached children for (decision, slot).
func (m *metrics) seriesFor(decision, slot string) *requestSeries {
	return cached(&m.mu, m.series, [2]string{decision, slot}, func() *requestSeries {
		return &requestSeries{requests: m.requests.WithLabelValues(decision, slot)}
	})
}

// cached returns c[k], made by mk on its first use; mu guards c.
func cached[K comparable, V any](mu *sync.RWMutex, c map[K]V, k K, mk func() V) V {
	mu.RLock()
	v, ok := c[k]
	mu.RUnlock()
	if ok {
		return v
	}
	mu.Lock()
	defer mu.Unlock()
	if v, ok = c[k]; !ok {
		v = mk()
		c[k] = v
	}
	return v
}

// add adds n to the byte counter in p, made on first use for direction dir.
func (m *metrics) add(p *atomic.Pointer[prometheus.Counter], n int64, dir, decision, slot string) {
	c := p.Load()
	if c == nil {
		// Concurrent first uses get the same child from the vector.
		ctr := m.bytes.WithLabelValues(dir, decision, slot)
		p.Store(&ctr)
		c = &ctr
	}
	(*c).Add(float64(n))
}

// latencyFor returns the latency histogram's child for decision.
func (m *metrics) latencyFor(decision string) prometheus.Observer {
	return cached(&m.mu, m.latencyBy, decision, func() prometheus.Observer {
		return m.latency.WithLabelValues(decision)
	})
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cork_requests_total",
			Help: "Egress decisions (CONNECT tunnels, intercepted and plain requests) by decision and slot.",
		}, []string{"decision", "slot"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cork_bytes_total",
			Help: "Body bytes relayed (tunnels: all bytes) by direction (up = to upstream), decision and slot.",
		}, []string{"direction", "decision", "slot"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cork_denials_total",
			Help: "Responses produced by cork itself (denials and upstream failures) by reason code.",
		}, []string{"reason"}),
		tunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cork_active_tunnels",
			Help: "Open client connections taken over by the proxy, by mode (tunnel, mitm).",
		}, []string{"mode"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cork_upstream_latency_seconds",
			Help:    "Time from sending a request upstream to its response headers.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"decision"}),
		scrubbed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cork_scrub_hits_total",
			Help: "Real tokens (in any encoding) replaced by their placeholder in what upstreams sent back, by slot and where (header, body, trailer, websocket).",
		}, []string{"slot", "where"}),
	}
	m.series, m.latencyBy = map[[2]string]*requestSeries{}, map[string]prometheus.Observer{}
	var process []prometheus.Collector
	if reg == nil {
		// A registry of its own also gets the Go runtime and process
		// collectors (go_goroutines, process_open_fds,
		// process_resident_memory_bytes, ...): one proxy per process, as
		// `cork proxy` runs it. A caller's registry already has them or
		// chose not to.
		r := prometheus.NewRegistry()
		reg, m.gatherer = r, r
		process = []prometheus.Collector{
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		}
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	var errs []error
	for _, c := range append([]prometheus.Collector{m.requests, m.bytes, m.denials, m.tunnels, m.latency, m.scrubbed}, process...) {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) observe(e *auditEntry) {
	s := m.seriesFor(e.decision, e.slot)
	s.requests.Inc()
	if e.up > 0 {
		m.add(&s.up, e.up, "up", e.decision, e.slot)
	}
	if e.down > 0 {
		m.add(&s.down, e.down, "down", e.decision, e.slot)
	}
	if e.reason != "" {
		m.denials.WithLabelValues(e.reason).Inc()
	}
}

// MetricsHandler serves the proxy's metrics in the Prometheus text format.
// With a Config.Registerer that is not a Gatherer it serves nothing (404).
func (p *Proxy) MetricsHandler() http.Handler {
	if p.metrics.gatherer == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(p.metrics.gatherer, promhttp.HandlerOpts{})
}
