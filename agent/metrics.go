package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
	"github.com/vrss-dev/vrss/steering"
)

// Metrics, served by vrssd --metrics (docs/metrics.md). The TAPs'
// counters are read when Prometheus scrapes, under s.mu as the stats
// operation reads them (statsLocked): a scrape and a stats request made
// with no traffic in between report the same numbers. Only the request
// and refusal counts are kept by vrssd itself, as they happen.

// Label values for requests that are not one of vrssd's operations.
const (
	opNone    = "none"    // refused before its operation was read (rate, size, malformed)
	opUnknown = "unknown" // an operation this vrssd does not have
)

// requestCounts are the requests vrssd answered, by operation, the
// refusals among them by operation and error code, and the connections
// it refused. They are counted whether or not vrssd serves metrics:
// counting costs next to nothing.
type requestCounts struct {
	requests *prometheus.CounterVec
	refused  *prometheus.CounterVec
	conns    *prometheus.CounterVec
}

func newRequestCounts() *requestCounts {
	return &requestCounts{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vrss_requests_total",
			Help: "Requests vrssd answered, refused ones included, by operation.",
		}, []string{"op"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vrss_requests_refused_total",
			Help: "Requests vrssd answered with an error, by operation and error code (api.Code).",
		}, []string{"op", "reason"}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vrss_connections_refused_total",
			Help: "Connections vrssd refused at accept, by error code.",
		}, []string{"reason"}),
	}
}

// opLabel bounds the op label to vrssd's operations.
func opLabel(op api.Op) string {
	if _, ok := handlers[op]; ok || op == api.OpHello {
		return string(op)
	}
	if op == "" {
		return opNone
	}
	return opUnknown
}

// answered counts one answer to a request for op.
func (c *requestCounts) answered(op api.Op, resp *api.Response) {
	l := opLabel(op)
	c.requests.WithLabelValues(l).Inc()
	if resp != nil && resp.Error != nil {
		c.refused.WithLabelValues(l, string(resp.Error.Code)).Inc()
	}
}

// connRefused counts a connection refused with e.
func (c *requestCounts) connRefused(e *api.Error) {
	c.conns.WithLabelValues(string(e.Code)).Inc()
}

// tapLabels name a TAP: its name, and the path of its network namespace
// (api.CreateArgs.Netns; empty, so absent, for vrssd's own), since TAP
// names are per namespace.
var tapLabels = []string{"tap", "netns"}

// withTAP is tapLabels and then more.
func withTAP(more ...string) []string { return append(slices.Clone(tapLabels), more...) }

