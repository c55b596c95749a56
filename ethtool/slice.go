package ethtool

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Driver is the ethtool interface of one network device: Device on Linux,
// or a fake in tests. Slice, Unslice and Sliced need nothing else.
type Driver interface {
	// Name is the device's name.
	Name() string
	// Rings is the number of RX rings (queues) the driver steers to.
	Rings() (int, error)
	// RSS reads the indirection table, key and hash function of a
	// context (0: the default one).
	RSS(context uint32) (Rxfh, error)
	// CreateContext creates an RSS context with this table (the
	// device's table size) and key (nil: the driver's), and returns its
	// id.
	CreateContext(table []uint32, key []byte) (uint32, error)
	// DeleteContext deletes a context other than 0.
	DeleteContext(context uint32) error
	// AddRule inserts a rule and returns the location it took.
	AddRule(r Rule) (uint32, error)
	// DeleteRule deletes the rule at a location.
	DeleteRule(loc uint32) error
	// RuleTable reads the rule table's size and the used locations.
	RuleTable() (RuleTable, error)
	// Rule reads the rule at a location.
	Rule(loc uint32) (Rule, error)
}

// RuleTable is what CmdGetRuleCount and CmdGetRuleLocs report.
type RuleTable struct {
	Size      uint32   // the number of locations, 0 if the driver does not say
	Special   bool     // the driver chooses locations itself (LocAny works)
	Locations []uint32 // the locations in use
}

