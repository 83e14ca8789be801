package cmd

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/conduit-mesh/conduit/cli/healthcheck"
	"github.com/conduit-mesh/conduit/pkg/subnets"
	proxyconfig "github.com/conduit-mesh/conduit/proxy/config"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// clusterNetworksCheck warns when a node's pod CIDR or a Service CIDR is
// not inside the proxies' cluster networks: a proxy sends to an address
// outside them without asking the destination service, so a pod or
// Service there would get neither mTLS nor balancing.
func (ch *checker) clusterNetworksCheck() healthcheck.Check {
	return healthcheck.Check{
		Description: "the cluster networks hold every pod and Service address",
		Hint:        "give the proxies networks that hold them: 'mesh upgrade --cluster-networks <CIDRs> | kubectl apply -f -', then restart the meshed workloads (docs/proxy.md, Cluster networks)",
		Run:         ch.clusterNetworks,
	}
}

// clusterNetworksOf returns the proxies' cluster networks as the ConfigMap
// conduit-config of namespace ns gives them (the proxy's default when it
// gives none), as written and parsed.
func clusterNetworksOf(ctx context.Context, client kubernetes.Interface, ns string) (string, []netip.Prefix, error) {
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, configMapName, metav1.GetOptions{})
	if err != nil {
		return "", nil, err
	}
	// Only the one key: the injector reports a document it cannot use.
	var cfg struct {
		Proxy struct {
			ClusterNetworks string `json:"clusterNetworks"`
		} `json:"proxy"`
	}
	_ = yaml.Unmarshal([]byte(cm.Data["values"]), &cfg)
	value := cfg.Proxy.ClusterNetworks
	if value == "" {
		value = proxyconfig.DefaultClusterNetworks
	}
	nets, err := subnets.ParseNetworks(value)
	if err != nil {
		return "", nil, fmt.Errorf("ConfigMap %s proxy.clusterNetworks: %w", configMapName, err)
	}
	return value, nets, nil
}

func (ch *checker) clusterNetworks(ctx context.Context) error {
	value, nets, err := clusterNetworksOf(ctx, ch.kube.Client, ch.ns)
	if err != nil {
		return err
	}

	var outside []string
	check := func(what string, p netip.Prefix) {
		if !subnets.Covers(nets, p) {
			outside = append(outside, what+" "+p.String())
		}
	}
	nodes, err := ch.kube.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	podCIDRs := 0
	for _, n := range nodes.Items {
		for _, c := range n.Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				check("the pod CIDR of node "+n.Name, p)
				podCIDRs++
			}
		}
	}
	if podCIDRs == 0 {
		// A CNI with its own address management (cloud VPC addresses,
		// IP pools) leaves the nodes' pod CIDRs empty: the pods' own
		// addresses tell, a page of them.
		if err := ch.podAddressesOutside(ctx, nets, &outside); err != nil {
			return err
		}
	}
	// The Service CIDRs (Kubernetes 1.33 and later); else the address of
	// the API server's Service, which is in the first of them.
	if scs, err := ch.kube.Client.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{}); err == nil && len(scs.Items) > 0 {
		for _, sc := range scs.Items {
			for _, c := range sc.Spec.CIDRs {
				if p, err := netip.ParsePrefix(c); err == nil {
					check("the Service CIDR "+sc.Name, p)
				}
			}
		}
	} else if svc, err := ch.kube.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
		for _, ip := range svc.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				check("the cluster IP of Service default/kubernetes", netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	if len(outside) > 0 {
		return healthcheck.Warning(fmt.Errorf("%s outside the cluster networks %s: the proxies send there without asking the destination service (no mTLS, no load balancing)",
			strings.Join(outside, ", "), value))
	}
	return nil
}

// podPage is how many pods podAddressesOutside reads.
const podPage = 500

// podAddressesOutside adds to outside the addresses of (a page of) the
// cluster's pods, host-network ones aside, that are outside nets: the first
// few by name, then how many more.
func (ch *checker) podAddressesOutside(ctx context.Context, nets []netip.Prefix, outside *[]string) error {
	pods, err := ch.kube.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: podPage})
	if err != nil {
		return err
	}
	// In the API server's order, namespace then name, whatever serves the list.
	sort.Slice(pods.Items, func(i, j int) bool {
		a, b := pods.Items[i], pods.Items[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	var named []string
	more := 0
	for _, p := range pods.Items {
		if p.Spec.HostNetwork {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			a, err := netip.ParseAddr(ip.IP)
			if err != nil || subnets.Contains(nets, a) {
				continue
			}
			if len(named) < 3 {
				named = append(named, fmt.Sprintf("the address of pod %s/%s %s", p.Namespace, p.Name, a))
			} else {
				more++
			}
		}
	}
	if more > 0 {
		named = append(named, fmt.Sprintf("%d more pod addresses", more))
	}
	*outside = append(*outside, named...)
	return nil
}
