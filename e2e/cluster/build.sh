#!/usr/bin/env bash
# Build the cluster's binaries from the Go module proxy into $K8S_CACHE/bin:
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl  (k8s.io/kubernetes)
#   etcd (go.etcd.io/etcd/server/v3), coredns (a minimal CoreDNS), pause (Kubernetes' pause.c, static)
# Each binary has a stamp file bin/.NAME.version holding the version it was built at; a binary whose
# stamp matches the pinned version is not rebuilt, so the second run takes a second.
# The first run takes about 6 minutes on 2 cores (kube-apiserver alone ~4 minutes, 1.9 GB peak).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export GOSUMDB=off GOFLAGS=-mod=mod GOWORK=off   # sum.golang.org has no entry for k8s.io/kubernetes
mkdir -p "$BIN" "$K8S_CACHE/logs"
KUBE_STAGING=v0.${KUBE_VERSION#*.}                # v0.32.4
KUBE_BINS="kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl"

# current NAME VERSION PROBE...: succeed when bin/NAME is built at VERSION. A binary without a
# stamp (built by an earlier run that did not write one) is accepted if PROBE prints VERSION.
current() {
  local name=$1 version=$2; shift 2
  local b=$BIN/$name stamp=$BIN/.$name.version
  [ -x "$b" ] || return 1
  [ "$(cat "$stamp" 2>/dev/null)" = "$version" ] && return 0
  if [ $# -gt 0 ] && "$@" 2>&1 | grep -qF -- "${version#v}"; then
    echo "$version" > "$stamp"; return 0
  fi
  return 1
}
stamp() { echo "$2" > "$BIN/.$1.version"; }
timed() { # timed NAME CMD...: run CMD, log wall time and peak memory to logs/build-summary.txt
  local name=$1; shift; local s=$SECONDS
  /usr/bin/time -f "%e s wall, %M KB maxrss" -o "$K8S_CACHE/logs/build-$name.time" "$@"
  echo "$name: $((SECONDS - s))s [$(cat "$K8S_CACHE/logs/build-$name.time")]" | tee -a "$K8S_CACHE/logs/build-summary.txt"
}

# ---- Kubernetes: a wrapper module requiring k8s.io/kubernetes, whose ./staging replaces are
# pointed at the published staging modules (k8s.io/api v0.32.4, ...).
kube_todo=()
for b in $KUBE_BINS; do
  probe=(--version); [ "$b" = kubectl ] && probe=(version --client)
  current "$b" "v$KUBE_VERSION" "$BIN/$b" "${probe[@]}" || kube_todo+=("$b")
done
if [ ${#kube_todo[@]} -gt 0 ]; then
  W=$K8S_CACHE/build; mkdir -p "$W"; cd "$W"
  if ! grep -q "k8s.io/kubernetes v$KUBE_VERSION" go.mod 2>/dev/null; then
    log "preparing the Kubernetes v$KUBE_VERSION wrapper module in $W"
    rm -f go.mod go.sum tools.go
    go mod init k8sbuild > /dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@v$KUBE_VERSION"
    go mod download "k8s.io/kubernetes@v$KUBE_VERSION"
    kmod=$(go env GOMODCACHE)/k8s.io/kubernetes@v$KUBE_VERSION
    for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod/go.mod"); do
      go mod edit -replace="$m=$m@$KUBE_STAGING"
    done
    { printf '//go:build tools\n\npackage tools\n\n'
      for b in $KUBE_BINS; do echo "import _ \"k8s.io/kubernetes/cmd/$b\""; done; } > tools.go
    go mod tidy > "$K8S_CACHE/logs/tidy.log" 2>&1
  fi
  ld="-s -w"
  for kv in gitVersion=v$KUBE_VERSION gitMajor=${KUBE_VERSION%%.*} gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) gitTreeState=clean; do
    ld="$ld -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  for b in "${kube_todo[@]}"; do
    log "building $b v$KUBE_VERSION"
    timed "$b" go build -ldflags "$ld" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$BIN/$b.tmp" "$BIN/$b"; stamp "$b" "v$KUBE_VERSION"
  done
fi

# ---- etcd 3.5 (Debian's 3.4 works, but kube-apiserver 1.32 then falls back to slower reads).
if ! current etcd "$ETCD_VERSION" "$BIN/etcd" --version; then
  W=$K8S_CACHE/build-etcd; mkdir -p "$W"; cd "$W"
  if ! grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" go.mod 2>/dev/null; then
    rm -f go.mod go.sum
    printf 'module etcdbuild\n\ngo 1.23\n' > go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy
  fi
  log "building etcd $ETCD_VERSION"
  timed etcd go build -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"; stamp etcd "$ETCD_VERSION"
fi

# ---- CoreDNS with only the plugins cluster DNS needs. No "forward": nothing is ever asked upstream.
if ! current coredns "$COREDNS_VERSION" "$BIN/coredns" -version; then
  W=$K8S_CACHE/build-coredns; mkdir -p "$W"; cd "$W"
  cat > main.go <<'GO'
// Command coredns is CoreDNS with the plugins of in-cluster DNS only.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  if ! grep -q "github.com/coredns/coredns $COREDNS_VERSION" go.mod 2>/dev/null; then
    rm -f go.mod go.sum
    printf 'module corednsbuild\n\ngo 1.23\n' > go.mod
    go get "github.com/coredns/coredns@$COREDNS_VERSION"
    for m in client-go api apimachinery; do go mod edit -replace="k8s.io/$m=k8s.io/$m@$KUBE_STAGING"; done
    go mod tidy
  fi
  log "building coredns $COREDNS_VERSION"
  CGO_ENABLED=0 timed coredns go build -ldflags "-s -w" -o "$BIN/coredns.tmp" .
  mv "$BIN/coredns.tmp" "$BIN/coredns"; stamp coredns "$COREDNS_VERSION"
fi

# ---- pause: Kubernetes' own build/pause/linux/pause.c, linked statically.
if ! current pause "$PAUSE_VERSION-k8s$KUBE_VERSION"; then
  kmod=$(go env GOMODCACHE)/k8s.io/kubernetes@v$KUBE_VERSION
  [ -f "$kmod/build/pause/linux/pause.c" ] || go mod download "k8s.io/kubernetes@v$KUBE_VERSION"
  log "building pause $PAUSE_VERSION"
  gcc -Os -static -DVERSION="v$PAUSE_VERSION-conduit" -o "$BIN/pause.tmp" "$kmod/build/pause/linux/pause.c"
  strip "$BIN/pause.tmp"; mv "$BIN/pause.tmp" "$BIN/pause"; stamp pause "$PAUSE_VERSION-k8s$KUBE_VERSION"
fi
log "binaries up to date in $BIN"
