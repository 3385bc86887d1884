package history

import (
	"net"
	"sync"
	"time"
)

// proxy forwards TCP connections from one executor to Redis, so the
// harness can break that executor's link alone: cut every connection at
// once, add latency to every chunk, or hold all traffic (a partition: like
// dropped packets, nothing is lost, TCP delivers it once the link heals,
// unless a side has given up on the connection meanwhile).
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	delay  time.Duration
	held   chan struct{} // non-nil while partitioned; closed on heal
	closed bool
	wg     sync.WaitGroup
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
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

func (p *proxy) handle(c net.Conn) {
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
func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate()
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

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) gate() {
	p.mu.Lock()
	h := p.held
	p.mu.Unlock()
	if h != nil {
		<-h
	}
}

func (p *proxy) latency() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// Cut closes every open connection; new ones are accepted as usual.
func (p *proxy) Cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// SetDelay adds d before every forwarded chunk, in both directions.
func (p *proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Partition holds all traffic until Heal.
func (p *proxy) Partition() {
	p.mu.Lock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
	p.mu.Unlock()
}

// Heal ends a partition and any delay.
func (p *proxy) Heal() {
	p.mu.Lock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
	p.delay = 0
	p.mu.Unlock()
}

// Close stops accepting, heals, cuts everything and waits for its
// goroutines.
func (p *proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Heal()
	p.Cut()
	p.wg.Wait()
}
