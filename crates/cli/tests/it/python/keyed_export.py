"""Exports one span with the real OpenTelemetry Python SDK's OTLP exporter
and prints what the exporter reported. The key, if any, comes the way users
give it: OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20<key>"; for an
https endpoint, the certificate to trust in OTEL_EXPORTER_OTLP_CERTIFICATE.

usage: keyed_export.py grpc|http ENDPOINT NAME

Prints one line of JSON: {"trace_id": "...", "result": "SUCCESS" or "FAILURE"}.
"""

import json
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

protocol, endpoint, name = sys.argv[1], sys.argv[2], sys.argv[3]

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    # https: TLS, trusting the certificate named by OTEL_EXPORTER_OTLP_CERTIFICATE.
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https"))
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint)

# Spans are recorded in memory, then handed to the exporter by hand, so
# that its verdict on this one export can be printed.
memory = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "keyed-" + protocol}))
provider.add_span_processor(SimpleSpanProcessor(memory))
with provider.get_tracer("keyed_export").start_as_current_span(name):
    pass
spans = memory.get_finished_spans()
result = exporter.export(spans)
exporter.shutdown()
print(json.dumps({"trace_id": format(spans[0].context.trace_id, "032x"), "result": result.name}))