// The descriptions of the metrics read at scrape time.
var (
	descTAPs = prometheus.NewDesc("vrss_taps",
		"TAPs vrssd manages.", nil, nil)
	descConns = prometheus.NewDesc("vrss_connections",
		"Client connections open to vrssd.", nil, nil)
	descBuild = prometheus.NewDesc("vrss_build_info",
		"Always 1: the daemon's version and the steering ABI stamp.", []string{"version", "abi"}, nil)
	descQueues = prometheus.NewDesc("vrss_tap_queues",
		"Queues the TAP was made with.", tapLabels, nil)
	descEnabled = prometheus.NewDesc("vrss_tap_enabled_queues",
		"Enabled queues other processes (the VMM) hold, as the kernel last reported.", tapLabels, nil)
	descSteering = prometheus.NewDesc("vrss_tap_steering",
		"1 if vrss's program steers the TAP, 0 if it is detached (by the operator, for QEMU's own program, or found detached and not yet re-attached).", tapLabels, nil)
	descFlows = prometheus.NewDesc("vrss_tap_flows",
		"1 if the TAP is steered by the flow build (flow rules and RSS contexts).", tapLabels, nil)
	descUp = prometheus.NewDesc("vrss_tap_counters_up",
		"1 if the TAP's counters were read; 0 if not (a program of another vrssd build, or pins that could not be loaded): its other vrss_tap_ counters are then absent.", tapLabels, nil)
	descGeneration = prometheus.NewDesc("vrss_tap_config_generation",
		"Generation of the TAP's configuration map: it grows with every configuration published, by vrssd or by the VMM through its mapping.", tapLabels, nil)
	descReattached = prometheus.NewDesc("vrss_tap_reattachments_total",
		"Times vrssd found the TAP's program detached behind its back (frames sent that it never counted) and attached it again, since vrssd started.", tapLabels, nil)
	descQueuePackets = prometheus.NewDesc("vrss_tap_queue_packets_total",
		"Packets the steering program sent to each queue of the TAP by its configuration (unclassified ones included; unconfigured ones are counted apart).", withTAP("queue"), nil)
	descUnclassified = prometheus.NewDesc("vrss_tap_unclassified_packets_total",
		"Packets no enabled hash type applied to; they went to the configuration's unclassified queue.", tapLabels, nil)
	descUnconfigured = prometheus.NewDesc("vrss_tap_unconfigured_packets_total",
		"Packets steered before any configuration was published; they went to queue 0.", tapLabels, nil)
	descRetries = prometheus.NewDesc("vrss_tap_config_read_retries_total",
		"Packets the program steered again because a publish raced its read of the configuration (the sequence count changed).", tapLabels, nil)
	descTorn = prometheus.NewDesc("vrss_tap_config_torn_reads_total",
		"Packets for which the program gave up re-reading a configuration that kept changing.", tapLabels, nil)
	descDropped = prometheus.NewDesc("vrss_tap_flow_dropped_packets_total",
		"Packets drop rules dropped at the TAP's tc egress.", tapLabels, nil)
	descRaced = prometheus.NewDesc("vrss_tap_flow_raced_packets_total",
		"Packets that met a drop rule in the steering program (the rules changed between the filter and the program); RSS steered them.", tapLabels, nil)
	descUnattributed = prometheus.NewDesc("vrss_tap_flow_unattributed_hits_total",
		"Rule hits of rules that had no counter of their own.", tapLabels, nil)
	descNoRulePath = prometheus.NewDesc("vrss_tap_flow_no_rule_path_packets_total",
		"Packets the program could not hand to its rule path; they went to the unclassified queue.", tapLabels, nil)
	descRuleHits = prometheus.NewDesc("vrss_tap_flow_rule_hits_total",
		"Packets each flow rule matched, by rule group and id (the 128 rules with the most hits when a TAP has more; see vrss_tap_flow_rules_omitted).", withTAP("group", "rule"), nil)
	descOmitted = prometheus.NewDesc("vrss_tap_flow_rules_omitted",
		"Rules of the TAP whose hits are not reported, past the 128 with the most.", tapLabels, nil)
	descContext = prometheus.NewDesc("vrss_tap_rss_context_packets_total",
		"Packets each RSS context of the TAP sent to each queue.", withTAP("context", "queue"), nil)
	descPortAttached = prometheus.NewDesc("vrss_tap_port_attached",
		"1 if the TAP's port-security program is attached, 0 if the TAP has a port policy but the program was found detached (vrssd attaches it again); absent without a policy.", tapLabels, nil)
	descPortPackets = prometheus.NewDesc("vrss_tap_port_packets_total",
		"Frames the guest sent that the port-security program judged, by reason (port.Reason's names: acl_allow, default_allow and control passed, the others dropped).", withTAP("reason"), nil)
	descPortRedirected = prometheus.NewDesc("vrss_tap_port_redirected_packets_total",
		"Passed frames the port-security program sent to the policy's uplink (the fast path).", tapLabels, nil)
	descPortUnconfigured = prometheus.NewDesc("vrss_tap_port_unconfigured_packets_total",
		"Frames the port-security program dropped before any policy was published.", tapLabels, nil)
	descPortRuleHits = prometheus.NewDesc("vrss_tap_port_rule_hits_total",
		"Frames each ACL rule of the TAP's port policy decided, by its index in the policy.", withTAP("rule"), nil)

	descAFXDPPorts = prometheus.NewDesc("vrss_afxdp_ports",
		"AF_XDP ports vrssd manages.", nil, nil)
	descAFXDPAttached = prometheus.NewDesc("vrss_afxdp_port_attached",
		"1 if the AF_XDP port's program is attached to its device, 0 if it was found detached (vrssd attaches it again).", afxdpLabels, nil)
	descAFXDPPackets = prometheus.NewDesc("vrss_afxdp_port_packets_total",
		"Frames arriving for the guest on the AF_XDP port's queues, judged inbound by its port policy, by reason (port.Reason's names: acl_allow, default_allow and control passed, the others dropped).", withAFXDP("reason"), nil)
	descAFXDPRuleHits = prometheus.NewDesc("vrss_afxdp_port_rule_hits_total",
		"Frames each ACL rule of the AF_XDP port's policy decided, by its index in the policy.", withAFXDP("rule"), nil)
	descAFXDPRedirected = prometheus.NewDesc("vrss_afxdp_port_xsk_redirected_packets_total",
		"Passed frames the AF_XDP port's program redirected to the socket of their queue.", afxdpLabels, nil)
	descAFXDPOtherQueue = prometheus.NewDesc("vrss_afxdp_port_other_queue_packets_total",
		"Frames of the device's other queues (the host's), passed to the stack unjudged.", afxdpLabels, nil)
	descAFXDPPending = prometheus.NewDesc("vrss_afxdp_port_pending_queues",
		"The AF_XDP port's queues whose socket is not in its XSKMAP, by state: pending (handed out, vrssd inserts it once its owner binds it; Linux 7.2 refuses an unbound socket) or orphaned (pending when vrssd stopped, its socket lost; until the owner opens the port again). Their frames go to the host's stack.", withAFXDP("state"), nil)
)

