// Command prevplugin is a CNI plugin for vrss-cni's tests, chained before
// it: ADD returns a result with an interface eth0 in the sandbox and an
// address, as a main network plugin would, without touching anything;
// CHECK and DEL succeed.
package main

import (
	"encoding/json"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			var c types.PluginConf
			err := json.Unmarshal(args.StdinData, &c)
			if err != nil {
				return err
			}
			iface := 0
			res := &types100.Result{
				CNIVersion: types100.ImplementedSpecVersion,
				Interfaces: []*types100.Interface{{Name: "eth0", Mac: "02:00:00:00:00:01", Sandbox: args.Netns}},
				IPs:        []*types100.IPConfig{{Interface: &iface, Address: net.IPNet{IP: net.IPv4(10, 9, 0, 2), Mask: net.CIDRMask(24, 32)}}},
			}
			return types.PrintResult(res, c.CNIVersion)
		},
		Check: func(*skel.CmdArgs) error { return nil },
		Del:   func(*skel.CmdArgs) error { return nil },
	}, version.PluginSupports("1.0.0", "1.1.0"), "prevplugin")
}
