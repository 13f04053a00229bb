#!/usr/bin/env bash
# Installs Percept's Debian dependencies and builds the release binary (.build/release/percept).
# With --mpi it also installs Open MPI (openmpi-bin, libopenmpi-dev), which the same binary loads
# at run time when mpirun starts it: `mpirun -np K .build/release/percept TASK train ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
MPI=""
for argument in "$@"; do
    case $argument in
        --mpi) MPI="openmpi-bin libopenmpi-dev" ;;
        *) echo "usage: bash scripts/setup.sh [--mpi]" >&2; exit 2 ;;
    esac
done
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    pkg-config libopenblas-dev libhdf5-dev hdf5-tools libpng-dev libturbojpeg0-dev python3-h5py python3-numpy \
    dataset-fashion-mnist $MPI >/dev/null
swift build -c release --product percept
