"""Drives chaintrace's MCP server with the real `mcp` client package from
PyPI, as a coding agent would: connect, initialize, list the tools, call
each one asked for.

usage: mcp_client.py stdio CHAINTRACE_BINARY SERVER_URL KEY CALLS_JSON
       mcp_client.py http MCP_URL KEY CALLS_JSON

CALLS_JSON is a list of [tool, arguments]. Prints one line of JSON:
{"server": serverInfo name, "tools": [names], "results": [{"tool", "is_error",
"text", "structured"}]}.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def drive(session, calls):
    init = await session.initialize()
    listed = await session.list_tools()
    results = []
    for tool, arguments in calls:
        r = await session.call_tool(tool, arguments)
        text = "".join(c.text for c in r.content if getattr(c, "type", "") == "text")
        results.append({
            "tool": tool,
            "is_error": bool(r.is_error),
            "text": text,
            "structured": r.structured_content,
        })
    return {
        "server": init.server_info.name,
        "tools": [t.name for t in listed.tools],
        "results": results,
    }


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        binary, server, key, calls = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
        params = StdioServerParameters(command=binary, args=["mcp", "--server", server, "--key", key])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await drive(session, calls)
    else:
        url, key, calls = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        client = create_mcp_http_client(headers={"Authorization": "Bearer " + key})
        async with client:
            async with streamable_http_client(url, http_client=client) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as session:
                    out = await drive(session, calls)
    print(json.dumps(out))


asyncio.run(main())
