package ethtool

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device is a network device in the calling thread's network namespace,
// by name: the Driver that talks to it through the SIOCETHTOOL ioctl.
type Device string

var _ Driver = Device("")

// Name is the device's name.
func (d Device) Name() string { return string(d) }

// ifreq is struct ifreq with ifr_data: the name, then the pointer to the
// request, in a union of 24 bytes on 64-bit Linux.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// call runs one ethtool command: buf is the request, and the kernel's
// answer when the call returns. op and cmd name it in errors.
func (d Device) call(op, cmd string, buf []byte) error {
	fail := func(err error) error {
		e := &Error{Op: op, Cmd: cmd, Device: string(d), Err: err}
		if errno, ok := err.(unix.Errno); ok {
			e.Kind, e.Meaning = classify(op, string(d), errno)
		}
		return e
	}
	if runtime.GOARCH == "386" {
		// There, u64 is 4-aligned and struct ethtool_rxnfc is laid out
		// differently from the 64-bit image this package writes.
		return fail(fmt.Errorf("%w: the 32-bit x86 layout", ErrNotSupported))
	}
	if len(d) == 0 || len(d) >= unix.IFNAMSIZ {
		return fail(unix.ENODEV)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("socket: %w", err))
	}
	defer unix.Close(fd)
	var ifr ifreq
	copy(ifr.name[:], d)
	// The kernel follows ifr.data into buf: pin buf for the call, since
	// the pointer to it is stored in memory the GC does not see as an
	// argument of the system call.
	var pin runtime.Pinner
	pin.Pin(&buf[0])
	defer pin.Unpin()
	ifr.data = unsafe.Pointer(&buf[0])
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.SIOCETHTOOL), uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return fail(errno)
	}
	return nil
}

// Operation names, in errors and in classify.
const (
	opRings         = "read RX ring count"
	opChannels      = "read channels"
	opRSS           = "read RSS configuration"
	opCreateContext = "create RSS context"
	opDeleteContext = "delete RSS context"
	opAddRule       = "insert ntuple rule"
	opDeleteRule    = "delete ntuple rule"
	opRuleTable     = "list ntuple rules"
	opRule          = "read ntuple rule"
)

// classify says which kind a refusal is and what it means for the
// operation.
func classify(op, dev string, errno unix.Errno) (error, string) {
	switch errno {
	case unix.EOPNOTSUPP:
		switch op {
		case opCreateContext, opDeleteContext:
			return ErrNotSupported, "the driver of " + dev + " supports no RSS contexts (or, if a key or hash function was given, none per context)"
		case opRSS:
			return ErrNotSupported, "the driver of " + dev + " exposes no RSS configuration (or no RSS contexts)"
		case opAddRule, opDeleteRule, opRuleTable, opRule:
			return ErrNotSupported, "the driver of " + dev + " supports no ntuple rules"
		case opRings:
			return ErrNotSupported, "the driver of " + dev + " does not report its RX ring count (no receive flow steering)"
		}
		return ErrNotSupported, "the driver of " + dev + " does not implement it"
	case unix.EPERM, unix.EACCES:
		return ErrPermission, "it needs CAP_NET_ADMIN in the network namespace of " + dev
	case unix.ENODEV:
		return ErrNoDevice, "there is no device " + dev + " in this network namespace"
	case unix.EINVAL:
		switch op {
		case opCreateContext:
			return ErrInvalid, "the driver refused the table or key (wrong size, or a queue beyond the RX ring count)"
		case opAddRule:
			return ErrInvalid, "the driver refused the rule (flow type, masks, location or context), or ntuple filtering is off (ethtool -K " + dev + " ntuple on)"
		}
		return ErrInvalid, "the kernel or the driver refused the request's values"
	case unix.ENOENT:
		return ErrNotFound, "no such RSS context or rule on " + dev
	case unix.EBUSY:
		return ErrBusy, "rules still send traffic into the context: delete them first"
	case unix.ENOSPC:
		return ErrNoSpace, "the driver of " + dev + " has no room left"
	}
	return nil, ""
}

