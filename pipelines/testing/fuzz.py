"""Generated events for the packaged Lambda handler: good ones in every accepted shape (direct text or
batch, bare text or list, API Gateway v1/v2 proxy bodies, base64 or not), and bad ones of every kind the
handler must answer with a 4xx JSON error instead of crashing. Deterministic for a seed.
"""
from __future__ import annotations

import base64
import json
import random
import re
from dataclasses import dataclass, field

API_GATEWAY_V1 = {"resource": "/classify", "httpMethod": "POST", "requestContext": {"stage": "prod"},
                  "isBase64Encoded": False}
API_GATEWAY_V2 = {"version": "2.0", "routeKey": "POST /classify", "requestContext": {"http": {"method": "POST"}}}
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024
DECORATIONS = ["", " 🎬🍿", " – très bien", " 電影", " \u0301\u0301", " \t\x00\x07", " ¡¿", " 😀" * 3]


@dataclass
class FuzzEvent:
    """One event, what kind it is, and for a good one the texts it must classify."""

    event: object
    category: str
    texts: list[str] | None = None  # for a good event: the texts it must classify, in order
    proxy: bool = False
    over_limit: bool = False  # bigger than Lambda's 6 MB request payload


@dataclass
class FuzzSet:
    """The events generated so far."""

    events: list[FuzzEvent] = field(default_factory=list)

    def add(self, event, category: str, texts: list[str] | None = None, proxy: bool = False) -> None:
        self.events.append(FuzzEvent(event, category, texts, proxy, len(json.dumps(event)) > LAMBDA_PAYLOAD_LIMIT))


def base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode()


def nested_in_lists(depth: int, leaf) -> object:
    """`leaf` inside `depth` one-element lists."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def handler_accepts(x, max_batch: int, max_chars: int) -> bool:
    """What the handler's contract accepts (its docstring): a text, a list of 1..max_batch texts, or
    {"inputs": either}; a text is non-blank, at most max_chars long and valid Unicode."""
    def text_ok(t):
        return isinstance(t, str) and bool(t.strip()) and len(t) <= max_chars and not re.search("[\ud800-\udfff]", t)
    if isinstance(x, dict):
        return (set(x) == {"inputs"} and handler_accepts(x["inputs"], max_batch, max_chars)
                and not isinstance(x["inputs"], dict))
    if isinstance(x, list):
        return 0 < len(x) <= max_batch and all(text_ok(t) for t in x)
    return text_ok(x)


def proxy_event(payload, b64: bool, v2: bool, raw: str | None = None) -> dict:
    """An API Gateway proxy event whose body is `payload` as JSON (or the `raw` text), base64-encoded or not."""
    data = raw if raw is not None else json.dumps(payload)
    base = API_GATEWAY_V2 if v2 else API_GATEWAY_V1
    if b64:
        return base | {"body": base64_text(data.encode("utf-8", "surrogatepass")), "isBase64Encoded": True}
    return base | {"body": data}


def fuzz_events(n: int, seed: int, good_texts: list[str], max_batch: int = 32, max_chars: int = 2000) -> list[FuzzEvent]:
    """n generated events (at least), about one in five good. Good ones carry real sentences (sometimes with
    emoji, accents, CJK or control characters, up to the length limit); bad ones are wrong shapes, empty
    texts and lists, too long texts, oversized batches, lone surrogates, non-UTF-8 and non-base64 bodies,
    deeply nested junk, invalid JSON, huge numbers, and payloads over Lambda's 6 MB."""
    rng = random.Random(seed)
    maker = EventMaker(rng, good_texts, max_batch, max_chars)
    events = FuzzSet()
    add_fixed_cases(events)  # first, so every kind is present whatever n is
    while len(events.events) < n:
        if rng.random() < 0.2:
            maker.add_good(events)
        else:
            maker.add_bad(events)
    return events.events


