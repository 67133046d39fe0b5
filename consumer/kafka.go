package consumer

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/IBM/sarama"
	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	kscram "github.com/segmentio/kafka-go/sasl/scram"
	"github.com/xdg-go/scram"

	"github.com/apicall/apicall/config"
)

// saramaConfig builds the sarama configuration shared by the group consumer
// and the admin calls: manual commits only, short fetch waits (the kfake
// broker holds a commit behind an idle long-poll fetch) and TLS/SASL from the
// config.
func saramaConfig(k config.Kafka, clientID string) (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0 // sarama's fully covered version; Kafka 2.8+ and kfake accept it
	sc.ClientID = clientID
	sc.Consumer.Return.Errors = true
	// Offsets are committed by apicall only after outcomes are recorded.
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	if k.InitialOffset == "newest" {
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	// 1 MiB per partition per fetch keeps a partition busy at tens of
	// thousands of events/s; 4 MiB cost ~100 MB more RSS on a 6-partition
	// backlog for no throughput (make bench).
	sc.Consumer.Fetch.Default = 1 << 20
	// ChannelBufferSize bounds the records sarama reads ahead per partition;
	// 256 keeps a partition busy between fetches without much memory.
	sc.ChannelBufferSize = 256
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	sc.Metadata.RefreshFrequency = time.Minute
	sc.Net.DialTimeout = 10 * time.Second
	sc.Metadata.Retry.Max = 5
	sc.Metadata.Retry.Backoff = 500 * time.Millisecond

	tlsCfg, err := tlsConfig(k.TLS)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tlsCfg
	}
	switch k.SASL.Mechanism {
	case "":
	case "PLAIN":
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		sc.Net.SASL.User, sc.Net.SASL.Password = k.SASL.Username, k.SASL.Password
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		sc.Net.SASL.Enable = true
		sc.Net.SASL.User, sc.Net.SASL.Password = k.SASL.Username, k.SASL.Password
		if k.SASL.Mechanism == "SCRAM-SHA-256" {
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{gen: scram.SHA256} }
		} else {
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{gen: scram.SHA512} }
		}
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASL.Mechanism)
	}
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka client config: %w", err)
	}
	return sc, nil
}

// kafkaTransport builds the kafka-go transport for the outcome, retry and
// dead-letter writers, with the same TLS and SASL as the consumer.
func kafkaTransport(k config.Kafka, clientID string) (*kafka.Transport, error) {
	tlsCfg, err := tlsConfig(k.TLS)
	if err != nil {
		return nil, err
	}
	var mech sasl.Mechanism
	switch k.SASL.Mechanism {
	case "":
	case "PLAIN":
		mech = plain.Mechanism{Username: k.SASL.Username, Password: k.SASL.Password}
	case "SCRAM-SHA-256":
		mech, err = kscram.Mechanism(kscram.SHA256, k.SASL.Username, k.SASL.Password)
	case "SCRAM-SHA-512":
		mech, err = kscram.Mechanism(kscram.SHA512, k.SASL.Username, k.SASL.Password)
	default:
		err = fmt.Errorf("kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASL.Mechanism)
	}
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DialTimeout: 10 * time.Second,
		IdleTimeout: 30 * time.Second,
		MetadataTTL: 10 * time.Second,
		ClientID:    clientID,
		TLS:         tlsCfg,
		SASL:        mech,
	}, nil
}

// tlsConfig returns nil when TLS is off.
func tlsConfig(t config.TLS) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, documented as tests only
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no certificates found", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// scramClient adapts xdg-go/scram to sarama's SCRAMClient.
type scramClient struct {
	gen scram.HashGeneratorFcn
	*scram.ClientConversation
}

func (s *scramClient) Begin(user, pass, authzID string) error {
	c, err := s.gen.NewClient(user, pass, authzID)
	if err != nil {
		return err
	}
	s.ClientConversation = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) {
	return s.ClientConversation.Step(challenge)
}
func (s *scramClient) Done() bool { return s.ClientConversation.Done() }
