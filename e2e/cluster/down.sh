#!/usr/bin/env bash
# Stop the cluster and put the host back as up.sh found it: processes, pod sandboxes, iptables
# chains and rules, routes, bridges, network namespaces, mounts, cgroups and sysctls.
# Cluster state (etcd, images, PKI) is kept for a fast next start; WIPE=1 erases it too.
# Safe to run when the cluster is already down or only half up.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
mkdir -p "$RUN"

# stop NAME...: SIGTERM the recorded pids together, wait up to 20 s for each, then SIGKILL.
stop() {
  local name pid f deadline
  local -a names=() pids=()
  for name in "$@"; do
    f=$RUN/$name.pid
    [ -f "$f" ] || continue
    pid=$(cat "$f"); rm -f "$f"
    kill -0 "$pid" 2> /dev/null || continue
    kill -TERM "$pid"; names+=("$name"); pids+=("$pid")
  done
  deadline=$((SECONDS + 20))
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2> /dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "${pids[$i]}" 2> /dev/null; then log "SIGKILL ${names[$i]} (pid ${pids[$i]})"; kill -KILL "${pids[$i]}"; fi
    log "stopped ${names[$i]} (pid ${pids[$i]})"
  done
}
ctrk() { ctr --address "$CSOCK" -n k8s.io "$@"; }

# 1. No new pods; delete the running ones through the kubelet, so that CNI DEL and unmounts run.
#    Only the containers matter, not the API objects (a Job's pod keeps a finalizer that the
#    stopped controller-manager would remove): wait until no container of ours runs any more.
stop kube-controller-manager kube-scheduler
if running kubelet && kctl get --raw /readyz > /dev/null 2>&1; then
  kctl delete mutatingwebhookconfigurations,validatingwebhookconfigurations --all --wait=false > /dev/null 2>&1
  kctl delete pods --all --all-namespaces --grace-period=1 --wait=false > /dev/null 2>&1
  deadline=$((SECONDS + 45))
  while [ "$(ctr --address "$CSOCK" -n k8s.io tasks ls 2> /dev/null | awk 'NR > 1 && $3 == "RUNNING"' | wc -l)" != 0 ]; do
    if [ $SECONDS -ge $deadline ]; then log "WARN: pods still running after 45s; removing their containers directly"; break; fi
    sleep 0.5
  done
  log "pods stopped"
fi
stop kubelet kube-proxy

# 2. Whatever the kubelet left: kill and delete tasks and containers through containerd.
if running containerd && ctr --address "$CSOCK" version > /dev/null 2>&1; then
  for t in $(ctrk tasks ls -q 2> /dev/null); do ctrk tasks kill -s SIGKILL "$t" > /dev/null 2>&1; done
  for t in $(ctrk tasks ls -q 2> /dev/null); do ctrk tasks delete -f "$t" > /dev/null 2>&1; done
  for c in $(ctrk containers ls -q 2> /dev/null); do ctrk containers delete "$c" > /dev/null 2>&1; done
fi
stop kube-apiserver containerd
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
while ip6tables -D FORWARD -s "$POD_CIDR6" ! -d "$POD_CIDR6" -m addrtype ! --dst-type MULTICAST -j DROP 2> /dev/null; do :; done
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
ip -6 route del "$SVC_CIDR6" dev "$GUARD_BRIDGE" 2> /dev/null
ip link del "$GUARD_BRIDGE" 2> /dev/null
conntrack -D -s "$POD_CIDR" > /dev/null 2>&1
conntrack -D -d "$SVC_CIDR" > /dev/null 2>&1
conntrack -f ipv6 -D -s "$POD_CIDR6" > /dev/null 2>&1
conntrack -f ipv6 -D -d "$SVC_CIDR6" > /dev/null 2>&1

# Pod logs live in $DATA/pod-logs; the kubelet's links to them in /var/log/containers are ours.
for l in /var/log/containers/*; do
  [ -L "$l" ] && case "$(readlink "$l")" in "$DATA"/*) rm -f "$l" ;; esac
done

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
