"""Runs a small RAG chain with the OpenTelemetry Python SDK and exports it
with OpenTelemetry's Zipkin exporter. Used by the Zipkin receiver's
end-to-end test (crates/ingest/tests/zipkin_python.rs).

usage: zipkin_chain.py json|proto URL [fail]

json uses opentelemetry-exporter-zipkin-json (Zipkin v2 JSON), proto
opentelemetry-exporter-zipkin-proto-http (ListOfSpans protobuf); URL is
the receiver's /api/v2/spans. With `fail`, api_call raises a
RateLimitError: the SDK records an exception event and an error status.
The local endpoint is 10.0.0.7:8080, so its mapping can be checked.

Prints one line of JSON: {"trace_id": "...", "flushed": true}.
"""

import json
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

protocol, endpoint = sys.argv[1], sys.argv[2]
fail = len(sys.argv) > 3 and sys.argv[3] == "fail"

if protocol == "json":
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
elif protocol == "proto":
    from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
else:
    sys.exit(f"unknown protocol {protocol!r}: want json or proto")

exporter = ZipkinExporter(endpoint=endpoint, local_node_ipv4="10.0.0.7", local_node_port=8080)
provider = TracerProvider(resource=Resource.create({"service.name": "rag-chain-zipkin-" + protocol}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("rag_chain_test", "0.1.0")


class RateLimitError(Exception):
    pass


with tracer.start_as_current_span("process_query", kind=trace.SpanKind.SERVER) as root:
    trace_id = format(root.get_span_context().trace_id, "032x")
    try:
        with tracer.start_as_current_span("fetch_context") as s:
            s.set_attribute("user_id", "user_42")
            s.set_attribute("context_size_bytes", 4096)
            time.sleep(0.002)
        with tracer.start_as_current_span("embed_query") as s:
            s.set_attribute("model", "text-embedding-3-small")
            s.set_attribute("embedding_dim", 1536)
        with tracer.start_as_current_span("vector_search") as s:
            s.set_attribute("database", "pinecone")
            s.set_attribute("tools", ["search", "calc"])
        with tracer.start_as_current_span("llm_call") as llm:
            llm.set_attribute("model", "claude-3-opus-20250219")
            with tracer.start_as_current_span("prompt_assembly") as s:
                s.set_attribute("prompt_length", 2048)
            with tracer.start_as_current_span("api_call", kind=trace.SpanKind.CLIENT) as s:
                s.add_event("API request sent")
                s.set_attribute("input_tokens", 1250)
                time.sleep(0.005)
                if fail:
                    raise RateLimitError("Rate limit exceeded")
                s.set_attribute("output_tokens", 340)
    except RateLimitError:
        root.set_status(Status(StatusCode.ERROR, "RateLimitError"))

ok = provider.force_flush(timeout_millis=20000)
provider.shutdown()
print(json.dumps({"trace_id": trace_id, "flushed": ok}))
sys.exit(0 if ok else 3)
