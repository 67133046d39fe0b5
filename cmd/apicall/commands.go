package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/consumer"
	"github.com/apicall/apicall/dispatcher"
	"github.com/apicall/apicall/schemas"
)

// cmdCheck validates a config: exit 0, or 1 with one file:line: message per problem.
func cmdCheck(_ context.Context, args []string, env *cliEnv) error {
	fs := newFlags("check", env)
	path := fs.String("config", "", "config file (YAML)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, err := config.Load(*path, env.lookupEnv)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	fmt.Fprintf(env.stdout, "%s: ok (%d rules)\n", *path, len(cfg.Rules))
	return nil
}

// cmdRender prints what the rules would send for one event; sends nothing.
func cmdRender(_ context.Context, args []string, env *cliEnv) error {
	fs := newFlags("render", env)
	path := fs.String("config", "", "config file (YAML)")
	eventPath := fs.String("event", "", "event file (JSON: {\"event\", \"timestamp\", \"user\", \"data\"})")
	topic := fs.String("topic", "", "source topic to pretend the event came from (default: the first configured topic)")
	showSecrets := fs.Bool("show-secrets", false, "print secret values (from ${ENV}) instead of ****")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" || *eventPath == "" {
		return fmt.Errorf("%w: --config and --event are required", errUsage)
	}
	cfg, err := config.Load(*path, env.lookupEnv)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	b, err := os.ReadFile(*eventPath)
	if err != nil {
		return fmt.Errorf("read event: %w", err)
	}
	t := *topic
	if t == "" && len(cfg.Kafka.Topics) > 0 {
		t = cfg.Kafka.Topics[0].Name
	}
	ev, err := schemas.DecodeJSON(t, b)
	if err != nil {
		return fmt.Errorf("event %s: %w", *eventPath, err)
	}
	ev.Topic = t
	return config.Preview(env.stdout, cfg, &ev, time.Now(), *showSecrets)
}

// cmdBroker runs the embedded broker alone.
func cmdBroker(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlags("broker", env)
	addr := fs.String("listen", "127.0.0.1:9092", "address to listen on")
	dir := fs.String("data-dir", "", "directory to keep the log in (default: memory only)")
	topics := fs.String("topics", "", "comma-separated topics to create")
	partitions := fs.Int("partitions", 6, "partitions of created topics")
	logFormat := fs.String("log-format", "text", "log format: json or text")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(env.stderr, *logFormat, "info")
	if err != nil {
		return err
	}
	var ts []string
	for _, t := range strings.Split(*topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			ts = append(ts, t)
		}
	}
	b, err := consumer.StartBroker(consumer.BrokerOptions{Listen: *addr, DataDir: *dir, Topics: ts, Partitions: int32(*partitions), Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	log.Info("embedded Kafka broker listening", "addr", b.Addr(), "data_dir", *dir, "topics", ts)
	fmt.Fprintln(env.stdout, b.Addr())
	<-ctx.Done()
	return nil
}

// cmdReceive prints every call it receives.
func cmdReceive(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlags("receive", env)
	addr := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	status := fs.Int("status", http.StatusOK, "status code to answer with")
	if err := parse(fs, args); err != nil {
		return err
	}
	ln, err := listen(*addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	fmt.Fprintf(env.stderr, "apicall receive: listening on http://%s, printing every call\n", ln.Addr())
	srv := &http.Server{Handler: dispatcher.NewReceiver(env.stdout, *status), ReadHeaderTimeout: 5 * time.Second}
	go func() { // exits when Shutdown below closes the listener
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// cmdProduce publishes JSON lines from stdin.
func cmdProduce(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlags("produce", env)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	topic := fs.String("topic", "", "topic to publish to")
	format := fs.String("format", "json", "json or avro (Confluent wire format when --registry is set, single-object encoding otherwise)")
	key := fs.String("key", "", "field path whose value becomes the record key, e.g. user.id")
	registry := fs.String("registry", "", "schema registry URL for --format avro")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the brokers to come up")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *topic == "" {
		return fmt.Errorf("%w: --topic is required", errUsage)
	}
	if *format != "json" && *format != "avro" {
		return fmt.Errorf("%w: --format %q: want json or avro", errUsage, *format)
	}
	n, err := consumer.Produce(ctx, consumer.ProduceOptions{
		Brokers:     strings.Split(*brokers, ","),
		Topic:       *topic,
		Format:      *format,
		KeyField:    *key,
		RegistryURL: *registry,
		Wait:        *wait,
		In:          env.stdin,
	})
	fmt.Fprintf(env.stderr, "apicall produce: %d events published to %s\n", n, *topic)
	return err
}

// cmdLag prints the group's lag per partition.
func cmdLag(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlags("lag", env)
	path := fs.String("config", "", "config file (YAML)")
	brokers := fs.String("brokers", "", "override kafka.brokers (default: the config's, or the embedded broker's address)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, err := config.Load(*path, env.lookupEnv)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	switch {
	case *brokers != "":
		cfg.Kafka.Brokers = strings.Split(*brokers, ",")
	case len(cfg.Kafka.Brokers) == 0:
		cfg.Kafka.Brokers = []string{cfg.Kafka.EmbeddedListen}
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lags, err := consumer.Lag(lctx, cfg, nil)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(lags)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "GROUP\tTOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tLAG-SECONDS\tOWNER\n")
	for _, l := range lags {
		committed := fmt.Sprint(l.Committed)
		if l.Committed < 0 {
			committed = "-"
		}
		owner := l.Owner
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%.1f\t%s\n", cfg.Kafka.Group, l.Topic, l.Partition, committed, l.End, l.Lag, l.LagSeconds, owner)
	}
	return tw.Flush()
}
