"""Prometheus metrics of the operator (served on ``UMT_OPERATOR_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """The operator's metrics, in a registry of their own (tests create several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.migrations = Counter(
            "umt_schema_migrations_total",
            "Migration runs that ended, by result and direction.",
            ["result", "direction", "reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "umt_schema_migration_duration_seconds",
            "Duration of migration runs as the runner measured it.",
            ["direction"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800),
            registry=self.registry,
        )
        self.jobs_running = Gauge(
            "umt_schema_migration_jobs_running",
            "Migration Jobs created by the operator that have not finished yet.",
            registry=self.registry,
        )
        self.jobs_created = Counter(
            "umt_schema_migration_jobs_created_total",
            "Migration Jobs created by the operator.",
            registry=self.registry,
        )
        self._running: set[str] = set()

    def job_seen(self, key: str, *, finished: bool) -> None:
        """Track a Job as running or finished (idempotent, any number of events)."""
        if finished:
            self._running.discard(key)
        else:
            self._running.add(key)
        self.jobs_running.set(len(self._running))

    def run_ended(self, *, result: str, direction: str, reason: str, seconds: float | None) -> None:
        self.migrations.labels(result=result, direction=direction, reason=reason).inc()
        if seconds is not None:
            self.duration.labels(direction=direction).observe(seconds)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
