package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/port"
)

// The AF_XDP port on Linux 7.2 (TestE2ENetkit's last step): in the sid
// guest, vrssd makes an AF_XDP port on eth0's enabled queues, uid 4242
// (afxdpprobe, which drops to it from root) opens it, sets the sockets up
// with package xsk and binds them; 7.2 refuses the unbound sockets in the
// XSKMAP, so they are pending until vrssd's monitor inserts them; then the
// host sends frames into the TAP, tun spreads them over the queues by
// flow, and the guest counts what each NIC queue got (ethtool -S) and
// what each socket got.

const (
	afxdp72Script = "bin/afxdp72.sh"
	afxdp72Probe  = "bin/afxdpprobe"
	// afxdp72Addr is the guest's address in the port policy; the allowed
	// frames go to it and to GuestMAC, at UDP port afxdp72Port.
	afxdp72Addr = "10.77.0.2"
	afxdp72Port = 7777 // the probe's -tag in afxdp72Start
	// afxdp72Allowed is how many allowed frames the host sends, each of
	// its own flow; afxdp72Denied how many to another MAC and how many to
	// another address.
	afxdp72Allowed = 400
	afxdp72Denied  = 20
)

// afxdp72Start is the guest's first script: vrssd, the port on queues 0
// to $1-1 for uid 4242 with its policy, the probe in the background, and
// then up to 15 s for the probe to say its sockets are in the XSKMAP.
// Each finding is an "AFXDP key value" line.
const afxdp72Start = `Q=$1; S=/tmp/x/vrss.sock; mkdir -p /tmp/x; chmod 755 /tmp/x; echo '{}' >/tmp/x/vrssd.json
/bin/vrssd --socket $S --state-dir /tmp/x/state --bpffs-dir /sys/fs/bpf/vrssx --config /tmp/x/vrssd.json --log-level debug >/tmp/x/log 2>&1 &
echo $! >/tmp/x/vrssd.pid; ip link set eth0 up
i=0; while [ ! -S $S ]; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1; done
/bin/vrss afxdp create ax0 --dev eth0 --queue-start 0 --queues $Q --owner 4242 --group 4242 --socket $S >/tmp/x/out 2>&1; echo "AFXDP create-exit $? $(cat /tmp/x/out | tr '\n' ' ')"
/bin/vrss port set ax0 --mac ` + GuestMAC + ` --ip ` + afxdp72Addr + ` --default allow --socket $S >/tmp/x/out 2>&1; echo "AFXDP policy-exit $? $(cat /tmp/x/out | tr '\n' ' ')"
/bin/afxdpprobe -socket $S -port ax0 -uid 4242 -stop /tmp/x/stop -tag 7777 >/tmp/x/probe 2>&1 &
i=0; while ! grep -q 'inserted-after-ms\|probe-error' /tmp/x/probe; do i=$((i+1)); [ $i -gt 150 ] && break; sleep 0.1; done
cat /tmp/x/probe
echo "AFXDP show $(/bin/vrss afxdp show ax0 --json --socket $S | tr -d '\n ')"
grep 'pending\|refuses\|XSKMAP now' /tmp/x/log | sed 's/^/AFXDP log /'
`

// afxdp72Finish stops the probe, waits for its counts and prints the
// port's counters, then deletes the port and stops vrssd.
const afxdp72Finish = `S=/tmp/x/vrss.sock; touch /tmp/x/stop
i=0; while ! grep -q 'probe-done\|probe-error' /tmp/x/probe; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done
grep 'received-q\|probe-done\|probe-error' /tmp/x/probe
echo "AFXDP stats $(/bin/vrss port stats ax0 --json --socket $S | tr -d '\n ')"
/bin/vrss afxdp delete ax0 --socket $S >/tmp/x/out 2>&1; echo "AFXDP delete-exit $? $(cat /tmp/x/out | tr '\n' ' ')"
kill $(cat /tmp/x/vrssd.pid) 2>/dev/null; true
`

// afxdp72FinishScript is where afxdp72Finish goes in the guest image.
const afxdp72FinishScript = "bin/afxdp72-finish.sh"

// afxdp72Extra adds the scripts and the probe to the 7.2 guest's image.
func afxdp72Extra(dir string, extra map[string][]byte) error {
	extra[afxdp72Script] = []byte(afxdp72Start)
	extra[afxdp72FinishScript] = []byte(afxdp72Finish)
	var err error
	extra[afxdp72Probe], err = buildStatic(dir, "github.com/vrss-dev/vrss/internal/e2e/afxdpprobe")
	return err
}

