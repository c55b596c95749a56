// Package ethtooltest holds Model, a device whose driver has RSS contexts
// and ntuple rules, for the tests of package ethtool and of vrssd's
// --slice: no NIC on the machines that test vrss has them.
package ethtooltest

import (
	"fmt"
	"maps"
	"slices"

	"github.com/vrss-dev/vrss/ethtool"
)

// Model is a device whose driver has RSS contexts and ntuple rules, as
// the kernel's ethtool core and such a driver behave (net/ethtool/ioctl.c:
// context ids from 1, the table must have the device's size and name
// queues below the ring count, a context that rules use cannot be
// deleted). It is a model of the success path, which no NIC on the test
// machines can run; it proves the callers' bookkeeping, not a driver.
type Model struct {
	Dev                  string
	RingCount, TableSize int
	Special              bool   // LocAny works
	RuleSlots            uint32 // rule table size
	Contexts             map[uint32][]uint32
	Rules                map[uint32]ethtool.Rule
	Next                 uint32 // the next context id
	Calls                []string
	Fail                 map[string]error // op#n (1-based) -> refusal
	Count                map[string]int
	// Observe, if set, is called before each operation (after false)
	// and after each one that changed the model (after true).
	Observe func(op string, after bool)
}

var _ ethtool.Driver = (*Model)(nil)

// NewModel is a device m0 with 8 rings, a table of 128 entries, 16 rule
// slots and driver-chosen locations.
func NewModel() *Model {
	return &Model{Dev: "m0", RingCount: 8, TableSize: 128, Special: true, RuleSlots: 16,
		Contexts: map[uint32][]uint32{}, Rules: map[uint32]ethtool.Rule{}, Next: 1,
		Fail: map[string]error{}, Count: map[string]int{}}
}

// Clone is a copy of the device's contexts and rules, without the
// calls, injected refusals and observer.
func (m *Model) Clone() *Model {
	c := NewModel()
	c.Dev, c.RingCount, c.TableSize, c.Special, c.RuleSlots, c.Next = m.Dev, m.RingCount, m.TableSize, m.Special, m.RuleSlots, m.Next
	for k, v := range m.Contexts {
		c.Contexts[k] = slices.Clone(v)
	}
	maps.Copy(c.Rules, m.Rules)
	return c
}

// Refusal is the *ethtool.Error of a driver refusing op with kind.
func Refusal(kind error, op string) error {
	return &ethtool.Error{Op: op, Cmd: "model", Device: "m0", Kind: kind, Err: fmt.Errorf("model: %v", kind)}
}

// step counts a call of op and returns the refusal injected for it.
func (m *Model) step(op string) error {
	m.Count[op]++
	m.Calls = append(m.Calls, op)
	if m.Observe != nil {
		m.Observe(op, false)
	}
	return m.Fail[fmt.Sprintf("%s#%d", op, m.Count[op])]
}

func (m *Model) changed(op string) {
	if m.Observe != nil {
		m.Observe(op, true)
	}
}

// Name is the device's name.
func (m *Model) Name() string { return m.Dev }

// Rings is the RX ring count.
func (m *Model) Rings() (int, error) {
	if err := m.step("Rings"); err != nil {
		return 0, err
	}
	return m.RingCount, nil
}

// RSS reads a context.
func (m *Model) RSS(ctx uint32) (ethtool.Rxfh, error) {
	if err := m.step("RSS"); err != nil {
		return ethtool.Rxfh{}, err
	}
	if ctx == 0 {
		return ethtool.Rxfh{Cmd: ethtool.CmdGetRSS, IndirSize: uint32(m.TableSize), KeySize: 40, Table: ethtool.EqualTable(m.TableSize, 0, m.RingCount)}, nil
	}
	t, ok := m.Contexts[ctx]
	if !ok {
		return ethtool.Rxfh{}, Refusal(ethtool.ErrNotFound, "rss")
	}
	return ethtool.Rxfh{Cmd: ethtool.CmdGetRSS, Context: ctx, IndirSize: uint32(len(t)), Table: slices.Clone(t)}, nil
}

// CreateContext creates a context.
func (m *Model) CreateContext(table []uint32, key []byte) (uint32, error) {
	if err := m.step("CreateContext"); err != nil {
		return 0, err
	}
	if len(table) != m.TableSize || (key != nil && len(key) != 40) {
		return 0, Refusal(ethtool.ErrInvalid, "create")
	}
	for _, q := range table {
		if int(q) >= m.RingCount {
			return 0, Refusal(ethtool.ErrInvalid, "create")
		}
	}
	id := m.Next
	m.Next++
	m.Contexts[id] = slices.Clone(table)
	m.changed("CreateContext")
	return id, nil
}

// DeleteContext deletes a context no rule uses.
func (m *Model) DeleteContext(ctx uint32) error {
	if err := m.step("DeleteContext"); err != nil {
		return err
	}
	if _, ok := m.Contexts[ctx]; !ok {
		return Refusal(ethtool.ErrNotFound, "delete context")
	}
	for _, r := range m.Rules {
		if r.Type&ethtool.FlowRSS != 0 && r.Context == ctx {
			return Refusal(ethtool.ErrBusy, "delete context")
		}
	}
	delete(m.Contexts, ctx)
	m.changed("DeleteContext")
	return nil
}

// AddRule inserts a rule.
func (m *Model) AddRule(r ethtool.Rule) (uint32, error) {
	if err := m.step("AddRule"); err != nil {
		return 0, err
	}
	if r.Type&ethtool.FlowRSS != 0 {
		if _, ok := m.Contexts[r.Context]; !ok || r.Queue != 0 {
			return 0, Refusal(ethtool.ErrInvalid, "add rule")
		}
	}
	loc := r.Location
	if loc == ethtool.LocAny {
		if !m.Special {
			return 0, Refusal(ethtool.ErrInvalid, "add rule")
		}
		for loc = 0; loc < m.RuleSlots; loc++ {
			if _, used := m.Rules[loc]; !used {
				break
			}
		}
	}
	if loc >= m.RuleSlots {
		return 0, Refusal(ethtool.ErrNoSpace, "add rule")
	}
	r.Location = loc
	m.Rules[loc] = r
	m.changed("AddRule")
	return loc, nil
}

// DeleteRule deletes a rule.
func (m *Model) DeleteRule(loc uint32) error {
	if err := m.step("DeleteRule"); err != nil {
		return err
	}
	if _, ok := m.Rules[loc]; !ok {
		return Refusal(ethtool.ErrNotFound, "delete rule")
	}
	delete(m.Rules, loc)
	m.changed("DeleteRule")
	return nil
}

// RuleTable reads the rule table.
func (m *Model) RuleTable() (ethtool.RuleTable, error) {
	if err := m.step("RuleTable"); err != nil {
		return ethtool.RuleTable{}, err
	}
	return ethtool.RuleTable{Size: m.RuleSlots, Special: m.Special, Locations: slices.Collect(maps.Keys(m.Rules))}, nil
}

// Rule reads a rule.
func (m *Model) Rule(loc uint32) (ethtool.Rule, error) {
	if err := m.step("Rule"); err != nil {
		return ethtool.Rule{}, err
	}
	r, ok := m.Rules[loc]
	if !ok {
		return ethtool.Rule{}, Refusal(ethtool.ErrNotFound, "rule")
	}
	return r, nil
}
