# vrss — common tasks. `make demo` runs the main job, `make test` the tests.
# Both work as root and under sudo (`sudo make demo`, `sudo make test`).

# sudo replaces PATH with its secure_path, which lacks /usr/local/go/bin,
# where Go's installer puts Go: then take it from there. Elsewhere, say
# GO=/path/to/go. gofmt comes from the same Go.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT   ?= $(shell $(GO) env GOROOT 2>/dev/null)/bin/gofmt
GOFILES  = $(wildcard $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go'))

# Under sudo, root works in a checkout another user owns. git refuses such
# a repository ("dubious ownership"), and so does go build, which asks git
# for the commit to stamp into binaries (tests build vrssd). Trust this
# checkout for the commands make runs: they run its code as root anyway.
export GIT_CONFIG_COUNT   = 1
export GIT_CONFIG_KEY_0   = safe.directory
export GIT_CONFIG_VALUE_0 = $(CURDIR)
FUZZTIME ?= 60s

.PHONY: all build test race vet fmt-check demo bench generate generate-check fuzz clean e2e image

all: build

build:
	$(GO) build ./...

## test: formatting, vet, and every test (root-only tests skip unless run as root;
## VRSS_REQUIRE_PRIV=1 makes them fail instead of skipping).
test: fmt-check vet
	$(GO) test -count=1 ./...

## race: the tests of the engine, the steering program and its publisher, the
## daemon and its client library under the race detector (where it is
## affordable: minutes, not hours); CI runs it after `make test`, so that a
## data race fails CI.
RACEPKGS ?= ./rss ./steering ./agent ./agent/client
race:
	$(GO) test -race -count=1 -timeout 30m $(RACEPKGS)

fmt-check:
	@out=$$($(GOFMT) -l $(GOFILES)) || exit 1; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## demo: the main job — steering on real TAP devices (needs root).
demo:
	$(GO) run ./cmd/vrss demo

## e2e: a real guest (QEMU, TCG) on a 4-queue TAP that vrssd creates for an
## unprivileged QEMU: steered by vrss, QEMU 7.2 started by `vrss qemu exec`,
## RSS set with `vrss rss set`, QEMU's detaches undone by vrssd (scenario A);
## by QEMU 10's own eBPF program that vrssd hands to QEMU while the guest sets
## RSS itself (scenario B); by libvirt 9.0 opening the TAP by name for a
## transient domain (scenario L); and with flow rules — a queue rule, an RSS
## context over queues 2-3 and a drop rule set through vrssd (scenario R).
## Each guest's per-queue counters must match the engine. Scenario P: port
## security set with `vrss port set`; the guest's ping, TCP and UDP reach the
## host, and its spoofing (another MAC, an address it does not own, a
## gratuitous ARP, a DHCP server, router advertisements) is dropped, each
## reason's counter growing by exactly what the guest sent; then again with
## the fast path (--uplink, a veth), every allowed frame redirected.
## Scenario X: a vrssd AF_XDP port under a QEMU with af-xdp that uid 4242
## starts with only CAP_IPC_LOCK (`vrss qemu exec --afxdp`), the guest's
## per-queue counters equal to the allowed frames sent to its queues. No
## Debian QEMU has af-xdp, so a preparation step (TestE2EPrepare, its own
## timeout) first builds one from Debian sources into the cache (6 to 10
## minutes on 2 cores, once; seconds when cached; see docs/afxdp.md), and
## the scenarios then run within their own budget (TestE2E).
## VRSS_E2E_SCENARIOS picks some (default A,B,L,R,P,X; without X nothing is
## built). Scenario XM, opt-in (it builds a second QEMU, sid's 10.2): X in
## QEMU 10.1's map-path form (`vrss qemu exec --afxdp --map-path`, QEMU with
## CAP_IPC_LOCK and CAP_NET_RAW). Then TestE2ENetkit: Debian sid's 7.2 kernel
## in a guest, where `vrss afxdp create --netkit` goes as far as a virtio NIC
## allows (the lease refused: docs/netkit.md), and TestE2ENetkitBefore71 (6.12,
## refused as too old). Needs root; installs libvirt and fetches Debian packages, a
## kernel and QEMU 10 into a cache (VRSS_E2E_CACHE, default
## $(GOCACHE)/../vrss-e2e).
e2e:
	VRSS_E2E=1 VRSS_REQUIRE_PRIV=1 $(GO) test -count=1 -run '^TestE2EPrepare$$' -v -timeout 30m ./internal/e2e
	VRSS_E2E=1 VRSS_REQUIRE_PRIV=1 $(GO) test -count=1 -run '^TestE2E$$' -v -timeout 15m ./internal/e2e
	VRSS_E2E=1 VRSS_REQUIRE_PRIV=1 $(GO) test -count=1 -run '^TestE2ENetkit' -v -timeout 10m ./internal/e2e

## image: the container image (Containerfile: vrssd, vrss and vrss-cni, static,
## FROM scratch), built with podman from binaries built here, then checked:
## entrypoint, files, each binary run from the image's own filesystem, and
## vrssd --version in a container where containers can run (deploy/image.sh).
## Needs root and podman (Debian: apt-get install podman); no network.
IMAGE ?= localhost/vrss:dev
image:
	GO=$(GO) bash deploy/image.sh $(IMAGE)

## bench: the benchmark figures quoted in the README (needs root for the eBPF part).
bench:
	$(GO) run ./cmd/vrss bench

## generate: rebuild the eBPF objects from bpf/*.c (needs clang and llvm-strip).
generate:
	$(GO) generate ./steering/... ./agent/... ./portxdp/...

## generate-check: regenerate and fail if the committed objects differ.
generate-check: generate
	@git diff --exit-code --stat -- steering/ agent/testdata/ portxdp/ || { echo "committed eBPF objects are stale: run make generate"; exit 1; }

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	$(GO) test ./rss -run '^$$' -fuzz '^FuzzSteer$$' -fuzztime $(FUZZTIME)
	$(GO) test ./rss -run '^$$' -fuzz '^FuzzParseConfigJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./virtio -run '^$$' -fuzz '^FuzzDecodeRSSConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./virtio -run '^$$' -fuzz '^FuzzDecodeHashConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./virtio -run '^$$' -fuzz '^FuzzDecodeNetHdrHash$$' -fuzztime $(FUZZTIME)
	$(GO) test ./agent/api -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./qemu/ebpfrss -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./qemu/qmp -run '^$$' -fuzz '^FuzzFetchEBPFRSS$$' -fuzztime $(FUZZTIME)
