// Command vrss-cni is a CNI plugin (spec 1.0.0 and later) that gives a pod
// a multi-queue TAP device steered by vrss: ADD asks the node's vrssd to
// create the TAP named CNI_IFNAME inside the pod's network namespace
// (CNI_NETNS), owned by KubeVirt's QEMU (uid and gid 107) unless the
// configuration says otherwise, and to publish the configured RSS
// configuration; CHECK verifies the TAP, its steering, queues and
// configuration; DEL removes it, and succeeds whatever is already gone.
// It works alone or chained after other plugins, whose result it passes
// on with the TAP appended. The configuration schema, the error codes and
// how vrssd handles namespaces are in docs/cni.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/buildinfo"
	"github.com/vrss-dev/vrss/rss"
)

// Error codes of this plugin's own (the spec leaves 100 and up to plugins).
const (
	// ErrRefused: vrssd refused the request (the message says why, with
	// vrssd's own code: denied, exists, unavailable…).
	ErrRefused uint = 100
	// ErrCheckFailed: CHECK found the TAP missing, not steered, or not as
	// configured.
	ErrCheckFailed uint = 101
)

// timeout bounds one command's talk with vrssd.
const timeout = 30 * time.Second

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Check: cmdCheck, Del: cmdDel, Status: cmdStatus, GC: cmdGC},
		version.PluginSupports("1.0.0", "1.1.0"), "CNI plugin vrss-cni "+buildinfo.Version())
}

// dial connects to vrssd; a vrssd that cannot be reached is worth trying
// again later (it restarts, or its DaemonSet pod is not ready yet).
func dial(ctx context.Context, socket string) (*client.Client, error) {
	c, err := client.Dial(ctx, socket)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return nil, vrssdError("hello", err)
		}
		return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("vrssd at %s is unreachable: %v", socket, err), "is vrssd running on this node?")
	}
	return c, nil
}

// vrssdError classifies vrssd's refusal of op as a CNI error.
func vrssdError(op string, err error) *types.Error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("vrssd: %s: %v", op, err), "")
	}
	code := ErrRefused
	switch ae.Code {
	case api.CodeBusy:
		code = types.ErrTryAgainLater
	case api.CodeBadRequest, api.CodeInvalidConfig:
		code = types.ErrInvalidNetworkConfig
	case api.CodeInternal:
		code = types.ErrInternal
	}
	return types.NewError(code, fmt.Sprintf("vrssd refused %s: %s: %s", op, ae.Code, ae.Message), "")
}

// checkNetns refuses a CNI_NETNS that names no network namespace, or the
// plugin's own (the host's: vrssd would make the TAP there, and skel
// refuses such an ADD once it is done).
func checkNetns(path string) error {
	if path == "" {
		return invalidEnv("CNI_NETNS is empty")
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %s: %v", path, err), "")
	}
	defer ns.Close()
	own, err := netns.Get()
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("the plugin's network namespace: %v", err), "")
	}
	defer own.Close()
	if ns.Equal(own) {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %s is the plugin's own network namespace, not a pod's", path), "")
	}
	return nil
}

// load reads the network configuration and applies CNI_ARGS and the
// runtime configuration, for ADD and CHECK.
func load(args *skel.CmdArgs) (*netConf, *tapConf, error) {
	c, err := parseNetConf(args.StdinData)
	if err != nil {
		return nil, nil, err
	}
	t, err := resolve(c, args.Args)
	if err != nil {
		return nil, nil, err
	}
	return c, t, nil
}

// session checks CNI_NETNS and connects to vrssd, for ADD and CHECK; done
// closes the connection.
func session(c *netConf, path string) (ctx context.Context, vc *client.Client, done func(), err error) {
	if err := checkNetns(path); err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if vc, err = dial(ctx, c.Socket); err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, vc, func() { vc.Close(); cancel() }, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	c, t, err := load(args)
	if err != nil {
		return err
	}
	ctx, vc, done, err := session(c, args.Netns)
	if err != nil {
		return err
	}
	defer done()
	tp, err := vc.Create(ctx, api.CreateArgs{
		Name: args.IfName, Queues: t.queues, OwnerUID: &t.owner, OwnerGID: &t.group,
		VnetHdrLen: t.vnetHdrLen, Netns: args.Netns,
	})
	if err != nil {
		return vrssdError("create", err)
	}
	if _, err := vc.Netns(args.Netns).SetRSS(ctx, args.IfName, t.rss); err != nil {
		// No half-made TAP: the runtime will try the whole ADD again.
		vc.Netns(args.Netns).Delete(ctx, args.IfName)
		return vrssdError("set_rss", err)
	}
	iface := &types100.Interface{Name: tp.Name, Sandbox: args.Netns}
	if mac, mtu, err := linkAddr(args.Netns, args.IfName); err == nil {
		iface.Mac = mac
		// An interface's mtu is in results from spec 1.1.0 on.
		if later, _ := version.GreaterThanOrEqualTo(c.CNIVersion, "1.1.0"); later {
			iface.Mtu = mtu
		}
	}
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	if c.PrevResult != nil {
		if res, err = types100.NewResultFromResult(c.PrevResult); err != nil {
			vc.Netns(args.Netns).Delete(ctx, args.IfName)
			return invalidConf("prevResult: %v", err)
		}
	}
	res.Interfaces = append(res.Interfaces, iface)
	return types.PrintResult(res, c.CNIVersion)
}

