package e2e

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestQEMUConfBlock(t *testing.T) {
	orig := "# comment\n#user = \"libvirt-qemu\"\n"
	block := qemuConfBegin + "\n" + strings.Join(qemuConfLines, "\n") + "\n" + qemuConfEnd + "\n"
	for _, c := range []struct{ in, want string }{
		{orig, orig},
		{orig + block, orig},
		{orig + block + block, orig},
		{block + orig, orig},
		{orig + qemuConfBegin + "\nsecurity_driver = \"none\"\n", orig}, // cut short: the rest is the harness's
	} {
		if got := withoutHarnessBlock(c.in); got != c.want {
			t.Errorf("withoutHarnessBlock(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDomainXML(t *testing.T) {
	o := DomainOptions{
		Name: "d", Emulator: "/usr/bin/qemu-system-x86_64", Kernel: "/k", Initrd: "/i",
		Append: "console=ttyS0", MemoryMB: 256, CPUs: 2, TAP: "t0", Queues: 4, MAC: GuestMAC, Console: "/c.sock",
	}
	var dom struct {
		Type string `xml:"type,attr"`
		OS   struct {
			Kernel string `xml:"kernel"`
		} `xml:"os"`
		Iface struct {
			Type   string `xml:"type,attr"`
			Target struct {
				Dev     string `xml:"dev,attr"`
				Managed string `xml:"managed,attr"`
			} `xml:"target"`
			Driver struct {
				Name   string `xml:"name,attr"`
				Queues int    `xml:"queues,attr"`
				RSS    string `xml:"rss,attr"`
			} `xml:"driver"`
		} `xml:"devices>interface"`
		Serial struct {
			Source struct {
				Mode string `xml:"mode,attr"`
				Path string `xml:"path,attr"`
			} `xml:"source"`
		} `xml:"devices>serial"`
	}
	if err := xml.Unmarshal([]byte(o.XML()), &dom); err != nil {
		t.Fatal(err)
	}
	i := dom.Iface
	if dom.Type != "qemu" || dom.OS.Kernel != "/k" || i.Type != "ethernet" || i.Target.Dev != "t0" || i.Target.Managed != "no" ||
		i.Driver.Name != "qemu" || i.Driver.Queues != 4 || i.Driver.RSS != "" || dom.Serial.Source.Mode != "connect" || dom.Serial.Source.Path != "/c.sock" {
		t.Fatalf("domain XML parsed as %+v:\n%s", dom, o.XML())
	}
	o.RSS = true
	if x := interfaceXML(o.XML()); !strings.Contains(x, "<driver name='qemu' queues='4' rss='on'/>") || !strings.HasPrefix(x, "<interface type='ethernet'>") {
		t.Fatalf("interfaceXML: %s", x)
	}
}
