#!/usr/bin/env bash
# Build the Debian package from this checkout: packaging/build-deb.sh [OUTDIR] (default: dist/).
# dpkg-buildpackage wants debian/ at the top of the source tree; the repository keeps it under
# packaging/ (the project is not a Debian-only project), so the tree is copied first.
# Needs: dpkg-dev, debhelper, python3-pip, and PyPI (or a mirror) for the bundled libraries.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/dist}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/qwen-daemon
mkdir -p "$src" "$out"
tar -C "$root" --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=node_modules -cf - . | tar -C "$src" -xf -
cp -r "$root/packaging/debian" "$src/debian"
(cd "$src" && dpkg-buildpackage -us -uc -b)
cp "$work"/*.deb "$out"/
ls "$out"/qwen-daemon_*.deb
