"""Outbound webhooks: endpoints, deliveries, the dispatcher that sends them signed."""
