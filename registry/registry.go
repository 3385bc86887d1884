// Package registry is where the executors of a fleet register: who they
// are, what they serve and how busy they are, on a lease that makes their
// liveness a matter of seconds. The etcd implementation is in
// registry/etcdreg.
package registry

import (
	"context"
	"errors"
)

// ErrIdentityTaken: another live process is registered under this
// executor id.
var ErrIdentityTaken = errors.New("registry: executor id taken")

// Member is one registered executor.
type Member struct {
	ID     string            `json:"id"`
	Host   string            `json:"host"`
	Labels map[string]string `json:"labels,omitempty"`
	// Tubes it serves, in priority order ("" is the untubed list).
	Tubes   []string `json:"tubes"`
	Slots   int      `json:"slots"`
	Running int      `json:"running"`
	Version string   `json:"version"`
	// Holder tells this process from another with the same id
	// ("host H pid N").
	Holder string `json:"holder"`
	// Dispatched: it takes only what a dispatcher assigns it (its own
	// list), so only a dispatcher's placement brings it work.
	Dispatched bool `json:"dispatched,omitempty"`
	// Incarnation numbers the registrations of one executor: a new one,
	// larger, each time it registers again after losing its lease. It is
	// set by the registry, not by the executor.
	Incarnation int64 `json:"-"`
}

// Hooks are how a registration tells its executor what happened. Each is
// called from one goroutine, in the order Lost, Fence, Registered for every
// loss; none may block for long.
type Hooks struct {
	// Lost: the lease is gone (expired, or unrenewable past its TTL). Stop
	// taking work at once: the fleet may already count this executor dead.
	Lost func()
	// Fence: the grace after a loss has passed. Stop this executor's own
	// tasks and report them lost, so that it does not run beside a
	// replacement.
	Fence func()
	// Registered: registered again, under a new incarnation, after the
	// fence. Take work again.
	Registered func(incarnation int64)
}

// Cordon marks an executor that a dispatcher must give no new work;
// with Drain, the work already assigned to it and not yet taken goes
// back to the shared list too. It is kept until uncordoned, whether the
// executor is registered or not.
type Cordon struct {
	Drain bool   `json:"drain,omitempty"`
	By    string `json:"by,omitempty"` // who cordoned it: host, pid, user
	Since string `json:"since"`        // RFC 3339
}

// Registry lists the members of a fleet.
type Registry interface {
	// Members lists the registered executors, by id.
	Members(ctx context.Context) ([]Member, error)
	Close() error
}

// Registration is one executor's membership, kept alive until Close.
type Registration interface {
	// Incarnation is the current registration's number (0 while not
	// registered).
	Incarnation() int64
	// SetRunning publishes how many tasks run now (written soon, coalesced).
	SetRunning(n int)
	// Close deregisters at once (revoking the lease).
	Close(ctx context.Context) error
}
