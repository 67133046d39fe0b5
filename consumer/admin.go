package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/IBM/sarama"

	"github.com/apicall/apicall/config"
)

// ensureTopics creates the outcomes, retry and dead-letter topics when they
// are missing (apicall owns them), and warns about missing source topics
// (producers own those; apicall does not invent their partition count).
func ensureTopics(ctx context.Context, client sarama.Client, cfg *config.Config, log *slog.Logger) error {
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	// Not admin.Close: that would close the shared client.
	existing, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	own := []string{cfg.Outcomes.Topic, cfg.Outcomes.RetryTopic, cfg.Outcomes.DeadLetterTopic}
	for _, t := range own {
		if t == "" {
			continue
		}
		if _, ok := existing[t]; ok {
			continue
		}
		err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: -1, ReplicationFactor: -1}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			var te *sarama.TopicError
			if !errors.As(err, &te) || te.Err != sarama.ErrTopicAlreadyExists {
				return fmt.Errorf("create topic %s: %w", t, err)
			}
		}
		log.Info("created topic", "topic", t)
	}
	for _, t := range cfg.Kafka.Topics {
		if _, ok := existing[t.Name]; !ok {
			log.Warn("source topic does not exist yet; waiting for producers to create it", "topic", t.Name)
		}
	}
	if err := client.RefreshMetadata(); err != nil {
		return fmt.Errorf("refresh metadata: %w", err)
	}
	return ctx.Err()
}
