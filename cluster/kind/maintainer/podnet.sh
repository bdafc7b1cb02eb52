#!/bin/sh
# kflabs-podnet: the kit's stand-in for kind's kindnetd (not buildable here: it is not a
# served Go module). Every node runs one copy (DaemonSet, host network). It
#  * writes this node's CNI config: ptp + host-local on the node's spec.podCIDR (kindnetd's
#    own config shape), so pods get addresses;
#  * routes every other node's podCIDR via that node's InternalIP, so pods on different nodes
#    reach each other (all kind nodes share one Docker network);
#  * masquerades pod traffic leaving the pod network (POD_SUBNET).
# It talks to the API server at CONTROL_PLANE_ENDPOINT (kind adds it, as for kindnetd), so it
# works before kube-proxy has set up the kubernetes Service.
set -eu
: "${NODE_NAME:?}" "${POD_SUBNET:?}"
if [ -n "${CONTROL_PLANE_ENDPOINT:-}" ]; then
  export KUBERNETES_SERVICE_HOST="${CONTROL_PLANE_ENDPOINT%:*}"
  export KUBERNETES_SERVICE_PORT="${CONTROL_PLANE_ENDPOINT##*:}"
fi
CONF=/etc/cni/net.d/10-kflabs-podnet.conflist
JSONPATH='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'
while :; do
  if kubectl get nodes -o jsonpath="$JSONPATH" > /tmp/nodes 2>/tmp/kubectl.err; then
    while read -r name cidr ip; do
      [ -n "$cidr" ] && [ -n "$ip" ] || continue
      if [ "$name" = "$NODE_NAME" ]; then
        want=$(printf '{"cniVersion":"0.4.0","name":"kflabs-podnet","plugins":[{"type":"ptp","ipMasq":false,"mtu":1500,"ipam":{"type":"host-local","dataDir":"/run/cni-ipam-state","routes":[{"dst":"0.0.0.0/0"}],"ranges":[[{"subnet":"%s"}]]}},{"type":"portmap","capabilities":{"portMappings":true}}]}' "$cidr")
        if [ "$(cat "$CONF" 2>/dev/null)" != "$want" ]; then
          printf '%s' "$want" > "$CONF.tmp" && mv "$CONF.tmp" "$CONF"
          echo "wrote $CONF for $cidr"
        fi
        iptables -t nat -C POSTROUTING -s "$cidr" ! -d "$POD_SUBNET" -j MASQUERADE 2>/dev/null \
          || iptables -t nat -A POSTROUTING -s "$cidr" ! -d "$POD_SUBNET" -j MASQUERADE
      else
        ip route replace "$cidr" via "$ip"
      fi
    done < /tmp/nodes
  else
    echo "listing nodes failed: $(cat /tmp/kubectl.err)"
  fi
  sleep 10
done
