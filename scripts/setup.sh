#!/usr/bin/env bash
# Installs Percept's Debian dependencies and builds the release binary (.build/release/percept).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    pkg-config libopenblas-dev libhdf5-dev hdf5-tools libpng-dev libturbojpeg0-dev python3-h5py python3-numpy \
    dataset-fashion-mnist >/dev/null
swift build -c release --product percept
