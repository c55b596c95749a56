package agent_test

import (
	"context"
	"fmt"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/port"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vrss-dev/vrss/agent"
	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/tap"
)

// scrape is one parsed /metrics answer.
type scrape map[string]*dto.MetricFamily

// value returns the value of the sample of family name whose non-empty
// labels are exactly labels (name=value pairs), and whether there is one.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		// An empty label is no label, to Prometheus.
		n := 0
		for _, l := range m.Label {
			if l.GetValue() != "" {
				n++
			}
		}
		if n != len(labels)/2 {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// metricsAddr is the address vrssd logged it serves metrics on.
var metricsAddr = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

// httpGet fetches path from the metrics endpoint of d, which listens in
// d's network namespace.
func (d *daemon) httpGet(path string) (int, string) {
	d.t.Helper()
	// The last address: a restarted vrssd listens on another port.
	all := metricsAddr.FindAllStringSubmatch(d.log(), -1)
	if all == nil {
		d.t.Fatalf("vrssd logged no metrics address:\n%s", d.log())
	}
	m := all[len(all)-1]
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			// The socket is made in the namespace of the thread that
			// makes it.
			d.inNS(func() { c, err = (&net.Dialer{}).DialContext(ctx, network, addr) })
			return c, err
		},
		DisableKeepAlives: true,
	}}
	resp, err := hc.Get("http://" + m[1] + path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches and parses /metrics.
func (d *daemon) scrape() (scrape, string) {
	d.t.Helper()
	code, body := d.httpGet("/metrics")
	if code != http.StatusOK {
		d.t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		d.t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams, body
}

// TestMetrics runs vrssd with --metrics, steers frames through a plain
// TAP and a TAP with flow rules, provokes refusals, and checks that every
// number the endpoint serves equals the program's own counters as the
// stats operation reports them, and the refusals provoked.
func TestMetrics(t *testing.T) {
	requirePriv(t)
	const alice, bob = 4242, 4343
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d, %d]}}`, alice, bob), "--metrics", "127.0.0.1:0")
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := d.httpGet(path); code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}

	c := d.dial()
	tp, err := c.Create(ctx, api.CreateArgs{Name: "met0", Queues: 4})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 2}
	if _, err := c.SetRSS(ctx, "met0", cfg); err != nil {
		t.Fatal(err)
	}
	h, err := c.Open(ctx, "met0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d.steerCheck(tp.Index, h.Queues, 12, cfg, 21)
	// The VMM detaches the program behind vrssd's back (as QEMU does at a
	// device reset), once vrssd's delayed re-attach after the open is
	// past; frames tell vrssd, which attaches it again and counts it.
	time.Sleep(300 * time.Millisecond)
	if err := tap.SetSteeringFD(fdOf(t, h.Queues[0]), -1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); d.tapInfo("met0").Reattached == 0; {
		if time.Now().After(deadline) {
			t.Fatal("a detach behind vrssd's back was not undone")
		}
		d.sendUnread(tp.Index, h.Queues, 40)
		time.Sleep(100 * time.Millisecond)
	}
	d.steerCheck(tp.Index, h.Queues, 12, cfg, 23)

	// A TAP with flows: a queue rule, a context rule and a drop rule.
	r := d.asUser(alice, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "metfl0", Queues: 4, Flows: true})})
	if r.Error != nil {
		t.Fatalf("create with flows as uid %d: %+v", alice, r)
	}
	if r = d.asUser(alice, "flowowner", helperArgs{Args: mustJSON(api.NameArgs{Name: "metfl0"})}); r.Error != nil {
		t.Fatalf("the owner's flow setup: %+v", r)
	}
	fh, err := c.Open(ctx, "metfl0")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := c.SetRSS(ctx, "metfl0", cfg); err != nil {
		t.Fatal(err)
	}
	set, err := fh.Publisher.Set()
	if err != nil {
		t.Fatal(err)
	}
	dropped, _ := d.flowCheck(fh.TAP.Index, fh.Queues, set, 22)

	// A port policy on met0 and frames the guest sends, as a VMM writes
	// them: its counters by reason and by rule.
	pol := portPolicy(3)
	if _, err := c.PortSet(ctx, "met0", pol); err != nil {
		t.Fatal(err)
	}
	var far *inject.Capture
	d.inNS(func() { far = openFrameCapture(t, "met0") })
	run := portFrames(t, pol, 3, 300)
	run.send(t, h.Queues, h.TAP.VnetHdrLen, far)

	// A TAP of the same name in a pod's namespace: another TAP, told apart
	// by its netns label.
	pod := netnstest.Named(t)
	if _, err := c.Create(ctx, api.CreateArgs{Name: "met0", Queues: 2, Netns: pod}); err != nil {
		t.Fatal(err)
	}

	// Refusals: bob asks about alice's TAP (answered as for no TAP), and
	// for a TAP owned by someone else (denied).
	wantHidden(t, "stats by another uid", d.asUser(bob, "call", helperArgs{Op: api.OpStats, Args: mustJSON(api.NameArgs{Name: "metfl0"})}))
	wantHidden(t, "stats by another uid", d.asUser(bob, "call", helperArgs{Op: api.OpStats, Args: mustJSON(api.NameArgs{Name: "metfl0"})}))
	wantDenied(t, "create for another uid", d.asUser(bob, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "metbob", Queues: 2, OwnerUID: new(alice)})}))

	// No traffic from here on: the scrape and the stats op must agree.
	got, body := d.scrape()
	t.Logf("scrape excerpt:\n%s", excerpt(body))
	want := func(v float64, name string, labels ...string) {
		t.Helper()
		g, ok := got.value(name, labels...)
		if !ok {
			t.Errorf("no %s%v in the scrape", name, labels)
		} else if g != v {
			t.Errorf("%s%v = %v, want %v", name, labels, g, v)
		}
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want(float64(len(list)), "vrss_taps")
	if len(list) != 3 {
		t.Fatalf("list: %d TAPs, want 3", len(list))
	}
	for _, tp := range list {
		st, err := c.Netns(tp.Netns).Stats(ctx, tp.Name)
		if err != nil {
			t.Fatal(err)
		}
		tap := []string{"tap", tp.Name}
		if tp.Netns != "" {
			tap = append(tap, "netns", tp.Netns)
		}
		at := func(more ...string) []string { return append(append([]string{}, tap...), more...) }
		var total uint64
		for q, n := range st.Queues {
			want(float64(n), "vrss_tap_queue_packets_total", at("queue", strconv.Itoa(q))...)
			total += n
		}
		if total == 0 && tp.Netns == "" {
			t.Errorf("TAP %s: no packet steered", tp.Name)
		}
		want(float64(st.Unclassified), "vrss_tap_unclassified_packets_total", tap...)
		want(float64(st.Unconfigured), "vrss_tap_unconfigured_packets_total", tap...)
		want(float64(st.Retries), "vrss_tap_config_read_retries_total", tap...)
		want(float64(st.Torn), "vrss_tap_config_torn_reads_total", tap...)
		want(float64(st.Reattached), "vrss_tap_reattachments_total", tap...)
		want(float64(tp.Generation), "vrss_tap_config_generation", tap...)
		want(float64(tp.Queues), "vrss_tap_queues", tap...)
		want(float64(tp.AttachedQueues), "vrss_tap_enabled_queues", tap...)
		want(1, "vrss_tap_steering", tap...)
		want(1, "vrss_tap_counters_up", tap...)
		if st.Flows == nil {
			continue
		}
		want(float64(st.Flows.Dropped), "vrss_tap_flow_dropped_packets_total", tap...)
		want(float64(st.Flows.NoRulePath), "vrss_tap_flow_no_rule_path_packets_total", tap...)
		for _, rh := range st.Flows.Rules {
			want(float64(rh.Hits), "vrss_tap_flow_rule_hits_total", at("group", strconv.Itoa(int(rh.Group)), "rule", strconv.Itoa(int(rh.ID)))...)
		}
		for _, cx := range st.Flows.Contexts {
			for q, n := range cx.Frames {
				want(float64(n), "vrss_tap_rss_context_packets_total", at("context", strconv.Itoa(int(cx.ID)), "queue", strconv.Itoa(q))...)
			}
		}
		if st.Flows.Dropped != uint64(dropped) || dropped == 0 {
			t.Errorf("TAP %s: %d drops counted, %d frames dropped", tp.Name, st.Flows.Dropped, dropped)
		}
	}
	ps, err := c.PortStats(ctx, "met0")
	if err != nil {
		t.Fatal(err)
	}
	wantPortStats(t, "met0's port counters", ps, run.ref, pol)
	want(1, "vrss_tap_port_attached", "tap", "met0")
	want(float64(ps.Redirected), "vrss_tap_port_redirected_packets_total", "tap", "met0")
	want(float64(ps.Unconfigured), "vrss_tap_port_unconfigured_packets_total", "tap", "met0")
	for r := port.Reason(1); r < port.NumReasons; r++ {
		want(float64(ps.Reasons[r]), "vrss_tap_port_packets_total", "tap", "met0", "reason", r.String())
	}
	for _, rh := range ps.Rules {
		want(float64(rh.Hits), "vrss_tap_port_rule_hits_total", "tap", "met0", "rule", strconv.Itoa(rh.Index))
	}
	if _, ok := got.value("vrss_tap_port_attached", "tap", "metfl0"); ok {
		t.Error("metfl0 has no port policy, and port metrics in the scrape")
	}
	if g, _ := got.value("vrss_tap_reattachments_total", "tap", "met0"); g < 1 {
		t.Errorf("met0: %v re-attachments in the scrape, want at least the one provoked", g)
	}
	want(2, "vrss_requests_refused_total", "op", "stats", "reason", string(api.CodeNotFound))
	want(1, "vrss_requests_refused_total", "op", "create", "reason", string(api.CodeDenied))
	// Root's two creates and alice's, and bob's refused one.
	want(4, "vrss_requests_total", "op", "create")
	if f := got["vrss_build_info"]; f == nil || len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != 1 {
		t.Errorf("vrss_build_info: %v", f)
	}
}

// excerpt is the vrss_ lines of a scrape, for the log.
func excerpt(body string) string {
	var b strings.Builder
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "vrss_") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestMetricsStarting: before the daemon has loaded its state, the
// endpoint answers liveness but neither readiness nor metrics.
func TestMetricsStarting(t *testing.T) {
	m, err := agent.ListenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable, "/metrics": http.StatusServiceUnavailable} {
		resp, err := http.Get("http://" + m.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if _, err := agent.ListenMetrics(m.Addr()); err == nil {
		t.Error("a second endpoint on the same address was not refused")
	}
}
