package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type options struct {
	kubeconfig, controller  string
	services, endpoints     int
	streams, changes, conns int
	p99Target               time.Duration
	memTargetMB             float64
	keep                    bool
}

func main() {
	o := options{}
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		kc = "/var/tmp/conduit/cluster/admin.kubeconfig"
	}
	flag.StringVar(&o.kubeconfig, "kubeconfig", kc, "kubeconfig of the cluster")
	flag.StringVar(&o.controller, "controller", "bin/controller", "the controller binary")
	flag.IntVar(&o.services, "services", 1000, "Services to create")
	flag.IntVar(&o.endpoints, "endpoints", 10, "endpoints per Service")
	flag.IntVar(&o.streams, "streams", 500, "concurrent Get streams")
	flag.IntVar(&o.changes, "changes", 200, "EndpointSlice writes measured per scenario")
	flag.IntVar(&o.conns, "conns", 10, "gRPC connections the streams share")
	flag.DurationVar(&o.p99Target, "p99-target", 100*time.Millisecond, "p99 latency target")
	flag.Float64Var(&o.memTargetMB, "mem-target-mb", 150, "memory (peak RSS) target, MB")
	flag.BoolVar(&o.keep, "keep", false, "keep the namespace")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "destbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	ns := fmt.Sprintf("destbench-%d", time.Now().Unix()%100000)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	if !o.keep {
		defer func() {
			_ = client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
			fmt.Printf("namespace %s deleted\n", ns)
		}()
	}
	start := time.Now()
	if err := populate(ctx, client, ns, o); err != nil {
		return err
	}
	fmt.Printf("created %d Services x %d endpoints in %s (namespace %s)\n", o.services, o.endpoints, time.Since(start).Round(time.Millisecond), ns)

	ctl, err := startController(ctx, o)
	if err != nil {
		return err
	}
	defer ctl.stop()
	fmt.Printf("controller ready in %s\n", ctl.readyIn.Round(time.Millisecond))

	conns := make([]*grpc.ClientConn, o.conns)
	for i := range conns {
		if conns[i], err = grpc.NewClient(ctl.addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return err
		}
		defer conns[i].Close()
	}

	type scenario struct {
		name    string
		service func(stream int) int // which Service stream i watches
		target  func(change int) int // which Service change k writes
	}
	scenarios := []scenario{
		{"spread (one stream per Service)", func(i int) int { return i % o.services }, func(k int) int { return k % min(o.streams, o.services) }},
		{"fan-out (every stream on one Service)", func(int) int { return 0 }, func(int) int { return 0 }},
	}
	ok := true
	fmt.Printf("\n%-40s %8s %10s %10s %10s %12s\n", "scenario", "streams", "p50", "p99", "max", "peak RSS")
	for si, sc := range scenarios {
		lat, err := measure(ctx, client, ns, conns, o, si, sc.service, sc.target)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		rss, hwm := ctl.memory()
		p50, p99, mx := pct(lat, 50), pct(lat, 99), lat[len(lat)-1]
		fmt.Printf("%-40s %8d %10s %10s %10s %9.1f MB   (RSS now %.1f MB)\n", sc.name, o.streams, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), mx.Round(10*time.Microsecond), hwm, rss)
		if p99 > o.p99Target || hwm > o.memTargetMB {
			ok = false
		}
	}
	heap := ctl.metric("go_memstats_heap_inuse_bytes")
	fmt.Printf("\ncontroller heap in use: %.1f MB; targets: p99 <= %s, peak RSS <= %.0f MB\n", heap/1e6, o.p99Target, o.memTargetMB)
	if !ok {
		return errors.New("a target was missed")
	}
	fmt.Println("all targets met")
	return nil
}

func svcName(i int) string { return fmt.Sprintf("svc-%04d", i) }

func ip(a, b, c int) string { return fmt.Sprintf("10.%d.%d.%d", a, b, c) }

func slice(ns string, s int, ips []string) *discoveryv1.EndpointSlice {
	name, port := "http", int32(8080)
	ready := true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svcName(s), Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svcName(s)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	for _, a := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return es
}

func initialIPs(s, n int) []string {
	out := make([]string, n)
	for e := range out {
		out[e] = ip(100+s/250, s%250, e+1)
	}
	return out
}