// AFXDP72Report is what the AF_XDP step saw.
type AFXDP72Report struct {
	Queues int               // the port's queues: eth0's enabled ones
	Found  map[string]string // the guest's "AFXDP key value" lines, first of each
	Log    []string          // vrssd's lines about pending sockets
	// NIC is what each NIC queue got and Redirected what the program
	// redirected from it to its socket (virtio_net's rxN_xdp_packets and
	// rxN_xdp_redirects over the sending); Tagged the test's allowed
	// frames each queue's socket got, Other the other frames it got.
	NIC, Redirected, Tagged, Other []uint64
	SentAllowed, SentDenied        int
	Stats                          api.PortStats
	Took                           time.Duration
}

var afxdp72Line = regexp.MustCompile(`(?m)^AFXDP (\S+) ?(.*)$`)

func (r *AFXDP72Report) parse(out string) {
	for _, m := range afxdp72Line.FindAllStringSubmatch(out, -1) {
		k, v := m[1], strings.TrimSpace(m[2])
		if k == "log" {
			r.Log = append(r.Log, v)
			continue
		}
		if _, seen := r.Found[k]; !seen {
			r.Found[k] = v
		}
	}
}

// OK says the step worked: the port made, its sockets inserted after
// the bind, every allowed frame on a socket, the socket of each queue
// having got what that NIC queue got of the test's frames, and the
// denied ones counted by reason.
func (r *AFXDP72Report) OK() error {
	f := r.Found
	switch {
	case !strings.HasPrefix(f["create-exit"], "0"):
		return fmt.Errorf("vrss afxdp create: %s", f["create-exit"])
	case !strings.HasPrefix(f["policy-exit"], "0"):
		return fmt.Errorf("vrss port set: %s", f["policy-exit"])
	case f["probe-error"] != "":
		return fmt.Errorf("the probe: %s", f["probe-error"])
	case f["probe-uid"] != "4242":
		return fmt.Errorf("the probe ran as uid %q, want 4242", f["probe-uid"])
	case f["inserted-after-ms"] == "":
		return fmt.Errorf("vrssd never inserted the sockets (show: %s)", f["show"])
	case !strings.HasPrefix(f["delete-exit"], "0"):
		return fmt.Errorf("vrss afxdp delete: %s", f["delete-exit"])
	}
	var tagged uint64
	for q := range r.Queues {
		tagged += r.Tagged[q]
		if r.Tagged[q]+r.Other[q] != r.Redirected[q] {
			return fmt.Errorf("queue %d: its socket got %d frames, the program redirected %d to it", q, r.Tagged[q]+r.Other[q], r.Redirected[q])
		}
	}
	st := r.Stats
	switch {
	case sum(r.NIC) < uint64(r.SentAllowed+2*r.SentDenied):
		return fmt.Errorf("the NIC's queues got %d frames, %d were sent", sum(r.NIC), r.SentAllowed+2*r.SentDenied)
	case tagged != uint64(r.SentAllowed):
		return fmt.Errorf("the sockets got %d of the %d allowed frames", tagged, r.SentAllowed)
	case st.Reasons[port.DstMAC] != afxdp72Denied || st.Reasons[port.DstIPv4] != afxdp72Denied:
		return fmt.Errorf("dst_mac %d, dst_ipv4 %d; want %d each", st.Reasons[port.DstMAC], st.Reasons[port.DstIPv4], afxdp72Denied)
	case st.XSKRedirected < tagged:
		return fmt.Errorf("xsk_redirected %d < %d frames on the sockets", st.XSKRedirected, tagged)
	}
	return nil
}

func (r *AFXDP72Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "AF_XDP port on eth0 queues 0-%d (7.2): create %q, probe uid %s, opened with queues %s pending, inserted %s ms after the bind\n", r.Queues-1, r.Found["create-exit"], r.Found["probe-uid"], r.Found["opened-pending"], r.Found["inserted-after-ms"])
	for q := range r.Queues {
		fmt.Fprintf(&b, "  queue %d: the NIC queue got %d, the program redirected %d, the socket got %d of the test's allowed frames and %d other\n", q, r.NIC[q], r.Redirected[q], r.Tagged[q], r.Other[q])
	}
	fmt.Fprintf(&b, "  sent %d allowed, %d to another MAC, %d to another address; dst_mac %d, dst_ipv4 %d, default_allow %d, xsk_redirected %d; took %v\n",
		r.SentAllowed, r.SentDenied, r.SentDenied, r.Stats.Reasons[port.DstMAC], r.Stats.Reasons[port.DstIPv4], r.Stats.Reasons[port.DefaultAllow], r.Stats.XSKRedirected, r.Took.Round(time.Millisecond))
	for _, l := range r.Log {
		fmt.Fprintf(&b, "  vrssd: %s\n", l)
	}
	return b.String()
}

// afxdp72Frame is a UDP frame from the host to dst at MAC mac, its flow
// told apart by the source port.
func afxdp72Frame(mac, dst string, sport int) []byte {
	b := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.77.0.1"), Dst: netip.MustParseAddr(dst), Proto: 17, SrcPort: uint16(sport), DstPort: afxdp72Port, Payload: 32})
	m, _ := parseMAC(mac)
	copy(b[0:6], m)
	copy(b[6:12], []byte{0x02, 0x77, 0, 0, 0, 1})
	return b
}

