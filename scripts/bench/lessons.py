"""A generated corpus of agent lessons and the questions an agent would ask of them, for
``recall_quality.py``. Deterministic (a seed), no data files, no network.

How it is made: 45 kinds of lesson (15 about providers, 15 about models, 15 about tools:
outages and breaker-like failures, rate limits, quirks, anti-patterns, contracts), each
written twice, as a lesson and as a question about it, in different words: the lesson
says "drops requests at 03:00 UTC", the question "is it unreliable overnight?". Every kind
is filled in for each of 48 providers, models or tools: 2,160 lessons, one per (kind,
name), so each question has exactly one right answer. The lessons about one name share
that name, so finding the name is not enough: the answer must also match the kind.

- **paraphrase** queries: the question's wording of a lesson with its name — they share
  the name and at most a stop word or two with the lesson (the generator checks: at most
  one content word besides the name);
- **keyword** queries: the name and two content words of the lesson itself (what a person
  who remembers the lesson's words types).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


def _words(text: str) -> list[str]:
    return text.split()


PROVIDERS = _words(
    "openai anthropic mistral cohere groq together fireworks deepseek kimi-coding moonshot "
    "perplexity replicate huggingface azure bedrock vertex cerebras sambanova openrouter xai "
    "ai21 voyage jina nvidia cloudflare ollama vllm deepinfra lepton novita hyperbolic "
    "baseten modal anyscale friendli nebius zhipu minimax baichuan stepfun reka writer "
    "aleph-alpha upstage databricks snowflake scaleway ovh"
)
MODELS = _words(
    "gpt-4o gpt-4o-mini o3-mini gpt-4.1 claude-sonnet-4 claude-haiku-3.5 claude-opus-4 "
    "gemini-2.5-pro gemini-2.0-flash mistral-large codestral ministral-8b llama-3.1-70b "
    "llama-3.1-8b llama-3.3-70b qwen2.5-coder qwen3-32b deepseek-v3 deepseek-r1 k2p5 "
    "command-r command-r-plus grok-3 grok-3-mini phi-4 gemma-2-27b gemma-3-12b "
    "mixtral-8x7b mixtral-8x22b yi-large glm-4 minimax-01 jamba-1.5 nemotron-70b "
    "granite-3.1 olmo-2 falcon-180b dbrx starcoder2 solar-pro reka-core aya-expanse "
    "sonar-large hermes-3 wizardlm-2 internlm3 ernie-4 kimi-k2"
)
TOOLS = _words(
    "git docker pytest npm pip uv cargo terraform kubectl helm bash ripgrep make cmake "
    "gradle maven jest eslint ruff mypy poetry yarn pnpm webpack vite postgres redis "
    "sqlite nginx systemd ssh rsync curl jq tmux ffmpeg playwright selenium ansible node "
    "bazel pre-commit black prettier tox conda deno bun"
)

# (lesson, question) per kind; {e} is the name, {n} a number. Question words avoid the
# lesson's content words (checked by ``_check``).
PROVIDER_KINDS = [
    ("Provider {e} drops requests at 03:00 UTC; schedule batch jobs for another hour",
     "is {e} unreliable overnight?"),
    ("{e} returns HTTP 429 after {n} calls per minute: throttle the client",
     "{e} keeps rejecting me for sending too fast"),
    ("{e} answers 529 overloaded during US business hours; back off exponentially",
     "what to do when {e} says it is at capacity in the afternoon"),
    ("API keys for {e} expire every {n} days; rotate them before the deadline",
     "my {e} credentials stopped working after a month"),
    ("{e} closes streaming responses after {n} seconds; resume with a new request",
     "{e} stream ends abruptly in the middle of an answer"),
    ("{e} is slow from eu-west; route traffic through the us-east endpoint",
     "{e} latency is terrible in Europe"),
    ("The certificate chain of the {e} endpoint is incomplete: pin the intermediate CA",
     "ssl handshake with {e} fails verification"),
    ("{e} bills cached prompt tokens at full price, silently",
     "{e} charges more than expected for repeated context"),
    ("Requests to {e} hang with no response: set a {n} second client timeout",
     "{e} calls never come back"),
    ("Circuit breaker for {e} opened after {n} consecutive 5xx errors",
     "{e} down, too many server failures in a row"),
    ("{e} ignores the response_format json setting and returns prose",
     "{e} won't give me structured output"),
    ("{e} duplicates a completion when a POST is retried; send an idempotency key",
     "retrying {e} gives me the answer twice"),
    ("{e} rejects payloads over {n} MB with a misleading 400 error",
     "{e} complains my input is invalid when it is just big"),
    ("Contract: {e} deprecates model aliases with only {n} days of notice",
     "how much warning does {e} give before removing names"),
    ("{e} status page lags real incidents by about an hour",
     "can I trust the {e} health dashboard"),
]
MODEL_KINDS = [
    ("{e} silently truncates prompts longer than {n}k tokens",
     "{e} forgets the beginning of long inputs"),
    ("{e} invents tool names that were never declared",
     "{e} calls functions that do not exist"),
    ("{e} refuses to edit files containing the word password",
     "{e} declines changes to config with secrets in it"),
    ("{e} becomes repetitive at temperature 0; use 0.3 instead",
     "{e} loops the same sentence when deterministic"),
    ("{e} believes the current year is 2023: pass today's date in the system prompt",
     "{e} is confused about what day it is"),
    ("{e} wraps every answer in markdown fences even when told not to",
     "{e} adds backticks around plain output"),
    ("{e} ignores stop sequences longer than {n} characters",
     "{e} keeps generating past where it should end"),
    ("{e} switches to Chinese in long conversations",
     "{e} replies in another language after many turns"),
    ("{e} miscounts characters in words; verify counts with code",
     "{e} is bad at counting letters"),
    ("{e} leaves TODO placeholders instead of full implementations",
     "{e} skips writing the whole function body"),
    ("{e} emits unescaped newlines inside JSON strings",
     "{e} output breaks my parser because of line breaks"),
    ("{e} gives the user message priority over the system prompt",
     "{e} disregards its instructions when the person asks otherwise"),
    ("{e} hallucinates citations and paper titles",
     "{e} makes up references to articles"),
    ("Anti-pattern: asking {e} for more than {n} edits in one diff garbles the patch",
     "{e} mangles big multi-file changes"),
    ("{e} drops the final item of numbered lists over {n} entries",
     "{e} loses the last element of long enumerations"),
]
TOOL_KINDS = [
    ("{e} tests fail intermittently when run in parallel; pin the worker count to 1",
     "{e} suite randomly breaks with concurrency"),
    ("Pin {e} to version 2.{n}; the next release changed its default flags",
     "{e} upgrade broke our build options"),
    ("{e} cache goes stale after a branch switch; clear it before building",
     "{e} uses old artifacts after checking out another branch"),
    ("{e} fails with permission denied inside the container unless run as uid 1000",
     "{e} not allowed to write files in docker"),
    ("{e} rewrites the lockfile on every install; use the frozen flag in CI",
     "{e} keeps changing the dependency resolution file each run"),
    ("{e} runs out of memory on large repositories; raise the heap to {n} GB",
     "{e} crashes with OOM on big projects"),
    ("{e} cannot find its config when started from a subdirectory",
     "{e} settings not picked up outside the project root"),
    ("{e} ignores the HTTPS_PROXY variable; configure the proxy in its own settings",
     "{e} won't go through our corporate gateway"),
    ("{e} output changes under a non-English locale; set LC_ALL=C",
     "{e} prints differently on a German system"),
    ("{e} leaves orphan child processes when interrupted with Ctrl-C",
     "zombies remain after stopping {e}"),
    ("{e} logs timestamps in local time, not UTC",
     "{e} log times are off by hours"),
    ("{e} emits ANSI color codes into piped output; pass --no-color",
     "{e} writes escape garbage when redirected to a file"),
    ("{e} hangs forever waiting for a TTY prompt in CI",
     "{e} stuck on interactive question in automation"),
    ("Anti-pattern: running {e} as root in CI leaves unreadable files",
     "{e} with superuser creates files nobody else can open"),
    ("{e} is {n}x slower on network file systems; use a local disk",
     "{e} crawls on NFS mounts"),
]

STOP = set(_words(
    "a an the is are was it its to of in on at for by with and or not no my me i we our "
    "what how do does when can so too much more than after before into from there this "
    "that be as just gives give keeps keep over about many where should instead while "
    "every each only any another other same"
))
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Lesson:
    key: str  # kind:name, unique
    text: str
    category: str
    subject: str


@dataclass(frozen=True)
class Query:
    text: str
    relevant: str  # the key of the one right lesson
    style: str  # paraphrase | keyword


def content_words(text: str, name: str = "") -> set[str]:
    skip = set(_WORD.findall(name.lower()))
    return {w for w in _WORD.findall(text.lower()) if w not in STOP and w not in skip}


def corpus(seed: int = 0) -> list[Lesson]:
    """2,160 lessons: every kind for every name of its group, in a seeded order."""
    rng = random.Random(seed)
    out = []
    for group, names, kinds in (("provider", PROVIDERS, PROVIDER_KINDS),
                                ("model", MODELS, MODEL_KINDS),
                                ("tool", TOOLS, TOOL_KINDS)):  # fmt: skip
        for k, (lesson, _) in enumerate(kinds):
            for name in names:
                text = lesson.format(e=name, n=rng.randint(2, 64))
                category = ("anti-pattern" if text.startswith("Anti-pattern") else
                            "contract" if text.startswith("Contract") else "learning")  # fmt: skip
                out.append(Lesson(f"{group}{k}:{name}", text, category, f"{group}:{name}"))
    rng.shuffle(out)
    return out


def queries(lessons: list[Lesson], seed: int = 0, paraphrases: int = 240,
            keywords: int = 100) -> list[Query]:  # fmt: skip
    """Paraphrase questions of ``paraphrases`` lessons and keyword queries of ``keywords``
    others, drawn with ``seed``."""
    rng = random.Random(seed + 1)
    kinds = {"provider": PROVIDER_KINDS, "model": MODEL_KINDS, "tool": TOOL_KINDS}
    picked = rng.sample(lessons, paraphrases + keywords)
    out = []
    for lesson in picked[:paraphrases]:
        group, rest = lesson.key.split(":", 1)
        family = group.rstrip("0123456789")
        question = kinds[family][int(group[len(family):])][1].format(e=rest)
        out.append(Query(question, lesson.key, "paraphrase"))
    for lesson in picked[paraphrases:]:
        name = lesson.key.split(":", 1)[1]
        words = sorted(content_words(lesson.text, name) - {"provider", "anti", "pattern",
                                                            "contract"})  # fmt: skip
        words = [w for w in words if not w.isdigit()]
        out.append(Query(" ".join([name, *rng.sample(words, min(2, len(words)))]), lesson.key,
                         "keyword"))  # fmt: skip
    return out


def embedded_texts(seed: int = 0) -> list[str]:
    """Every text a quality run embeds: each lesson as ``crdt.views.embedded_text`` makes it
    (text and subject), then every query; for vectors made by another model elsewhere."""
    lessons = corpus(seed)
    return [f"{x.text} {x.subject}" for x in lessons] + [q.text for q in queries(lessons, seed)]


def _check() -> None:
    """Each paraphrase shares at most one content word (besides the name) with its lesson."""
    for kinds in (PROVIDER_KINDS, MODEL_KINDS, TOOL_KINDS):
        for lesson, question in kinds:
            shared = content_words(lesson, "{e}") & content_words(question, "{e}")
            assert len(shared - {"e", "n"}) <= 1, (lesson, question, shared)


_check()
