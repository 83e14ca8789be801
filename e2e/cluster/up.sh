#!/usr/bin/env bash
# Start the single-node cluster from the cached binaries: etcd, containerd (+runc, CNI bridge),
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables mode),
# then CoreDNS. Idempotent: a healthy running cluster is left alone; a half-running one is
# stopped and started again. Every process runs in its own session with its pid in $RUN/NAME.pid
# and its log in $LOGS/NAME.log. kubeconfig: $CLUSTER_DIR/admin.kubeconfig.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run 'make cluster-build' first"
done
for b in containerd runc ctr iptables conntrack; do
  command -v "$b" > /dev/null || die "$b is missing: run 'make cluster-deps' first"
done
[ "$(id -u)" = 0 ] || die "the cluster runs as root (containerd, kubelet, iptables)"
[ "$(sysctl -n net.ipv6.conf.all.disable_ipv6 2> /dev/null)" = 0 ] ||
  die "the cluster is dual-stack and needs IPv6 on the host (net.ipv6.conf.all.disable_ipv6 is not 0, or there is no IPv6)"

if healthy; then log "cluster already up (KUBECONFIG=$KUBECONFIG_ADMIN)"; exit 0; fi
for c in $COMPONENTS; do
  if running "$c"; then log "cluster is half up: stopping it first"; bash "$HERE/down.sh"; break; fi
done
_T0=$(date +%s.%N)

bash "$HERE/pki.sh"
mkdir -p "$DATA" "$RUN" "$LOGS" "$ETC/cni"

# start NAME CMD...: run CMD in the background in its own session, record its pid, log to $LOGS.
start() {
  local name=$1; shift
  [ -f "$LOGS/$name.log" ] && mv -f "$LOGS/$name.log" "$LOGS/$name.log.1"
  (
    # The daemons outlive this script: they must not keep what it inherited
    # beyond stdio (a lock its caller holds with flock, a pipe someone reads).
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2> /dev/null || true; fi
    done
    exec setsid "$@" > "$LOGS/$name.log" 2>&1 < /dev/null
  ) &
  echo $! > "$RUN/$name.pid"
}

# ---- host: save what we change, so that down.sh can put it back.
[ -f "$RUN/sysctl.saved" ] || sysctl -e $HOST_SYSCTLS > "$RUN/sysctl.saved" 2> /dev/null
# iptables (nft back end) creates its tables on first use: remember which exist already.
[ -f "$RUN/nft-tables.saved" ] || nft list tables > "$RUN/nft-tables.saved"
sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
  net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1

# Directories outside $CLUSTER_DIR that the runtime, CNI or kubelet create: remember the ones
# that do not exist yet, down.sh removes them again once they are empty.
for d in /run/containerd /run/netns /var/run/netns /var/lib/cni /var/log/pods /var/log/containers; do
  [ -e "$d" ] || grep -qxF "$d" "$RUN/host-dirs" 2> /dev/null || echo "$d" >> "$RUN/host-dirs"
done

# ---- sandbox guards: no pod or Service traffic may leave this machine.
# 1. A Service VIP that kube-proxy does not translate is routed to an empty local bridge (dropped).
ip link show "$GUARD_BRIDGE" > /dev/null 2>&1 || ip link add "$GUARD_BRIDGE" type bridge
ip link set "$GUARD_BRIDGE" up
ip route replace "$SVC_CIDR" dev "$GUARD_BRIDGE"
ip -6 route replace "$SVC_CIDR6" dev "$GUARD_BRIDGE"
# 2. Forwarded traffic from a pod may only go to another pod.
iptables -C FORWARD -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP 2> /dev/null ||
  iptables -I FORWARD 1 -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP
#    IPv6 alike, but for multicast: neighbour discovery between two pods on the bridge is
#    bridged through ip6tables too (bridge-nf-call-ip6tables), and without it they never meet.
guard6=(-s "$POD_CIDR6" ! -d "$POD_CIDR6" -m addrtype ! --dst-type MULTICAST -j DROP)
ip6tables -C FORWARD "${guard6[@]}" 2> /dev/null || ip6tables -I FORWARD 1 "${guard6[@]}"
# 3. No upstream DNS: pods with dnsPolicy Default get a resolver that answers nothing, and
#    CoreDNS has no "forward" plugin.
echo "nameserver 127.0.0.1" > "$ETC/resolv.conf"

