package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	kafka "github.com/segmentio/kafka-go"

	"github.com/apicall/apicall/config"
	"github.com/apicall/apicall/dispatcher"
	"github.com/apicall/apicall/schemas"
)

// retryState is where a call stands in its retry life.
type retryState struct {
	retries  int       // times already taken from the retry topic
	attempts int       // HTTP attempts made so far, all passes together
	first    time.Time // first attempt; zero for a fresh event
}

// handleEvent runs one source record through decode, match, render and
// dispatch, and returns nil once every outcome is durably recorded (or the
// record is dead-lettered). It returns an error only when ctx ended before
// that: the caller must then not mark the record done.
func (c *Consumer) handleEvent(ctx context.Context, src source) error {
	if max := c.cfg.Kafka.MaxMessageBytes; max > 0 && len(src.Value) > max {
		c.m.eventsBy.with([2]string{src.Topic, "undecodable"}).Inc()
		return c.deadLetterEvent(ctx, src, "too_large", fmt.Errorf("record value is %d bytes, over kafka.max_message_bytes %d", len(src.Value), max))
	}
	ev, err := c.decode(ctx, src)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.m.eventsBy.with([2]string{src.Topic, "undecodable"}).Inc()
		return c.deadLetterEvent(ctx, src, decodeReason(err), err)
	}
	return c.dispatchEvent(ctx, src, &ev)
}

// dispatchEvent matches a decoded event and delivers each matched rule's
// call; its result is handleEvent's. Replay calls it directly.
func (c *Consumer) dispatchEvent(ctx context.Context, src source, ev *schemas.Event) error {
	var buf [8]*config.CompiledRule
	matched := c.match(buf[:0], ev)
	if len(matched) == 0 {
		c.m.eventsBy.with([2]string{src.Topic, "unmatched"}).Inc()
		return nil
	}
	c.m.eventsBy.with([2]string{src.Topic, "matched"}).Inc()
	if len(matched) == 1 {
		return c.deliver(ctx, src, ev, matched[0], retryState{})
	}
	// Several rules: call them concurrently so one slow host does not
	// delay the others' calls for the same event.
	// The last one runs here, on the event's own goroutine; the others on
	// pooled ones, whose stacks are already grown (a fresh goroutine per
	// extra call made stack growth 4% of CPU in the make bench profile).
	var wg sync.WaitGroup
	errs := make([]error, len(matched))
	last := len(matched) - 1
	for i, r := range matched[:last] {
		call := func() { errs[i] = c.deliver(ctx, src, ev, r, retryState{}) }
		if c.pool == nil { // replay runs without a pool
			wg.Go(call)
			continue
		}
		wg.Add(1)
		c.pool.submit(func() {
			defer wg.Done()
			call()
		})
	}
	errs[last] = c.deliver(ctx, src, ev, matched[last], retryState{})
	wg.Wait()
	return errors.Join(errs...)
}

// match appends to dst the rules that fire for ev, less those the replay
// filter drops (there is none in live mode).
func (c *Consumer) match(dst []*config.CompiledRule, ev *schemas.Event) []*config.CompiledRule {
	matched := c.rules().Match(dst, ev)
	if c.filter == nil {
		return matched
	}
	return slices.DeleteFunc(matched, func(r *config.CompiledRule) bool { return !c.filter(ev, r) })
}

