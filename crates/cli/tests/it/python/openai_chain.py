"""An LLM app instrumented by code nobody here wrote: the `openai` client
with `opentelemetry-instrumentation-openai-v2`, exporting over OTLP/HTTP to
chaintrace. The OpenAI API is a small fake served here on loopback (no
network): the first chat completion succeeds with token usage, the second
is answered 429 as OpenAI answers a rate limit.

usage: openai_chain.py OTLP_HTTP_TRACES_URL

Prints one line of JSON: {"ok_trace": "...", "limited_trace": "..."}.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

endpoint = sys.argv[1]
calls = {"n": 0}


class FakeOpenAI(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        calls["n"] += 1
        if calls["n"] == 1:
            status, body = 200, {
                "id": "chatcmpl-test-1",
                "object": "chat.completion",
                "created": 1767225600,
                "model": request.get("model", "gpt-4o-mini"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Paris."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1250, "completion_tokens": 340, "total_tokens": 1590},
            }
        else:
            status, body = 429, {
                "error": {
                    "message": "Rate limit reached for gpt-4o-mini",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
threading.Thread(target=server.serve_forever, daemon=True).start()

provider = TracerProvider(resource=Resource.create({"service.name": "openai-app"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument(tracer_provider=provider)

import openai  # noqa: E402  (after instrumenting, as the instrumentation's docs show)

client = openai.OpenAI(
    base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="test", max_retries=0
)
tracer = provider.get_tracer("openai_chain_test")
question = [{"role": "user", "content": "What is the capital of France?"}]

with tracer.start_as_current_span("answer_question") as root:
    ok_trace = format(root.get_span_context().trace_id, "032x")
    client.chat.completions.create(model="gpt-4o-mini", messages=question)

with tracer.start_as_current_span("answer_question") as root:
    limited_trace = format(root.get_span_context().trace_id, "032x")
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=question)
    except openai.RateLimitError:
        pass

ok = provider.force_flush(timeout_millis=20000)
provider.shutdown()
server.shutdown()
print(json.dumps({"ok_trace": ok_trace, "limited_trace": limited_trace, "flushed": ok}))
sys.exit(0 if ok else 3)
