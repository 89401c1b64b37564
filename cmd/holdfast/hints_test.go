package main

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
)

// TestAddressInUseHint: a listener that cannot bind because another
// process holds its address is reported with how to choose another.
// Control: another error of the same command has no such hint.
func TestAddressInUseHint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = net.Listen("tcp", ln.Addr().String())
	if err == nil {
		t.Fatal("a second listener on the same address")
	}
	var out bytes.Buffer
	if code := report(&out, err); code != exitError || !strings.Contains(out.String(), "hint: another process listens on that address; choose another with --addr") {
		t.Errorf("address in use: exit %d, %q", code, out.String())
	}
	out.Reset()
	report(&out, errors.New("listen tcp: some other failure"))
	if strings.Contains(out.String(), "--addr") {
		t.Errorf("control: %q", out.String())
	}
}
