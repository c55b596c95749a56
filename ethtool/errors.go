package ethtool

import (
	"errors"
	"fmt"
)

// The kinds of refusal. An *Error matches one of them with errors.Is (and
// also the errno the kernel returned, e.g. unix.EOPNOTSUPP).
var (
	// ErrNotSupported: the device's driver does not implement the
	// operation (EOPNOTSUPP) — no RSS contexts, no ntuple rules, no RX
	// ring count. Nothing was changed.
	ErrNotSupported = errors.New("not supported by the device's driver")
	// ErrInvalid: the kernel or the driver refused the request's values
	// (EINVAL): a table of the wrong size, a queue out of range, an
	// unknown flow type, ntuple filtering turned off, …
	ErrInvalid = errors.New("invalid request")
	// ErrPermission: changing a device needs CAP_NET_ADMIN in its
	// network namespace (EPERM).
	ErrPermission = errors.New("permission denied")
	// ErrNoDevice: no such device in the caller's network namespace, or
	// it is gone (ENODEV).
	ErrNoDevice = errors.New("no such device")
	// ErrNotFound: no such RSS context or rule (ENOENT).
	ErrNotFound = errors.New("no such RSS context or rule")
	// ErrBusy: the RSS context is still the target of rules (EBUSY).
	ErrBusy = errors.New("in use")
	// ErrNoSpace: the driver has no room for another context or rule
	// (ENOSPC).
	ErrNoSpace = errors.New("no room left")
)

// Error is a refused ethtool operation.
type Error struct {
	Op      string // what was asked, e.g. "create RSS context"
	Cmd     string // the ethtool command, e.g. "ETHTOOL_SRSSH"
	Device  string
	Kind    error  // one of the Err* kinds, or nil
	Err     error  // the cause: the errno, or an encoding error
	Meaning string // what the refusal means for this operation, or ""
}

func (e *Error) Error() string {
	s := fmt.Sprintf("ethtool: %s on %s (%s): %v", e.Op, e.Device, e.Cmd, e.Err)
	if e.Meaning != "" {
		s += ": " + e.Meaning
	}
	return s
}

// Unwrap returns the kind and the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}
