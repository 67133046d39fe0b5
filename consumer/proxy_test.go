package consumer

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// proxy is a TCP proxy between apicall and the broker, so a test can cut
// the network: Cut closes every connection and refuses new ones (accepted
// and closed at once, as a firewall reset would), Restore lets them through
// again.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, ln net.Listener, target string) *proxy {
	t.Helper()
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept) // exits when Close closes the listener
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c) })
	}
}

// pipe forwards one client connection; it exits when either side closes.
func (p *proxy) pipe(c net.Conn) {
	defer p.forget(c)
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		u.Close()
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	defer p.forget(u)
	done := make(chan struct{}, 2) // one per copy direction; never blocks
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

func (p *proxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Cut closes every proxied connection and refuses new ones until Restore.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and waits for its goroutines.
func (p *proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// advertised is a listener that reports another address than the one it
// listens on. kfake advertises its listener's Addr in metadata responses,
// so a client that bootstraps through a proxy would otherwise learn the
// broker's real address and bypass the proxy from then on.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

// relBroker is a kfake broker for the reliability scenarios.
type relBroker struct {
	*Broker
	// direct is the broker's real address; clients given opts dial it
	// even when metadata names the proxy, so the test's own producer and
	// checker are never cut off.
	direct string
	opts   []kgo.Opt
	proxy  *proxy // nil unless proxied
}

type relBrokerOptions struct {
	partitions int32
	// proxied puts a proxy in front: metadata advertises the proxy's
	// address, so every apicall connection goes through it.
	proxied bool
	// maxMessageBytes is the broker's message.max.bytes; 0 keeps kfake's
	// default (about 1 MiB).
	maxMessageBytes int
}

func startRelBroker(t testing.TB, o relBrokerOptions) *relBroker {
	t.Helper()
	topics := []string{testTopic, "apicall.outcomes", "apicall.retry", "apicall.dead-letter"}
	var (
		pln    net.Listener
		direct string
	)
	if o.proxied {
		pln = listenLoopback(t)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(int(o.partitions)),
		kfake.SeedTopics(o.partitions, topics...),
		kfake.AllowAutoTopicCreation(),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			direct = ln.Addr().String()
			if pln != nil {
				return advertised{Listener: ln, addr: pln.Addr()}, nil
			}
			return ln, nil
		}),
	}
	if o.maxMessageBytes > 0 {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(o.maxMessageBytes)}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	rb := &relBroker{Broker: &Broker{cluster: c, addr: c.ListenAddrs()[0]}, direct: direct}
	if pln != nil {
		rb.proxy = newProxy(t, pln, direct)
		advertisedAddr := pln.Addr().String()
		d := &net.Dialer{Timeout: 5 * time.Second}
		rb.opts = append(rb.opts, kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			if host == advertisedAddr {
				host = direct
			}
			return d.DialContext(ctx, network, host)
		}))
	}
	return rb
}
