#!/usr/bin/env bash
# Stop the cluster and put the host back as up.sh found it: processes, pod sandboxes, iptables
# chains and rules, routes, bridges, network namespaces, mounts, cgroups and sysctls.
# Cluster state (etcd, images, PKI) is kept for a fast next start; WIPE=1 erases it too.
# Safe to run when the cluster is already down or only half up.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
mkdir -p "$RUN"

# stop NAME [SECONDS]: SIGTERM the recorded pid, SIGKILL it after SECONDS (default 20).
stop() {
  local f=$RUN/$1.pid timeout=${2:-20} pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2> /dev/null; then
    kill -TERM "$pid"
    for _ in $(seq $((timeout * 5))); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2> /dev/null; then log "SIGKILL $1 (pid $pid)"; kill -KILL "$pid"; fi
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}
ctrk() { ctr --address "$CSOCK" -n k8s.io "$@"; }

# 1. No new pods; remove the running ones through the kubelet so that CNI DEL and unmounts run.
stop kube-controller-manager
stop kube-scheduler
if running kubelet && kctl get --raw /readyz > /dev/null 2>&1; then
  kctl delete mutatingwebhookconfigurations,validatingwebhookconfigurations --all --wait=false > /dev/null 2>&1
  kctl delete pods --all --all-namespaces --grace-period=1 --timeout=60s > /dev/null 2>&1 ||
    log "WARN: some pods were not deleted in time; removing their containers directly"
  log "pods deleted"
fi
stop kubelet
stop kube-proxy

# 2. Whatever the kubelet left: kill and delete tasks and containers through containerd.
if running containerd && ctr --address "$CSOCK" version > /dev/null 2>&1; then
  for t in $(ctrk tasks ls -q 2> /dev/null); do ctrk tasks kill -s SIGKILL "$t" > /dev/null 2>&1; done
  for t in $(ctrk tasks ls -q 2> /dev/null); do ctrk tasks delete -f "$t" > /dev/null 2>&1; done
  for c in $(ctrk containers ls -q 2> /dev/null); do ctrk containers delete "$c" > /dev/null 2>&1; done
fi
stop kube-apiserver
stop containerd
stop etcd

# 3. Processes started by this cluster that outlived containerd: shims of our containerd (found by
#    its socket in their command line) and container processes (found in the kubepods cgroups).
leftover=()
for p in /proc/[0-9]*; do
  tr '\0' ' ' < "$p/cmdline" 2> /dev/null | grep -qF -- "-address $CSOCK" && leftover+=("${p#/proc/}")
done
for f in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods; do
  [ -d "$f" ] && while read -r pid; do leftover+=("$pid"); done < <(find "$f" -name cgroup.procs -exec cat {} + 2> /dev/null)
done
if [ ${#leftover[@]} -gt 0 ]; then
  log "killing ${#leftover[@]} leftover container processes: ${leftover[*]}"
  kill -KILL "${leftover[@]}" 2> /dev/null
  sleep 0.5
fi

# 4. Network: kube-proxy's rules, every KUBE-*/CNI-* chain, the guards, pod namespaces and bridges.
"$BIN/kube-proxy" --cleanup > /dev/null 2>&1 || true
for t in iptables ip6tables; do
  "$t-save" | grep -vE '(^:|-j |-g |-A )(KUBE-|CNI-)' | "$t-restore"
done
while iptables -D FORWARD -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP 2> /dev/null; do :; done
# nft tables that iptables created for the cluster and that hold no rule any more.
if [ -f "$RUN/nft-tables.saved" ]; then
  nft list tables | while read -r _ family table; do
    grep -qxF "table $family $table" "$RUN/nft-tables.saved" && continue
    rules=$(nft list table "$family" "$table" | grep -cvE '^[[:space:]]*(table .*|chain .*|type .*|\}|)$')
    [ "$rules" = 0 ] && nft delete table "$family" "$table"
  done
  rm -f "$RUN/nft-tables.saved"
fi
for n in /run/netns/cni-*; do
  [ -e "$n" ] || continue
  umount "$n" 2> /dev/null; rm -f "$n"
done
ip link del "$POD_BRIDGE" 2> /dev/null
ip route del "$SVC_CIDR" dev "$GUARD_BRIDGE" 2> /dev/null
ip link del "$GUARD_BRIDGE" 2> /dev/null
conntrack -D -s "$POD_CIDR" > /dev/null 2>&1
conntrack -D -d "$SVC_CIDR" > /dev/null 2>&1

# 5. Mounts under the cluster directory (container rootfs, kubelet volumes), deepest first.
awk -v d="$CLUSTER_DIR" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2> /dev/null

# 6. Directories this cluster created outside its own: created ones are listed in run/host-dirs.
#    Only empty directories are removed (the runtime's per-container sockets are gone by now).
if [ -f "$RUN/host-dirs" ]; then
  while read -r d; do
    [ -d "$d" ] && find "$d" -depth -type d -empty -delete 2> /dev/null
  done < "$RUN/host-dirs"
  rm -f "$RUN/host-dirs"
fi

# 7. cgroups of pods (kubepods) in every v1 hierarchy.
for c in /sys/fs/cgroup/*/kubepods; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2> /dev/null
done

# 8. sysctls as they were before up.sh.
if [ -f "$RUN/sysctl.saved" ]; then
  sed 's/ = /=/' "$RUN/sysctl.saved" | xargs -r sysctl -qw 2> /dev/null
  rm -f "$RUN/sysctl.saved"
fi
log "cluster down"

if [ "${WIPE:-0}" = 1 ]; then
  rm -rf "$DATA" "$RUN" "$PKI" "$ETC" "$KUBECONFIG_ADMIN"
  log "wiped cluster state in $CLUSTER_DIR"
fi
exit 0
