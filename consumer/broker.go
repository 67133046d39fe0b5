package consumer

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// BrokerOptions configure the embedded Kafka-protocol broker.
type BrokerOptions struct {
	// Listen is host:port; port 0 picks a free one.
	Listen string
	// DataDir keeps the log across restarts; "" keeps it in memory only.
	DataDir string
	// Topics are created at start (existing ones are kept).
	Topics []string
	// Partitions for created topics; 0 means 6.
	Partitions int32
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Broker is the embedded broker: franz-go's kfake, a Kafka-protocol server,
// so any Kafka client (kcat, a producer app, apicall produce) can talk to it.
// It is for local use and tests; production points kafka.brokers at Kafka.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
}

// memSegmentBytes is the log segment size of the in-memory broker. kfake
// keeps an in-memory segment in one byte slice that doubles as it grows,
// copying the whole segment on the broker's single request loop; with
// Kafka's 100 MiB default every partition's log went through copies of
// 16, 32 and 64 MiB, each stalling every fetch and produce for tens of ms
// (make bench: paced p99 event-to-call 23 to 27 ms against 9 to 13 ms with
// 8 MiB segments, for apicall and the baseline alike). The on-disk broker
// (DataDir) appends to files and keeps the default.
const memSegmentBytes = 8 << 20

// StartBroker starts the embedded broker; Close stops it.
func StartBroker(o BrokerOptions) (*Broker, error) {
	if o.Partitions == 0 {
		o.Partitions = 6
	}
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded broker listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker listen %q: bad port", o.Listen)
	}
	if port == 0 {
		// kfake takes ports, not addresses: pick a free one on host.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	opts := []kfake.Opt{
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.DefaultNumPartitions(int(o.Partitions)),
		kfake.AllowAutoTopicCreation(),
	}
	if len(o.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(o.Partitions, o.Topics...))
	}
	if o.DataDir == "" {
		opts = append(opts, kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.Itoa(memSegmentBytes)}))
	} else {
		if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded broker data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(o.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", o.Listen, err)
	}
	return &Broker{cluster: c, addr: c.ListenAddrs()[0]}, nil
}

// Addr is the address clients bootstrap from.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker (flushing its data dir).
func (b *Broker) Close() { b.cluster.Close() }
