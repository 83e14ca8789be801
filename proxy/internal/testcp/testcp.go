package testcp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/conduit-mesh/conduit/pkg/pki"
	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	identityv1 "github.com/conduit-mesh/conduit/proto/identity/v1"
)

// Names of the control-plane identities.
const (
	IdentityName    = "conduit-identity.conduit.serviceaccount.identity.conduit.cluster.local"
	DestinationName = "conduit-destination.conduit.serviceaccount.identity.conduit.cluster.local"
	Token           = "test-token"
)

// CP is a running control plane.
type CP struct {
	Issuer       *pki.CA
	AnchorsPEM   []byte
	IdentityAddr string
	DestAddr     string
	TokenFile    string

	mu        sync.Mutex
	endpoints map[string][]*destinationv1.WeightedAddr
	profiles  map[string]*destinationv1.DestinationProfile
	servers   []*grpc.Server
}

// New starts a control plane; dir receives the token file.
func New(dir string) (*CP, error) {
	root, err := pki.NewRoot("root.test", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	issuer, err := root.NewIssuer("issuer.test", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cp := &CP{Issuer: issuer, AnchorsPEM: pki.CertPEM(root.Cert),
		endpoints: map[string][]*destinationv1.WeightedAddr{}, profiles: map[string]*destinationv1.DestinationProfile{}}
	cp.TokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(cp.TokenFile, []byte(Token), 0o600); err != nil {
		return nil, err
	}
	if cp.IdentityAddr, err = cp.serve(IdentityName, func(s *grpc.Server) { identityv1.RegisterIdentityServer(s, &identitySrv{cp: cp}) }); err != nil {
		return nil, err
	}
	if cp.DestAddr, err = cp.serve(DestinationName, func(s *grpc.Server) { destinationv1.RegisterDestinationServer(s, &destSrv{cp: cp}) }); err != nil {
		return nil, err
	}
	return cp, nil
}

// Stop stops both services.
func (cp *CP) Stop() {
	for _, s := range cp.servers {
		s.Stop()
	}
}

// SetEndpoints sets what Get(path) answers.
func (cp *CP) SetEndpoints(path string, eps ...*destinationv1.WeightedAddr) {
	cp.mu.Lock()
	cp.endpoints[path] = eps
	cp.mu.Unlock()
}

// SetProfile sets what GetProfile(path) answers.
func (cp *CP) SetProfile(path string, p *destinationv1.DestinationProfile) {
	cp.mu.Lock()
	cp.profiles[path] = p
	cp.mu.Unlock()
}

// Meshed returns a meshed endpoint at addr with identity id.
func Meshed(addr, id string, opaque bool) *destinationv1.WeightedAddr {
	hint := &destinationv1.ProtocolHint{Protocol: &destinationv1.ProtocolHint_H2_{H2: &destinationv1.ProtocolHint_H2{}}}
	if opaque {
		hint = &destinationv1.ProtocolHint{Protocol: &destinationv1.ProtocolHint_Opaque_{Opaque: &destinationv1.ProtocolHint_Opaque{}}}
	}
	a := Plain(addr)
	a.TlsIdentity = &destinationv1.TlsIdentity{DnsLikeIdentity: id}
	a.ProtocolHint = hint
	return a
}

// Plain returns an endpoint at addr without a proxy: no identity, no
// protocol hint.
func Plain(addr string) *destinationv1.WeightedAddr {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &destinationv1.WeightedAddr{
		Addr: &destinationv1.TcpAddress{Ip: host, Port: uint32(p)}, Weight: 1,
		MetricLabels: map[string]string{"pod": "web-0"},
	}
}

func (cp *CP) serve(name string, register func(*grpc.Server)) (string, error) {
	key, err := pki.NewKey()
	if err != nil {
		return "", err
	}
	leaf, err := cp.Issuer.SignLeaf(name, key.Public(), 24*time.Hour)
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.AnchorsPEM)
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, cp.Issuer.Cert.Raw}, PrivateKey: key, Leaf: leaf}},
		ClientAuth:   tls.VerifyClientCertIfGiven, ClientCAs: pool,
	})))
	register(s)
	go func() { _ = s.Serve(l) }()
	cp.servers = append(cp.servers, s)
	return l.Addr().String(), nil
}

type identitySrv struct {
	identityv1.UnimplementedIdentityServer
	cp *CP
}

func (s *identitySrv) Certify(_ context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	if string(req.GetToken()) != Token {
		return nil, status.Error(codes.Unauthenticated, "bad token")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil || csr.CheckSignature() != nil || len(csr.DNSNames) != 1 || csr.DNSNames[0] != req.GetIdentity() {
		return nil, status.Error(codes.InvalidArgument, fmt.Sprintf("bad CSR: %v", err))
	}
	leaf, err := s.cp.Issuer.SignLeaf(req.GetIdentity(), csr.PublicKey, 24*time.Hour)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &identityv1.CertifyResponse{LeafCertificate: leaf.Raw,
		IntermediateCertificates: [][]byte{s.cp.Issuer.Cert.Raw}, ValidUntil: timestamppb.New(leaf.NotAfter)}, nil
}

type destSrv struct {
	destinationv1.UnimplementedDestinationServer
	cp *CP
}

func (s *destSrv) Get(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.Update]) error {
	s.cp.mu.Lock()
	eps, ok := s.cp.endpoints[req.GetPath()]
	s.cp.mu.Unlock()
	u := &destinationv1.Update{Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{}}}
	if ok {
		u = &destinationv1.Update{Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{
			Addrs: eps, MetricLabels: map[string]string{"namespace": "test"}}}}
	}
	if err := stream.Send(u); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (s *destSrv) GetProfile(req *destinationv1.GetDestination, stream grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	s.cp.mu.Lock()
	p, ok := s.cp.profiles[req.GetPath()]
	s.cp.mu.Unlock()
	if !ok {
		p = &destinationv1.DestinationProfile{}
	}
	if err := stream.Send(p); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}
