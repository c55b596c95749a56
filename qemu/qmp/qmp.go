// Package qmp speaks the QEMU Machine Protocol (QMP) as far as vrss needs
// it: one conversation with a QEMU started with StdioArgs, which asks for
// its version and its eBPF RSS object (request-ebpf, QEMU 9.0 and later;
// see package ebpfrss for the object).
//
// A Client reads QEMU's output from an io.Reader and writes QEMU's input
// to an io.Writer, and does nothing else: it starts no process and opens
// no file. vrssd (package agent) decides which QEMU binary may run, runs
// it confined, bounds the conversation in time and hands the Client the
// process's standard output and input.
//
// What QEMU writes is untrusted input: each line must be one JSON value,
// lines are at most MaxLine bytes, events are skipped, replies are matched
// to commands by id, and a line that is not JSON is an error that quotes
// at most its first 120 bytes. Nothing QEMU writes changes what the
// Client writes: the commands and their arguments are the caller's.
//
// Every error a Client returns is an *Error naming the step of the
// conversation that failed (the greeting, a command, the object), with
// QEMU's own error replies as *CommandError inside. FetchEBPFRSS returns a
// *NoEBPFError for a QEMU without request-ebpf.
package qmp

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// EBPFMinVersion is the first QEMU with request-ebpf and ebpf-rss-fds,
// which return and take its eBPF RSS object.
const EBPFMinVersion = "9.0"

// MaxLine bounds one line QEMU writes, its line end included: the eBPF
// object is some tens of KiB of base64 on one line. A longer line fails
// the conversation with bufio.ErrTooLong.
const MaxLine = 32 << 20

// StdioArgs returns the arguments that start QEMU doing nothing but
// answer QMP on its standard input and output: no machine, no devices, no
// display, no configuration files, CPUs stopped. Such a QEMU answers in
// well under a second.
func StdioArgs() []string {
	return []string{"-machine", "none", "-nodefaults", "-no-user-config", "-display", "none", "-S", "-qmp", "stdio"}
}

// Version is QEMU's version, as its greeting and query-version give it.
type Version struct {
	QEMU struct {
		Major, Minor, Micro int
	} `json:"qemu"`
	// Package is the distribution's package version, if any, such as
	// "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1".
	Package string `json:"package"`
}

// String returns "major.minor.micro".
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro)
}

