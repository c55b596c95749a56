package qemu

import (
	"os"
	"strings"
	"testing"
)

// Golden arguments: queues, start queue, descriptor numbering, ids and the
// device, as QEMU's NetdevAFXDPOptions spells them.
func TestAFXDPArgs(t *testing.T) {
	for _, c := range []struct {
		o    AFXDPOptions
		want string
	}{
		{AFXDPOptions{Ifname: "eth1", Queues: 1},
			"-netdev af-xdp,id=vrss0,ifname=eth1,inhibit=on,sock-fds=3,queues=1,start-queue=0 -device virtio-net-pci,netdev=vrss0,mq=on,vectors=4"},
		{AFXDPOptions{Ifname: "cxin", StartQueue: 1, Queues: 2, ForceCopy: true},
			"-netdev af-xdp,id=vrss0,ifname=cxin,inhibit=on,sock-fds=3:4,queues=2,start-queue=1,force-copy=on -device virtio-net-pci,netdev=vrss0,mq=on,vectors=6"},
		{AFXDPOptions{ID: "net1", Ifname: "enp1s0f1", StartQueue: 8, Queues: 4, FirstFD: 10, Device: "virtio-net-pci-non-transitional", MAC: "52:54:00:12:34:56", DeviceProps: []string{"host_mtu=1500"}},
			"-netdev af-xdp,id=net1,ifname=enp1s0f1,inhibit=on,sock-fds=10:11:12:13,queues=4,start-queue=8 -device virtio-net-pci-non-transitional,netdev=net1,mq=on,vectors=10,mac=52:54:00:12:34:56,host_mtu=1500"},
		// The map-path form (QEMU 10.1): socket i at index start-queue+i,
		// where the port's program looks for receive queue start-queue+i.
		{AFXDPOptions{Ifname: "cxin", StartQueue: 1, Queues: 2, ForceCopy: true, MapPath: "/run/vrss/xsk/vm0", FirstFD: 10},
			"-netdev af-xdp,id=vrss0,ifname=cxin,inhibit=on,map-path=/run/vrss/xsk/vm0,map-start-index=1,queues=2,start-queue=1,force-copy=on -device virtio-net-pci,netdev=vrss0,mq=on,vectors=6"},
	} {
		got, err := AFXDPArgs(c.o)
		if err != nil {
			t.Errorf("%+v: %v", c.o, err)
			continue
		}
		if len(got) != 4 || strings.Join(got, " ") != c.want {
			t.Errorf("%+v:\ngot  %q\nwant %s", c.o, got, c.want)
		}
	}
	for _, bad := range []AFXDPOptions{
		{Ifname: "eth1"}, {Ifname: "eth1", Queues: 257}, {Queues: 1}, {Ifname: "eth1", Queues: 1, StartQueue: -1},
		{Ifname: "a,b", Queues: 1}, {Ifname: "eth1", Queues: 1, ID: "x y"}, {Ifname: "eth1", Queues: 1, FirstFD: -3},
		{Ifname: "eth1", Queues: 1, MapPath: "/run/vrss/xsk/a,b"}, {Ifname: "eth1", Queues: 1, MapPath: "xsk/vm0"},
	} {
		if _, err := AFXDPArgs(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// ExecAFXDP wants one socket per queue before it execs anything.
func TestExecAFXDPCountsSockets(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = ExecAFXDP("/nonexistent/qemu", nil, AFXDPOptions{Ifname: "eth1", Queues: 2}, []*os.File{f})
	if err == nil || !strings.Contains(err.Error(), "1 sockets for 2 queues") {
		t.Errorf("got %v", err)
	}
	err = ExecAFXDP("/nonexistent/qemu", nil, AFXDPOptions{Ifname: "eth1", Queues: 1}, []*os.File{f})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/qemu") {
		t.Errorf("got %v", err)
	}
}
