#!/usr/bin/env bash
# Installs what xjob needs on Debian 12 (bookworm), only what is missing:
# Bazel (Debian's bazel-bootstrap), the libraries, Open MPI (for //:mpi and
# its mpirun tests), and the Python packages the tests, the benchmark
# baselines (joblib, mpi4py, dask.distributed) and the plots use. Idempotent; when everything is installed it
# changes nothing, needs no root and no network. Otherwise it runs apt-get
# (as root, or through sudo) non-interactively.
#   bash scripts/setup.sh
set -euo pipefail

packages=(
  bazel-bootstrap
  libxtensor-dev xtl-dev libxsimd-dev
  libtbb-dev
  catch2
  libfmt-dev
  libcereal-dev
  librandom123-dev
  libcli11-dev
  libssl-dev
  libomp-dev
  nlohmann-json3-dev
  cmake pkg-config
  libopenmpi-dev openmpi-bin
  python3-numpy python3-joblib python3-matplotlib
  python3-mpi4py python3-distributed
)

is_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup.sh: this needs Debian 12 (dpkg and apt-get); install by hand: ${packages[*]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup.sh: all ${#packages[@]} packages are installed"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "setup.sh: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

still_missing=()
for p in "${missing[@]}"; do
  is_installed "$p" || still_missing+=("$p")
done
if [[ ${#still_missing[@]} -ne 0 ]]; then
  echo "setup.sh: still missing after apt-get: ${still_missing[*]}" >&2
  exit 1
fi
echo "setup.sh: installed ${missing[*]}"
