//go:build linux && !amd64

package main

func archProbes() []syscallProbe { return nil }
