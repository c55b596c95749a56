package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/rss"
)

// Defaults of the network configuration.
const (
	// DefaultOwner is the uid and gid the TAP is given: KubeVirt's QEMU
	// runs as uid 107 (qemu), gid 107.
	DefaultOwner = 107
	// DefaultQueues is the number of queues of a TAP whose configuration
	// names none.
	DefaultQueues = 1
)

// netConf is the plugin's network configuration (docs/cni.md).
type netConf struct {
	types.PluginConf
	// Socket is vrssd's socket; api.DefaultSocket if empty.
	Socket string `json:"socket,omitempty"`
	settings
	RuntimeConfig struct {
		VRSS *settings `json:"vrss,omitempty"`
	} `json:"runtimeConfig"`
}

// settings are what the network configuration, CNI_ARGS and the runtime
// configuration's "vrss" object may set; a later source overrides an
// earlier one field by field.
type settings struct {
	Queues     *int            `json:"queues,omitempty"`
	Owner      *int            `json:"owner,omitempty"`
	Group      *int            `json:"group,omitempty"`
	VnetHdrLen *int            `json:"vnetHdrLen,omitempty"`
	RSS        json.RawMessage `json:"rss,omitempty"`
}

// override sets in s what o sets.
func (s *settings) override(o *settings) {
	if o == nil {
		return
	}
	for _, f := range []struct{ dst, src **int }{{&s.Queues, &o.Queues}, {&s.Owner, &o.Owner}, {&s.Group, &o.Group}, {&s.VnetHdrLen, &o.VnetHdrLen}} {
		if *f.src != nil {
			*f.dst = *f.src
		}
	}
	if o.RSS != nil {
		s.RSS = o.RSS
	}
}

// knownFields are the network configuration's top-level fields: the
// spec's and the plugin's. Any other is a mistake (a misspelt "queues"
// must not silently become the default).
var knownFields = map[string]bool{
	"cniVersion": true, "name": true, "type": true, "capabilities": true, "ipam": true, "dns": true,
	"prevResult": true, "runtimeConfig": true, "args": true, "cni.dev/valid-attachments": true,
	"socket": true, "queues": true, "owner": true, "group": true, "vnetHdrLen": true, "rss": true,
}

// tapConf is the TAP an ADD asks for and a CHECK expects: the
// configuration with CNI_ARGS and the runtime configuration applied.
type tapConf struct {
	conf       *netConf
	queues     int
	owner      int
	group      int
	vnetHdrLen int // 0: vrssd's default
	rss        rss.Config
}

func invalidConf(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

func invalidEnv(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf(format, a...), "")
}

// parseNetConf decodes the network configuration (and its prevResult),
// checking its fields' names but not their values; DEL needs no more.
func parseNetConf(stdin []byte) (*netConf, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &fields); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "network configuration: "+err.Error(), "")
	}
	for k := range fields {
		if !knownFields[k] {
			return nil, invalidConf("network configuration: unknown field %q (see docs/cni.md)", k)
		}
	}
	c := &netConf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, invalidConf("network configuration: %v", err)
	}
	if c.RuntimeConfig.VRSS != nil {
		var strict settings
		if err := decodeKeyStrict(fields["runtimeConfig"], "vrss", &strict); err != nil {
			return nil, invalidConf("runtimeConfig.vrss: %v", err)
		}
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	} else if !filepath.IsAbs(c.Socket) {
		return nil, invalidConf("socket %q: want an absolute path", c.Socket)
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, invalidConf("prevResult: %v", err)
	}
	return c, nil
}

// decodeKeyStrict decodes obj[key] into v, refusing unknown fields: the
// object's other keys may be other plugins', that one is this plugin's.
func decodeKeyStrict(obj json.RawMessage, key string, v any) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(obj, &all); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(all[key]))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// cniArgs are the CNI_ARGS keys the plugin reads; others (the runtime's
// K8S_POD_NAME and such) are ignored.
var cniArgs = map[string]func(*settings) **int{
	"VRSS_QUEUES": func(s *settings) **int { return &s.Queues },
	"VRSS_OWNER":  func(s *settings) **int { return &s.Owner },
	"VRSS_GROUP":  func(s *settings) **int { return &s.Group },
}

// parseArgs reads CNI_ARGS, KEY=VALUE pairs separated by semicolons.
func parseArgs(args string) (*settings, error) {
	s := &settings{}
	if args == "" {
		return s, nil
	}
	for _, kv := range strings.Split(args, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, invalidEnv("CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		field, mine := cniArgs[k]
		if !mine {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, invalidEnv("CNI_ARGS: %s=%q: want a number", k, v)
		}
		*field(s) = &n
	}
	return s, nil
}

// resolve applies CNI_ARGS and the runtime configuration to c and checks
// the values: the TAP an ADD makes and a CHECK expects.
func resolve(c *netConf, args string) (*tapConf, error) {
	a, err := parseArgs(args)
	if err != nil {
		return nil, err
	}
	s := c.settings
	s.override(a)
	s.override(c.RuntimeConfig.VRSS)
	t := &tapConf{conf: c, queues: DefaultQueues, owner: DefaultOwner, group: DefaultOwner}
	for _, f := range []struct {
		name string
		v    *int
		dst  *int
	}{{"queues", s.Queues, &t.queues}, {"owner", s.Owner, &t.owner}, {"group", s.Group, &t.group}, {"vnetHdrLen", s.VnetHdrLen, &t.vnetHdrLen}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	switch {
	case t.queues < 1 || t.queues > api.MaxQueues:
		return nil, invalidConf("queues %d: want 1 to %d", t.queues, api.MaxQueues)
	case t.owner < 0 || t.owner > 1<<32-2:
		return nil, invalidConf("owner %d: want a uid from 0 to %d", t.owner, 1<<32-2)
	case t.group < 0 || t.group > 1<<32-2:
		return nil, invalidConf("group %d: want a gid from 0 to %d", t.group, 1<<32-2)
	case s.VnetHdrLen != nil && t.vnetHdrLen != 10 && t.vnetHdrLen != 12 && t.vnetHdrLen != 20:
		return nil, invalidConf("vnetHdrLen %d: want 10, 12 or 20", t.vnetHdrLen)
	}
	if s.RSS == nil {
		t.rss = rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, t.queues)}
		return t, nil
	}
	if t.rss, err = rss.ParseConfigJSON(s.RSS); err != nil {
		return nil, invalidConf("%v", err) // "rss: …"
	}
	l := rss.Limits{MaxKeySize: rss.MaxKeySize, MaxTableLen: rss.MaxTableLen, HashTypes: rss.AllHashTypes, Queues: t.queues}
	if err := t.rss.Validate(l); err != nil {
		return nil, invalidConf("%v (the TAP has %d queues)", err, t.queues)
	}
	return t, nil
}
