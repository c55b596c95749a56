package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vrss-dev/vrss/virtio"
)

const virtioUsage = "virtio (ctrl TAP CLASS CMD [HEX]... | admin TAP HEX... | reset TAP) [--json] [--netns PATH]"

func runVirtio(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "virtio", subcommand("virtio", map[string]func([]string, io.Writer) error{
		"ctrl":  virtioCtrl,
		"admin": virtioAdmin,
		"reset": virtioReset,
	}, virtioUsage, args, stdout))
}

// virtioNote says what the virtio commands are for, for each one's help.
const virtioNote = `These commands send a guest's raw virtio commands to vrssd as its VMM
does (virtio_ctrl, virtio_admin, virtio_reset): for testing and debugging a
VMM's integration. vrssd applies them to the TAP's virtio device model (the
guest's state), publishes the guest's rules and contexts merged with the
host's (guest group G is group 2147483648+G, guest context C is context
4+C), keeps the guest's state across its restarts, and answers what the
device writes back. A command the device refuses, or that the TAP cannot
take beside the host's rules (ENOSPC, VIRTIO_NET_ERR), changes nothing; the
answer is printed and the exit status is 1. Only a TAP created with --flows
takes them, and only its owner, root and vrssd's admins may send them.
docs/virtio-flows.md describes the wire formats.`

// parseHex reads the hex digits of args, which may be split into several
// arguments and contain spaces, colons, dots and underscores between bytes.
func parseHex(args []string) ([]byte, error) {
	s := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', ':', '.', '_':
			return -1
		}
		return r
	}, strings.Join(args, ""))
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("hex bytes %q: %v", strings.Join(args, " "), err)
	}
	return b, nil
}

// parseByte reads a class or command number: decimal, or hex with 0x.
func parseByte(what, s string) (uint8, error) {
	n, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a number from 0 to 255", what, s)
	}
	return uint8(n), nil
}

// errRefused is the exit of a command the device answered with a refusal.
var errRefused = errors.New("the device refused the command")

func virtioCtrl(args []string, stdout io.Writer) error {
	fs := newFlagSet("virtio ctrl", "TAP CLASS CMD [HEX]... [--json] [--netns PATH]", `
Send one control queue command of the guest: CLASS and CMD from its header
(decimal, or hex with 0x), HEX its command-specific data (hex digits, which
may be split into arguments and separated by spaces or colons). vrssd takes
class 4 command 1 (VIRTIO_NET_CTRL_MQ_RSS_CONFIG, the TAP's default RSS
configuration) and class 9 (RSS contexts: 0 CAP_GET, 1 ADD, 2 MOD, 3 DEL,
guest ids 1 to 4); a VMM answers every other command itself. Prints the
ack (0 VIRTIO_NET_OK, 1 VIRTIO_NET_ERR) and the reply in hex (CAP_GET's
max_rss_contexts).

`+virtioNote+`

Examples:

    vrss virtio ctrl vm0 9 0
    vrss virtio ctrl vm0 9 3 0100`)
	asJSON := fs.Bool("json", false, "print JSON: ack, reply (hex) and, for a refusal, message")
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) < 3 {
		return inputErrorf("want a TAP name, a class, a command and the command's data (run 'vrss virtio ctrl -h')")
	}
	class, err := parseByte("class", pos[1])
	if err != nil {
		return inputErrorf("%v (run 'vrss virtio ctrl -h')", err)
	}
	cmd, err := parseByte("command", pos[2])
	if err != nil {
		return inputErrorf("%v (run 'vrss virtio ctrl -h')", err)
	}
	payload, err := parseHex(pos[3:])
	if err != nil {
		return inputErrorf("%v (run 'vrss virtio ctrl -h')", err)
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	r, err := c.Netns(*netns).VirtioCtrl(ctx, pos[0], class, cmd, payload)
	if err != nil {
		return daemonError(err)
	}
	if *asJSON {
		err = writeJSON(stdout, struct {
			Ack     uint8  `json:"ack"`
			Reply   string `json:"reply"`
			Message string `json:"message,omitempty"`
		}{r.Ack, hex.EncodeToString(r.Reply), r.Message})
	} else {
		name := "VIRTIO_NET_OK"
		if r.Ack != virtio.AckOK {
			name = "VIRTIO_NET_ERR"
		}
		fmt.Fprintf(stdout, "ack %d (%s)\n", r.Ack, name)
		if len(r.Reply) > 0 {
			fmt.Fprintf(stdout, "reply %s\n", hex.EncodeToString(r.Reply))
		}
	}
	if err == nil && r.Ack != virtio.AckOK {
		return fmt.Errorf("%w: %s", errRefused, r.Message)
	}
	return err
}

