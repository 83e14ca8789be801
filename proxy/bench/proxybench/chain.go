package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// Two-hop peers: the same shape as the mesh (a client-side proxy and a
// server-side proxy with mutual TLS between them), built from nginx or
// haproxy, so the table shows what two hops with mTLS cost any proxy on
// this machine.
const (
	nginx2HTTP   = "127.0.0.1:28180" // client side, plaintext in
	nginx2GRPC   = "127.0.0.1:28179"
	nginx2HTTPS  = "127.0.0.1:28280" // server side, mTLS in
	nginx2GRPCS  = "127.0.0.1:28279"
	ha2HTTP      = "127.0.0.1:29180"
	ha2GRPC      = "127.0.0.1:29179"
	ha2HTTPS     = "127.0.0.1:29280"
	ha2GRPCS     = "127.0.0.1:29279"
	chainSrvName = "server.bench"
)

// chainPKI is a CA and the two hops' certificates, as PEM files in dir.
type chainPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	serverPEM, clientPEM                             string // certificate and key in one file (haproxy)
}

func newChainPKI(dir string) (*chainPKI, error) {
	d := filepath.Join(dir, "pki")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	ca, err := pki.NewRoot("bench CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	p := &chainPKI{ca: filepath.Join(d, "ca.pem")}
	if err := os.WriteFile(p.ca, pki.CertPEM(ca.Cert), 0o600); err != nil {
		return nil, err
	}
	// leaf writes a certificate for name, its key, and both in one file.
	leaf := func(name string) (certFile, keyFile, both string, err error) {
		key, err := pki.NewKey()
		if err != nil {
			return "", "", "", err
		}
		cert, err := ca.SignLeaf(name, key.Public(), 24*time.Hour)
		if err != nil {
			return "", "", "", err
		}
		kp, err := pki.KeyPEM(key)
		if err != nil {
			return "", "", "", err
		}
		cp := pki.CertPEM(cert)
		certFile, keyFile, both = filepath.Join(d, name+".crt"), filepath.Join(d, name+".key"), filepath.Join(d, name+".pem")
		for f, b := range map[string][]byte{certFile: cp, keyFile: kp, both: append(cp, kp...)} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				return "", "", "", err
			}
		}
		return certFile, keyFile, both, nil
	}
	if p.serverCert, p.serverKey, p.serverPEM, err = leaf(chainSrvName); err != nil {
		return nil, err
	}
	if p.clientCert, p.clientKey, p.clientPEM, err = leaf("client.bench"); err != nil {
		return nil, err
	}
	return p, nil
}

// nginxConf writes an nginx configuration (one worker, no logs) whose http
// block holds body, and returns its path.
func nginxConf(d, body string) (string, error) {
	return nginxConfig(d, "", fmt.Sprintf(`http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
%[2]s
}`, d, body))
}

