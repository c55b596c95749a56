package main

import (
	"errors"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/rss"
)

// TestResolve: the defaults, and the override order network
// configuration < CNI_ARGS < runtimeConfig.vrss, without privileges.
func TestResolve(t *testing.T) {
	c, err := parseNetConf([]byte(`{"cniVersion": "1.0.0", "name": "n", "type": "vrss-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := resolve(c, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != api.DefaultSocket || tc.queues != 1 || tc.owner != 107 || tc.group != 107 || tc.vnetHdrLen != 0 ||
		tc.rss.HashTypes != rss.AllHashTypes || !slices.Equal(tc.rss.Table, rss.EqualTable(128, 1)) {
		t.Fatalf("defaults: %+v", tc)
	}
	c, err = parseNetConf([]byte(`{"cniVersion": "1.0.0", "name": "n", "type": "vrss-cni", "queues": 2, "owner": 5, "group": 6, "vnetHdrLen": 20,
		"runtimeConfig": {"vrss": {"queues": 8, "rss": {"hash_types": "tcpv4", "queues": 8}}, "portMappings": []}}`))
	if err != nil {
		t.Fatal(err)
	}
	if tc, err = resolve(c, "K8S_POD_NAME=x;VRSS_QUEUES=4;VRSS_GROUP=9"); err != nil {
		t.Fatal(err)
	}
	if tc.queues != 8 || tc.owner != 5 || tc.group != 9 || tc.vnetHdrLen != 20 || tc.rss.HashTypes != rss.HashTCPv4 || !slices.Equal(tc.rss.Table, rss.EqualTable(128, 8)) {
		t.Fatalf("overrides: %+v", tc)
	}
	// The default RSS configuration follows the queues however set.
	c, _ = parseNetConf([]byte(`{"cniVersion": "1.0.0", "name": "n", "type": "vrss-cni"}`))
	if tc, err = resolve(c, "VRSS_QUEUES=3"); err != nil || !slices.Equal(tc.rss.Table, rss.EqualTable(128, 3)) {
		t.Fatalf("default table for 3 queues: %+v %v", tc, err)
	}
	for args, want := range map[string]uint{"VRSS_QUEUES": types.ErrInvalidEnvironmentVariables, "VRSS_OWNER=-": types.ErrInvalidEnvironmentVariables, "VRSS_QUEUES=0": types.ErrInvalidNetworkConfig} {
		var te *types.Error
		if _, err := resolve(c, args); !errors.As(err, &te) || te.Code != want {
			t.Errorf("CNI_ARGS %q: %v, want code %d", args, err, want)
		}
	}
	if _, err := parseNetConf([]byte(`{"cniVersion": "1.0.0", "name": "n", "type": "vrss-cni", "socket": 5}`)); err == nil {
		t.Error("a number as socket was accepted")
	}
	var te *types.Error
	if _, err := parseNetConf([]byte(`not json`)); !errors.As(err, &te) || te.Code != types.ErrDecodingFailure {
		t.Errorf("not JSON: %v, want code %d", err, types.ErrDecodingFailure)
	}
}