// populate creates the headless, selector-less Services and their slices.
func populate(ctx context.Context, c kubernetes.Interface, ns string, o options) error {
	work := make(chan int)
	errc := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: svcName(s), Namespace: ns},
					Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
				}
				if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errc <- fmt.Errorf("create service: %w", err)
					return
				}
				if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice(ns, s, initialIPs(s, o.endpoints)), metav1.CreateOptions{}); err != nil {
					errc <- fmt.Errorf("create endpointslice: %w", err)
					return
				}
			}
		}()
	}
	for s := 0; s < o.services; s++ {
		select {
		case work <- s:
		case err := <-errc:
			close(work)
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// waiter counts the streams that have yet to see one new address.
type waiter struct {
	remaining atomic.Int32
	done      chan struct{}
	at        time.Time
}

// measure opens the streams, then writes o.changes slices one at a time and
// returns the sorted latencies until every watching stream saw each write.
func measure(ctx context.Context, c kubernetes.Interface, ns string, conns []*grpc.ClientConn, o options, scenario int, service func(int) int, target func(int) int) ([]time.Duration, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var waiters sync.Map // ip -> *waiter
	watchers := map[int]int{}
	var snapshots sync.WaitGroup
	for i := 0; i < o.streams; i++ {
		svc := service(i)
		watchers[svc]++
		stream, err := pb.NewDestinationClient(conns[i%len(conns)]).Get(sctx, &pb.GetDestination{Path: fmt.Sprintf("%s.%s.svc.cluster.local:80", svcName(svc), ns)})
		if err != nil {
			return nil, err
		}
		snapshots.Add(1)
		go func() {
			first := true
			for {
				u, err := stream.Recv()
				if err != nil {
					if first {
						snapshots.Done()
					}
					return
				}
				now := time.Now()
				if first {
					first = false
					snapshots.Done()
				}
				for _, a := range u.GetAdd().GetAddrs() {
					if v, ok := waiters.Load(a.GetAddr().GetIp()); ok {
						w := v.(*waiter)
						if w.remaining.Add(-1) == 0 {
							w.at = now
							close(w.done)
						}
					}
				}
			}
		}()
	}
	snapshots.Wait()

	current := map[int][]string{}
	var lat []time.Duration
	for k := 0; k < o.changes; k++ {
		s := target(k)
		ips, ok := current[s]
		if !ok {
			ips = initialIPs(s, o.endpoints)
		}
		// Replace one endpoint by a never-used address.
		fresh := ip(150+scenario*20+k/250/250, (k/250)%250, k%250+1)
		ips = append(append([]string{}, ips[1:]...), fresh)
		current[s] = ips
		w := &waiter{done: make(chan struct{})}
		w.remaining.Store(int32(watchers[s]))
		waiters.Store(fresh, w)
		t0 := time.Now()
		if _, err := c.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice(ns, s, ips), metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("update endpointslice: %w", err)
		}
		select {
		case <-w.done:
			lat = append(lat, w.at.Sub(t0))
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("change %d: %d of %d streams did not see %s within 10s", k, w.remaining.Load(), watchers[s], fresh)
		}
		waiters.Delete(fresh)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[i]
}

type controller struct {
	cmd       *exec.Cmd
	addr      string
	adminAddr string
	readyIn   time.Duration
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startController(ctx context.Context, o options) (*controller, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, o.controller, "destination", "--kubeconfig", o.kubeconfig, "--addr", addr, "--admin-addr", admin, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.controller, err)
	}
	c := &controller{cmd: cmd, addr: addr, adminAddr: admin}
	for time.Since(start) < time.Minute {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				c.readyIn = time.Since(start)
				return c, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.stop()
	return nil, errors.New("the controller was not ready within a minute")
}

func (c *controller) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
	}
}

// memory returns the controller's current and peak RSS in MB.
func (c *controller) memory() (rss, hwm float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// metric reads one unlabelled gauge from the controller's /metrics.
func (c *controller) metric(name string) float64 {
	resp, err := http.Get("http://" + c.adminAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(l, name+" "), 64)
			return v
		}
	}
	return 0
}
