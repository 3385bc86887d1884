// Package tcpproxy forwards TCP connections to one address so that a test
// can break one client's link alone.
package tcpproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from one client (an executor, a
// dispatcher) to a server, so a test can break that client's link alone: cut every connection at
// once, add latency to every chunk, or hold all traffic (a partition: like
// dropped packets, nothing is lost, TCP delivers it once the link heals,
// unless a side has given up on the connection meanwhile).
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	delay time.Duration
	held  chan struct{} // non-nil while partitioned; closed on heal
	// holdAt, when set, partitions the link at the first chunk it
	// matches, before that chunk is forwarded.
	holdAt  func([]byte) bool
	waiting int // chunks read and held at the gate
	closed  bool
	wg      sync.WaitGroup
}

// New listens on a free port of 127.0.0.1 and forwards to target.
func New(target string) (*Proxy, error) { return NewAt("127.0.0.1", target) }

// NewAt is New listening on a free port of ip (a bridge's address, for
// clients in other network namespaces).
func NewAt(ip, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) handle(c net.Conn) {
	defer p.wg.Done()
	if !p.track(c) {
		return
	}
	// A partitioned link does not even complete the upstream dial.
	p.gate()
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.drop(c)
		return
	}
	if !p.track(u) {
		p.drop(c)
		return
	}
	p.wg.Add(2)
	go p.pipe(u, c)
	go p.pipe(c, u)
}

// pipe copies src to dst, obeying the current delay and partition; the
// first error on either side closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gateChunk(buf[:n])
			if d := p.latency(); d > 0 {
				time.Sleep(d) // the injected latency itself
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			p.drop(dst)
			p.drop(src)
			return
		}
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) gate() { p.gateChunk(nil) }

// gateChunk waits while the link is partitioned, or partitions it first
// if chunk is the one HoldAt waits for.
func (p *Proxy) gateChunk(chunk []byte) {
	p.mu.Lock()
	if chunk != nil && p.holdAt != nil && p.held == nil && p.holdAt(chunk) {
		p.holdAt = nil
		p.held = make(chan struct{})
	}
	h := p.held
	if h != nil {
		p.waiting++
	}
	p.mu.Unlock()
	if h != nil {
		<-h
		p.mu.Lock()
		p.waiting--
		p.mu.Unlock()
	}
}

// HoldAt lets traffic through until a chunk (in either direction)
// matches, and from that chunk on holds everything until Heal: a request
// a test picks is delayed in the network, from just before it arrives.
func (p *Proxy) HoldAt(match func(chunk []byte) bool) {
	p.mu.Lock()
	p.holdAt = match
	p.mu.Unlock()
}

// Holding reports whether some traffic waits for Heal.
func (p *Proxy) Holding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting > 0
}

func (p *Proxy) latency() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// Cut closes every open connection; new ones are accepted as usual.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// SetDelay adds d before every forwarded chunk, in both directions.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Partition holds all traffic until Heal.
func (p *Proxy) Partition() {
	p.mu.Lock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
	p.mu.Unlock()
}

// Heal ends a partition (and a HoldAt not yet matched) and any delay.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.holdAt = nil
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
	p.delay = 0
	p.mu.Unlock()
}

// Close stops accepting, heals, cuts everything and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Heal()
	p.Cut()
	p.wg.Wait()
}