// nginxConfig writes an nginx configuration (one worker, its pid file and
// error log in d) with top before its main directives and blocks after
// them, and returns its path.
func nginxConfig(d, top, blocks string) (string, error) {
	if err := os.MkdirAll(filepath.Join(d, "logs"), 0o755); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`%[2]sdaemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
%[3]s
`, d, top, blocks)
	path := filepath.Join(d, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// startNginxConf starts nginx with nginxConf(d, body).
func startNginxConf(name, d, body string) (*proc, error) {
	path, err := nginxConf(d, body)
	if err != nil {
		return nil, err
	}
	return startNginxAt(name, d, path)
}

// startNginxAt starts nginx with the configuration at path, d its prefix.
func startNginxAt(name, d, path string) (*proc, error) {
	return start(name, nil, *nginxBin, "-p", d, "-c", path, "-e", filepath.Join(d, "logs", "error.log"))
}

// startNginx2 starts a client-side and a server-side nginx with mutual
// TLS 1.3 between them, for HTTP/1.1 (kept-alive upstream connections)
// and gRPC.
func startNginx2(dir string, pki *chainPKI) (client, server *proc, err error) {
	server, err = startNginxConf("nginx-server", filepath.Join(dir, "nginx2-server"), fmt.Sprintf(`
  ssl_protocols TLSv1.3;
  ssl_certificate %[1]s;
  ssl_certificate_key %[2]s;
  ssl_client_certificate %[3]s;
  ssl_verify_client on;
  upstream be { server %[4]s; keepalive 128; }
  upstream grpcbe { server %[5]s; keepalive 128; }
  server {
    listen %[6]s ssl;
    keepalive_requests 100000;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
  server {
    listen %[7]s ssl http2;
    keepalive_requests 100000;
    location / { grpc_pass grpc://grpcbe; }
  }`, pki.serverCert, pki.serverKey, pki.ca, backendHTTP, backendGRPC, nginx2HTTPS, nginx2GRPCS))
	if err != nil {
		return nil, nil, err
	}
	client, err = startNginxConf("nginx-client", filepath.Join(dir, "nginx2-client"), fmt.Sprintf(`
  upstream be { server %[5]s; keepalive 128; keepalive_requests 100000; }
  upstream grpcbe { server %[6]s; keepalive 128; keepalive_requests 100000; }
  server {
    listen %[7]s;
    location / {
      proxy_pass https://be; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off;
      proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on;
      proxy_ssl_certificate %[1]s; proxy_ssl_certificate_key %[2]s;
      proxy_ssl_trusted_certificate %[3]s; proxy_ssl_verify on; proxy_ssl_name %[4]s;
    }
  }
  server {
    listen %[8]s http2;
    location / {
      grpc_pass grpcs://grpcbe;
      grpc_ssl_protocols TLSv1.3; grpc_ssl_session_reuse on;
      grpc_ssl_certificate %[1]s; grpc_ssl_certificate_key %[2]s;
      grpc_ssl_trusted_certificate %[3]s; grpc_ssl_verify on; grpc_ssl_name %[4]s;
    }
  }`, pki.clientCert, pki.clientKey, pki.ca, chainSrvName, nginx2HTTPS, nginx2GRPCS, nginx2HTTP, nginx2GRPC))
	if err != nil {
		server.stop()
		return nil, nil, err
	}
	return client, server, nil
}

// startHAProxy2 is startNginx2 with haproxy: mutual TLS 1.3 between the
// hops, HTTP/1.1 with connection reuse and gRPC over HTTP/2.
func startHAProxy2(dir string, pki *chainPKI) (client, server *proc, err error) {
	server, err = startHAProxyConf("haproxy-server", dir, fmt.Sprintf(`frontend fh
  bind %[3]s ssl crt %[1]s ca-file %[2]s verify required
  default_backend bh
backend bh
  http-reuse always
  server s1 %[4]s
frontend fg
  bind %[5]s ssl crt %[1]s ca-file %[2]s verify required alpn h2
  default_backend bg
backend bg
  server s1 %[6]s proto h2
`, pki.serverPEM, pki.ca, ha2HTTPS, backendHTTP, ha2GRPCS, backendGRPC))
	if err != nil {
		return nil, nil, err
	}
	client, err = startHAProxyConf("haproxy-client", dir, fmt.Sprintf(`frontend fh
  bind %[4]s
  default_backend bh
backend bh
  http-reuse always
  server s1 %[5]s ssl crt %[1]s ca-file %[2]s verify required sni str(%[3]s) verifyhost %[3]s
frontend fg
  bind %[6]s proto h2
  default_backend bg
backend bg
  server s1 %[7]s ssl crt %[1]s ca-file %[2]s verify required sni str(%[3]s) verifyhost %[3]s alpn h2
`, pki.clientPEM, pki.ca, chainSrvName, ha2HTTP, ha2HTTPS, ha2GRPC, ha2GRPCS))
	if err != nil {
		server.stop()
		return nil, nil, err
	}
	return client, server, nil
}
