#!/usr/bin/env bash
# Builds the Ferroserve CPU image with podman and prints its reference last.
#
#   servingruntime-manifests/build-image.sh [--offline] [--tag TAG] [-- PODMAN_BUILD_ARGS...]
#
# Default: `podman build -f servingruntime-manifests/Containerfile` from the repository root: compiles inside the
# builder image and copies the stripped binaries onto distroless (both bases are pulled from their registries;
# BUILDER_IMAGE / RUNTIME_IMAGE in the environment replace them).
#
# --offline: needs no image registry. Compiles the release binaries on the host
# (`cargo build --release --locked -p ferroserve -p ferroserve-train`, reusing an up-to-date build), strips them,
# and assembles a root filesystem from the host's own files: the binaries, exactly the shared libraries ldd says they
# load (with their Debian copyright files when dpkg knows the package), /etc/passwd and /etc/group with the nonroot
# user 65532, /tmp; then builds Containerfile.offline (FROM scratch) on it. Same layout, user, environment and
# entrypoint as the default build. The host's glibc becomes the image's: build on the distribution you would pick
# as a base (Debian 12 here, as distroless cc-debian12).
#
# TAG defaults to the image servingruntime.yaml deploys. Arguments after `--` go to `podman build` (e.g.
# `--runtime runc`). Env: PODMAN (default podman), CARGO_TARGET_DIR (default <repo>/target).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

usage() { sed -n '4p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }

offline=0
tag=$(sed -n 's/^ *image: *//p' "$here/servingruntime.yaml" | head -n1)
extra=()
while (($#)); do
  case $1 in
    --offline) offline=1 ;;
    --tag) [[ $# -ge 2 ]] || usage; tag=$2; shift ;;
    --tag=*) tag=${1#--tag=} ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) usage ;;
    *) echo "build-image.sh: unknown argument: $1" >&2; usage ;;
  esac
  shift
done
[[ -n $tag ]] || { echo "build-image.sh: no --tag and no image in servingruntime.yaml" >&2; exit 2; }
podman=${PODMAN:-podman}

if ((!offline)); then
  args=(build -f "$here/Containerfile" -t "$tag")
  [[ -n ${BUILDER_IMAGE:-} ]] && args+=(--build-arg "BUILDER_IMAGE=$BUILDER_IMAGE")
  [[ -n ${RUNTIME_IMAGE:-} ]] && args+=(--build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE")
  "$podman" "${args[@]}" "${extra[@]}" "$root" >&2
  echo "$tag"
  exit 0
fi

target=${CARGO_TARGET_DIR:-$root/target}
echo "== cargo build --release (host)" >&2
(cd "$root" && cargo build --release --locked -p ferroserve -p ferroserve-train) >&2

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
rootfs=$ctx/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/home" "$ctx/home/nonroot"
for bin in ferroserve ferroserve-train; do
  # Stripped copies: the release profile's line tables stay in target/ for profiling on the host.
  strip --strip-all -o "$rootfs/usr/local/bin/$bin" "$target/release/$bin"
  chmod 0755 "$rootfs/usr/local/bin/$bin"
done

# The shared objects the dynamic loader maps, at the paths it looks for them (the loader itself at the binaries'
# ELF interpreter path). `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)",
# "/lib64/ld-linux-x86-64.so.2 (0x…)".
libs=()
for bin in ferroserve ferroserve-train; do
  out=$(ldd "$target/release/$bin")
  if grep -q 'not found' <<<"$out"; then
    echo "build-image.sh: $bin needs a library the host lacks:" >&2
    grep 'not found' <<<"$out" >&2
    exit 1
  fi
  while read -r lib; do
    libs+=("$lib")
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out")
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sed '/^$/d' | sort -u)
if ((${#libs[@]} == 0)); then
  echo "build-image.sh: ldd found no libraries (a static binary needs this script changed)" >&2
  exit 1
fi
for lib in "${libs[@]}"; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
  echo "  $lib" >&2
  # dpkg records the path as packaged (/lib/… on a merged /usr), so ask for both spellings.
  if command -v dpkg >/dev/null &&
    pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null); then
    pkg=${pkg%%:*}
    if [[ -f /usr/share/doc/$pkg/copyright ]]; then
      mkdir -p "$rootfs/usr/share/doc/$pkg"
      cp "/usr/share/doc/$pkg/copyright" "$rootfs/usr/share/doc/$pkg/copyright"
    fi
  fi
done

# As distroless names them: root and nonroot (65532), no login shell.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
mkdir -m 1777 "$rootfs/tmp"
chmod -R go-w,a+rX "$rootfs/usr" "$rootfs/etc"
for d in "$rootfs"/lib*; do [[ -d $d ]] && chmod -R go-w,a+rX "$d"; done

echo "== podman build (FROM scratch, $(du -sh "$rootfs" | cut -f1) of files)" >&2
"$podman" build -f "$here/Containerfile.offline" -t "$tag" "${extra[@]}" "$ctx" >&2
echo "$tag"
