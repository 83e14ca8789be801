#!/usr/bin/env bash
# Shared settings and helpers of the local cluster scripts. Sourced, never run.
#
# Everything that is expensive to rebuild lives in the cache ($CONDUIT_CACHE, outside the
# repository) and survives `git clean` and `make cluster-down`; the cluster's own state lives
# in $CLUSTER_DIR and is reused by the next `cluster-up` unless WIPE=1 is given to `down`.

CONDUIT_CACHE=${CONDUIT_CACHE:-/var/tmp/conduit}
K8S_CACHE=${K8S_CACHE:-$CONDUIT_CACHE/k8s}          # bin/, build*/ (wrapper modules), logs/
CLUSTER_DIR=${CLUSTER_DIR:-$CONDUIT_CACHE/cluster}  # pki/, etc/, data/, run/, logs/, admin.kubeconfig
IMAGES_DIR=${IMAGES_DIR:-$CONDUIT_CACHE/images}     # OCI tarballs written by hack/imagebuild

# Pinned versions. Changing one rebuilds that binary on the next `make e2e` (see build.sh stamps).
KUBE_VERSION=${KUBE_VERSION:-1.32.4}     # k8s.io/kubernetes v1.32.4, staging modules v0.32.4
ETCD_VERSION=${ETCD_VERSION:-v3.5.16}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.0}
PAUSE_VERSION=${PAUSE_VERSION:-3.10}

# Network layout. Pod and Service traffic never leaves this machine (see up.sh "sandbox guards").
NODE=${NODE:-$(hostname | tr '[:upper:]' '[:lower:]')}
HOST_IP=${HOST_IP:-$(hostname -I | awk '{print $1}')}
POD_CIDR=${POD_CIDR:-10.244.0.0/16}
NODE_POD_CIDR=${NODE_POD_CIDR:-10.244.0.0/24}
SVC_CIDR=${SVC_CIDR:-10.96.0.0/16}
API_SVC_IP=${API_SVC_IP:-10.96.0.1}
# The cluster is dual-stack, IPv4 first: every pod gets an address of each family, and a
# Service is IPv4 unless it asks for IPv6 (ipFamilies), so the mesh is tested over both.
POD_CIDR6=${POD_CIDR6:-fd10:244::/56}
NODE_POD_CIDR6=${NODE_POD_CIDR6:-fd10:244::/64}
SVC_CIDR6=${SVC_CIDR6:-fd10:96::/112}
DNS_IP=${DNS_IP:-10.96.0.10}
GUARD_BRIDGE=${GUARD_BRIDGE:-conduit-guard0}
POD_BRIDGE=${POD_BRIDGE:-cni0}

# Images of the cluster itself (built by hack/imagebuild from images.yaml, section "cluster").
PAUSE_IMAGE=${PAUSE_IMAGE:-localhost/conduit/pause:$PAUSE_VERSION}
COREDNS_IMAGE=${COREDNS_IMAGE:-localhost/conduit/coredns:$COREDNS_VERSION}

BIN=$K8S_CACHE/bin
PKI=$CLUSTER_DIR/pki
ETC=$CLUSTER_DIR/etc
DATA=$CLUSTER_DIR/data
RUN=$CLUSTER_DIR/run
LOGS=$CLUSTER_DIR/logs
KUBECONFIG_ADMIN=$CLUSTER_DIR/admin.kubeconfig
CSOCK=$RUN/containerd/containerd.sock

export PATH=$BIN:$PATH

# Host sysctls the cluster (or the kubelet by itself) changes: saved by up.sh, restored by down.sh.
HOST_SYSCTLS="net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.bridge.bridge-nf-call-iptables
net.bridge.bridge-nf-call-ip6tables net.ipv4.conf.all.route_localnet
kernel.panic kernel.panic_on_oops vm.overcommit_memory kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

_T0=${_T0:-$(date +%s.%N)}
elapsed() { awk -v a="$_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%5.1fs", b-a}'; }
log() { echo "[cluster $(elapsed)] $*"; }
die() { echo "[cluster $(elapsed)] ERROR: $*" >&2; exit 1; }

# waitfor DESC TIMEOUT_SECONDS CMD... : poll CMD every 0.25 s until it succeeds.
waitfor() {
  local desc=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" > /dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for $desc"
    sleep 0.25
  done
  log "$desc"
}

# kctl: kubectl as cluster admin.
kctl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# running NAME: the component recorded in $RUN/NAME.pid is alive.
running() { local f=$RUN/$1.pid; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

COMPONENTS="etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

# healthy: every component runs, the API server is ready and the node is Ready.
healthy() {
  local c
  for c in $COMPONENTS; do running "$c" || return 1; done
  kctl get --raw /readyz > /dev/null 2>&1 &&
    kctl wait --for=condition=Ready "node/$NODE" --timeout=1s > /dev/null 2>&1
}
