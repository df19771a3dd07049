"""One HTTPS request with Python's standard library, trusting only CAFILE
(a self-signed certificate made by the test). Redirects are not followed.

usage: https_request.py METHOD URL CAFILE [KEY] [FORM]

KEY, when not empty, goes in `Authorization: Bearer`; FORM is an
urlencoded body. Prints one line of JSON: {"status", "headers", "body"}.
"""

import http.client
import json
import ssl
import sys
import urllib.parse

method, url, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
key = sys.argv[4] if len(sys.argv) > 4 else ""
form = sys.argv[5] if len(sys.argv) > 5 else None

parts = urllib.parse.urlsplit(url)
context = ssl.create_default_context(cafile=cafile)
conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)
headers = {}
if key:
    headers["Authorization"] = "Bearer " + key
if form is not None:
    headers["Content-Type"] = "application/x-www-form-urlencoded"
path = parts.path + ("?" + parts.query if parts.query else "")
conn.request(method, path, body=form, headers=headers)
resp = conn.getresponse()
body = resp.read().decode("utf-8", "replace")
print(json.dumps({"status": resp.status, "headers": {k.lower(): v for k, v in resp.getheaders()}, "body": body}))
