#!/usr/bin/env bash
# The cluster's PKI (openssl): one CA, a service-account key pair, a certificate per component,
# and the kubeconfigs. Generated once per (node name, host IP); later runs reuse it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mkdir -p "$PKI" "$ETC"; chmod 700 "$PKI"; cd "$PKI"
id="$NODE $HOST_IP $API_SVC_IP"
if [ -f ca.crt ] && [ "$(cat .identity 2>/dev/null)" = "$id" ] && [ -f "$KUBECONFIG_ADMIN" ]; then
  exit 0
fi
log "generating PKI for node $NODE ($HOST_IP) in $PKI"
rm -f ./*.crt ./*.key ./*.pub ./*.srl

openssl genrsa -out ca.key 2048 2> /dev/null
openssl req -x509 -new -nodes -key ca.key -subj "/CN=conduit-e2e-ca" -days 3650 -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
openssl genrsa -out sa.key 2048 2> /dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2> /dev/null

# issue NAME CN ORG EXTKEYUSAGE [SANS]: a leaf certificate NAME.crt/NAME.key signed by the CA.
issue() {
  local name=$1 cn=$2 org=$3 eku=$4 sans=${5:-} subj
  subj="/CN=$cn"; [ -n "$org" ] && subj="/O=$org/CN=$cn"
  openssl genrsa -out "$name.key" 2048 2> /dev/null
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" 2> /dev/null
  rm -f "$name.csr" "$name.ext"
}
issue apiserver kube-apiserver "" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE,IP:127.0.0.1,IP:$API_SVC_IP,IP:$HOST_IP"
issue apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
issue admin conduit-e2e-admin system:masters clientAuth
issue controller-manager system:kube-controller-manager "" clientAuth
issue scheduler system:kube-scheduler "" clientAuth
issue kube-proxy system:kube-proxy "" clientAuth
issue kubelet "system:node:$NODE" system:nodes clientAuth
issue kubelet-serving "$NODE" "" serverAuth "DNS:$NODE,DNS:localhost,IP:127.0.0.1,IP:$HOST_IP"
chmod 600 ./*.key

# kubeconfig FILE USER: a self-contained kubeconfig (certificates embedded) for USER's certificate.
kubeconfig() {
  local b64='base64 -w0'
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: conduit-e2e
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $($b64 < ca.crt)
users:
- name: $2
  user:
    client-certificate-data: $($b64 < "$2.crt")
    client-key-data: $($b64 < "$2.key")
contexts:
- name: conduit-e2e
  context: {cluster: conduit-e2e, user: $2}
current-context: conduit-e2e
KC
  chmod 600 "$1"
}
for c in controller-manager scheduler kube-proxy kubelet; do kubeconfig "$ETC/$c.kubeconfig" "$c"; done
kubeconfig "$KUBECONFIG_ADMIN" admin
echo "$id" > .identity