func parseMAC(s string) ([]byte, error) {
	var m []byte
	for _, p := range strings.Split(s, ":") {
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return nil, err
		}
		m = append(m, byte(v))
	}
	return m, nil
}

// runAFXDP72 runs the step in g, sending with inj into the TAP under the
// guest's NIC.
func runAFXDP72(g *Guest, inj *inject.Injector, log io.Writer) (*AFXDP72Report, error) {
	start := time.Now()
	n, err := g.Channels(guestIface)
	if err != nil {
		return nil, err
	}
	r := &AFXDP72Report{Queues: n, Found: map[string]string{}}
	out, _, err := g.Run(fmt.Sprintf("sh /%s %d", afxdp72Script, n), time.Minute)
	if err != nil {
		return nil, err
	}
	r.parse(out)
	fmt.Fprintf(log, "e2e: afxdp72: %s\n", strings.TrimSpace(out))
	if r.Found["inserted-after-ms"] == "" {
		return r, r.OK()
	}
	before, beforeRedir, err := xdpQueueStats(g, n)
	if err != nil {
		return nil, err
	}
	var frames [][]byte
	for i := range afxdp72Allowed {
		frames = append(frames, afxdp72Frame(GuestMAC, afxdp72Addr, 20000+i))
	}
	for i := range afxdp72Denied {
		frames = append(frames, afxdp72Frame("52:54:00:12:34:57", afxdp72Addr, 30000+i), afxdp72Frame(GuestMAC, "10.77.0.3", 31000+i))
	}
	for i := 0; i < len(frames); i += 32 {
		if err := inj.SendBatch(frames[i:min(i+32, len(frames))]); err != nil {
			return nil, err
		}
		// TCG: let QEMU and the guest keep up (tun's queues hold 500).
		time.Sleep(20 * time.Millisecond)
	}
	r.SentAllowed, r.SentDenied = afxdp72Allowed, afxdp72Denied
	// Until the guest's NIC queues have counted them all, or 10 s.
	var after, afterRedir []uint64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if after, afterRedir, err = xdpQueueStats(g, n); err != nil {
			return nil, err
		}
		if sum(sub(after, before)) >= uint64(len(frames)) || time.Now().After(deadline) {
			break
		}
	}
	r.NIC, r.Redirected = sub(after, before), sub(afterRedir, beforeRedir)
	out, _, err = g.Run("sh /"+afxdp72FinishScript, time.Minute)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "e2e: afxdp72: %s\n", strings.TrimSpace(out))
	r.parse(out)
	r.Tagged, r.Other = make([]uint64, n), make([]uint64, n)
	for q := range n {
		var t, o uint64
		fmt.Sscanf(r.Found[fmt.Sprintf("received-q%d", q)], "%d %d", &t, &o)
		r.Tagged[q], r.Other[q] = t, o
	}
	if s := r.Found["stats"]; s != "" {
		if err := json.Unmarshal([]byte(s), &r.Stats); err != nil {
			return nil, fmt.Errorf("e2e: afxdp72: port stats %q: %w", s, err)
		}
	}
	r.Took = time.Since(start)
	return r, r.OK()
}

var xdpStatRe = regexp.MustCompile(`(?m)^\s*rx(\d+)_xdp_(packets|redirects):\s*(\d+)\s*$`)

// xdpQueueStats reads virtio_net's per-queue XDP counters in the guest:
// the frames the program ran on (rxN_xdp_packets: with it attached,
// every frame the queue got) and those it redirected (rxN_xdp_redirects).
// Linux 7.2's virtio_net reports rx_queue_N_packets only as netdev qstats.
func xdpQueueStats(g *Guest, queues int) (packets, redirects []uint64, err error) {
	out, err := g.MustRun("ethtool -S "+guestIface, time.Minute)
	if err != nil {
		return nil, nil, err
	}
	packets, redirects = make([]uint64, queues), make([]uint64, queues)
	seen := 0
	for _, m := range xdpStatRe.FindAllStringSubmatch(out, -1) {
		q, _ := strconv.Atoi(m[1])
		v, _ := strconv.ParseUint(m[3], 10, 64)
		if q >= queues {
			continue
		}
		seen++
		if m[2] == "packets" {
			packets[q] = v
		} else {
			redirects[q] = v
		}
	}
	if seen != 2*queues {
		return nil, nil, fmt.Errorf("e2e: afxdp72: %d of %d rxN_xdp_packets and rxN_xdp_redirects counters in ethtool -S:\n%s", seen, 2*queues, tail(out, 8))
	}
	return packets, redirects, nil
}