// exchange runs one command: it encodes req, calls the kernel, and
// decodes the first answerLen bytes of the answer (all if 0).
func exchange[T any](d Device, op, cmd string, req interface{ MarshalBinary() ([]byte, error) }, answerLen int, decode func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := req.MarshalBinary()
	if err != nil {
		return zero, &Error{Op: op, Cmd: cmd, Device: string(d), Kind: ErrInvalid, Err: err}
	}
	if err := d.call(op, cmd, b); err != nil {
		return zero, err
	}
	if answerLen > 0 {
		b = b[:answerLen]
	}
	v, err := decode(b)
	if err != nil {
		return zero, &Error{Op: op, Cmd: cmd, Device: string(d), Err: err}
	}
	return v, nil
}

// rxnfc runs a struct ethtool_rxnfc command.
func (d Device) rxnfc(op, cmd string, x Rxnfc) (Rxnfc, error) {
	return exchange(d, op, cmd, x, 0, UnmarshalRxnfc)
}

// rxfh runs a struct ethtool_rxfh command; to CmdSetRSS the kernel answers
// only in the header (the context id).
func (d Device) rxfh(op, cmd string, r Rxfh) (Rxfh, error) {
	n := 0
	if r.Cmd == CmdSetRSS {
		n = RxfhHeaderSize
	}
	return exchange(d, op, cmd, r, n, UnmarshalRxfh)
}

// Rings is the number of RX rings, from ETHTOOL_GRXRINGS: the queues an
// indirection table may name. Drivers without receive flow steering (veth
// among them) refuse it with ErrNotSupported; Channels may still answer.
func (d Device) Rings() (int, error) {
	x, err := d.rxnfc(opRings, "ETHTOOL_GRXRINGS", Rxnfc{Cmd: CmdGetRxRings})
	if err != nil {
		return 0, err
	}
	return int(min(x.Data, 1<<31-1)), nil
}

// Channels reads the device's channel counts (ETHTOOL_GCHANNELS).
func (d Device) Channels() (Channels, error) {
	return exchange(d, opChannels, "ETHTOOL_GCHANNELS", Channels{Cmd: CmdGetChannels}, 0, UnmarshalChannels)
}

// RSS reads context's indirection table, key and hash function
// (ETHTOOL_GRSSH, twice: for the sizes, then for the contents).
func (d Device) RSS(context uint32) (Rxfh, error) {
	sizes, err := d.rxfh(opRSS, "ETHTOOL_GRSSH", Rxfh{Cmd: CmdGetRSS, Context: context})
	if err != nil {
		return Rxfh{}, err
	}
	if sizes.IndirSize == 0 && sizes.KeySize == 0 {
		return sizes, nil
	}
	return d.rxfh(opRSS, "ETHTOOL_GRSSH", Rxfh{Cmd: CmdGetRSS, Context: context, IndirSize: sizes.IndirSize, KeySize: sizes.KeySize})
}

// CreateContext creates an RSS context (ETHTOOL_SRSSH with
// ETH_RXFH_CONTEXT_ALLOC) and returns its id. table must have the
// device's table size (RSS(0).IndirSize; see EqualTable), or be nil for
// the driver's default; key must have the device's key size, or be nil.
func (d Device) CreateContext(table []uint32, key []byte) (uint32, error) {
	r := Rxfh{Cmd: CmdSetRSS, Context: ContextAlloc, IndirSize: uint32(len(table)), KeySize: uint32(len(key)), Table: table, Key: key}
	if table == nil {
		r.IndirSize = IndirNoChange
	}
	ans, err := d.rxfh(opCreateContext, "ETHTOOL_SRSSH", r)
	if err != nil {
		return 0, err
	}
	if ans.Context == 0 || ans.Context == ContextAlloc {
		return 0, &Error{Op: opCreateContext, Cmd: "ETHTOOL_SRSSH", Device: string(d), Err: fmt.Errorf("the kernel answered context id %#x", ans.Context)}
	}
	return ans.Context, nil
}

