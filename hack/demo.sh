#!/usr/bin/env bash
# make demo: from a fresh clone to `mesh viz stat` on a local cluster.
# Each step says what it does and how long it took; a second run reuses what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CONDUIT_CACHE:-/var/tmp/conduit}
export KUBECONFIG=${KUBECONFIG:-$CACHE/cluster/admin.kubeconfig}
export PATH=$PWD/bin:$CACHE/k8s/bin:$PATH
MESH=(mesh)
T0=$(date +%s)
step() { # step "what" command...
  local what=$1 s; shift; s=$(date +%s)
  printf '\n\033[1m==> %s\033[0m\n' "$what"
  "$@"
  printf '    done in %ss\n' "$(( $(date +%s) - s ))"
}
wait_rollouts() { # namespace
  for d in $(kubectl -n "$1" get deploy -o name); do kubectl -n "$1" rollout status "$d" --timeout=180s; done
}
install_core() {
  if kubectl get ns conduit >/dev/null 2>&1 && kubectl -n conduit get deploy conduit-destination >/dev/null 2>&1; then
    echo "    control plane already installed: upgrading in place"
    "${MESH[@]}" upgrade --crds | kubectl apply -f - >/dev/null
    "${MESH[@]}" upgrade --registry localhost/conduit --tag dev | kubectl apply -f - >/dev/null
  else
    "${MESH[@]}" install --crds | kubectl apply -f - >/dev/null
    kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
    "${MESH[@]}" install --registry localhost/conduit --tag dev | kubectl apply -f - >/dev/null
  fi
  wait_rollouts conduit
  # The injector writes the webhook's caBundle at start-up and again whenever
  # the webhook configuration changes (it watches it): after an upgrade that
  # re-created the configuration, wait for it, or the demo's pods would be
  # created unmeshed.
  for _ in $(seq 60); do
    [ -n "$(kubectl get mutatingwebhookconfiguration conduit-proxy-injector -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ] && break
    sleep 1
  done
  if [ -z "$(kubectl get mutatingwebhookconfiguration conduit-proxy-injector -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]; then
    echo "demo: the injector has not written its webhook's caBundle within 60 s: see kubectl -n conduit logs deploy/conduit-injector" >&2
    exit 1
  fi
  "${MESH[@]}" check --wait 3m
}
install_viz() {
  local existed=0
  kubectl get ns conduit-viz >/dev/null 2>&1 && existed=1
  "${MESH[@]}" viz install --set image.registry=localhost/conduit --set image.tag=dev | kubectl apply -f - >/dev/null
  if [ $existed = 1 ]; then
    # As for the demo below: the images just built, and proxies certified by
    # the control plane just installed (the injector reaches viz's hook
    # server through them, over mTLS).
    echo "    viz already installed: restarting it on the new images"
    kubectl -n conduit-viz rollout restart deploy >/dev/null
  fi
  wait_rollouts conduit-viz
  # The injector runs viz's hook (tap in every new proxy) once allowed.
  "${MESH[@]}" extensions allow viz
}
deploy_demo() {
  local existed=0
  kubectl get ns conduit-demo >/dev/null 2>&1 && existed=1
  kubectl apply -f demo/k8s/demo.yaml >/dev/null
  if [ $existed = 1 ]; then
    # Same manifest, same tag: restart so that the pods run the image just
    # built and get proxies of the control plane just installed.
    echo "    demo already deployed: restarting it on the new images"
    kubectl -n conduit-demo rollout restart deploy >/dev/null
  fi
  wait_rollouts conduit-demo
}
stat() {
  # Prometheus scrapes the proxies every 10 s: wait (up to 3 min) until the
  # three services show a request rate and open connections (the pods just
  # started: not only what earlier pods left in the 1-minute window).
  echo "    waiting for the load generator's traffic to show in the metrics"
  local deadline=$(( $(date +%s) + 180 )) json
  until json=$("${MESH[@]}" viz stat deploy -n conduit-demo -o json 2>/dev/null) &&
    [ "$(grep -c '"rps": [0-9]' <<<"$json")" -ge 3 ] && [ "$(grep -c '"tcpConnections": [0-9]' <<<"$json")" -ge 3 ]; do
    if [ "$(date +%s)" -ge $deadline ]; then
      echo "    no traffic after 3 min: see 'mesh viz check' and 'kubectl -n conduit-demo get pods'" >&2
      break
    fi
    sleep 5
  done
  "${MESH[@]}" viz stat deploy -n conduit-demo
}

step "Installing host dependencies and tools (make deps)" make -s deps
step "Building the binaries (make build)" make -s build
step "Bringing up the local Kubernetes cluster (make cluster-up)" make -s cluster-up
step "Building the images and loading them into the cluster (make images)" make -s images
step "Installing the Conduit core (mesh install --crds; mesh install; mesh check)" install_core
step "Installing the viz extension (mesh viz install)" install_viz
step "Deploying the demo application, meshed (demo/k8s/demo.yaml)" deploy_demo
step "Golden metrics of the demo (mesh viz stat deploy -n conduit-demo)" stat

cat <<MSG

Demo ready in $(( $(date +%s) - T0 ))s.
  export KUBECONFIG=$KUBECONFIG PATH=$PWD/bin:$CACHE/k8s/bin:\$PATH
  mesh viz stat deploy -n conduit-demo     # success rate, RPS, latency per workload
  mesh viz edges deploy -n conduit-demo    # who talks to whom, with mTLS identities
  mesh viz dashboard                       # opens the dashboard through a port-forward
  kubectl delete -f demo/k8s/demo.yaml     # removes the demo app only
  make cluster-down                        # tears it all down (the build caches stay)
MSG
