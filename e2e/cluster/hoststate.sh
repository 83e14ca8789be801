#!/usr/bin/env bash
# Print the host state the cluster touches, normalised so that two snapshots can be diffed:
#   hoststate.sh > before; make cluster-up cluster-down; hoststate.sh | diff before -
set -uo pipefail
. "$(dirname "$0")/lib.sh"
echo "## processes (cluster binaries, shims)"
ps -eo comm= | grep -E '^(etcd|containerd|kube-|kubelet|coredns|pause|containerd-shim)' | sort | uniq -c
echo "## iptables"
for t in iptables ip6tables iptables-legacy; do
  command -v "$t-save" > /dev/null && "$t-save" 2> /dev/null | grep -vE '^#' | sed 's/\[[0-9:]*\]//'
done
echo "## links"; ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
echo "## routes"; ip route show | sort; ip -6 route show | sort
echo "## netns"; ls /run/netns 2> /dev/null
echo "## mounts"; awk '{print $2, $3}' /proc/self/mounts | grep -vE '^/proc|^/sys/fs/cgroup ' | sort
echo "## dirs"; for d in /run/containerd /run/netns /var/lib/cni /var/log/pods /var/log/containers /etc/cni; do [ -e "$d" ] && echo "$d"; done
echo "## cgroups"; ls -d /sys/fs/cgroup/*/kubepods 2> /dev/null
echo "## sysctls"; sysctl $HOST_SYSCTLS 2> /dev/null
