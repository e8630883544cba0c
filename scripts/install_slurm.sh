#!/usr/bin/env bash
# Install the Slurm daemons, client and munge from the distribution's packages (Debian/Ubuntu,
# root or sudo), for the Slurm the tests in tests/slurm bring up on localhost, and iproute2
# (`ip`) for their two-node cluster in network namespaces.
# Idempotent: returns at once when they are already installed. Nothing is configured or
# started here (the tests write their own config under a temporary folder).
set -euo pipefail

needed=(slurmctld slurmd sbatch scontrol munged ip nsenter unshare)
missing() {
    for cmd in "${needed[@]}"; do command -v "$cmd" >/dev/null || return 0; done
    return 1
}
missing || { echo "install_slurm: slurm, munge and iproute2 already installed"; exit 0; }

die() { echo "install_slurm: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "no apt-get: install slurmctld, slurmd, slurm-client, munge, iproute2"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "needs root or sudo for apt-get"
    SUDO="sudo -n"
fi
echo "install_slurm: installing slurmctld slurmd slurm-client munge iproute2 util-linux"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d 101: the packages' services are not started (the tests start their own daemons)
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null \
        && $SUDO chmod +x "$policy" && created_policy=1
fi
status=0
$SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
    iproute2 util-linux \
    >/dev/null || status=$?
[[ $created_policy -eq 1 ]] && $SUDO rm -f "$policy"
[[ $status -eq 0 ]] || die "apt-get install failed (exit $status)"
missing && die "installed, but one of ${needed[*]} is still missing"
echo "install_slurm: ok (slurm $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null))"