// adminStatusNames name the admin statuses vrss answers.
var adminStatusNames = map[uint16]string{
	virtio.AdminStatusOK: "OK", virtio.AdminStatusENXIO: "ENXIO", virtio.AdminStatusEAGAIN: "EAGAIN",
	virtio.AdminStatusENOMEM: "ENOMEM", virtio.AdminStatusEBUSY: "EBUSY", virtio.AdminStatusEEXIST: "EEXIST",
	virtio.AdminStatusEINVAL: "EINVAL", virtio.AdminStatusENOSPC: "ENOSPC",
}

// adminQualifierNames name the status qualifiers.
var adminQualifierNames = map[uint16]string{
	virtio.AdminQualifierOK: "OK", virtio.AdminQualifierInvalidCommand: "INVALID_COMMAND",
	virtio.AdminQualifierInvalidOpcode: "INVALID_OPCODE", virtio.AdminQualifierInvalidField: "INVALID_FIELD",
	virtio.AdminQualifierInvalidGroup: "INVALID_GROUP", virtio.AdminQualifierInvalidMember: "INVALID_MEMBER",
	virtio.AdminQualifierNoResource: "NO_RESOURCE", virtio.AdminQualifierTryAgain: "TRY_AGAIN",
}

func nameOr(names map[uint16]string, v uint16) string {
	if n, ok := names[v]; ok {
		return n
	}
	return "unknown"
}

func virtioAdmin(args []string, stdout io.Writer) error {
	fs := newFlagSet("virtio admin", "TAP HEX... [--json] [--netns PATH]", `
Send one admin queue command of the guest: HEX is the device-readable part
of struct virtio_admin_cmd (le16 opcode, le16 group_type, 12 reserved
bytes, le64 group_member_id, then the command's data) in hex digits, which
may be split into arguments and separated by spaces or colons. Prints the
device-writable part in hex (status, status qualifier, 4 reserved bytes,
the result) and the status by name. After a device reset only LIST_QUERY
(0x0) and LIST_USE (0x1) are accepted until LIST_USE enables the others.

`+virtioNote+`

Examples (LIST_QUERY; LIST_USE of every opcode vrss supports):

    vrss virtio admin vm0 0000 0000 000000000000000000000000 0000000000000000
    vrss virtio admin vm0 0100 0000 000000000000000000000000 0000000000000000 833f000000000000`)
	asJSON := fs.Bool("json", false, "print JSON: result (hex), status, qualifier and, for a failure, message")
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return inputErrorf("want a TAP name and the command's bytes (run 'vrss virtio admin -h')")
	}
	command, err := parseHex(pos[1:])
	if err != nil {
		return inputErrorf("%v (run 'vrss virtio admin -h')", err)
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	r, err := c.Netns(*netns).VirtioAdmin(ctx, pos[0], command)
	if err != nil {
		return daemonError(err)
	}
	res := virtio.DecodeAdminResult(r.Result)
	if *asJSON {
		err = writeJSON(stdout, struct {
			Result    string `json:"result"`
			Status    uint16 `json:"status"`
			Qualifier uint16 `json:"qualifier"`
			Message   string `json:"message,omitempty"`
		}{hex.EncodeToString(r.Result), res.Status, res.Qualifier, r.Message})
	} else {
		fmt.Fprintf(stdout, "status %d (%s), qualifier %d (%s)\nresult %s\n", res.Status, nameOr(adminStatusNames, res.Status),
			res.Qualifier, nameOr(adminQualifierNames, res.Qualifier), hex.EncodeToString(r.Result))
	}
	if err == nil && res.Status != virtio.AdminStatusOK {
		return fmt.Errorf("%w: %s", errRefused, r.Message)
	}
	return err
}

func virtioReset(args []string, stdout io.Writer) error {
	fs := newFlagSet("virtio reset", "TAP [--netns PATH]", `
Tell vrssd that the guest reset its virtio device, as a VMM does: the
guest's RSS contexts, flow filter capabilities and objects are gone, and the
TAP is steered by the host's rules and contexts alone (its default RSS
configuration stays: vrss rss set changes it).

`+virtioNote+`

Example:

    vrss virtio reset vm0`)
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss virtio reset -h')")
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	if err := c.Netns(*netns).VirtioReset(ctx, pos[0]); err != nil {
		return daemonError(err)
	}
	fmt.Fprintf(stdout, "%s: the guest's virtio device was reset\n", pos[0])
	return nil
}