// FreeLocation is the location a new rule should ask for: LocAny where the
// driver chooses, else the lowest free location below Size.
func (t RuleTable) FreeLocation() (uint32, error) {
	if t.Special {
		return LocAny, nil
	}
	for loc := uint32(0); loc < t.Size; loc++ {
		if !slices.Contains(t.Locations, loc) {
			return loc, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d rule locations are used", ErrNoSpace, t.Size)
}

// EqualTable is an indirection table of size entries spreading evenly over
// queues [start, start+k): entry i is start + i mod k.
func EqualTable(size, start, k int) []uint32 {
	t := make([]uint32, size)
	for i := range t {
		t[i] = uint32(start + i%k)
	}
	return t
}

// ListRules reads all the rules of d, in location order.
func ListRules(d Driver) ([]Rule, error) {
	t, err := d.RuleTable()
	if err != nil {
		return nil, err
	}
	locs := slices.Sorted(slices.Values(t.Locations))
	rules := make([]Rule, 0, len(locs))
	for _, l := range locs {
		r, err := d.Rule(l)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// DestinationRule is the rule Slice adds for one guest prefix: traffic to
// p spreads over the RSS context, at location loc.
func DestinationRule(p netip.Prefix, context, loc uint32) (Rule, error) {
	if !p.IsValid() || p.Bits() == 0 {
		return Rule{}, fmt.Errorf("%w: prefix %v: want an address or a prefix of at least one bit", ErrInvalid, p)
	}
	p = p.Masked()
	if p.Addr().Is4In6() {
		return Rule{}, fmt.Errorf("%w: prefix %v: an IPv4-mapped IPv6 prefix matches no frame", ErrInvalid, p)
	}
	t, bits := IPv4UserFlow, 32
	if !p.Addr().Is4() {
		t, bits = IPv6UserFlow, 128
	}
	m := netip.PrefixFrom(allOnes(bits), p.Bits()).Masked().Addr()
	return Rule{Type: t | FlowRSS, Dst: p.Addr(), DstMask: m, Context: context, Location: loc}, nil
}

// allOnes is the address with every bit set: 255.255.255.255 or ffff::…
func allOnes(bits int) netip.Addr {
	if bits == 32 {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var a [16]byte
	for i := range a {
		a[i] = 0xff
	}
	return netip.AddrFrom16(a)
}

// SliceSpec is what Slice gives a guest.
type SliceSpec struct {
	QueueStart int            // the first queue of the guest's range
	Queues     int            // how many queues, from QueueStart
	Prefixes   []netip.Prefix // the guest's addresses: one rule each, on the destination
	Key        []byte         // the context's RSS key; nil: the driver's
	// Progress, if set, is called after each object Slice creates or
	// deletes, with everything that exists at that moment, so that the
	// caller can record it before going on (and find it again after a
	// crash).
	Progress func(SliceState)
}

// SliceState is what Slice created on a device: what Unslice removes, and
// what the caller records.
type SliceState struct {
	Device     string   `json:"device"`
	Context    uint32   `json:"context"` // 0 until created
	QueueStart int      `json:"queue_start"`
	Queues     int      `json:"queues"`
	Rules      []uint32 `json:"rules,omitempty"` // the rules' locations
}

// Slice creates an RSS context over queues [QueueStart, QueueStart+Queues)
// of d and one rule per prefix that sends traffic to it into the context.
// On any failure it deletes what it created (the rules, then the context)
// and returns the refusal, joined with any failure to clean up.
func Slice(d Driver, spec SliceSpec) (SliceState, error) {
	st := SliceState{Device: d.Name(), QueueStart: spec.QueueStart, Queues: spec.Queues}
	fail := func(err error) (SliceState, error) {
		err = fmt.Errorf("ethtool: slice queues %d-%d of %s: %w", spec.QueueStart, spec.QueueStart+spec.Queues-1, d.Name(), err)
		if uerr := unslice(d, &st, spec.Progress); uerr != nil {
			err = errors.Join(err, fmt.Errorf("ethtool: undoing the slice of %s: %w", d.Name(), uerr))
		}
		return SliceState{}, err
	}
	if spec.Queues < 1 || spec.QueueStart < 0 || len(spec.Prefixes) == 0 {
		return fail(fmt.Errorf("%w: %d queues from %d, %d prefixes: want at least one queue and one prefix", ErrInvalid, spec.Queues, spec.QueueStart, len(spec.Prefixes)))
	}
	rules := make([]Rule, len(spec.Prefixes))
	for i, p := range spec.Prefixes {
		r, err := DestinationRule(p, 0, 0)
		if err != nil {
			return fail(err)
		}
		rules[i] = r
	}
	n, err := d.Rings()
	if err != nil {
		return fail(err)
	}
	if spec.QueueStart+spec.Queues > n {
		return fail(fmt.Errorf("%w: the device has %d RX rings", ErrInvalid, n))
	}
	sizes, err := d.RSS(0)
	if err != nil {
		return fail(err)
	}
	if sizes.IndirSize == 0 || sizes.IndirSize == IndirNoChange {
		return fail(fmt.Errorf("%w: the driver reports no indirection table", ErrNotSupported))
	}
	ctx, err := d.CreateContext(EqualTable(int(sizes.IndirSize), spec.QueueStart, spec.Queues), spec.Key)
	if err != nil {
		return fail(err)
	}
	st.Context = ctx
	progress(spec.Progress, st)
	for _, r := range rules {
		t, err := d.RuleTable()
		if err != nil {
			return fail(err)
		}
		if r.Location, err = t.FreeLocation(); err != nil {
			return fail(err)
		}
		r.Context = ctx
		loc, err := d.AddRule(r)
		if err != nil {
			return fail(err)
		}
		st.Rules = append(st.Rules, loc)
		progress(spec.Progress, st)
	}
	return st, nil
}

func progress(f func(SliceState), st SliceState) {
	if f != nil {
		st.Rules = slices.Clone(st.Rules)
		f(st)
	}
}

// Unslice removes what Slice created: the rules, then the context. Rules
// and a context already gone count as removed. It goes on after a failure
// and returns every failure joined.
func Unslice(d Driver, st SliceState) error {
	return unslice(d, &st, nil)
}

func unslice(d Driver, st *SliceState, p func(SliceState)) error {
	var errs []error
	kept := st.Rules[:0:0]
	for _, loc := range st.Rules {
		if err := d.DeleteRule(loc); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			kept = append(kept, loc)
		}
	}
	st.Rules = kept
	if st.Context != 0 && len(kept) == 0 {
		if err := d.DeleteContext(st.Context); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		} else {
			st.Context = 0
		}
	}
	progress(p, *st)
	return errors.Join(errs...)
}

// Sliced finds what looks like Slice's work on d: the rules that spread
// over an RSS context other than 0, grouped by context, with the context's
// queue range read from its table where the driver allows. Contexts that
// no rule uses cannot be listed through the ioctl: the caller's records
// (SliceSpec.Progress) are the way to find those.
func Sliced(d Driver) ([]SliceState, error) {
	rules, err := ListRules(d)
	if err != nil {
		return nil, err
	}
	byCtx := map[uint32]*SliceState{}
	var out []*SliceState
	for _, r := range rules {
		if r.Type&FlowRSS == 0 || r.Context == 0 {
			continue
		}
		st := byCtx[r.Context]
		if st == nil {
			st = &SliceState{Device: d.Name(), Context: r.Context}
			if rx, err := d.RSS(r.Context); err == nil && len(rx.Table) > 0 {
				lo, hi := slices.Min(rx.Table), slices.Max(rx.Table)
				st.QueueStart, st.Queues = int(lo), int(hi-lo)+1
			}
			byCtx[r.Context] = st
			out = append(out, st)
		}
		st.Rules = append(st.Rules, r.Location)
	}
	res := make([]SliceState, len(out))
	for i, st := range out {
		res[i] = *st
	}
	return res, nil
}

// Orphans is what Sliced found that no known state accounts for: per
// context, the rules no known state of that device lists, and the whole
// context when no known state has it.
func Orphans(found, known []SliceState) []SliceState {
	var out []SliceState
	for _, f := range found {
		var k *SliceState
		for i := range known {
			if known[i].Device == f.Device && known[i].Context == f.Context {
				k = &known[i]
				break
			}
		}
		if k == nil {
			out = append(out, f)
			continue
		}
		o := SliceState{Device: f.Device, QueueStart: f.QueueStart, Queues: f.Queues}
		for _, l := range f.Rules {
			if !slices.Contains(k.Rules, l) {
				o.Rules = append(o.Rules, l)
			}
		}
		if len(o.Rules) > 0 {
			out = append(out, o) // Context 0: Unslice keeps the context, known to be in use
		}
	}
	return out
}