// message is any line QEMU writes on its QMP channel: a greeting, a
// command's reply (return or error, with the command's id) or an event.
type message struct {
	ID     *int            `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *CommandError   `json:"error"`
	Event  string          `json:"event"`
	QMP    *struct {
		Version Version `json:"version"`
	} `json:"QMP"`
}

// command is a command as the Client writes it: the fields in this order,
// which is also json.Marshal's order for a map, so "id" comes last.
type command struct {
	Arguments any    `json:"arguments,omitempty"`
	Execute   string `json:"execute"`
	ID        int    `json:"id"`
}

// CommandError is QEMU's error reply to a command.
type CommandError struct {
	// Class is QMP's error class, such as "GenericError" or
	// "CommandNotFound".
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *CommandError) Error() string { return e.Class + ": " + e.Desc }

// Error is a failed step of a conversation.
type Error struct {
	// Step is "QMP greeting", the name of the command that failed, or
	// "request-ebpf object" for an object that does not decode.
	Step string
	// Err is what went wrong: a *CommandError if QEMU replied with an
	// error, or the read, write or decoding error.
	Err error
}

func (e *Error) Error() string { return e.Step + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// NoEBPFError is a QEMU's answer that it has no request-ebpf command.
type NoEBPFError struct {
	Version Version
}

// Reason says why the QEMU has no request-ebpf: it is older than
// EBPFMinVersion, or it was built without eBPF support.
func (e *NoEBPFError) Reason() string {
	why := "eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ " + EBPFMinVersion
	if e.Version.QEMU.Major >= 9 {
		why = "this build has no eBPF support (CONFIG_EBPF, libbpf); " + why + " built with it"
	}
	return why
}

func (e *NoEBPFError) Error() string {
	return fmt.Sprintf("QEMU %s has no request-ebpf: %s", e.Version, e.Reason())
}

// Client is one QMP conversation. Its methods are not safe for concurrent
// use.
type Client struct {
	sc *bufio.Scanner
	w  io.Writer
	id int
}

// NewClient returns a Client that reads what QEMU writes from r and writes
// commands to w, one line each.
func NewClient(r io.Reader, w io.Writer) *Client {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	return &Client{sc: sc, w: w}
}

// next returns the next message that is not an event.
func (c *Client) next() (*message, error) {
	for c.sc.Scan() {
		var m message
		if err := json.Unmarshal(c.sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("not QMP: %q", truncate(c.sc.Text(), 120))
		}
		if m.Event != "" {
			continue
		}
		return &m, nil
	}
	if err := c.sc.Err(); err != nil {
		return nil, err
	}
	return nil, io.ErrUnexpectedEOF
}

// Greeting reads QEMU's greeting, the first message it writes, and returns
// the version it announces.
func (c *Client) Greeting() (Version, error) {
	m, err := c.next()
	if err == nil && m.QMP == nil {
		err = errors.New("no QMP greeting")
	}
	if err != nil {
		return Version{}, &Error{Step: "QMP greeting", Err: err}
	}
	return m.QMP.Version, nil
}

// Execute runs the command with args (nil for none), and returns what its
// reply returned. Replies to other commands, and messages that are no
// reply, are skipped.
func (c *Client) Execute(cmd string, args any) (json.RawMessage, error) {
	ret, err := c.execute(cmd, args)
	if err != nil {
		return nil, &Error{Step: cmd, Err: err}
	}
	return ret, nil
}

func (c *Client) execute(cmd string, args any) (json.RawMessage, error) {
	c.id++
	b, err := json.Marshal(command{Arguments: args, Execute: cmd, ID: c.id})
	if err != nil {
		return nil, err
	}
	if _, err := c.w.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	for {
		m, err := c.next()
		if err != nil {
			return nil, err
		}
		if m.ID == nil || *m.ID != c.id {
			continue
		}
		if m.Error != nil {
			return nil, m.Error
		}
		return m.Return, nil
	}
}

// Capabilities leaves capabilities negotiation mode (qmp_capabilities),
// which QEMU is in after its greeting: it takes no other command before.
func (c *Client) Capabilities() error {
	_, err := c.Execute("qmp_capabilities", nil)
	return err
}

// QueryVersion asks QEMU for its version (query-version).
func (c *Client) QueryVersion() (Version, error) {
	const cmd = "query-version"
	ret, err := c.Execute(cmd, nil)
	if err != nil {
		return Version{}, err
	}
	var v Version
	if err := json.Unmarshal(ret, &v); err != nil {
		return Version{}, &Error{Step: cmd, Err: err}
	}
	return v, nil
}

// RequestEBPF asks QEMU for the eBPF object it calls id ("rss" is its RSS
// steering object), and returns the object's ELF bytes, never empty. A
// QEMU without the command fails with a *CommandError of class
// "CommandNotFound" in the *Error.
func (c *Client) RequestEBPF(id string) ([]byte, error) {
	const cmd = "request-ebpf"
	ret, err := c.Execute(cmd, map[string]string{"id": id})
	if err != nil {
		return nil, err
	}
	var obj struct {
		Object string `json:"object"`
	}
	if err := json.Unmarshal(ret, &obj); err != nil {
		return nil, &Error{Step: cmd, Err: err}
	}
	b, err := base64.StdEncoding.DecodeString(obj.Object)
	if err == nil && len(b) == 0 {
		err = errors.New("empty object")
	}
	if err != nil {
		return nil, &Error{Step: cmd + " object", Err: err}
	}
	return b, nil
}

// EBPFRSS is a QEMU's eBPF RSS object and the version of the QEMU it came
// from.
type EBPFRSS struct {
	Version Version
	Object  []byte
}

// FetchEBPFRSS has the whole conversation with a QEMU just started with
// StdioArgs: it reads the greeting, leaves negotiation mode, asks for the
// version (query-version: the greeting's is not what the Client checks)
// and for the eBPF RSS object. A QEMU without request-ebpf fails with a
// *NoEBPFError, any other failure is an *Error.
func FetchEBPFRSS(c *Client) (*EBPFRSS, error) {
	if _, err := c.Greeting(); err != nil {
		return nil, err
	}
	if err := c.Capabilities(); err != nil {
		return nil, err
	}
	v, err := c.QueryVersion()
	if err != nil {
		return nil, err
	}
	obj, err := c.RequestEBPF("rss")
	var ce *CommandError
	if errors.As(err, &ce) && ce.Class == "CommandNotFound" {
		return nil, &NoEBPFError{Version: v}
	}
	if err != nil {
		return nil, err
	}
	return &EBPFRSS{Version: v, Object: obj}, nil
}

// truncate returns s cut to its first n bytes, marked "…" if cut.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
