package diffcorpus

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// FlowSets is the number of random flow sets the flow differential tests
// spread their frames over.
const FlowSets = 24

// maskMenu returns the masks rules are drawn from: exact and masked
// 5-tuples, single fields, prefixes, MACs, VLAN, TCP flags, "any".
func maskMenu() []flow.Key {
	full := func(k *flow.Key, off, n int) {
		for i := off; i < off+n; i++ {
			k[i] = 0xff
		}
	}
	var menu []flow.Key
	add := func(f func(k *flow.Key)) {
		var k flow.Key
		f(&k)
		menu = append(menu, k)
	}
	five := func(alen int) func(k *flow.Key) {
		return func(k *flow.Key) {
			full(k, flow.OffEtherType, 2)
			full(k, flow.OffProto, 1)
			full(k, flow.OffSrcIP, alen)
			full(k, flow.OffDstIP, alen)
			full(k, flow.OffSrcPort, 4)
		}
	}
	add(five(4))
	add(five(16))
	add(func(k *flow.Key) {
		full(k, flow.OffEtherType, 2)
		full(k, flow.OffProto, 1)
		full(k, flow.OffDstPort, 2)
	})
	add(func(k *flow.Key) { full(k, flow.OffEtherType, 2); full(k, flow.OffSrcIP, 3) })
	add(func(k *flow.Key) { full(k, flow.OffEtherType, 2); full(k, flow.OffDstIP, 6) })
	add(func(k *flow.Key) { full(k, flow.OffDstMAC, 6) })
	add(func(k *flow.Key) { full(k, flow.OffSrcMAC, 6); full(k, flow.OffEtherType, 2) })
	add(func(k *flow.Key) { full(k, flow.OffEtherType, 2) })
	add(func(k *flow.Key) { k[flow.OffTCI], k[flow.OffTCI+1] = 0x0f, 0xff })
	add(func(k *flow.Key) { full(k, flow.OffEtherType, 2); full(k, flow.OffProto, 1) })
	add(func(k *flow.Key) { full(k, flow.OffEtherType, 2); k[flow.OffTCPFlags] = 0x12 })
	add(func(k *flow.Key) {
		full(k, flow.OffEtherType, 2)
		k[flow.OffSrcPort], k[flow.OffDstPort] = 0xff, 0xf0
	})
	add(func(k *flow.Key) { full(k, flow.OffEtherType, 2); k[flow.OffFlags] = flow.FlagFragment })
	add(func(*flow.Key) {}) // any
	add(func(k *flow.Key) {
		full(k, flow.OffEtherType, 2)
		full(k, flow.OffProto, 1)
		full(k, flow.OffSrcIP, 16)
	})
	add(func(k *flow.Key) {
		full(k, flow.OffDstMAC, 3)
		full(k, flow.OffEtherType, 2)
		full(k, flow.OffDstPort, 2)
	})
	add(func(k *flow.Key) { k[flow.OffTCI] = 0xe0; full(k, flow.OffProto, 1); full(k, flow.OffEtherType, 2) })
	return menu
}

// FlowSet returns a random set for frames like those of frame.Random, for
// a TAP with the given queues: a default configuration and up to
// flow.MaxContexts contexts drawn as Config draws them, one to four groups
// (host and guest, priorities that often tie) and up to maxRules rules
// whose matches are drawn from up to flow.MaxPatterns masks of a menu and
// take their values from sample frames' keys, so that frames match them
// (overlapping, shadowed and equal-priority rules included). Every action
// appears.
func FlowSet(r *rand.Rand, queues, maxRules int, sample [][]byte) flow.Set {
	cfg := func(tableMax int) rss.Config {
		c := Config(r)
		n := min(len(c.Table), tableMax)
		c.Table = c.Table[:n]
		for i := range c.Table {
			c.Table[i] %= uint16(queues)
		}
		c.UnclassifiedQueue %= uint16(queues)
		return c
	}
	s := flow.Set{Default: cfg(rss.MaxTableLen)}
	for id := 1; id <= flow.MaxContexts; id++ {
		if r.IntN(2) == 0 {
			c := cfg(flow.MaxContextTable)
			c.Key = c.Key[:min(len(c.Key), flow.MaxContextKey)]
			s.Contexts = append(s.Contexts, flow.Context{ID: uint16(id), Config: c})
		}
	}
	ng := 1 + r.IntN(4)
	for g := 0; g < ng; g++ {
		s.Groups = append(s.Groups, flow.Group{ID: uint32(10 + g*7), Priority: uint16(r.IntN(3)), Host: g == 0 || r.IntN(2) == 0})
	}
	menu := maskMenu()
	r.Shuffle(len(menu), func(i, j int) { menu[i], menu[j] = menu[j], menu[i] })
	masks := menu[:1+r.IntN(min(len(menu), flow.MaxPatterns))]
	n := r.IntN(maxRules + 1)
	seen := map[flow.Key]bool{}
	for i := 0; i < n; i++ {
		g := s.Groups[r.IntN(ng)]
		m := flow.Match{Mask: masks[r.IntN(len(masks))]}
		if len(sample) > 0 {
			m.Value = flow.KeyOf(sample[r.IntN(len(sample))])
		}
		if r.IntN(8) == 0 { // a value no frame is likely to have
			binary.BigEndian.PutUint32(m.Value[flow.OffSrcIP:], r.Uint32())
		}
		if m.Normalize() != nil || !seen[m.Mask] && len(seen) == flow.MaxPatterns {
			continue
		}
		seen[m.Mask] = true
		rule := flow.Rule{ID: uint32(1000 + i), Group: g.ID, Priority: uint8(r.IntN(3)), Match: m}
		switch k := r.IntN(3); {
		case k == 0:
			rule.Action = flow.Action{Kind: flow.ActionDrop}
		case k == 1 && g.Host && len(s.Contexts) > 0:
			rule.Action = flow.Action{Kind: flow.ActionContext, Context: s.Contexts[r.IntN(len(s.Contexts))].ID}
		default:
			rule.Action = flow.Action{Kind: flow.ActionQueue, Queue: uint16(r.IntN(queues))}
		}
		s.Rules = append(s.Rules, rule)
	}
	return s
}

// FlowFrame returns a frame for a set drawn with FlowSet from sample: half
// of them a sample frame (which some rule likely matches), the others
// frame.Random's.
func FlowFrame(r *rand.Rand, sample [][]byte) []byte {
	if len(sample) > 0 && r.IntN(2) == 0 {
		return sample[r.IntN(len(sample))]
	}
	return frame.Random(r)
}
