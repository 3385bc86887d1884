package api

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ErrNeedTokens is returned for a listen address beyond loopback without a
// tokens file.
var ErrNeedTokens = errors.New("api: listening beyond loopback needs a tokens file")

// ListenAddr turns server_port into the address to listen on. A bare port
// ("8080") always means loopback. Any other host — ":8080" (every
// interface), an address or a name — is accepted only with tokens: an API
// that can start and kill tasks must not be reachable unauthenticated (the
// mistake asynqmon shipped with).
func ListenAddr(serverPort string, haveTokens bool) (string, error) {
	if !strings.Contains(serverPort, ":") {
		return net.JoinHostPort("127.0.0.1", serverPort), nil
	}
	host, port, err := net.SplitHostPort(serverPort)
	if err != nil {
		return "", fmt.Errorf("api: server_port %q: %w", serverPort, err)
	}
	if haveTokens || isLoopback(host) {
		return net.JoinHostPort(host, port), nil
	}
	return "", fmt.Errorf("%w: server_port %q listens beyond loopback; set server_tokens_file (and server_tls_cert/server_tls_key), "+
		"or use a bare port (%q) to listen on 127.0.0.1 only", ErrNeedTokens, serverPort, port)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
