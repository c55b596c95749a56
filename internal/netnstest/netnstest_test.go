package netnstest

import (
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestRun(t *testing.T) {
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	var inside netns.NsHandle
	Run(t, func() {
		var err error
		if inside, err = netns.Get(); err != nil {
			t.Fatal(err)
		}
		if inside.Equal(before) {
			t.Fatal("still in the original namespace")
		}
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" {
			t.Fatalf("fresh namespace has links %v, want only lo", links)
		}
		if links[0].Attrs().Flags&(1<<0) == 0 { // net.FlagUp
			t.Fatal("lo is down")
		}
	})
	defer inside.Close()

	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Fatal("thread not switched back to the original namespace")
	}
}
