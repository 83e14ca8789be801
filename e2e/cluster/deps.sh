#!/usr/bin/env bash
# Host packages of the local cluster (Debian 12): container runtime, CNI plugins, netfilter
# tools, a C compiler for the pause binary; and of the e2e tests: headless Chromium (and a font)
# for the viz dashboard's browser test. Idempotent: apt-get runs only when something is missing.
set -euo pipefail
pkgs=(containerd runc containernetworking-plugins iptables nftables conntrack gcc libc6-dev openssl curl ca-certificates chromium fonts-liberation)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "cluster deps: all installed"; exit 0; }
echo "cluster deps: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# There is no init system here: keep package scripts from trying to start containerd as a service.
policy_added=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_added=1
fi
trap '[ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
