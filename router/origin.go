package router

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// originPolicy returns the check for the Origin header of a WebSocket
// handshake. Browsers send Origin and let any page open a WebSocket to any
// host, so a router reachable from a browser must refuse foreign pages.
// Non-browser clients are let in unchanged:
//
//   - no Origin header (most WAMP libraries) is accepted;
//   - an Origin whose host equals the request's host, whatever either port,
//     is accepted. Thruway's WebSocket library sends "http://127.0.0.1"
//     without the port to a router on 127.0.0.1:9090; nexus's own check
//     compares ports too, answers 403, and Thruway hangs;
//   - otherwise the Origin's host[:port] must match one of the patterns
//     (path.Match globs, case-insensitive), e.g. "*.example.com:*" or
//     "app.example.com:8443". "*" accepts every origin.
func originPolicy(patterns []string) (func(*http.Request) bool, error) {
	matches, err := globs("origin", patterns)
	if err != nil {
		return nil, err
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" {
			return true
		}
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" {
			return false
		}
		if strings.EqualFold(u.Hostname(), hostname(r.Host)) {
			return true
		}
		return matches(u.Host)
	}, nil
}

// globs compiles patterns (path.Match globs, case-insensitive, blank ones
// skipped) into a check that a host[:port] matches one of them; what names
// the kind of pattern in errors.
func globs(what string, patterns []string) (func(hostport string) bool, error) {
	lowered := make([]string, 0, len(patterns))
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("allowed %s pattern %q: %w", what, p, err)
		}
		lowered = append(lowered, p)
	}
	return func(hostport string) bool {
		hostport = strings.ToLower(hostport)
		for _, p := range lowered {
			if ok, _ := path.Match(p, hostport); ok {
				return true
			}
		}
		return false
	}, nil
}

// hostname strips the port from a Host header value.
func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// hostPolicy returns the check for the Host header of a request to a
// router listening on listenAddr. A page on evil.example whose name is
// rebound to 127.0.0.1 reaches a router on loopback with Host and Origin
// both evil.example, which the origin rule lets through; so on a loopback
// listener only loopback names are accepted in Host (localhost,
// 127.0.0.0/8, [::1], with any port), plus what the patterns (path.Match
// globs, case-insensitive, against host[:port]) allow. On other listeners,
// and when listenAddr is empty, every Host is accepted.
func hostPolicy(listenAddr string, patterns []string) (func(*http.Request) bool, error) {
	matches, err := globs("host", patterns)
	if err != nil {
		return nil, err
	}
	if listenAddr == "" || !isLoopback(hostname(listenAddr)) {
		return func(*http.Request) bool { return true }, nil
	}
	return func(r *http.Request) bool {
		if isLoopback(hostname(r.Host)) {
			return true
		}
		return matches(r.Host)
	}, nil
}

// isLoopback tells whether a host name (no port) is a loopback address or
// localhost.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OriginPolicy is the front's Origin check for these -allow-origin
// patterns (see originPolicy), for servers that must check Origins as the
// router does: cmd/stocknexus puts it in front of stock nexus.
func OriginPolicy(patterns []string) (func(*http.Request) bool, error) {
	return originPolicy(patterns)
}