def add_fixed_cases(s: FuzzSet) -> None:
    """Events over the 6 MB limit, pathological JSON bodies and junk proxy fields."""
    big = "x" * (LAMBDA_PAYLOAD_LIMIT + 500_000)
    s.add({"inputs": big}, "over-6MB direct text")
    s.add({"inputs": ["ok"] * 1_200_000}, "over-6MB direct batch")
    s.add(big, "over-6MB bare text")
    s.add(proxy_event({"inputs": big}, False, False), "over-6MB proxy v1", proxy=True)
    s.add(proxy_event({"inputs": "a good film"}, False, True, raw=json.dumps({"inputs": "a good film", "pad": big})),
          "over-6MB proxy v2", proxy=True)
    s.add(proxy_event(None, True, True, raw=json.dumps({"inputs": big[: LAMBDA_PAYLOAD_LIMIT * 4 // 5]})),
          "over-6MB proxy base64", proxy=True)
    s.add(proxy_event(None, False, False, raw="[" * 200_000), "deeply nested JSON body", proxy=True)
    s.add(proxy_event(None, False, True, raw='{"inputs": ' + "9" * 5000 + "}"), "5000-digit number", proxy=True)
    s.add(proxy_event(None, False, True, raw='{"inputs": "\\ud800"}'), "lone surrogate in a JSON body", proxy=True)
    s.add({"inputs": nested_in_lists(400, "deep")}, "nested 400 deep")
    for bad_body in (None, "", 42, ["a"], {"inputs": "x"}, True):
        s.add(dict(API_GATEWAY_V1) | {"body": bad_body}, f"proxy body {type(bad_body).__name__}", proxy=True)
    s.add(dict(API_GATEWAY_V1) | {"body": "aGVsbG8=", "isBase64Encoded": {"yes": 1}}, "proxy base64 flag junk",
          proxy=True)
    s.add(proxy_event(None, True, False, raw="\ufeff" + json.dumps({"inputs": "bom"})), "BOM before JSON", proxy=True)


class EventMaker:
    """Seeded random texts, junk values and events (good and bad) for one fuzz run."""

    def __init__(self, rng: random.Random, good_texts: list[str], max_batch: int, max_chars: int):
        self.rng, self.good_texts, self.max_batch, self.max_chars = rng, good_texts, max_batch, max_chars

    def text(self) -> str:
        """A good sentence, sometimes decorated or repeated up to the length limit."""
        rng = self.rng
        t = rng.choice(self.good_texts) + rng.choice(DECORATIONS)
        if rng.random() < 0.05:  # long but within the limit: truncated to the model's tokens
            t = (t + " ") * (self.max_chars // (len(t) + 1))
        return t[:self.max_chars]

    def texts(self, k: int) -> list[str]:
        return [self.text() for _ in range(k)]

    def junk(self, depth: int = 0):
        """Any JSON-like value: scalars, odd strings, containers, nested junk."""
        rng = self.rng
        kind = rng.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([0, -1, 2**63, -2**70, 3.14, 1e308, float("-0.0")])
        if kind == 2:
            return rng.choice([True, False])
        if kind == 3:
            return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 30)))
        if kind == 4:
            return rng.choice(["", " ", "\n", "inputs", "null", "{}", "[]", "\ud800", "\udfff x"])
        if kind == 5:
            return rng.choice([[], {}, [[]], [{}]])
        if kind == 6:
            return [self.junk(depth + 1) for _ in range(rng.randrange(1, 5))]
        if kind == 7:
            return {rng.choice(["inputs", "text", "data", "", "🎬", "input"]): self.junk(depth + 1)
                    for _ in range(rng.randrange(1, 4))}
        return nested_in_lists(rng.randrange(1, 60), self.junk(depth + 1))

    def unusable_junk(self):
        """Junk the handler's contract does not accept."""
        while True:
            x = self.junk()
            if not handler_accepts(x, self.max_batch, self.max_chars):
                return x

    def list_with_a_non_text(self) -> list:
        """A list with at least one element that is not a usable text."""
        rng = self.rng
        items = self.texts(rng.randrange(0, 4))
        bad = rng.choice([None, 1, 2.5, True, [], {}, ["x"], {"inputs": "x"}, "", "   ", "\n\t", "\ud800",
                          "ok \udc80", "x" * (self.max_chars + 1)])
        items.insert(rng.randrange(len(items) + 1), bad)
        return items

    def add_good(self, s: FuzzSet) -> None:
        """A good event, in one of the accepted shapes, with 1 or up to max_batch texts."""
        rng = self.rng
        k = rng.randrange(1, self.max_batch + 1) if rng.random() < 0.4 else 1
        ts = self.texts(k)
        shape = rng.randrange(6)
        if shape == 0:
            s.add({"inputs": ts[0]}, "good direct text", ts[:1])
        elif shape == 1:
            s.add({"inputs": ts}, "good direct batch", ts)
        elif shape == 2:
            s.add(ts[0], "good bare text", ts[:1])
        elif shape == 3:
            s.add(ts, "good bare list", ts)
        else:
            s.add(proxy_event({"inputs": ts}, shape == 5, rng.random() < 0.5), "good proxy", ts, proxy=True)

    def add_bad(self, s: FuzzSet) -> None:
        """A bad event of one of thirteen kinds."""
        rng, max_chars, max_batch = self.rng, self.max_chars, self.max_batch
        kind = rng.randrange(13)
        if kind == 0:
            s.add(self.unusable_junk(), "junk value")
        elif kind == 1:
            s.add({rng.choice(["text", "input", "Inputs", "", "inputs "]): self.junk()}, "wrong field")
        elif kind == 2:
            s.add({"inputs": self.text(), rng.choice(["extra", "inputs2", "🎬", "x" * 1000]): self.junk()},
                  "extra field")
        elif kind == 3:
            s.add({"inputs": rng.choice([None, 1, 2.5, True, {}, {"a": "b"}])}, "inputs not a text")
        elif kind == 4:
            s.add(rng.choice([{"inputs": []}, [], {"inputs": ""}, "", "   ", {"inputs": "\n\t "}]), "empty")
        elif kind == 5:
            s.add({"inputs": self.list_with_a_non_text()} if rng.random() < 0.7 else self.list_with_a_non_text(),
                  "list with a non-text")
        elif kind == 6:
            s.add({"inputs": "y" * rng.choice([max_chars + 1, 10_000, 100_000, 1_000_000])}, "text too long")
        elif kind == 7:
            s.add({"inputs": ["ok"] * rng.choice([max_batch + 1, 100, 10_000])}, "batch too large")
        elif kind == 8:
            s.add({"inputs": rng.choice(["\ud800", "fine \udfff", "\udbff\udc00\ud800 x"])}, "lone surrogate")
        elif kind == 9:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + b"\xff\xfe"
            s.add(dict(API_GATEWAY_V2) | {"body": base64_text(raw), "isBase64Encoded": True}, "non-UTF-8 body",
                  proxy=True)
        elif kind == 10:
            raw = rng.choice(["{nope", "{'inputs': 'x'}", '{"inputs": "x"', "nan", "[1,]", "\x00", "inputs=x",
                              json.dumps({"inputs": "x"})[: rng.randrange(1, 15)]])
            s.add(proxy_event(None, rng.random() < 0.5, rng.random() < 0.5, raw=raw), "invalid JSON body", proxy=True)
        elif kind == 11:
            s.add(dict(API_GATEWAY_V1 if rng.random() < 0.5 else API_GATEWAY_V2)
                  | {"body": rng.choice(["***", "a", "aGVsbG8", "!!!!", "\u00e9t\u00e9"]), "isBase64Encoded": True},
                  "not base64", proxy=True)
        else:
            payload = rng.choice([self.unusable_junk(), {"inputs": self.list_with_a_non_text()}, {"inputs": []},
                                  {"nope": 1}])
            s.add(proxy_event(payload, rng.random() < 0.5, rng.random() < 0.5), "bad payload in a proxy body",
                  proxy=True)
