"""The runtime's metrics in Prometheus form, for any server to serve (``/metrics``)."""

from kernel.observability._metrics import PrometheusCollector, prometheus_text
from middleware.observability import MetricsRegistry, MetricsSnapshot, default_registry

__all__ = [
    "MetricsRegistry",
    "MetricsSnapshot",
    "PrometheusCollector",
    "default_registry",
    "prometheus_text",
]