// afxdpLabels name an AF_XDP port: its name, and the path of its network
// namespace ("" for vrssd's own).
var afxdpLabels = []string{"port", "netns"}

func withAFXDP(more ...string) []string {
	return append(append([]string(nil), afxdpLabels...), more...)
}

// collector reads the daemon's state and the TAPs' counters when
// Prometheus scrapes.
type collector struct{ s *Server }

// Describe sends every metric's description.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTAPs, descConns, descBuild, descQueues, descEnabled, descSteering,
		descFlows, descUp, descGeneration, descReattached, descQueuePackets, descUnclassified, descUnconfigured,
		descRetries, descTorn, descDropped, descRaced, descUnattributed, descNoRulePath, descRuleHits, descOmitted, descContext,
		descPortAttached, descPortPackets, descPortRedirected, descPortUnconfigured, descPortRuleHits,
		descAFXDPPorts, descAFXDPAttached, descAFXDPPackets, descAFXDPRuleHits, descAFXDPRedirected, descAFXDPOtherQueue, descAFXDPPending} {
		ch <- d
	}
}

// Collect reads the metrics, the TAPs' under s.mu, and sends them once
// the lock is released.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.connMu.Lock()
	conns := len(s.conns)
	s.connMu.Unlock()
	out := []prometheus.Metric{
		gauge(descConns, float64(conns)),
		gauge(descBuild, 1, s.opts.Version, steering.ABIStamp()),
	}
	s.mu.Lock()
	out = append(out, gauge(descTAPs, float64(len(s.taps))))
	names := make([]string, 0, len(s.taps))
	for name := range s.taps {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		out = append(out, tapMetrics(s.taps[name])...)
	}
	out = append(out, gauge(descAFXDPPorts, float64(len(s.afxdp))))
	keys := make([]string, 0, len(s.afxdp))
	for k := range s.afxdp {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, afxdpMetrics(s.afxdp[k])...)
	}
	s.mu.Unlock()
	for _, m := range out {
		ch <- m
	}
}

// tapMetrics are d's metrics; s.mu is held.
func tapMetrics(d *device) []prometheus.Metric {
	tap, ns := d.name, d.netnsPath()
	info := d.info()
	out := []prometheus.Metric{
		gauge(descQueues, float64(d.queues), tap, ns),
		gauge(descEnabled, float64(d.attachedQ), tap, ns),
		gauge(descSteering, bit(info.Steering), tap, ns),
		gauge(descFlows, bit(d.flows), tap, ns),
		counter(descReattached, d.reattached, tap, ns),
	}
	out = append(out, portMetrics(d)...)
	st, err := statsLocked(d)
	if err != nil {
		return append(out, gauge(descUp, 0, tap, ns))
	}
	out = append(out,
		gauge(descUp, 1, tap, ns),
		gauge(descGeneration, float64(info.Generation), tap, ns),
		counter(descUnclassified, st.Unclassified, tap, ns),
		counter(descUnconfigured, st.Unconfigured, tap, ns),
		counter(descRetries, st.Retries, tap, ns),
		counter(descTorn, st.Torn, tap, ns))
	for q, n := range st.Queues {
		out = append(out, counter(descQueuePackets, n, tap, ns, strconv.Itoa(q)))
	}
	if f := st.Flows; f != nil {
		out = append(out,
			counter(descDropped, f.Dropped, tap, ns),
			counter(descRaced, f.Raced, tap, ns),
			counter(descUnattributed, f.Unattributed, tap, ns),
			counter(descNoRulePath, f.NoRulePath, tap, ns),
			gauge(descOmitted, float64(f.RulesOmitted), tap, ns))
		for _, r := range f.Rules {
			out = append(out, counter(descRuleHits, r.Hits, tap, ns, strconv.FormatUint(uint64(r.Group), 10), strconv.FormatUint(uint64(r.ID), 10)))
		}
		for _, cx := range f.Contexts {
			for q, n := range cx.Frames {
				out = append(out, counter(descContext, n, tap, ns, strconv.Itoa(int(cx.ID)), strconv.Itoa(q)))
			}
		}
	}
	return out
}

