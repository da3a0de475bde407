"""The relay: events read from a Redis Stream by a consumer group and delivered to the backends."""
