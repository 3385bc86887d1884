//go:build !linux

package main

import (
	"fmt"
	"os"
)

func run() {
	fmt.Fprintln(os.Stderr, "probe: the sandbox exists on Linux only")
	os.Exit(2)
}
