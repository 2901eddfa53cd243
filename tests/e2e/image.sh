#!/usr/bin/env bash
# image.sh IMAGE [BINARY]: makes the one Brook image (`brook operator`, `brook broker`) and puts
# it where the cluster's node finds it.
#
#   K8S_LAB=<folder of a k8s-lab>  no container engine: a root filesystem holding BINARY (and
#                                  the shared libraries it links) is imported by the lab's
#                                  image.sh straight into the node's containerd
#   otherwise                      docker, podman or buildah builds the Dockerfile; on a kind
#                                  cluster the image is then loaded into its nodes
set -euo pipefail

IMAGE="${1:?usage: image.sh IMAGE [BINARY]}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BINARY="${2:-$ROOT/target/debug/brook}"

if [ -n "${K8S_LAB:-}" ]; then
  [ -x "$K8S_LAB/image.sh" ] || { echo "image.sh: K8S_LAB=$K8S_LAB has no image.sh" >&2; exit 1; }
  [ -x "$BINARY" ] || { echo "image.sh: no binary at $BINARY (cargo build first)" >&2; exit 1; }
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/tmp"
  # Debug information is a third of a debug binary and of no use in a pod.
  objcopy --strip-debug "$BINARY" "$rootfs/usr/local/bin/brook" 2>/dev/null || cp "$BINARY" "$rootfs/usr/local/bin/brook"
  "$K8S_LAB/image.sh" --add-libs "$rootfs" "$IMAGE" --entrypoint /usr/local/bin/brook \
    --user 65532:65532 -- broker >/dev/null
  echo "image.sh: $IMAGE imported into the lab's containerd"
  exit 0
fi

for engine in docker podman buildah; do
  if command -v "$engine" >/dev/null 2>&1 && "$engine" info >/dev/null 2>&1; then
    case "$engine" in
      buildah) buildah bud -t "$IMAGE" "$ROOT" ;;
      *) "$engine" build -t "$IMAGE" "$ROOT" ;;
    esac
    if command -v kind >/dev/null 2>&1 && kubectl config current-context 2>/dev/null | grep -q '^kind-'; then
      kind load docker-image "$IMAGE" --name "$(kubectl config current-context | sed 's/^kind-//')"
    fi
    echo "image.sh: built $IMAGE with $engine"
    exit 0
  fi
done
cat >&2 <<EOF
image.sh: no container engine answers, so $IMAGE cannot be built here. Install one:
  Debian/Ubuntu: sudo apt-get install podman   (or buildah; or Docker Engine from docker.com)
  Fedora/RHEL:   sudo dnf install podman
  macOS:         brew install podman && podman machine init && podman machine start
then run make image again. (On a k8s-lab cluster, K8S_LAB=<its folder> imports the binary
without an engine; an image built elsewhere and already on the nodes: E2E_IMAGE_READY=1.)
EOF
exit 1
