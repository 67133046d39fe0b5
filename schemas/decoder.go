package schemas

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// DecoderOptions configures NewDecoder. The zero value decodes JSON and
// single-object Avro written with the embedded schema.
type DecoderOptions struct {
	// RegistryURL of a Confluent-compatible schema registry; "" means none,
	// and Confluent-framed values fail with unknown_schema (dead-lettered, so
	// they can be replayed once a registry is configured).
	RegistryURL      string
	RegistryUsername string
	RegistryPassword string
	// RegistryCAFile: PEM CA certificates for the registry's TLS, in addition
	// to the system pool; "" means the system pool. Cannot be combined with
	// HTTPClient (configure that client's TLS instead).
	RegistryCAFile string
	// RegistryTimeout bounds each registry request; 0 means 5s.
	RegistryTimeout time.Duration
	// HTTPClient for registry calls; nil means a client of its own.
	HTTPClient *http.Client
	// AvscFiles are extra .avsc files whose fingerprints the single-object
	// encoding may carry (the embedded apicall.UserEvent is always known).
	AvscFiles []string
	// Logger; nil discards.
	Logger *slog.Logger
	// ValuesImmutable promises that a value passed to Decode is never
	// modified afterwards, so a JSON event may point into it instead of
	// holding a copy (Event.Raw, User and Data alias the value). True for
	// the live consumer: sarama allocates every fetch response afresh and
	// the record value lives as long as the event anyway, so the copy was
	// 7% of all bytes allocated per event (make bench profile).
	ValuesImmutable bool
}

// Decoder turns record values into Events. It is safe for concurrent use;
// the consumer shares one across all partition workers, so schemas fetched
// from the registry are fetched once per process.
type Decoder struct {
	registry *Registry          // nil without RegistryURL
	local    map[uint64]*Schema // single-object encoding: fingerprint -> schema; read-only
	log      *slog.Logger
	alias    bool                      // DecoderOptions.ValuesImmutable
	now      func() time.Time          // injected for the negative-cache TTL in tests
	bufs     sync.Pool                 // *[]byte scratch for natural JSON
	mu       sync.RWMutex              // guards byID and negatives
	byID     map[uint32]*registryEntry // Confluent schema id -> schema (or permanent failure)
	negative int                       // entries in byID that are expiring 404s
}

// NewDecoder parses the embedded schema and the configured .avsc files and
// prepares the registry client. It does no network I/O: the registry is
// asked for a schema id the first time a value carries it.
func NewDecoder(opts DecoderOptions) (*Decoder, error) {
	d := &Decoder{
		local: map[uint64]*Schema{},
		log:   opts.Logger,
		alias: opts.ValuesImmutable,
		now:   time.Now,
		byID:  map[uint32]*registryEntry{},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	ue, err := UserEventSchema()
	if err != nil {
		return nil, fmt.Errorf("embedded user_event.avsc: %w", err)
	}
	d.local[ue.Fingerprint()] = ue
	for _, f := range opts.AvscFiles {
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("avsc file: %w", err)
		}
		s, err := ParseSchema(string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		d.local[s.Fingerprint()] = s
	}
	if opts.RegistryURL != "" {
		d.registry, err = NewRegistry(RegistryOptions{
			URL:        opts.RegistryURL,
			Username:   opts.RegistryUsername,
			Password:   opts.RegistryPassword,
			CAFile:     opts.RegistryCAFile,
			Timeout:    opts.RegistryTimeout,
			HTTPClient: opts.HTTPClient,
			Logger:     d.log,
		})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Close releases the registry client's idle connections. The decoder starts
// no goroutines of its own; Close exists so that a stopped consumer leaves
// none behind. Decode still works after Close.
func (d *Decoder) Close() {
	if d.registry != nil {
		d.registry.Close()
	}
}

// Decode turns one record value of topic into an Event. Errors are
// *DecodeError; IsTransient tells the ones to retry (registry outage) from
// the ones to dead-letter. ctx bounds registry calls only.
func (d *Decoder) Decode(ctx context.Context, topic string, f Format, value []byte) (Event, error) {
	switch f {
	case FormatJSON:
		return decodeJSON(topic, value, d.alias)
	case FormatAvro:
		switch sniff(value) {
		case wireConfluent:
			return d.decodeConfluent(ctx, topic, value)
		case wireSingleObject:
			return d.decodeSingleObject(topic, value)
		}
		return Event{}, decodeErr(ReasonInvalidAvro, "neither Confluent wire format (0x00) nor single-object encoding (0xC3 0x01)")
	case FormatAuto, "":
		switch sniff(value) {
		case wireConfluent:
			return d.decodeConfluent(ctx, topic, value)
		case wireSingleObject:
			return d.decodeSingleObject(topic, value)
		case wireJSON:
			return decodeJSON(topic, value, d.alias)
		}
		if len(value) == 0 {
			return Event{}, decodeErr(ReasonUnknownFormat, "empty value")
		}
		return Event{}, decodeErr(ReasonUnknownFormat, "first byte %#02x is neither JSON nor an Avro magic byte", value[0])
	}
	return Event{}, decodeErr(ReasonUnknownFormat, "format %q", f)
}
