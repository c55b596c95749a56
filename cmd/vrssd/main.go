// Command vrssd is the vrss daemon: it creates and adopts multi-queue TAP
// devices, steers them with the vrss eBPF program, and hands their file
// descriptors to their owners over a unix socket. See package agent, and
// run "vrssd --help".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vrss-dev/vrss/agent"
	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/buildinfo"
	"github.com/vrss-dev/vrss/steering"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); without
// it the build information says (see buildinfo.Describe): the module
// version, else the VCS revision and time, else "(devel)".
var version = ""

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // a runtime failure
	exitInput  = 2 // bad flags or configuration file
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const help = `vrssd: the vrss daemon — eBPF virtio-net RSS steering for multi-queue TAPs

usage: vrssd [flags]

vrssd creates multi-queue TAP devices (or adopts existing ones), attaches the
vrss steering program to each, and hands a TAP's queue fds and its RSS
configuration map to the TAP's owner over a unix socket, so that a VMM
without CAP_BPF can publish its guest's RSS configuration itself. It needs
root, or CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (to mount a bpf
filesystem).

Anyone may connect; each request is authorised by the peer's uid and
groups: root and the configuration file's admins may do everything, its
creators may create TAPs owned by themselves, and anyone may use the TAPs
it owns; a TAP a user may not use is answered as one that does not exist.
Refusals are logged, a few per user a minute (the rest are counted).

vrssd refuses to start unless its state, bpffs and socket directories are
its own (owned by its uid, not writable by group or others), and unless
every record of state.json is valid; it locks the state and bpffs
directories, so a second vrssd on either is refused.

flags:
  --socket PATH      unix socket to listen on (default %s);
                     clients use VRSS_SOCKET or their --socket flag
  --state-dir DIR    where state.json is kept (default %s)
  --bpffs-dir DIR    where programs and maps are pinned (default %s);
                     a bpf filesystem is mounted there if it is not on one
  --config FILE      configuration file (default %s; may be
                     absent unless given explicitly):
                       {"create": {"uids": [1000], "gids": [107]},
                        "admin": {"uids": [], "gids": []},
                        "max_queues": 16,
                        "max_taps_per_uid": 64, "max_queues_per_uid": 512,
                        "max_conns_per_uid": 64,
                        "requests_per_second_per_uid": 100,
                        "qemu_binaries": ["/usr/bin/qemu-system-x86_64"]}
                     the per-uid limits bind every user but root and the
                     admins (0 or absent: the defaults shown)
                     qemu_binaries: the QEMUs whose own eBPF RSS object
                     vrssd may fetch (QMP request-ebpf) and load for
                     'vrss qemu exec --ebpf-rss' (that list is the default)
                     unknown fields are an error
  --max-conns N      connections served at once for users other than root
                     and the admins, who always get through (default %d)
  --idle-timeout D   close a connection idle this long (default %v); the
                     client library reconnects by itself
  --metrics ADDR     serve Prometheus metrics at http://ADDR/metrics, and
                     /healthz (liveness) and /readyz (readiness: state
                     loaded, socket served) for probes; ADDR is host:port,
                     e.g. 127.0.0.1:9655 (default: off). The endpoint has
                     no authentication: TAP names and counters are readable
                     by whoever reaches ADDR. See docs/metrics.md
  --install-cni DIR  copy the vrss-cni plugin that sits beside vrssd into DIR
                     (the CNI binary directory, e.g. /opt/cni/bin: written
                     under a temporary name and renamed into place) and
                     exit; the DaemonSet's init container runs this
  --log-format F     text or json (default text); logs go to stderr
  --log-level L      debug, info, warn or error (default info); debug logs
                     every request
  --version          print the version and ABI stamp, and exit
  --help             show this text

On SIGTERM or SIGINT vrssd stops accepting, lets requests in flight finish,
saves its state and exits 0. TAPs, pins and steering stay: traffic goes on
being steered, and the next vrssd re-adopts everything.

Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 for bad
flags or a bad configuration file.
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vrssd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		socket    = fs.String("socket", api.DefaultSocket, "")
		stateDir  = fs.String("state-dir", agent.DefaultStateDir, "")
		bpffsDir  = fs.String("bpffs-dir", agent.DefaultBPFFSDir, "")
		config    = fs.String("config", agent.DefaultConfig, "")
		logFormat = fs.String("log-format", "text", "")
		logLevel  = fs.String("log-level", "info", "")
		showVer   = fs.Bool("version", false, "")
		maxConns  = fs.Int("max-conns", agent.DefaultMaxConns, "")
		idle      = fs.Duration("idle-timeout", agent.DefaultIdleTimeout, "")
		metrics   = fs.String("metrics", "", "")
		cniDir    = fs.String("install-cni", "", "")
	)
	usage := func() {
		fmt.Fprintf(stdout, help, api.DefaultSocket, agent.DefaultStateDir, agent.DefaultBPFFSDir, agent.DefaultConfig, agent.DefaultMaxConns, agent.DefaultIdleTimeout)
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "vrssd: "+format+" (run 'vrssd --help')\n", a...)
		return exitInput
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage()
			return exitOK
		}
		return bad("%v", err)
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if *maxConns < 1 || *maxConns > 1<<20 {
		return bad("--max-conns %d: want 1 to %d", *maxConns, 1<<20)
	}
	if *idle < time.Second {
		return bad("--idle-timeout %v: want at least 1s", *idle)
	}
	if *metrics != "" {
		if _, _, err := net.SplitHostPort(*metrics); err != nil {
			return bad("--metrics %q: want host:port, e.g. 127.0.0.1:9655", *metrics)
		}
	}
	if *showVer {
		fmt.Fprintf(stdout, "vrssd %s\nprotocol %d, ABI %s\n", serverVersion(), api.ProtocolVersion, steering.ABIStamp())
		return exitOK
	}
	if *cniDir != "" {
		if err := installBeside(*cniDir); err != nil {
			fmt.Fprintf(stderr, "vrssd: --install-cni: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "installed %s in %s\n", cniPlugin, *cniDir)
		return exitOK
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return bad("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return bad("--log-format %q: want text or json", *logFormat)
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	policy, err := agent.LoadPolicy(*config, explicit)
	if err != nil {
		return bad("configuration file: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var mx *agent.MetricsServer
	if *metrics != "" {
		// Before the daemon starts: /healthz answers while it loads.
		if mx, err = agent.ListenMetrics(*metrics); err != nil {
			log.Error("cannot start", "err", err)
			return exitFailed
		}
		defer mx.Close()
		log.Info("serving metrics", "addr", mx.Addr())
	}
	srv, err := agent.New(agent.Options{
		Socket: *socket, StateDir: *stateDir, BPFFSDir: *bpffsDir,
		Policy: policy, Logger: log, Version: serverVersion(),
		MaxConns: *maxConns, IdleTimeout: *idle,
	})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitFailed
	}
	if mx != nil {
		mx.Ready(srv)
	}
	if err := srv.Serve(ctx); err != nil {
		log.Error("stopped", "err", err)
		return exitFailed
	}
	return exitOK
}

func serverVersion() string {
	if version != "" {
		return version
	}
	return buildinfo.Version()
}
