package main

import (
	"net"
	"sync"
)

// pausableProxy forwards TCP connections to a target (Postgres) and can
// hold every byte in both directions for a while: each connection stays
// open, but nothing crosses it — a stalled network or database as the
// processes behind it see it.
type pausableProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	paused chan struct{} // nil while bytes flow; closed by resume
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// startProxy listens on a free port of 127.0.0.1 and forwards to target.
func startProxy(target string) (*pausableProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pausableProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	return p, nil
}

// addr is where clients connect.
func (p *pausableProxy) addr() string { return p.ln.Addr().String() }

func (p *pausableProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		p.wg.Go(func() { p.pipe(server, client) })
		p.wg.Go(func() { p.pipe(client, server) })
	}
}

// track remembers a connection pair, so close can end it; false once closed.
func (p *pausableProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies from src to dst, holding each chunk while paused.
func (p *pausableProxy) pipe(dst, src net.Conn) {
	defer p.forget(dst, src)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			p.gate() // a close is held too: a stalled network delivers nothing
			return
		}
	}
}

// forget closes a connection pair and stops tracking it.
func (p *pausableProxy) forget(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c) // a no-op once closed (nil map)
	}
}

// gate returns at once while bytes flow, and when resumed while paused.
func (p *pausableProxy) gate() {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// pause holds every byte from now on, until resume.
func (p *pausableProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused == nil {
		p.paused = make(chan struct{})
	}
}

// resume lets the held bytes go.
func (p *pausableProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
}

// close stops listening and ends every connection.
func (p *pausableProxy) close() {
	p.ln.Close()
	p.resume()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