// portMetrics are d's port-security metrics, if it has a port policy
// and its counters can be read; s.mu is held.
func portMetrics(d *device) []prometheus.Metric {
	if d.port == nil {
		return nil
	}
	tap, ns := d.name, d.netnsPath()
	c, err := d.port.prog.Counters()
	if err != nil {
		return nil
	}
	out := []prometheus.Metric{
		gauge(descPortAttached, bit(portAttachedLocked(d)), tap, ns),
		counter(descPortRedirected, c.Redirected, tap, ns),
		counter(descPortUnconfigured, c.Unconfigured, tap, ns),
	}
	return append(out, judgedMetrics(descPortPackets, descPortRuleHits, c, len(d.port.pol.Rules), tap, ns)...)
}

// afxdpMetrics are a's metrics: its pending and orphaned queues, and the
// rest if its counters can be read; s.mu is held.
func afxdpMetrics(a *afxdpPort) []prometheus.Metric {
	name, ns := a.rec.Name, a.rec.Netns
	// Both states always, 0 when none: an alert on a queue pending too
	// long needs the series to exist before it does.
	out := []prometheus.Metric{
		gauge(descAFXDPPending, float64(len(a.pending)), name, ns, "pending"),
		gauge(descAFXDPPending, float64(len(a.orphaned())), name, ns, "orphaned"),
	}
	if a.prog == nil {
		return out
	}
	c, err := a.prog.Counters()
	if err != nil {
		return out
	}
	out = append(out,
		gauge(descAFXDPAttached, bit(a.info().Attached), name, ns),
		counter(descAFXDPRedirected, c.XSKRedirected, name, ns),
		counter(descAFXDPOtherQueue, c.OtherQueue, name, ns),
	)
	return append(out, judgedMetrics(descAFXDPPackets, descAFXDPRuleHits, c, len(a.policy().Rules), name, ns)...)
}

// judgedMetrics are a port program's frames by reason and the hits of
// each of its policy's rules, labelled with the port's labels.
func judgedMetrics(byReason, ruleHits *prometheus.Desc, c portxdp.Counters, rules int, labels ...string) []prometheus.Metric {
	var out []prometheus.Metric
	for r := port.Reason(1); r < port.NumReasons; r++ {
		out = append(out, counter(byReason, c.Reasons[r], append(labels, r.String())...))
	}
	for i := range rules {
		out = append(out, counter(ruleHits, c.Rules[i], append(labels, strconv.Itoa(i))...))
	}
	return out
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricsServer is vrssd's HTTP endpoint for Prometheus and for probes:
// /metrics, /healthz (liveness: the process answers) and /readyz
// (readiness: the daemon has loaded its state and serves its socket). It
// listens before the daemon starts, so that /healthz answers while the
// daemon re-adopts its TAPs; /metrics and /readyz wait for Ready.
type MetricsServer struct {
	addr string
	http *http.Server
	srv  atomic.Pointer[Server]
	reg  *prometheus.Registry
}

// ListenMetrics listens on addr (host:port) and serves the endpoints in
// the background until Close.
func ListenMetrics(addr string) (*MetricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m := &MetricsServer{addr: ln.Addr().String(), reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", m.readyz)
	mux.Handle("GET /metrics", m.whenReady(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4,
	})))
	m.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go m.http.Serve(ln)
	return m, nil
}

// Addr is the address the endpoint listens on.
func (m *MetricsServer) Addr() string { return m.addr }

// Ready makes the endpoint report s: its metrics, and its readiness.
func (m *MetricsServer) Ready(s *Server) {
	m.reg.MustRegister(collector{s}, s.counts.requests, s.counts.refused, s.counts.conns)
	m.srv.Store(s)
}

// Close stops serving.
func (m *MetricsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return m.http.Shutdown(ctx)
}

func (m *MetricsServer) whenReady(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.srv.Load() == nil {
			http.Error(w, "vrssd is starting", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (m *MetricsServer) readyz(w http.ResponseWriter, _ *http.Request) {
	s := m.srv.Load()
	err := errors.New("vrssd is starting: loading its state")
	if s != nil {
		err = s.ready()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// ready reports why the daemon cannot serve clients, or nil: it is not
// shutting down and its socket is still the one it bound.
func (s *Server) ready() error {
	if s.closing.Load() {
		return errors.New("vrssd is shutting down")
	}
	var st unix.Stat_t
	if err := unix.Lstat(s.opts.Socket, &st); err != nil {
		return fmt.Errorf("socket %s: %w", s.opts.Socket, err)
	}
	if st.Ino != s.sockIno || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("socket %s is not the one vrssd bound", s.opts.Socket)
	}
	return nil
}
