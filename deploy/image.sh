#!/usr/bin/env bash
# Builds vrss's container image from the Containerfile with podman, and
# checks it. `make image` runs it; CI runs it after `make test`.
#
#   deploy/image.sh [IMAGE]     (default: $VRSS_IMAGE, else localhost/vrss:dev)
#
# The binaries are built here, static (CGO_ENABLED=0), and copied into a
# FROM scratch image: nothing is pulled. The check does not trust the
# build: it takes the image's filesystem back out (podman create + export),
# requires the entrypoint to be vrssd and every binary to be there, and runs
# each one from that filesystem under chroot, where there is no loader and no
# library, so only a static binary starts. Then, if containers can run on
# this machine, it runs `vrssd --version` in one; if they cannot, it says why
# and the checks above stand.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-${VRSS_IMAGE:-localhost/vrss:dev}}
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}

fail() { echo "image: FAIL: $*" >&2; exit 1; }
command -v podman >/dev/null || fail "podman is not installed (Debian: apt-get install podman)"

work=$(mktemp -d)
cid=
cleanup() {
	[ -n "$cid" ] && podman rm -f "$cid" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

cmds=(vrssd vrss)
if [ -d cmd/vrss-cni ]; then
	cmds+=(vrss-cni)
else
	echo "image: cmd/vrss-cni is not in this tree: the image is built without the plugin" >&2
fi
mkdir -p "$work/ctx/bin" "$work/rootfs"
cp Containerfile "$work/ctx/"
for c in "${cmds[@]}"; do
	CGO_ENABLED=0 GOOS=linux "$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$work/ctx/bin/$c" "./cmd/$c"
done
podman build --pull=never --build-arg VERSION="$VERSION" -t "$IMAGE" -f "$work/ctx/Containerfile" "$work/ctx"

# What the image holds, taken back out of it.
entry=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
[ "$entry" = '["/usr/bin/vrssd"]' ] || fail "entrypoint $entry, want [\"/usr/bin/vrssd\"]"
cid=$(podman create "$IMAGE")
podman export "$cid" | tar -x -C "$work/rootfs"
podman rm "$cid" >/dev/null
cid=
files=$(cd "$work/rootfs" && find . -type f | sort | tr '\n' ' ')
[ "$files" = "$(printf './usr/bin/%s\n' "${cmds[@]}" | sort | tr '\n' ' ')" ] || fail "the image holds $files"
for c in "${cmds[@]}"; do
	[ -x "$work/rootfs/usr/bin/$c" ] || fail "/usr/bin/$c is not executable"
done

# Run from the image's own filesystem: nothing but the binaries is there.
out=$(chroot "$work/rootfs" /usr/bin/vrssd --version) || fail "vrssd --version from the image's filesystem"
grep -q "^vrssd $VERSION" <<<"$out" || fail "vrssd --version said: $out"
echo "image: from its filesystem: $(head -1 <<<"$out")"
out=$(chroot "$work/rootfs" /usr/bin/vrss --version) || fail "vrss --version from the image's filesystem"
echo "image: from its filesystem: $(head -1 <<<"$out")"
if [ -d cmd/vrss-cni ]; then
	out=$(CNI_COMMAND=VERSION chroot "$work/rootfs" /usr/bin/vrss-cni </dev/null) || fail "vrss-cni (CNI_COMMAND=VERSION) from the image's filesystem"
	grep -q supportedVersions <<<"$out" || fail "vrss-cni VERSION said: $out"
	echo "image: from its filesystem: vrss-cni: $out"
	# What the DaemonSet's init container does.
	mkdir "$work/rootfs/cni-bin"
	chroot "$work/rootfs" /usr/bin/vrssd --install-cni /cni-bin >/dev/null || fail "vrssd --install-cni from the image's filesystem"
	cmp -s "$work/rootfs/cni-bin/vrss-cni" "$work/rootfs/usr/bin/vrss-cni" || fail "vrssd --install-cni did not install vrss-cni"
	echo "image: from its filesystem: vrssd --install-cni installs vrss-cni"
fi

# In a container, where the machine allows it.
if out=$(podman run --rm --network=none "$IMAGE" --version 2>&1); then
	grep -q "^vrssd $VERSION" <<<"$out" || fail "podman run $IMAGE --version said: $out"
	echo "image: in a container: $(head -1 <<<"$out")"
else
	echo "image: containers cannot run on this machine ($(tail -1 <<<"$out")); the image was checked from its filesystem above" >&2
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image: $IMAGE built and checked: ${cmds[*]}, $((size / 1024)) KiB"
