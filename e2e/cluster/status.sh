#!/usr/bin/env bash
# Exit 0 if the local cluster is up and healthy, 1 otherwise; print which components run.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
for c in $COMPONENTS; do
  if running "$c"; then echo "$c: running (pid $(cat "$RUN/$c.pid"))"; else echo "$c: stopped"; fi
done
if healthy; then echo "cluster: up (KUBECONFIG=$KUBECONFIG_ADMIN)"; exit 0; fi
echo "cluster: down"; exit 1
