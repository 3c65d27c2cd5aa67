#!/usr/bin/env bash
# System packages the project needs on a Debian machine, installed only when missing:
#   mesa-vulkan-drivers libvulkan1  — lavapipe, the Vulkan software driver for the wgpu (GPU-path) tests
#   libexpat1-dev g++ make         — building the OpenFX HostSupport library and the test host (tests/host)
#   cmake nasm                     — building libjpeg-turbo (the turbojpeg crate's vendored source, with SIMD)
#   libegl-dev libgl-dev libegl-mesa0 libgl1-mesa-dri
#                                  — the test host's OpenGL overlay viewer: an offscreen Mesa context
#                                    (EGL surfaceless, llvmpipe) for plug-ins that draw overlays with OpenGL
set -euo pipefail
pkgs=(mesa-vulkan-drivers libvulkan1 libexpat1-dev g++ make cmake nasm libegl-dev libgl-dev libegl-mesa0 libgl1-mesa-dri)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: present (${pkgs[*]})"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system packages: installing ${missing[*]}"
if ! $sudo apt-get update -qq >/dev/null || ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; then
  echo "error: could not install ${missing[*]} with apt-get; install them by hand (Debian/Ubuntu package names) and run this again." >&2
  exit 1
fi
