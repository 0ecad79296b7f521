"""Object Classification: object features and the object classifier (work in progress, issue 8)."""
