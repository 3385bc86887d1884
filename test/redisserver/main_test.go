package redisserver

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that servers' wait goroutines and clients' background
// goroutines all end once the tests' cleanups have run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
