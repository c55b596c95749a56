package client_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/port"
)

// A port policy on the TAP vm0, as root or an admin sets it: the guest's
// MAC and addresses, an ACL that lets DNS and HTTPS out and nothing else,
// and the counters by reason. The TAP's owner may read the policy and the
// counters but not change them. It needs a running vrssd, so it has no
// Output to check.
func Example_portSecurity() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	mac, _ := port.ParseMAC("52:54:00:12:34:56")
	acl, err := port.ParseACL("allow flow-type udp4 dst-port 53\nallow flow-type tcp4 dst-port 443\n")
	if err != nil {
		log.Fatal(err)
	}
	pol := port.Policy{
		MACs:      []port.MAC{mac},
		IPv4:      []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")},
		IPv6:      []netip.Prefix{netip.MustParsePrefix("2001:db8::10/128")},
		LinkLocal: true,
		Rules:     acl,
		Default:   port.Drop,
	}
	info, err := c.PortSet(ctx, "vm0", pol)
	if err != nil {
		log.Fatal(err) // an invalid policy is api.CodeInvalidConfig, and the active one stays
	}
	fmt.Println("attached:", info.Attached, "generation:", info.Generation)

	st, err := c.PortStats(ctx, "vm0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("passed %d, dropped %d, spoofed IPv4 sources %d\n", st.Passed, st.Dropped, st.Reasons[port.SrcIPv4])
	for _, r := range st.Rules {
		fmt.Printf("rule %d (%s): %d\n", r.Index, r.Rule, r.Hits)
	}
}
