#!/usr/bin/env bash
# Installs what `make` needs on a fresh Debian machine. Idempotent: a second run does nothing new.
set -euo pipefail
: "${TOOLS:?}" "${PROTOC_GEN_GO_VERSION:?}" "${PROTOC_GEN_GO_GRPC_VERSION:?}" "${STATICCHECK_VERSION:?}"
mkdir -p "$TOOLS"

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler libprotobuf-dev)
[ -e /usr/include/google/protobuf/duration.proto ] || need+=(libprotobuf-dev)
command -v git >/dev/null || need+=(git)
command -v make >/dev/null || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

gotool() { # name module@version
  local stamp="$TOOLS/.$1-$(basename "${2#*@}")"
  if [ ! -x "$TOOLS/$1" ] || [ ! -e "$stamp" ]; then
    echo "deps: go install $2"
    GOBIN="$TOOLS" go install "$2"
    rm -f "$TOOLS/.$1-"*; touch "$stamp"
  fi
}
gotool protoc-gen-go "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
gotool protoc-gen-go-grpc "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
gotool staticcheck "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
gotool helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION:-v3.22.0}"
