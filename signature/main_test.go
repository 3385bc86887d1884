package signature

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the Redis clients' goroutines end with the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
