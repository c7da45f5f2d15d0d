"""Talks to a switchyard gateway with the official OpenAI and Anthropic SDKs.

Usage: clients.py BASE_URL   (e.g. http://127.0.0.1:8080)
Prints one JSON object: the text each SDK call returned, so the caller can check that the
SDKs parsed the gateway's answers (upstream or kill-switch fallback) without error.
"""

import json
import sys

import anthropic
import openai

base = sys.argv[1]
out = {}

oa = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-test", max_retries=0)
chat = oa.chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "Where is my order?"}]
)
out["openai"] = chat.choices[0].message.content
stream = oa.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Where is my order?"}],
    stream=True,
    stream_options={"include_usage": True},
)
out["openai_stream"] = "".join(
    chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
)

resp = oa.responses.create(model="gpt-4o", input="Where is my order?")
out["responses"] = resp.output_text
with oa.responses.stream(model="gpt-4o", input="Where is my order?") as s:
    for _ in s:
        pass
    out["responses_stream"] = s.get_final_response().output_text

an = anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0)
msg = an.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=200,
    messages=[{"role": "user", "content": "Where is my order?"}],
)
out["anthropic"] = "".join(block.text for block in msg.content if block.type == "text")
with an.messages.stream(
    model="claude-sonnet-4-6",
    max_tokens=200,
    messages=[{"role": "user", "content": "Where is my order?"}],
) as s:
    out["anthropic_stream"] = "".join(s.text_stream)

print(json.dumps(out))
