package main

import (
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
)

// A port's netkit in 'vrss afxdp show' and 'list', after the table.
func TestPrintAFXDPNetkit(t *testing.T) {
	var b strings.Builder
	err := printAFXDP(&b, []api.AFXDPPort{
		{Name: "vm0x", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 107, OwnerGID: 107, Attached: true,
			Netkit: &api.AFXDPNetkit{Netns: "/var/run/netns/vm0", Name: "vm0x", Ifindex: 9, Queues: []uint32{1, 2}}},
	})
	want := `NAME  DEV   QUEUES  OWNER    PROGRAM   POLICY
vm0x  eth1  2-3     107:107  attached  none (drops all)
vm0x: netkit vm0x (ifindex 9) in /var/run/netns/vm0, queues 1,2 leasing eth1 queues 2-3
`
	if err != nil || b.String() != want {
		t.Errorf("got\n%s\nwant\n%s(%v)", b.String(), want, err)
	}
}