# ---- configuration
cat > "$ETC/containerd.toml" <<TOML
version = 2
root = "$DATA/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$CSOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DATA/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root on this machine lacks CAP_SYS_RESOURCE and cannot lower oom_score_adj; without this every
  # sandbox fails with "runc create failed: ... can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 managed directly (no systemd here); the kubelet uses cgroupDriver cgroupfs.
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ETC/cni"
TOML
cat > "$ETC/cni/10-conduit-e2e.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "conduit-e2e", "plugins": [
  {"type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$DATA/cni-ipam",
            "ranges": [[{"subnet": "$NODE_POD_CIDR"}], [{"subnet": "$NODE_POD_CIDR6"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
cat > "$ETC/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CSOCK
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $ETC/resolv.conf
podLogsDir: $DATA/pod-logs
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
failSwapOn: false
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
YAML
cat > "$ETC/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $ETC/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR,$POD_CIDR6
hostnameOverride: $NODE
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {syncPeriod: 30s, minSyncPeriod: 0s}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML

# ---- etcd and containerd, then the API server
start etcd "$BIN/etcd" --name "$NODE" --data-dir "$DATA/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$NODE=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381
start containerd containerd --config "$ETC/containerd.toml"
waitfor "etcd healthy" 60 curl -fsS http://127.0.0.1:2379/health
start kube-apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
  --advertise-address="$HOST_IP" --bind-address=0.0.0.0 --secure-port=6443 \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range="$SVC_CIDR,$SVC_CIDR6" --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
  --allow-privileged=true
waitfor "containerd up" 60 ctr --address "$CSOCK" version

# ---- images: every OCI tarball in $IMAGES_DIR newer than the last import (containerd keeps
# its content store in $DATA, so after the first start only rebuilt images are imported).
[ -f "$IMAGES_DIR/pause.tar" ] || die "$IMAGES_DIR/pause.tar is missing: run 'make images' first"
stamp=$DATA/containerd/.imported
n=0
for img in "$IMAGES_DIR"/*.tar; do
  if [ ! -f "$stamp" ] || [ "$img" -nt "$stamp" ]; then
    ctr --address "$CSOCK" -n k8s.io images import --no-unpack "$img" > /dev/null || die "importing $img"
    n=$((n + 1))
  fi
done
touch "$stamp"
log "images imported: $n new"
waitfor "kube-apiserver ready" 120 kctl get --raw /readyz

# ---- the rest of the control plane and the node
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$ETC/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$ETC/controller-manager.kubeconfig" --authorization-kubeconfig="$ETC/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --allocate-node-cidrs=true --cluster-cidr="$POD_CIDR,$POD_CIDR6" \
  --node-cidr-mask-size-ipv4=24 --node-cidr-mask-size-ipv6=64 --service-cluster-ip-range="$SVC_CIDR,$SVC_CIDR6"
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$ETC/scheduler.kubeconfig" \
  --authentication-kubeconfig="$ETC/scheduler.kubeconfig" --authorization-kubeconfig="$ETC/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false
start kubelet "$BIN/kubelet" --config="$ETC/kubelet.yaml" --kubeconfig="$ETC/kubelet.kubeconfig" \
  --root-dir="$DATA/kubelet" --node-ip="$HOST_IP" --hostname-override="$NODE"
start kube-proxy "$BIN/kube-proxy" --config="$ETC/kube-proxy.yaml"

waitfor "node $NODE registered" 120 kctl get node "$NODE"
waitfor "node $NODE Ready" 180 kctl wait --for=condition=Ready "node/$NODE" --timeout=1s
waitfor "ServiceAccount default/default" 60 kctl get serviceaccount default -n default

# ---- cluster DNS (kube-dns Service at $DNS_IP)
sed -e "s|__DNS_IP__|$DNS_IP|" -e "s|__COREDNS_IMAGE__|$COREDNS_IMAGE|" "$HERE/addons/coredns.yaml" |
  kctl apply --server-side --force-conflicts -f - > /dev/null
kctl -n kube-system rollout status deployment/coredns --timeout=120s > /dev/null
log "CoreDNS ready at $DNS_IP"
log "cluster up: export KUBECONFIG=$KUBECONFIG_ADMIN"
