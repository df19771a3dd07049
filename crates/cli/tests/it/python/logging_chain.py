"""Logs through Python's standard `logging`, bridged to OTLP by the real
OpenTelemetry SDK's LoggingHandler, inside spans of a small chain, and
exports both to chaintrace. Used by the end-to-end tests.

usage: logging_chain.py grpc|http ENDPOINT

ENDPOINT is the OTLP/gRPC address (http://host:port) for grpc, or the
OTLP/HTTP base URL (http://host:port) for http.

Prints one line of JSON: {"trace_id": "...", "spans": {name: span_id}}.
"""

import json
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

protocol, endpoint = sys.argv[1], sys.argv[2]

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    span_exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
    log_exporter = OTLPLogExporter(endpoint=endpoint + "/v1/logs")

resource = Resource.create({"service.name": "logging-chain-" + protocol})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
tracer = tracer_provider.get_tracer("logging_chain_test", "0.1.0")

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
log = logging.getLogger("chain")
log.setLevel(logging.DEBUG)
log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider))


class RateLimitError(Exception):
    pass


spans = {}
with tracer.start_as_current_span("process_query") as root:
    trace_id = format(root.get_span_context().trace_id, "032x")
    spans["process_query"] = format(root.get_span_context().span_id, "016x")
    log.info("query received", extra={"user_id": "user_42"})
    with tracer.start_as_current_span("api_call") as s:
        spans["api_call"] = format(s.get_span_context().span_id, "016x")
        log.debug("calling the model")
        try:
            raise RateLimitError("429 Too Many Requests")
        except RateLimitError:
            log.exception("model call failed")
        log.warning("retrying after %s", "RateLimitError", extra={"retry_attempt": 1})

# Outside any span: searchable by time, severity, service and text only.
log.error("cache warm-up failed: disk full")

tracer_provider.shutdown()
logger_provider.shutdown()
print(json.dumps({"trace_id": trace_id, "spans": spans}))
