"""Ask ragserve with the official ``openai`` SDK, as any OpenAI-compatible server.

Start ragserve (``ragserve demo`` or ``ragserve serve``), then::

    pip install openai
    python examples/openai_sdk.py "How many days of annual leave do I get?"
    python examples/openai_sdk.py --model handbook --base-url http://127.0.0.1:8000/v1 "..."

Models are ragserve's collections. The answer streams token by token; then the same question
is asked without streaming to show the ``ragserve`` extension object (the job id and the
sources its ``[n]`` citations refer to), and a follow-up shows the conversation history at
work. With ``RAGSERVE_AUTH=api_key`` put a key from ``ragserve keys create`` in
``RAGSERVE_API_KEY``: the SDK sends it as ``Authorization: Bearer``.
"""

from __future__ import annotations

import argparse
import os

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="default", help="a collection (see the list printed)")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=os.environ.get("RAGSERVE_API_KEY", "unused"))

    print("models:", ", ".join(model.id for model in client.models.list()))

    messages = [{"role": "user", "content": args.question}]
    stream = client.chat.completions.create(model=args.model, messages=messages, stream=True)
    print("streamed: ", end="")
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()

    answer = client.chat.completions.create(model=args.model, messages=messages)
    extension = (answer.model_extra or {})["ragserve"]
    print("answer:", answer.choices[0].message.content)
    print("job:", extension["job_id"], "(GET /v1/jobs/<job> shows it)")
    for n, source in enumerate(extension["sources"], start=1):
        print(f"[{n}] {source['source']} (score {source['score']:.2f})")

    follow_up = [
        *messages,
        {"role": "assistant", "content": answer.choices[0].message.content or ""},
        {"role": "user", "content": "Why is that?"},
    ]
    again = client.chat.completions.create(model=args.model, messages=follow_up)
    print("follow-up asked as:", (again.model_extra or {})["ragserve"]["question"])


if __name__ == "__main__":
    main()
