package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/virtio"
)

const steerDescription = `
Steer every frame of a capture by an RSS configuration, as a virtio-net device
would, and show where each frame goes. The capture is a pcap or pcapng file
(optionally gzip-compressed) of Ethernet frames. The configuration is either
JSON (--config) or the raw payload of VIRTIO_NET_CTRL_MQ_RSS_CONFIG (--virtio):

    le32 hash_types; le16 indirection_table_mask; le16 unclassified_queue;
    le16 indirection_table[mask+1]; le16 max_tx_vq; u8 hash_key_length;
    u8 hash_key_data[hash_key_length]

The JSON configuration is

    {"hash_types": ["tcpv4", "udpv4", "ipv4"], "key": "6d5a56da...",
     "indirection_table": [0, 1, 2, 3], "unclassified_queue": 0}

where hash_types may also be one comma-separated string ("all" for every
type), key (hex, ':' separators allowed) defaults to the Microsoft
verification key, and "queues": N may replace indirection_table to spread a
128-entry table evenly over queues 0 to N-1; unclassified_queue must then be
one of those N queues too. Queues are numbers from 0 to 65535. The output of
'vrss rss show NAME --json' is accepted as it is: its "config" member is this
form.

Output is one line per frame, numbered from 1 as Wireshark does:

    N queue Q hash 0xXXXXXXXX report NAME

(an unclassified frame has hash 0x00000000, report none and goes to the
unclassified queue), then a histogram with a line for every queue from 0 to
the highest queue the configuration names: the frame count, its percentage
and a bar of '#' (50 for 100%). With --json the output is instead one JSON
object:

    {"frames": [{"index": 1, "queue": 3, "hash": "0x51ccc178", "report": "tcpv4"}, ...],
     "histogram": [n0, n1, ...], "total": N}

where histogram[q] is the number of frames steered to queue q, again for
every queue from 0 to the highest one the configuration names.`

func runSteer(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "steer", steerMain(args, stdout))
}

func steerMain(args []string, stdout io.Writer) error {
	fs := newFlagSet("steer", "(--config FILE | --virtio FILE) --pcap FILE [--json]", steerDescription)
	configFile := fs.String("config", "", "RSS configuration as JSON, read from `FILE`")
	virtioFile := fs.String("virtio", "", "RSS configuration as a raw virtio RSS_CONFIG payload, read from `FILE`")
	pcapFile := fs.String("pcap", "", "capture of Ethernet frames, pcap or pcapng, read from `FILE` (required)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	if *pcapFile == "" {
		return inputErrorf("--pcap is required (run 'vrss steer -h')")
	}
	cfg, err := loadConfig(*configFile, *virtioFile)
	if err != nil {
		return err
	}
	e, err := rss.New(cfg)
	if err != nil {
		return asInput(err)
	}

	// Results are collected before anything is printed, so that an invalid
	// capture produces only the error line.
	var results []rss.Result
	err = readFrames(*pcapFile, func(_ int, data []byte) {
		results = append(results, e.Steer(data))
	})
	if err != nil {
		return err
	}
	hist := make([]int, highestQueue(cfg)+1)
	for _, r := range results {
		hist[r.Queue]++
	}

	w := bufio.NewWriter(stdout)
	if *asJSON {
		err = writeSteerJSON(w, results, hist)
	} else {
		writeSteerText(w, results, hist)
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

// parseConfigDoc reads a configuration in its one JSON form, either alone
// or as the "config" member of what 'vrss rss show --json' prints (which
// is api.RSSState), so that one command's output is the other's input.
func parseConfigDoc(b []byte) (rss.Config, error) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(b, &probe) == nil {
		if _, ok := probe["config"]; ok {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			var st api.RSSState
			if err := dec.Decode(&st); err != nil {
				return rss.Config{}, fmt.Errorf("'vrss rss show --json' output: %w", err)
			}
			if st.Config == nil {
				return rss.Config{}, fmt.Errorf("'vrss rss show --json' output of %s: no configuration was published", st.Name)
			}
			return *st.Config, nil
		}
	}
	return rss.ParseConfigJSON(b)
}

// loadConfig reads the configuration from exactly one of the JSON file and
// the raw virtio file.
func loadConfig(jsonFile, virtioFile string) (rss.Config, error) {
	switch {
	case jsonFile == "" && virtioFile == "":
		return rss.Config{}, inputErrorf("--config or --virtio is required (run 'vrss steer -h')")
	case jsonFile != "" && virtioFile != "":
		return rss.Config{}, inputErrorf("give --config or --virtio, not both")
	case jsonFile != "":
		b, err := os.ReadFile(jsonFile)
		if err != nil {
			return rss.Config{}, asInput(err)
		}
		c, err := parseConfigDoc(b)
		if err != nil {
			return rss.Config{}, inputErrorf("%s: %w", jsonFile, err)
		}
		return c, nil
	}
	b, err := os.ReadFile(virtioFile)
	if err != nil {
		return rss.Config{}, asInput(err)
	}
	// The engine's own bounds, not a particular device's: the point is to
	// see what any configuration does.
	c, err := virtio.DecodeRSSConfig(b, rss.Limits{MaxKeySize: rss.MaxKeySize, MaxTableLen: rss.MaxTableLen, HashTypes: rss.AllHashTypes})
	if err != nil {
		return rss.Config{}, inputErrorf("%s: %w", virtioFile, err)
	}
	return c.Config, nil
}

// highestQueue returns the highest queue c can steer a frame to.
func highestQueue(c rss.Config) int {
	hi := int(c.UnclassifiedQueue)
	for _, q := range c.Table {
		hi = max(hi, int(q))
	}
	return hi
}

func writeSteerText(w io.Writer, results []rss.Result, hist []int) {
	for i, r := range results {
		fmt.Fprintf(w, "%d queue %d hash 0x%08x report %s\n", i+1, r.Queue, r.Hash, r.Report)
	}
	total := len(results)
	fmt.Fprintf(w, "\nqueue histogram, %d frames:\n", total)
	qw := len(fmt.Sprint(len(hist) - 1))
	nw := len(fmt.Sprint(total))
	for q, n := range hist {
		pct, bar := 0.0, 0
		if total > 0 {
			pct = 100 * float64(n) / float64(total)
			bar = (n*50 + total/2) / total
			if n > 0 && bar == 0 {
				bar = 1 // a queue that got frames always shows
			}
		}
		line := fmt.Sprintf("queue %*d %*d %5.1f%% %s", qw, q, nw, n, pct, strings.Repeat("#", bar))
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

// steerJSON is the --json output; its shape is documented in the help.
type steerJSON struct {
	Frames    []frameJSON `json:"frames"`
	Histogram []int       `json:"histogram"`
	Total     int         `json:"total"`
}

type frameJSON struct {
	Index  int    `json:"index"`
	Queue  uint16 `json:"queue"`
	Hash   string `json:"hash"`
	Report string `json:"report"`
}

func writeSteerJSON(w io.Writer, results []rss.Result, hist []int) error {
	out := steerJSON{Frames: make([]frameJSON, len(results)), Histogram: hist, Total: len(results)}
	for i, r := range results {
		out.Frames[i] = frameJSON{Index: i + 1, Queue: r.Queue, Hash: fmt.Sprintf("0x%08x", r.Hash), Report: r.Report.String()}
	}
	return json.NewEncoder(w).Encode(out)
}
