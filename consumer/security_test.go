package consumer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// selfSigned writes a CA-less self-signed certificate for 127.0.0.1 and
// returns the TLS config for the server and the PEM path for clients.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kfake"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, p
}

// TestTLSAndSCRAM runs the pipeline against a broker that requires TLS and
// SASL/SCRAM-SHA-512, for the consumer (sarama) and the writers (kafka-go)
// alike: events are delivered and outcomes recorded.
func TestTLSAndSCRAM(t *testing.T) {
	serverTLS, caFile := selfSigned(t)
	topics := []string{testTopic, "apicall.outcomes", "apicall.retry", "apicall.dead-letter"}
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.TLS(serverTLS),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "apicall", "s3cret"),
		kfake.SeedTopics(1, topics...),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	addr := cluster.ListenAddrs()[0]

	rc := newReceiver(t, nil)
	cfg := loadConfig(t, fmt.Sprintf(`kafka:
  brokers: [%q]
  group: apicall-secure
  topics: [%s]
  commit_interval: 50ms
  tls: {enabled: true, ca_file: %q}
  sasl: {mechanism: SCRAM-SHA-512, username: apicall, password: s3cret}
admin: {listen: "-"}
dispatch: {allow_private_networks: true}
rules:
  - name: r
    path: 1
    event: "*"
    call: {url: "%s/x"}
`, addr, testTopic, caFile, rc.URL))
	startConsumer(t, cfg, nil)

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(pem)
	auth := kgo.SASL(scram.Auth{User: "apicall", Pass: "s3cret"}.AsSha512Mechanism())
	tlsOpt := kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	produceWith(t, addr, []kgo.Opt{auth, tlsOpt}, event(0, "k", `{"id":1}`))
	waitFor(t, "the call over a TLS+SCRAM broker", 60*time.Second, func() bool { return rc.count() == 1 })

	cl := kclient(t, addr, auth, tlsOpt, kgo.ConsumeTopics("apicall.outcomes"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := contextWithTimeout(30 * time.Second)
	defer cancel()
	got := 0
	for got == 0 && ctx.Err() == nil {
		got += cl.PollFetches(ctx).NumRecords()
	}
	if got != 1 {
		t.Errorf("%d outcome records over TLS+SCRAM, want 1", got)
	}
}
