"""An agent using the Control Room through the official MCP Python SDK (`mcp`, PyPI).

    python mcp_agent.py http  <console base URL> <relay key>
    python mcp_agent.py stdio <control-room binary> <console base URL> <relay key>

Over streamable HTTP (the key as a bearer token), or over stdio (`control-room mcp`, which
relays to the console). It lists the tools, estimates, generates an image and a Veo clip,
waits for each with progress (and is told when the watched clip ends), fetches the Library link, is refused by a cap, reads its budget,
searches the Library and reads resources; it prints one JSON object of what it saw, which the
Rust test checks.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def json_of(result):
    return json.loads(result.content[0].text)


updated = []


async def on_message(message):
    """Records the resource updates the server sends (a watched task ended)."""
    inner = getattr(message, "root", message)
    if getattr(inner, "method", None) == "notifications/resources/updated":
        updated.append(str(inner.params.uri))


async def run(session: ClientSession, base: str):
    seen = {}
    await session.initialize()
    tools = await session.list_tools()
    seen["tools"] = sorted(t.name for t in tools.tools)
    seen["generate_schema"] = next(t.input_schema for t in tools.tools if t.name == "generate")

    models = json_of(await session.call_tool("list_models", {"category": "image"}))
    seen["image_models"] = [m["id"] for m in models["models"]]

    est = await session.call_tool("estimate", {"model": "google/imagen4-fast", "input": {"prompt": "a lighthouse at dusk"}})
    seen["estimate"] = json_of(est)

    made = {}
    for name, model in (("image", "google/imagen4-fast"), ("clip", "veo3")):
        gen = await session.call_tool("generate", {"model": model, "input": {"prompt": f"a lighthouse at dusk ({name})"}})
        assert not gen.is_error, text_of(gen)
        task_id = json_of(gen)["task_id"]
        if name == "clip":
            await session.subscribe_resource(f"control-room://task/{task_id}")
        progress = []

        async def on_progress(p, total, message, progress=progress):
            progress.append({"progress": p, "total": total, "message": message})

        done = await session.call_tool("wait", {"task_id": task_id, "timeout_seconds": 60}, progress_callback=on_progress)
        assert not done.is_error, text_of(done)
        made[name] = {"task_id": task_id, "wait": json_of(done), "progress": progress}
    seen["made"] = made
    for _ in range(50):
        if updated:
            break
        await asyncio.sleep(0.1)
    seen["updated"] = updated

    image = made["image"]["task_id"]
    asset = await session.call_tool("get_asset", {"task_id": image, "n": 0})
    info = json_of(asset)
    async with httpx2.AsyncClient() as http:
        fetched = await http.get(info["link"])
    seen["asset"] = {
        "info": info,
        "kinds": [c.type for c in asset.content],
        "link_status": fetched.status_code,
        "link_bytes": len(fetched.content),
    }

    # The key's total cap is nearly spent: a second clip is refused, with what is left.
    refused = await session.call_tool("generate", {"model": "veo3", "input": {"prompt": "one more clip"}})
    seen["refused"] = {"is_error": refused.is_error, "text": text_of(refused)}
    seen["estimate_after"] = json_of(await session.call_tool("estimate", {"model": "veo3", "input": {"prompt": "one more clip"}}))
    seen["bad_input"] = text_of(await session.call_tool("generate", {"model": "no/such-model", "input": {"prompt": "x"}}))
    seen["budget"] = json_of(await session.call_tool("budget", {}))
    seen["search"] = json_of(await session.call_tool("library_search", {"text": "lighthouse"}))
    seen["status_missing"] = text_of(await session.call_tool("status", {"task_id": "cr_nosuchtask"}))

    resources = await session.list_resources()
    seen["resources"] = [(str(r.uri), r.mime_type) for r in resources.resources]
    task_res = await session.read_resource(f"control-room://task/{image}")
    seen["task_resource"] = json.loads(task_res.contents[0].text)
    return seen


async def main():
    mode = sys.argv[1]
    if mode == "http":
        base, key = sys.argv[2], sys.argv[3]
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            async with streamable_http_client(f"{base}/mcp", http_client=http) as (read, write):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    seen = await run(session, base)
    else:
        binary, base, key = sys.argv[2], sys.argv[3], sys.argv[4]
        params = StdioServerParameters(command=binary, args=["mcp"], env={"CONTROL_ROOM_URL": base, "CONTROL_ROOM_KEY": key})
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                seen = await run(session, base)
    print(json.dumps(seen))


asyncio.run(main())