// DeleteContext deletes an RSS context (ETHTOOL_SRSSH with its id and
// indir_size 0; on context 0 that would reset the default table, so
// context 0 is refused). The kernel refuses with ErrBusy while rules use
// it.
func (d Device) DeleteContext(context uint32) error {
	if context == 0 || context == ContextAlloc {
		return &Error{Op: opDeleteContext, Cmd: "ETHTOOL_SRSSH", Device: string(d), Kind: ErrInvalid, Err: fmt.Errorf("context %#x is not one that can be deleted", context)}
	}
	_, err := d.rxfh(opDeleteContext, "ETHTOOL_SRSSH", Rxfh{Cmd: CmdSetRSS, Context: context})
	return err
}

// AddRule inserts r (ETHTOOL_SRXCLSRLINS) and returns the location the
// driver put it at.
func (d Device) AddRule(r Rule) (uint32, error) {
	x, err := d.rxnfc(opAddRule, "ETHTOOL_SRXCLSRLINS", Rxnfc{Cmd: CmdInsertRule, Rule: r})
	if err != nil {
		return 0, err
	}
	return x.Rule.Location, nil
}

// DeleteRule deletes the rule at loc (ETHTOOL_SRXCLSRLDEL).
func (d Device) DeleteRule(loc uint32) error {
	_, err := d.rxnfc(opDeleteRule, "ETHTOOL_SRXCLSRLDEL", Rxnfc{Cmd: CmdDeleteRule, Rule: Rule{Location: loc}})
	return err
}

// RuleTable reads the rule count and table size (ETHTOOL_GRXCLSRLCNT),
// then the locations in use (ETHTOOL_GRXCLSRLALL).
func (d Device) RuleTable() (RuleTable, error) {
	cnt, err := d.rxnfc(opRuleTable, "ETHTOOL_GRXCLSRLCNT", Rxnfc{Cmd: CmdGetRuleCount})
	if err != nil {
		return RuleTable{}, err
	}
	t := RuleTable{Size: uint32(cnt.Data &^ LocSpecial), Special: cnt.Data&LocSpecial != 0}
	if cnt.RuleCnt == 0 {
		return t, nil
	}
	all, err := d.rxnfc(opRuleTable, "ETHTOOL_GRXCLSRLALL", Rxnfc{Cmd: CmdGetRuleLocs, RuleCnt: cnt.RuleCnt})
	if err != nil {
		return RuleTable{}, err
	}
	t.Locations = all.RuleLocs
	return t, nil
}

// Rule reads the rule at loc (ETHTOOL_GRXCLSRULE).
func (d Device) Rule(loc uint32) (Rule, error) {
	x, err := d.rxnfc(opRule, "ETHTOOL_GRXCLSRULE", Rxnfc{Cmd: CmdGetRule, Rule: Rule{Location: loc}})
	if err != nil {
		return Rule{}, err
	}
	return x.Rule, nil
}

// Rings is Device(ifname).Rings().
func Rings(ifname string) (int, error) { return Device(ifname).Rings() }

// ReadChannels is Device(ifname).Channels().
func ReadChannels(ifname string) (Channels, error) { return Device(ifname).Channels() }

// RSS is Device(ifname).RSS(context).
func RSS(ifname string, context uint32) (Rxfh, error) { return Device(ifname).RSS(context) }

// CreateContext is Device(ifname).CreateContext(table, key).
func CreateContext(ifname string, table []uint32, key []byte) (uint32, error) {
	return Device(ifname).CreateContext(table, key)
}

// DeleteContext is Device(ifname).DeleteContext(context).
func DeleteContext(ifname string, context uint32) error {
	return Device(ifname).DeleteContext(context)
}

// AddRule is Device(ifname).AddRule(r).
func AddRule(ifname string, r Rule) (uint32, error) { return Device(ifname).AddRule(r) }

// DeleteRule is Device(ifname).DeleteRule(loc).
func DeleteRule(ifname string, loc uint32) error { return Device(ifname).DeleteRule(loc) }

// Rules is ListRules(Device(ifname)): every ntuple rule of the device.
func Rules(ifname string) ([]Rule, error) { return ListRules(Device(ifname)) }
