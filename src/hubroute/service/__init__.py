"""The HTTP routing service: live registry, durable feedback, background updates, hot swap."""
