package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/consumer"
	"github.com/apicall/apicall/dispatcher"
	"github.com/apicall/apicall/schemas"
)

func cmdRun(ctx context.Context, args []string, env *cliEnv) error {
	fs := newFlags("run", env)
	path := fs.String("config", "", "config file (YAML)")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	log, err := newLogger(env.stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*path, env.lookupEnv)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	return serve(ctx, cfg, *path, env, log)
}

// serve runs apicall: the embedded broker when no brokers are configured,
// the admin endpoint, the consumer, and config reload (SIGHUP or a changed
// file).
func serve(ctx context.Context, cfg *config.Config, path string, env *cliEnv, log *slog.Logger) error {
	// Registered first, before any goroutine or the embedded broker starts:
	// a SIGHUP that arrived before Notify would take the default action
	// and end the process.
	hup := make(chan os.Signal, 1) // signal.Notify needs a buffer; one pending reload is enough
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
		Name: "apicall_build_info",
		Help: "Build information; always 1.",
	}, []string{"version", "goversion"}).WithLabelValues(version, runtime.Version()).Set(1)

	var rules atomic.Pointer[config.Rules]
	rules.Store(cfg.Compiled())

	if len(cfg.Kafka.Brokers) == 0 {
		b, err := startEmbedded(cfg, log)
		if err != nil {
			return err
		}
		defer b.Close()
		cfg.Kafka.Brokers = []string{b.Addr()}
	}

	// sarama hands out record values that are never written again.
	dec, err := newDecoder(cfg, log, true)
	if err != nil {
		return err
	}
	defer dec.Close()
	disp, err := newDispatcher(cfg, reg, log)
	if err != nil {
		return err
	}
	defer disp.Close()
	cons, err := consumer.New(consumer.Options{
		Config:     cfg,
		Rules:      rules.Load,
		Decoder:    dec,
		Dispatcher: disp,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	if cfg.Admin.Listen != "-" {
		v, _ := env.lookupEnv("APICALL_PPROF")
		srv, err := adminServer(cfg.Admin.Listen, reg, cons.Ready, v != "" && v != "0", log)
		if err != nil {
			return err
		}
		g.Go(func() error { return srv(gctx) })
	}
	g.Go(func() error { return cons.Run(gctx) })
	g.Go(func() error { return reloadOn(gctx, hup, path, env, &rules, log) })
	log.Info("apicall running", "version", version, "brokers", cfg.Kafka.Brokers, "group", cfg.Kafka.Group, "rules", len(cfg.Rules), "admin", cfg.Admin.Listen)
	err = g.Wait()
	log.Info("apicall stopped")
	return err
}

// startEmbedded starts the kfake broker for local use, with the source and
// apicall's own topics created.
func startEmbedded(cfg *config.Config, log *slog.Logger) (*consumer.Broker, error) {
	topics := []string{cfg.Outcomes.Topic, cfg.Outcomes.RetryTopic, cfg.Outcomes.DeadLetterTopic}
	for _, t := range cfg.Kafka.Topics {
		topics = append(topics, t.Name)
	}
	dir := cfg.Kafka.EmbeddedDataDir
	if dir == "-" {
		dir = ""
	}
	b, err := consumer.StartBroker(consumer.BrokerOptions{Listen: cfg.Kafka.EmbeddedListen, DataDir: dir, Topics: topics, Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("embedded Kafka broker listening", "addr", b.Addr(), "data_dir", dir, "topics", topics)
	return b, nil
}

// newDecoder builds the record decoder from the config's schemas section;
// immutable is DecoderOptions.ValuesImmutable.
func newDecoder(cfg *config.Config, log *slog.Logger, immutable bool) (*schemas.Decoder, error) {
	return schemas.NewDecoder(schemas.DecoderOptions{
		RegistryURL:      cfg.Schemas.RegistryURL,
		RegistryUsername: cfg.Schemas.RegistryUsername,
		RegistryPassword: cfg.Schemas.RegistryPassword,
		RegistryCAFile:   cfg.Schemas.RegistryCAFile,
		AvscFiles:        cfg.Schemas.AvscFiles,
		Logger:           log,
		ValuesImmutable:  immutable,
	})
}

// newDispatcher maps the config's dispatch section onto dispatcher.Settings.
func newDispatcher(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*dispatcher.Dispatcher, error) {
	d := cfg.Dispatch
	s := dispatcher.Settings{
		AllowPrivateNetworks: d.AllowPrivateNetworks,
		MaxInFlightPerHost:   d.MaxInFlightPerHost,
		HostWait:             d.HostWait,
		Timeout:              d.Timeout,
		MaxAttempts:          d.MaxAttempts,
		MaxRedirects:         d.MaxRedirects,
		DisableFastPath:      d.NetHTTP,
		UserAgent:            "apicall/" + version,
		Breaker: dispatcher.BreakerSettings{
			Window:           d.Breaker.Window,
			MinRequests:      d.Breaker.MinRequests,
			FailureRatio:     d.Breaker.FailureRatio,
			OpenTimeout:      d.Breaker.OpenTimeout,
			HalfOpenRequests: d.Breaker.HalfOpenRequests,
		},
		Hosts: make(map[string]dispatcher.HostSettings, len(d.Hosts)),
	}
	for _, c := range d.AllowCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("dispatch.allow_cidrs %q: %w", c, err)
		}
		s.AllowCIDRs = append(s.AllowCIDRs, p)
	}
	for h, hs := range d.Hosts {
		s.Hosts[h] = dispatcher.HostSettings{Rate: hs.Rate, Burst: hs.Burst, MaxInFlight: hs.MaxInFlight}
	}
	return dispatcher.New(s, reg, log)
}

// adminServer serves /metrics, /healthz and /readyz. It binds now (so a
// taken port fails start-up) and serves until ctx ends.
func adminServer(addr string, reg *prometheus.Registry, ready func() error, withPprof bool, log *slog.Logger) (func(context.Context) error, error) {
	mux := http.NewServeMux()
	if withPprof {
		// APICALL_PPROF=1: Go's profiler, for benchmarks and incidents. Off
		// by default: profiles expose internals and cost CPU while taken.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := listen(addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", addr, err)
	}
	log.Info("admin endpoint listening", "addr", ln.Addr().String())
	return func(ctx context.Context) error {
		errc := make(chan error, 1) // one result; buffered so Serve's goroutine never blocks
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("admin server: %w", err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	}, nil
}

// reloadPoll is how often reloadOn checks the config file for a change.
const reloadPoll = 2 * time.Second

// reloadOn reloads the rules on SIGHUP (hup) and when the config file
// changes (modification time or size, checked every reloadPoll: an edit, a
// Kubernetes ConfigMap update). A config that fails to load is rejected with
// its errors logged and the running rules kept; in-flight work is untouched
// (events already matched keep their rules). Only the rules are reloaded:
// kafka, dispatch and outcomes settings need a restart.
func reloadOn(ctx context.Context, hup <-chan os.Signal, path string, env *cliEnv, rules *atomic.Pointer[config.Rules], log *slog.Logger) error {
	type stamp struct {
		mod  int64
		size int64
	}
	stat := func() (stamp, bool) {
		fi, err := os.Stat(path)
		if err != nil {
			return stamp{}, false // being replaced; the next poll sees the new file
		}
		return stamp{fi.ModTime().UnixNano(), fi.Size()}, true
	}
	last, _ := stat()
	tick := time.NewTicker(reloadPoll)
	defer tick.Stop()
	for {
		var trigger string
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			trigger = "SIGHUP"
		case <-tick.C:
			s, ok := stat()
			if !ok || s == last {
				continue
			}
			trigger = "file changed"
		}
		last, _ = stat()
		next, err := config.Load(path, env.lookupEnv)
		if err != nil {
			log.Error("config reload rejected; keeping the running rules", "path", path, "trigger", trigger, "errors", err.Error())
			continue
		}
		rules.Store(next.Compiled())
		log.Info("config reloaded", "path", path, "trigger", trigger, "rules", len(next.Rules))
	}
}