// decode decodes the record, waiting with backoff while the schema registry
// is unreachable (the one transient decode failure): dead-lettering every
// Avro event during a registry outage would be worse than pausing.
func (c *Consumer) decode(ctx context.Context, src source) (schemas.Event, error) {
	f := c.formats[src.Topic]
	if f == "" {
		f = schemas.FormatAuto
	}
	backoff := 200 * time.Millisecond
	for {
		ev, err := c.decoder.Decode(ctx, src.Topic, f, src.Value)
		if err == nil {
			ev.Topic, ev.Partition, ev.Offset, ev.Key, ev.Time = src.Topic, src.Partition, src.Offset, src.Key, src.Time
			return ev, nil
		}
		if !schemas.IsTransient(err) {
			return ev, err
		}
		select {
		case <-ctx.Done():
			return ev, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func decodeReason(err error) string {
	var de *schemas.DecodeError
	if errors.As(err, &de) && de.Reason != "" {
		return de.Reason
	}
	return "undecodable"
}

// deadLetterEvent writes the untouched record to the dead-letter topic with
// the reason in headers.
func (c *Consumer) deadLetterEvent(ctx context.Context, src source, reason string, cause error) error {
	msg := src.annotated(c.cfg.Outcomes.DeadLetterTopic,
		hdrReason, reason,
		hdrError, truncate(cause.Error(), 1024),
		hdrAt, c.now().UTC().Format(timeLayoutMicros),
	)
	err := c.writer.writeOrTooLarge(ctx, msg)
	if errors.Is(err, errTooLarge) {
		err = c.writer.write(ctx, withoutValue(msg, len(src.Value)))
	}
	if err != nil {
		return err
	}
	c.m.deadLetters.WithLabelValues(reason).Inc()
	return nil
}

// deliver renders and sends one (event, rule) call and records its outcome:
// delivered or rejected as such; a call that should be retried is parked on
// the retry topic, or dead-lettered once out of retries.
func (c *Consumer) deliver(ctx context.Context, src source, ev *schemas.Event, rule *config.CompiledRule, st retryState) error {
	now := c.now()
	if st.first.IsZero() {
		st.first = now
	}
	call, err := rule.Render(ev, now)
	if err != nil {
		rec := c.outcome(src, rule.Name(), rule.Path(), "", "", "")
		rec.Outcome, rec.Reason, rec.Error = outcomeRejected, "render", truncate(err.Error(), 1024)
		return c.record(ctx, src, rec, "")
	}
	if call.MissingTags > 0 {
		c.m.missingTags.WithLabelValues(rule.Name()).Add(float64(call.MissingTags))
	}
	res := c.disp.Do(ctx, &dispatcher.Request{
		Rule:           rule.Name(),
		Method:         call.Method,
		URL:            call.URL,
		Header:         call.Header,
		Body:           call.Body,
		IdempotencyKey: call.IdempotencyKey,
		Timeout:        call.Timeout,
		SigningSecrets: call.SigningSecrets,
		MaxAttempts:    call.MaxAttempts,
	})
	method, callURL, key := call.Method, call.URL, call.IdempotencyKey
	if res.BodyReleased {
		// No copy of the request is in use any more, and the record
		// below needs only the strings just read: the call's memory can
		// serve later calls.
		call.Release()
	}
	if ctx.Err() != nil && res.Outcome != dispatcher.Delivered && res.Outcome != dispatcher.Rejected {
		// Our own shutdown cut the call short: nothing to record, the
		// event is redelivered.
		return ctx.Err()
	}
	st.attempts += res.Attempts
	rec := c.outcome(src, rule.Name(), rule.Path(), method, c.redactorFor(rule.Rules()).url(callURL), key)
	rec.Status, rec.Attempts, rec.LatencyMS, rec.Reason = res.Status, st.attempts, res.Latency.Milliseconds(), res.Reason
	if res.Err != nil {
		rec.Error = truncate(c.cfg.Redact(rule.Rules().Redact(res.Err.Error())), 1024)
	}
	switch res.Outcome {
	case dispatcher.Delivered:
		rec.Outcome = outcomeDelivered
		return c.record(ctx, src, rec, res.Host)
	case dispatcher.Rejected:
		rec.Outcome = outcomeRejected
		return c.record(ctx, src, rec, res.Host)
	}
	// Retry: park it, or dead-letter it when its retries are spent.
	r := c.cfg.Retry
	if st.retries >= r.MaxAttempts || now.Sub(st.first) >= r.MaxAge {
		rec.Outcome = outcomeDeadLettered
		why := "max_attempts"
		if st.retries < r.MaxAttempts {
			why = "max_age"
		}
		dl := src.annotated(c.cfg.Outcomes.DeadLetterTopic,
			callHeaders(why, rule.Name(), rec.Error, res.Status, st, hdrAt, now)...)
		if err := c.record(ctx, src, rec, res.Host, dl); err != nil {
			return err
		}
		c.m.deadLetters.WithLabelValues(why).Inc()
		return nil
	}
	delay := r.Schedule[min(st.retries, len(r.Schedule)-1)]
	delay = max(delay, res.RetryAfter)
	next := now.Add(delay)
	rec.Outcome = outcomeParked
	rec.NextAttemptAt = next.UTC().Format(timeLayoutMicros)
	park := src.annotated(c.cfg.Outcomes.RetryTopic, append(
		callHeaders(res.Reason, rule.Name(), rec.Error, res.Status, st, hdrParkedAt, now),
		hdrNextAttempt, next.UTC().Format(timeLayoutMicros))...)
	// The parked record carries the event, not the rendered call: no
	// header secret is ever written to Kafka, and the retry re-renders
	// with the rule as it is then.
	err = c.record(ctx, src, rec, res.Host, park)
	if !errors.Is(err, errTooLarge) {
		return err
	}
	// Too large to park (over the writer's or the broker's record size
	// limit): it could never be retried, so dead-letter it now, without
	// its value, instead of retrying the write forever.
	rec.Outcome, rec.NextAttemptAt = outcomeDeadLettered, ""
	dl := withoutValue(src.annotated(c.cfg.Outcomes.DeadLetterTopic,
		callHeaders("too_large", rule.Name(), rec.Error, res.Status, st, hdrAt, now)...), len(src.Value))
	if err := c.record(ctx, src, rec, res.Host, dl); err != nil {
		return err
	}
	c.m.deadLetters.WithLabelValues("too_large").Inc()
	return nil
}

// callHeaders are the apicall-* headers of a parked or dead-lettered call:
// why, the rule, its last error and status, its retry state, and the time
// of this step under stepHeader (parked-at or dead-lettered-at).
func callHeaders(reason, rule, lastErr string, status int, st retryState, stepHeader string, now time.Time) []string {
	return []string{
		hdrReason, reason,
		hdrRule, rule,
		hdrError, lastErr,
		hdrLastStatus, strconv.Itoa(status),
		hdrAttempts, strconv.Itoa(st.attempts),
		hdrRetries, strconv.Itoa(st.retries),
		hdrFirstAttempt, st.first.UTC().Format(timeLayoutMicros),
		stepHeader, now.UTC().Format(timeLayoutMicros),
	}
}

// outcome starts an outcome record for src and rule.
func (c *Consumer) outcome(src source, rule string, path []byte, method, u, key string) OutcomeRecord {
	rec := OutcomeRecord{
		SourceTopic:     src.Topic,
		SourcePartition: src.Partition,
		SourceOffset:    src.Offset,
		Rule:            rule,
		Path:            path,
		Method:          method,
		URL:             u,
		Timestamp:       formatMicros(c.now()),
		IdempotencyKey:  key,
		Replayed:        c.replayed,
	}
	if rec.IdempotencyKey == "" {
		rec.IdempotencyKey = config.IdempotencyKey(src.Topic, src.Partition, src.Offset, rule)
	}
	if !src.Time.IsZero() {
		rec.EventTime = formatMicros(src.Time)
	}
	return rec
}

// record writes the outcome record (keyed by the event's key) together with
// any extra records (retry or dead-letter) in one acknowledged write, and
// counts the delivery.
func (c *Consumer) record(ctx context.Context, src source, rec OutcomeRecord, host string, extra ...kafka.Message) error {
	if len(extra) == 0 {
		// The common case: the outcome record alone, batched with those
		// of concurrent calls, in a reused buffer.
		buf := c.writer.buffer()
		*buf = rec.AppendJSON((*buf)[:0])
		if err := c.writer.writeOutcome(ctx, kafka.Message{Topic: c.cfg.Outcomes.Topic, Key: src.Key, Value: *buf}); err != nil {
			return err // the write may still be in progress: buf is not reused
		}
		c.writer.release(buf)
		c.counted(&rec, host)
		return nil
	}
	msgs := append(extra, kafka.Message{Topic: c.cfg.Outcomes.Topic, Key: src.Key, Value: rec.AppendJSON(nil)})
	err := c.writer.writeOrTooLarge(ctx, msgs...)
	if errors.Is(err, errTooLarge) {
		// A retry or dead-letter record carries the event and can be over
		// the size limit. A parked one needs its value (the retry decodes
		// it): the caller dead-letters instead. A dead letter goes without.
		for i := range extra {
			if msgs[i].Topic != c.cfg.Outcomes.DeadLetterTopic {
				return err
			}
			msgs[i] = withoutValue(msgs[i], len(src.Value))
		}
		err = c.writer.write(ctx, msgs...)
	}
	if err != nil {
		return err
	}
	c.counted(&rec, host)
	return nil
}

// counted counts a recorded outcome and shows it to the replay hook.
func (c *Consumer) counted(rec *OutcomeRecord, host string) {
	if host == "" {
		host = "none"
	}
	c.m.deliveriesBy.with([3]string{rec.Rule, host, rec.Outcome}).Inc()
	if c.recorded != nil {
		c.recorded(rec)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