// linkAddr reads the MAC address and MTU of the device name in the
// namespace at path, for the result.
func linkAddr(path, name string) (string, int, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return "", 0, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return "", 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return "", 0, err
	}
	return l.Attrs().HardwareAddr.String(), l.Attrs().MTU, nil
}

func checkFailed(format string, a ...any) error {
	return types.NewError(ErrCheckFailed, fmt.Sprintf(format, a...), "")
}

func cmdCheck(args *skel.CmdArgs) error {
	c, t, err := load(args)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return invalidConf("CHECK needs a prevResult")
	}
	prev, err := types100.NewResultFromResult(c.PrevResult)
	if err != nil {
		return invalidConf("prevResult: %v", err)
	}
	if !slices.ContainsFunc(prev.Interfaces, func(i *types100.Interface) bool {
		return i.Name == args.IfName && i.Sandbox == args.Netns
	}) {
		return checkFailed("prevResult has no interface %s in %s", args.IfName, args.Netns)
	}
	ctx, vc, done, err := session(c, args.Netns)
	if err != nil {
		return err
	}
	defer done()
	taps, err := vc.List(ctx)
	if err != nil {
		return vrssdError("list", err)
	}
	i := slices.IndexFunc(taps, func(tp api.TAP) bool { return tp.Name == args.IfName && tp.Netns == args.Netns })
	if i < 0 {
		return checkFailed("vrssd manages no TAP %s in %s", args.IfName, args.Netns)
	}
	tp := taps[i]
	switch {
	case !tp.Steering:
		return checkFailed("TAP %s in %s is not steered (its program is detached)", tp.Name, args.Netns)
	case tp.Problem != "":
		return checkFailed("TAP %s in %s: %s", tp.Name, args.Netns, tp.Problem)
	case tp.Queues != t.queues:
		return checkFailed("TAP %s in %s has %d queues, the configuration %d", tp.Name, args.Netns, tp.Queues, t.queues)
	case tp.OwnerUID != t.owner || tp.OwnerGID != t.group:
		return checkFailed("TAP %s in %s is owned by %d:%d, the configuration says %d:%d", tp.Name, args.Netns, tp.OwnerUID, tp.OwnerGID, t.owner, t.group)
	}
	// vrssd looks the TAP up in the namespace as it answers; the
	// device itself must be there too, as the result says.
	if _, _, err := linkAddr(args.Netns, args.IfName); err != nil {
		return checkFailed("no device %s in %s: %v", args.IfName, args.Netns, err)
	}
	st, err := vc.Netns(args.Netns).GetRSS(ctx, args.IfName)
	if err != nil {
		return vrssdError("get_rss", err)
	}
	if st.Config == nil || !sameConfig(*st.Config, t.rss) {
		return checkFailed("TAP %s in %s is steered by another RSS configuration than the network configuration's", tp.Name, args.Netns)
	}
	return nil
}

// sameConfig reports whether a and b steer alike.
func sameConfig(a, b rss.Config) bool {
	return a.HashTypes == b.HashTypes && slices.Equal(a.Key, b.Key) && slices.Equal(a.Table, b.Table) && a.UnclassifiedQueue == b.UnclassifiedQueue
}

func cmdDel(args *skel.CmdArgs) error {
	// Only the socket is needed: a DEL succeeds whatever else the
	// configuration says.
	c, err := parseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if args.Netns == "" {
		// The namespace is gone, and the TAP with it; vrssd forgets it
		// by itself.
		return nil
	}
	if _, err := os.Stat(args.Netns); err != nil {
		return nil // as above
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	vc, err := dial(ctx, c.Socket)
	if err != nil {
		return err
	}
	defer vc.Close()
	err = vc.Netns(args.Netns).Delete(ctx, args.IfName)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeNotFound {
		return nil
	}
	if err != nil {
		return vrssdError("delete", err)
	}
	return nil
}

// cmdStatus says whether vrssd answers (spec 1.1 STATUS).
func cmdStatus(args *skel.CmdArgs) error {
	c, err := parseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	vc, err := client.Dial(ctx, c.Socket)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("vrssd at %s: %v", c.Socket, err), "")
	}
	return vc.Close()
}

// cmdGC has nothing to collect: vrssd deletes a TAP by itself once its
// namespace is gone.
func cmdGC(args *skel.CmdArgs) error {
	_, err := parseNetConf(args.StdinData)
	return err
}
