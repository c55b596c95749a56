package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/ethtool"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
)

// Slicing an AF_XDP port's device (--slice): an RSS context whose table
// spreads over the port's queues, and one ntuple rule per address prefix
// of the port policy sending traffic to that address into the context
// (package ethtool). The context is made at create, the rules whenever
// the policy is set, changed or cleared, and all of it is removed on
// delete.
//
// What is vrssd's: a context is vrssd's only if its id is in a port's
// record (written right after the kernel gave the id), and a rule only if
// it sends into such a context and has the shape vrssd gives its rules
// (ethtool.DestinationRule of a prefix the record names: recorded,
// pending or the policy's). Before deleting a recorded rule or context
// vrssd reads it back and leaves it if it is no longer that (its slot or
// id reused by someone else since): vrssd never deletes what it did not
// make.
//
// The record (afxdpRecord.Slice) is written before each step that
// changes the device (the state, the prefixes about to get rules) and
// after it (the context's id, each rule's location), so that a SIGKILL
// at any moment leaves a record from which the next start finds what
// exists: an interrupted create or delete is undone, and a port restored
// gets rules that an interrupted policy change added without recording
// them removed (they send into its recorded context) and its rules made
// to match its policy again. One window is not covered: a SIGKILL
// between the kernel creating the context and vrssd recording its id
// leaves a context no rule uses and no record names, which the ioctl
// cannot list; the next start logs the device and queue range of such a
// possible leftover instead of guessing.

// The states of a slice in its record.
const (
	sliceCreating = "creating" // the port's create has not finished
	sliceReady    = "ready"
	sliceDeleting = "deleting" // the port's delete has not finished
)

// afxdpSlice is a port's slice in its record, read as untrusted input.
type afxdpSlice struct {
	State   string      `json:"state"`
	Context uint32      `json:"context,omitempty"` // 0 until created
	Rules   []sliceRule `json:"rules,omitempty"`
	// Pending are the prefixes whose rules are being added: a SIGKILL
	// during an add can leave a rule the record does not list yet.
	Pending []netip.Prefix `json:"pending,omitempty"`
}

// sliceRule is one of a slice's ntuple rules.
type sliceRule struct {
	Location uint32       `json:"location"`
	Prefix   netip.Prefix `json:"prefix"`
}

// maxSliceRules bounds a record's rules and pending prefixes: one per
// prefix a policy may hold.
const maxSliceRules = port.MaxIPv4 + port.MaxIPv6

func (sl *afxdpSlice) validate() error {
	switch sl.State {
	case sliceCreating, sliceReady, sliceDeleting:
	default:
		return fmt.Errorf("slice state %q", sl.State)
	}
	if sl.Context == 0 && sl.State == sliceReady {
		return errors.New("a ready slice without its RSS context")
	}
	if sl.Context == ethtool.ContextAlloc {
		return fmt.Errorf("slice context %#x", sl.Context)
	}
	if len(sl.Rules) > maxSliceRules || len(sl.Pending) > maxSliceRules {
		return fmt.Errorf("slice: %d rules and %d pending prefixes, at most %d each", len(sl.Rules), len(sl.Pending), maxSliceRules)
	}
	if len(sl.Rules) > 0 && sl.Context == 0 {
		return errors.New("slice rules without an RSS context")
	}
	seen := map[uint32]bool{}
	for _, r := range sl.Rules {
		if _, err := ethtool.DestinationRule(r.Prefix, 1, r.Location); err != nil || r.Prefix != r.Prefix.Masked() {
			return fmt.Errorf("slice rule prefix %v", r.Prefix)
		}
		if seen[r.Location] || r.Location >= ethtool.LocSpecial {
			return fmt.Errorf("slice rule location %d", r.Location)
		}
		seen[r.Location] = true
	}
	for _, p := range sl.Pending {
		if _, err := ethtool.DestinationRule(p, 1, 0); err != nil || p != p.Masked() {
			return fmt.Errorf("slice pending prefix %v", p)
		}
	}
	return nil
}

func (sl *afxdpSlice) info() *api.AFXDPSlice {
	out := &api.AFXDPSlice{Context: sl.Context, Rules: []api.AFXDPSliceRule{}}
	for _, r := range sl.Rules {
		out.Rules = append(out.Rules, api.AFXDPSliceRule{Location: r.Location, Prefix: r.Prefix.String()})
	}
	return out
}

