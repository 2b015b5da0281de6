"""The official OpenAI and Anthropic Python SDKs against a running gateway.

Run by tests/api/sdk.rs with GATEWAY (base URL), MANAGED_KEY set; exits
non-zero on the first failed check. Nothing here talks to a real provider:
the gateway fronts the test suite's loopback upstream.
"""
import io
import os
import sys

import anthropic
import openai

GATEWAY = os.environ["GATEWAY"]
KEY = os.environ["MANAGED_KEY"]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


client = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key=KEY, max_retries=0)

reply = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "sdk hello"}]
)
check(reply.choices[0].message.content == "echo: sdk hello", "chat completion")
check(reply.usage.total_tokens == 18, "usage parsed by the SDK")

raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
)
check(raw.headers.get("x-custodian-training") in ("allowed", "denied"), "training receipt visible")
check(raw.headers.get("x-custodian-record-id"), "record id receipt visible")

text = "".join(
    chunk.choices[0].delta.content or ""
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "sdk stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    if chunk.choices
)
check(text == "echo: sdk stream", "streamed chat completion reassembled")

models = client.models.list()
check([m.id for m in models.data] == ["mock-gpt"], "models.list (GET)")

uploaded = client.files.create(file=("train.jsonl", io.BytesIO(b'{"messages": []}\n' * 100)), purpose="fine-tune")
check(uploaded.id.startswith("file-"), "files.create (multipart)")
deleted = client.files.delete(uploaded.id)
check(deleted.deleted is True, "files.delete (DELETE)")

bad = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key="sk-not-registered", max_retries=0)
try:
    bad.models.list()
    check(False, "unknown key refused")
except openai.AuthenticationError as e:
    check(e.status_code == 401 and e.code == "invalid_api_key", "unknown key -> AuthenticationError")

claude = anthropic.Anthropic(base_url=f"{GATEWAY}/anthropic", api_key=KEY, max_retries=0)
message = claude.messages.create(
    model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
)
check(message.content[0].text == "hello", "anthropic messages.create")
with claude.messages.stream(
    model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
) as stream:
    streamed = "".join(stream.text_stream)
check(streamed == "hello", "anthropic streaming")

bad_claude = anthropic.Anthropic(base_url=f"{GATEWAY}/anthropic", api_key="sk-ant-nope", max_retries=0)
try:
    bad_claude.messages.create(model="c", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    check(False, "unknown anthropic key refused")
except anthropic.AuthenticationError as e:
    check(e.status_code == 401, "unknown key -> anthropic AuthenticationError")

# An answer the upstream cut short must reach the SDK as an error, never as
# a shorter answer: a stream reset mid-way, and a sized JSON body cut short.
def raises(call, what):
    try:
        result = call()
    except Exception as e:  # the SDK's own error type varies by where it breaks
        check(True, f"{what} -> {type(e).__name__}")
        return
    check(False, f"{what} raised (got {result!r})")


raises(
    lambda: "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "reset"}],
            stream=True,
            extra_headers={"x-mock-mode": "reset"},
        )
        if chunk.choices
    ),
    "stream reset mid-way",
)
raises(
    lambda: client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "cut"}],
        extra_headers={"x-mock-mode": "cut"},
    ),
    "sized answer cut short",
)

print("all SDK checks passed")
