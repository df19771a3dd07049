"""Runs the testdata's RAG chain with the real OpenTelemetry Python SDK and
exports it to chaintrace. Used by the end-to-end tests.

usage: rag_chain.py grpc|http|jaeger-agent|jaeger-collector ENDPOINT [fail]

grpc and http use the OTLP exporters; jaeger-agent (ENDPOINT host:port,
UDP Thrift compact) and jaeger-collector (ENDPOINT the collector's URL,
HTTP Thrift binary) use opentelemetry-exporter-jaeger-thrift, which lives
in its own virtualenv (its last release pins an older SDK).

Prints one line of JSON: {"trace_id": "...", "sleeps_ms": {...}}.
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

if protocol == "jaeger-agent":
    from opentelemetry.exporter.jaeger.thrift import JaegerExporter

    host, port = endpoint.rsplit(":", 1)
    exporter = JaegerExporter(agent_host_name=host, agent_port=int(port))
elif protocol == "jaeger-collector":
    from opentelemetry.exporter.jaeger.thrift import JaegerExporter

    exporter = JaegerExporter(collector_endpoint=endpoint)
elif protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint)

provider = TracerProvider(resource=Resource.create({"service.name": "rag-chain-" + protocol}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("rag_chain_test", "0.1.0")

SLEEPS_MS = {
    "fetch_context": 20,
    "embed_query": 30,
    "vector_search": 15,
    "prompt_assembly": 5,
    "api_call": 40,
}


class RateLimitError(Exception):
    pass


def nap(name):
    time.sleep(SLEEPS_MS[name] / 1000.0)


with tracer.start_as_current_span("process_query", kind=trace.SpanKind.SERVER) as root:
    trace_id = format(root.get_span_context().trace_id, "032x")
    try:
        with tracer.start_as_current_span("fetch_context") as s:
            s.set_attribute("user_id", "user_42")
            s.set_attribute("context_size_bytes", 4096)
            nap("fetch_context")
        with tracer.start_as_current_span("embed_query") as s:
            s.set_attribute("model", "text-embedding-3-small")
            s.set_attribute("embedding_dim", 1536)
            nap("embed_query")
        with tracer.start_as_current_span("vector_search") as s:
            s.set_attribute("database", "pinecone")
            s.set_attribute("results_found", 8)
            nap("vector_search")
        with tracer.start_as_current_span("llm_call") as llm:
            llm.set_attribute("model", "claude-3-opus-20250219")
            with tracer.start_as_current_span("prompt_assembly") as s:
                s.set_attribute("prompt_length", 2048)
                nap("prompt_assembly")
            with tracer.start_as_current_span("api_call", kind=trace.SpanKind.CLIENT) as s:
                s.add_event("API request sent")
                s.set_attribute("input_tokens", 1250)
                nap("api_call")
                if fail:
                    s.set_attribute("status", "error")
                    s.set_attribute("error_type", "RateLimitError")
                    raise RateLimitError("Rate limit exceeded")
                s.set_attribute("output_tokens", 340)
                s.set_attribute("stop_reason", "end_turn")
    except RateLimitError:
        root.set_status(Status(StatusCode.ERROR, "RateLimitError"))

ok = provider.force_flush(timeout_millis=20000)
provider.shutdown()
print(json.dumps({"trace_id": trace_id, "sleeps_ms": SLEEPS_MS, "flushed": ok}))
sys.exit(0 if ok else 3)