// String says what the slice holds, for the log.
func (sl *afxdpSlice) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "context %d", sl.Context)
	for _, r := range sl.Rules {
		fmt.Fprintf(&b, ", rule %d (%v)", r.Location, r.Prefix)
	}
	return b.String()
}

// slicePrefixes are the prefixes a policy's rules are for: its IPv4 and
// IPv6 prefixes, masked, once each (nil policy: none).
func slicePrefixes(pol *port.Policy) []netip.Prefix {
	if pol == nil {
		return nil
	}
	var out []netip.Prefix
	for _, p := range slices.Concat(pol.IPv4, pol.IPv6) {
		if p = p.Masked(); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// ethDo runs fn with the port's device's driver, in the port's namespace.
func (s *Server) ethDo(a *afxdpPort, fn func(d ethtool.Driver) error) error {
	var d ethtool.Driver = ethtool.Device(a.rec.Dev)
	if s.opts.Ethtool != nil {
		d = s.opts.Ethtool(a.rec.Dev)
	}
	return a.do(func() error { return fn(d) })
}

// sliceError is a refusal of the device's driver (or of the namespace)
// for port a, in one line.
func sliceError(a *afxdpPort, what string, err error) error {
	code := api.CodeUnavailable
	switch {
	case errors.Is(err, ethtool.ErrInvalid):
		code = api.CodeInvalidConfig
	case errors.Is(err, ethtool.ErrBusy), errors.Is(err, ethtool.ErrNoSpace):
		code = api.CodeBusy
	case errors.Is(err, ethtool.ErrNoDevice):
		code = api.CodeNotFound
	}
	return api.Errorf(code, "AF_XDP port %s: %s: %v", a.rec.Name, what, err)
}

// afxdpSliceProbe checks, reading only, that the port's device can be
// sliced: its driver reports its RX ring count (the port's queues within
// it), an indirection table, and an ntuple rule table. It changes nothing.
func (s *Server) afxdpSliceProbe(a *afxdpPort) error {
	r := &a.rec
	err := s.ethDo(a, func(d ethtool.Driver) error {
		n, err := d.Rings()
		if err != nil {
			return err
		}
		if r.QueueStart+r.Queues > n {
			return fmt.Errorf("%w: its driver steers to %d RX rings, queues %d-%d asked for", ethtool.ErrInvalid, n, r.QueueStart, r.QueueStart+r.Queues-1)
		}
		if err := checkIndir(d); err != nil {
			return err
		}
		_, err = d.RuleTable()
		return err
	})
	if err != nil {
		return sliceError(a, "--slice: "+a.rec.Dev+" cannot be sliced, nothing was created", err)
	}
	return nil
}

// checkIndir reads the default context's table size.
func checkIndir(d ethtool.Driver) error {
	rx, err := d.RSS(0)
	if err != nil {
		return err
	}
	if rx.IndirSize == 0 || rx.IndirSize == ethtool.IndirNoChange {
		return fmt.Errorf("%w: the driver of %s reports no RSS indirection table", ethtool.ErrNotSupported, d.Name())
	}
	return nil
}

// afxdpSliceCreateLocked creates the port's RSS context, after the record
// saying a slice is being created was written, and records its id. On
// error nothing of the slice is left on the device.
func (s *Server) afxdpSliceCreateLocked(a *afxdpPort) error {
	r := &a.rec
	var ctx uint32
	err := s.ethDo(a, func(d ethtool.Driver) error {
		rx, err := d.RSS(0)
		if err != nil {
			return err
		}
		ctx, err = d.CreateContext(ethtool.EqualTable(int(rx.IndirSize), r.QueueStart, r.Queues), nil)
		return err
	})
	if err != nil {
		return sliceError(a, fmt.Sprintf("--slice: creating an RSS context over queues %d-%d of %s, nothing was created", r.QueueStart, r.QueueStart+r.Queues-1, r.Dev), err)
	}
	r.Slice.Context = ctx
	if err := s.writeAFXDP(r.key(), r); err != nil {
		err = fmt.Errorf("AF_XDP port %s: recording RSS context %d of %s: %w", r.Name, ctx, r.Dev, err)
		if uerr := s.afxdpUnsliceLocked(a, false); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return err
	}
	return nil
}

// afxdpSliceRulesLocked makes the slice's rules those of pol's prefixes.
// It adds the missing rules now, recording each, and on any failure
// removes those it added and returns the refusal, the previous rules
// untouched. On success, commit deletes the rules pol no longer names
// (recording each; a failure is logged and the rule stays recorded, to
// be removed by a later change or the delete), and undo deletes the
// rules it added.
func (s *Server) afxdpSliceRulesLocked(a *afxdpPort, pol *port.Policy) (commit, undo func(), err error) {
	sl := a.rec.Slice
	want := slicePrefixes(pol)
	var add []netip.Prefix
	for _, p := range want {
		if _, err := ethtool.DestinationRule(p, sl.Context, 0); err != nil {
			return nil, nil, api.Errorf(api.CodeInvalidConfig, "AF_XDP port %s is sliced: prefix %v can be no ntuple rule: %v", a.rec.Name, p, err)
		}
		if !slices.ContainsFunc(sl.Rules, func(r sliceRule) bool { return r.Prefix == p }) {
			add = append(add, p)
		}
	}
	if len(want) > maxSliceRules {
		return nil, nil, api.Errorf(api.CodeInvalidConfig, "AF_XDP port %s is sliced: %d prefixes, at most %d rules", a.rec.Name, len(want), maxSliceRules)
	}
	var added []sliceRule
	undo = func() {
		for _, r := range added {
			s.afxdpRemoveRuleLocked(a, r)
		}
	}
	if len(add) > 0 {
		sl.Pending = add
		if err := s.writeAFXDP(a.rec.key(), &a.rec); err != nil {
			sl.Pending = nil
			return nil, nil, fmt.Errorf("AF_XDP port %s: recording the rules to add: %w", a.rec.Name, err)
		}
	}
	for _, p := range add {
		var loc uint32
		err := s.ethDo(a, func(d ethtool.Driver) error {
			t, err := d.RuleTable()
			if err != nil {
				return err
			}
			if loc, err = t.FreeLocation(); err != nil {
				return err
			}
			rule, _ := ethtool.DestinationRule(p, sl.Context, loc)
			loc, err = d.AddRule(rule)
			return err
		})
		if err == nil {
			r := sliceRule{Location: loc, Prefix: p}
			added = append(added, r)
			sl.Rules = append(sl.Rules, r)
			err = s.writeAFXDP(a.rec.key(), &a.rec)
		}
		if err != nil {
			undo()
			sl.Pending = nil
			s.writeAFXDP(a.rec.key(), &a.rec)
			return nil, nil, sliceError(a, fmt.Sprintf("port policy refused, the active one stays: adding the ntuple rule for %v on %s", p, a.rec.Dev), err)
		}
	}
	if len(add) > 0 {
		sl.Pending = nil
		s.writeAFXDP(a.rec.key(), &a.rec)
	}
	commit = func() {
		for _, r := range slices.Clone(sl.Rules) {
			if !slices.Contains(want, r.Prefix) {
				s.afxdpRemoveRuleLocked(a, r)
			}
		}
	}
	return commit, undo, nil
}

// errNotOurs: the rule at a recorded location is no longer the one vrssd
// made there.
var errNotOurs = errors.New("not the rule vrssd made there (its location was reused): left alone")

// ownRule says whether rule is the one vrssd makes for prefix p into
// context ctx.
func ownRule(rule ethtool.Rule, ctx uint32, p netip.Prefix) bool {
	want, err := ethtool.DestinationRule(p, ctx, rule.Location)
	return err == nil && rule.Type == want.Type && rule.Context == ctx && rule.Dst == want.Dst && rule.DstMask == want.DstMask
}

// gone says a refusal means the object is no longer there: deleted, or
// its device gone (and every context and rule with it).
func gone(err error) bool {
	return errors.Is(err, ethtool.ErrNotFound) || errors.Is(err, ethtool.ErrNoDevice)
}

// afxdpRemoveRuleLocked deletes one of the slice's rules, if it is still
// vrssd's, and records that it is gone. A failure is logged and the rule
// stays recorded.
func (s *Server) afxdpRemoveRuleLocked(a *afxdpPort, r sliceRule) error {
	sl := a.rec.Slice
	err := s.ethDo(a, func(d ethtool.Driver) error {
		rule, err := d.Rule(r.Location)
		if err != nil {
			return err
		}
		if !ownRule(rule, sl.Context, r.Prefix) {
			return errNotOurs
		}
		return d.DeleteRule(r.Location)
	})
	if err != nil && !gone(err) && !errors.Is(err, errNotOurs) {
		s.log.Warn("deleting an AF_XDP port's ntuple rule; it stays recorded", "port", a.rec.Name, "dev", a.rec.Dev, "location", r.Location, "prefix", r.Prefix, "err", err)
		return err
	}
	if errors.Is(err, errNotOurs) {
		s.log.Warn("an AF_XDP port's ntuple rule is not there any more; another rule holds its location", "port", a.rec.Name, "dev", a.rec.Dev, "location", r.Location, "prefix", r.Prefix)
	}
	sl.Rules = slices.DeleteFunc(sl.Rules, func(x sliceRule) bool { return x == r })
	s.writeAFXDP(a.rec.key(), &a.rec)
	return nil
}

// afxdpStrayRulesLocked deletes the rules that send into the slice's
// context with vrssd's shape for a prefix of the record (pending, or
// policy) but that the record does not list: rules a SIGKILL during an
// add left unrecorded. It returns their locations; a driver that cannot
// list its rules gives none.
func (s *Server) afxdpStrayRulesLocked(a *afxdpPort) []uint32 {
	sl := a.rec.Slice
	if sl.Context == 0 {
		return nil
	}
	known := slices.Concat(sl.Pending, slicePrefixes(a.rec.Policy))
	for _, r := range sl.Rules {
		known = append(known, r.Prefix)
	}
	var removed []uint32
	err := s.ethDo(a, func(d ethtool.Driver) error {
		rules, err := ethtool.ListRules(d)
		if err != nil {
			return err
		}
		for _, rule := range rules {
			if slices.ContainsFunc(sl.Rules, func(r sliceRule) bool { return r.Location == rule.Location }) {
				continue
			}
			if !slices.ContainsFunc(known, func(p netip.Prefix) bool { return ownRule(rule, sl.Context, p) }) {
				continue
			}
			if err := d.DeleteRule(rule.Location); err != nil && !gone(err) {
				return err
			}
			removed = append(removed, rule.Location)
		}
		return nil
	})
	if err != nil && !gone(err) {
		s.log.Warn("looking for unrecorded ntuple rules of an AF_XDP port's slice", "port", a.rec.Name, "dev", a.rec.Dev, "context", sl.Context, "err", err)
	}
	return removed
}

// afxdpUnsliceLocked removes the port's slice from its device: its
// recorded rules, any unrecorded rule of its (afxdpStrayRulesLocked),
// then its context, recording each step. It fails, with what remains
// recorded, if a rule or the context could not be deleted; final drops
// the slice from the record once all is gone.
func (s *Server) afxdpUnsliceLocked(a *afxdpPort, final bool) error {
	sl := a.rec.Slice
	if sl == nil {
		return nil
	}
	var errs []error
	for _, r := range slices.Clone(sl.Rules) {
		if err := s.afxdpRemoveRuleLocked(a, r); err != nil {
			errs = append(errs, err)
		}
	}
	s.afxdpStrayRulesLocked(a)
	sl.Pending = nil
	if sl.Context != 0 && len(errs) == 0 {
		err := s.ethDo(a, func(d ethtool.Driver) error {
			// Only the context vrssd made: one over the port's queues.
			rx, err := d.RSS(sl.Context)
			if err != nil {
				return err
			}
			if len(rx.Table) > 0 && !slices.Equal(rx.Table, ethtool.EqualTable(len(rx.Table), a.rec.QueueStart, a.rec.Queues)) {
				return errNotOurs
			}
			return d.DeleteContext(sl.Context)
		})
		switch {
		case errors.Is(err, errNotOurs):
			s.log.Warn("an AF_XDP port's RSS context is not the one vrssd made (its id was reused): left alone", "port", a.rec.Name, "dev", a.rec.Dev, "context", sl.Context)
			sl.Context = 0
		case err != nil && !gone(err):
			errs = append(errs, err)
		default:
			sl.Context = 0
		}
	}
	if final && len(errs) == 0 {
		a.rec.Slice = nil
	}
	s.writeAFXDP(a.rec.key(), &a.rec)
	return errors.Join(errs...)
}

// afxdpSliceStartLocked runs at start for a restored port with a ready
// slice: it removes rules an interrupted policy change left unrecorded
// and makes the rules match the policy again.
func (s *Server) afxdpSliceStartLocked(a *afxdpPort) {
	sl := a.rec.Slice
	// Recorded rules that are gone (a SIGKILL after deleting one, before
	// recording it) or no longer vrssd's are dropped from the record.
	var dropped []uint32
	err := s.ethDo(a, func(d ethtool.Driver) error {
		if _, err := d.RSS(sl.Context); err != nil {
			return err
		}
		for _, r := range slices.Clone(sl.Rules) {
			rule, err := d.Rule(r.Location)
			if err != nil && !gone(err) {
				return err
			}
			if err != nil || !ownRule(rule, sl.Context, r.Prefix) {
				dropped = append(dropped, r.Location)
				sl.Rules = slices.DeleteFunc(sl.Rules, func(x sliceRule) bool { return x == r })
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("reading an AF_XDP port's slice at start; it is left as recorded", "port", a.rec.Name, "dev", a.rec.Dev, "slice", sl.String(), "err", err)
		return
	}
	if len(dropped) > 0 {
		s.log.Warn("recorded ntuple rules of an AF_XDP port are gone: forgotten", "port", a.rec.Name, "dev", a.rec.Dev, "locations", dropped)
	}
	if stray := s.afxdpStrayRulesLocked(a); len(stray) > 0 {
		s.log.Warn("removed ntuple rules an interrupted policy change left unrecorded", "port", a.rec.Name, "dev", a.rec.Dev, "context", sl.Context, "locations", stray)
	}
	sl.Pending = nil
	commit, _, err := s.afxdpSliceRulesLocked(a, a.rec.Policy)
	if err != nil {
		s.log.Warn("making an AF_XDP port's ntuple rules match its policy at start", "port", a.rec.Name, "err", err)
		return
	}
	commit()
	s.log.Info("AF_XDP port slice restored", "port", a.rec.Name, "dev", a.rec.Dev, "slice", sl.String())
}

// afxdpAbandonLocked undoes, at start, a port whose slice's create or
// delete was interrupted, or that could not be restored: it removes the
// slice from the device, the port's pins and its record, and logs what it
// removed. A slice it cannot remove is logged with its ids, for an
// administrator (ethtool -N DEV delete LOC, ethtool -X DEV context N
// delete), and its record dropped all the same.
func (s *Server) afxdpAbandonLocked(rec *afxdpRecord, why string) {
	sl := *rec.Slice
	a := &afxdpPort{rec: *rec}
	a.rec.Slice = &sl
	ns, err := reopenNetns(&tapState{Netns: rec.Netns, NetnsDev: rec.NetnsDev, NetnsIno: rec.NetnsIno})
	if err == nil {
		a.netns = ns
		before := sl.String()
		if sl.Context == 0 && sl.State == sliceCreating {
			s.log.Warn("an AF_XDP port's create was interrupted before its RSS context was recorded: if vrssd was killed during that ioctl, a context over the port's queues may be left on the device, which vrssd cannot tell from others (ethtool -x DEV context N)", "port", rec.Name, "dev", rec.Dev, "queue_start", rec.QueueStart, "queues", rec.Queues)
		}
		err = s.afxdpUnsliceLocked(a, true)
		if err == nil {
			s.log.Warn("removed the slice of an AF_XDP port", "port", rec.Name, "dev", rec.Dev, "why", why, "removed", before)
		}
		ns.Close()
	}
	if err != nil {
		s.log.Error("could not remove the slice of an AF_XDP port: remove it by hand", "port", rec.Name, "dev", rec.Dev, "why", why, "slice", a.rec.Slice.String(), "err", err)
	}
	// A netkit whose own create or delete was interrupted is undone by
	// afxdpNetkitInterruptedLocked, which calls this; a ready one goes
	// with its port.
	if rec.Netkit != nil && rec.Netkit.State == netkitReady {
		s.afxdpNetkitAbandonLocked(rec, why)
	}
	dir := s.afxdpPinDir(rec.key())
	portxdp.Unpin(dir)
	os.Remove(dir)
	s.writeAFXDP(rec.key(), nil)
}

// afxdpInstallSlicedLocked installs the port (afxdpInstallLocked), after
// creating its RSS context if it has a slice, and then records the slice
// ready. On error nothing of the slice or the install is left; the
// caller removes the record.
func (s *Server) afxdpInstallSlicedLocked(a *afxdpPort) error {
	if a.rec.Slice == nil {
		return s.afxdpInstallLocked(a)
	}
	if err := s.afxdpSliceCreateLocked(a); err != nil {
		return err
	}
	err := s.afxdpInstallLocked(a)
	if err == nil {
		a.rec.Slice.State = sliceReady
		if err = s.writeAFXDP(a.rec.key(), &a.rec); err != nil {
			err = fmt.Errorf("AF_XDP port %s: recording its slice: %w", a.rec.Name, err)
			s.afxdpRemoveLocked(a)
		}
	}
	if err != nil {
		if uerr := s.afxdpUnsliceLocked(a, true); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}
	return err
}

// afxdpDeleteSliceLocked removes a port's slice before its delete: the
// record says so first, so that a SIGKILL meanwhile leaves the delete for
// the next start to finish. On error the port stays, with what remains
// of its slice recorded.
func (s *Server) afxdpDeleteSliceLocked(a *afxdpPort) error {
	sl := a.rec.Slice
	if sl == nil {
		return nil
	}
	sl.State = sliceDeleting
	if err := s.writeAFXDP(a.rec.key(), &a.rec); err != nil {
		sl.State = sliceReady
		return fmt.Errorf("AF_XDP port %s: recording its delete: %w", a.rec.Name, err)
	}
	before := sl.String()
	if err := s.afxdpUnsliceLocked(a, true); err != nil {
		sl.State = sliceReady
		s.writeAFXDP(a.rec.key(), &a.rec)
		return sliceError(a, "removing its slice of "+a.rec.Dev+" failed, the port stays (what remains is recorded; delete it again once that is fixed)", err)
	}
	s.log.Info("AF_XDP port slice removed", "port", a.rec.Name, "dev", a.rec.Dev, "removed", before)
	return nil
}

// afxdpSlicePolicyLocked adds the rules pol needs before the policy is
// published (afxdpSliceRulesLocked); without a slice, commit and undo do
// nothing.
func (s *Server) afxdpSlicePolicyLocked(a *afxdpPort, pol *port.Policy) (commit, undo func(), err error) {
	if a.rec.Slice == nil {
		return func() {}, func() {}, nil
	}
	return s.afxdpSliceRulesLocked(a, pol)
}

// afxdpSliceInterruptedLocked abandons, at start, a record whose slice's
// create or delete was interrupted, and says whether it did.
func (s *Server) afxdpSliceInterruptedLocked(rec *afxdpRecord) bool {
	if rec.Slice == nil || rec.Slice.State == sliceReady {
		return false
	}
	s.afxdpAbandonLocked(rec, "vrssd stopped while the port's "+strings.TrimSuffix(rec.Slice.State, "ing")+"e was under way")
	return true
}

// afxdpSliceNetnsGoneLocked logs the slice of a port forgotten because
// its namespace is gone: vrssd can no longer reach the device (a veth
// went with the namespace, its slice with it; a NIC went back to the
// initial namespace, where its context and rules may remain).
func (s *Server) afxdpSliceNetnsGoneLocked(a *afxdpPort) {
	if a.rec.Slice == nil {
		return
	}
	s.log.Warn("an AF_XDP port's slice is forgotten with its namespace: if its device is a NIC now in the initial namespace, remove its rules and context by hand (ethtool -N DEV delete LOC, ethtool -X DEV context N delete)", "port", a.rec.Name, "dev", a.rec.Dev, "slice", a.rec.Slice.String())
}
