#!/usr/bin/env bash
# CPU side, with network: download every package the offline GPU machine needs (Python 3.12,
# x86_64; its torch 2.11.0+cu130 and nvidia-* wheels stay as they are) into bundles of at most
# BUNDLE_MIB each, so they can travel one bundle per transfer. Then run install_offline.sh there.
#
#   bash scripts/gpu/download_wheels.sh [OUT_DIR]        # default build/gpu-wheels
#   TE_VERSION=2.20.2 bash scripts/gpu/download_wheels.sh  # another Transformer Engine
#
# OUT_DIR is replaced only if it is empty or an earlier run of this script made it (it holds
# the marker file .xm2-wheels); any other existing OUT_DIR is refused (exit 2), untouched.
set -euo pipefail

OUT=${1:-build/gpu-wheels}
MARKER=.xm2-wheels
if [ -e "$OUT" ] || [ -L "$OUT" ]; then
    if [ ! -d "$OUT" ] || [ -L "$OUT" ]; then
        echo "error: $OUT exists and is not a plain folder (a file or a link);" \
             "choose another OUT_DIR" >&2
        exit 2
    fi
    if [ -n "$(ls -A -- "$OUT")" ] && [ ! -f "$OUT/$MARKER" ]; then
        echo "error: $OUT is not empty and was not made by download_wheels.sh (no $MARKER in" \
             "it); choose another OUT_DIR or empty it yourself" >&2
        exit 2
    fi
fi
TE_VERSION=${TE_VERSION:-2.11.0}
BUNDLE_MIB=${BUNDLE_MIB:-56}
INDEX=${INDEX:-https://pypi.org/simple}
HERE=$(cd "$(dirname "$0")" && pwd)
TARGET=(--python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --only-binary=:all:
        --index-url "$INDEX")
start=$SECONDS
rm -rf -- "$OUT" && mkdir -p "$OUT/files" && touch "$OUT/$MARKER"
reqs=$(mktemp)
sed "s/\${TE_VERSION}/$TE_VERSION/g" "$HERE/requirements-gpu.txt" > "$reqs"

# megatron-core and TE declare torch (and TE its CUDA-12 core): take them alone, no dependencies
grep -E '^(megatron-core|transformer-engine|transformer-engine-cu13)==' "$reqs" > "$reqs.nodeps"
pip download --no-deps "${TARGET[@]}" -d "$OUT/files" -r "$reqs.nodeps"
# the rest with their dependencies, resolved for the GPU machine's platform
grep -vE '^(#|$|megatron-core|transformer-engine)' "$reqs" > "$reqs.deps"
echo "setuptools==80.9.0" >> "$reqs.deps"  # build of TE's PyTorch binding (--no-build-isolation)
echo "wheel==0.45.1" >> "$reqs.deps"
pip download "${TARGET[@]}" -d "$OUT/files" -r "$reqs.deps"

# TE's PyTorch binding exists only as an sdist; pip would try (and fail) to build its metadata
# on a CPU torch, so fetch it from the index page and check its sha256
sdist="transformer_engine_torch-$TE_VERSION.tar.gz"
link=$(curl -sSf "$INDEX/transformer-engine-torch/" | grep -o "https://[^\"]*/$sdist#sha256=[0-9a-f]*")
curl -sSfL -o "$OUT/files/$sdist" "${link%%#*}"
echo "${link##*=}  $OUT/files/$sdist" | sha256sum -c -
cp "$reqs" "$OUT/files/requirements-gpu.txt"
rm -f "$reqs" "$reqs.nodeps" "$reqs.deps"

# checksums of whole files, then split large files and pack bundle-NN folders
(cd "$OUT/files" && sha256sum -- * > SHA256SUMS)
limit=$((BUNDLE_MIB * 1024 * 1024))
for f in "$OUT"/files/*; do
    if [ "$(stat -c %s "$f")" -gt "$limit" ]; then
        split -b "$limit" -d -a 2 "$f" "$f.part-" && rm "$f"
    fi
done
bundle=0 used=0
mkdir -p "$OUT/bundle-00"
for f in $(ls -S "$OUT"/files/*); do
    size=$(stat -c %s "$f")
    if [ $((used + size)) -gt "$limit" ]; then
        bundle=$((bundle + 1)) used=0
        mkdir -p "$OUT/$(printf 'bundle-%02d' "$bundle")"
    fi
    mv "$f" "$OUT/$(printf 'bundle-%02d' "$bundle")/"
    used=$((used + size))
done
rmdir "$OUT/files"
du -sch "$OUT"/bundle-*
echo "downloaded in $((SECONDS - start)) s: $(ls "$OUT" | wc -l) bundles of <= $BUNDLE_MIB MiB in $OUT"
