// Package freeport finds loopback addresses with a free TCP port, for
// programs that must be told an address rather than handed a listener (a
// router or Prometheus process). A listener of your own on 127.0.0.1:0 is
// better where you can have one: the port found here can be taken by
// someone else before the program binds it.
package freeport

import "net"

// Addr returns a 127.0.0.1 address whose TCP port was free a moment ago.
func Addr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
