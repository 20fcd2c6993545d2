"""Secrets: provider API keys, cloud credentials, tokens, private keys and passwords.

A leaked credential is worse than leaked personal data (it is usable at once), so the patterns are broad:
known key prefixes first (exact, high confidence), then "key = <long random string>" assignments and "password
is ..." phrases (lower confidence, still reported).
"""

from __future__ import annotations

import re

Hit = tuple[str, int, int, float]

# (kind, confidence, substrings that must be present, pattern). Each pattern starts with a literal where it
# can (the regex engine then jumps between occurrences instead of trying every position); word boundaries are
# checked afterwards in Python for the same reason. The substring gate skips the pattern entirely.
_PATTERNS: tuple[tuple[str, float, tuple[str, ...], re.Pattern[str]], ...] = (
    ("API_KEY", 0.95, ("sk-ant-",), re.compile(r"sk-ant-[A-Za-z0-9_-]{16,}")),
    ("API_KEY", 0.9, ("sk-",), re.compile(r"sk-(?!ant-)[A-Za-z0-9_-]{16,}")),
    ("API_KEY", 0.9, ("_live_", "_test_"), re.compile(r"[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}")),  # Stripe
    ("API_KEY", 0.9, ("AIza",), re.compile(r"AIza[0-9A-Za-z_-]{30,}")),  # Google
    ("API_KEY", 0.85, ("hf_",), re.compile(r"hf_[A-Za-z0-9]{30,}")),  # Hugging Face
    ("API_KEY", 0.85, ("SG.",), re.compile(r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}")),  # SendGrid
    (
        "CLOUD_KEY",
        0.95,
        tuple(str.split("AKIA ASIA AGPA AIDA AROA ANPA ANVA AIPA")),
        re.compile(r"A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)[0-9A-Z]{16}(?![0-9A-Za-z])"),
    ),  # AWS key id
    ("CLOUD_KEY", 0.85, ("AccountKey=",), re.compile(r"AccountKey=[A-Za-z0-9/+=]{30,}")),  # Azure storage
    ("TOKEN", 0.95, ("_",), re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}")),  # GitHub
    ("TOKEN", 0.95, ("github_pat_",), re.compile(r"github_pat_[A-Za-z0-9_]{30,}")),
    ("TOKEN", 0.9, ("glpat-",), re.compile(r"glpat-[A-Za-z0-9_-]{20,}")),  # GitLab
    ("TOKEN", 0.9, ("npm_",), re.compile(r"npm_[A-Za-z0-9]{30,}")),
    ("TOKEN", 0.9, ("xox",), re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),  # Slack
    ("TOKEN", 0.9, ("hooks.slack",), re.compile(r"hooks\.slack\.com/services/[A-Za-z0-9/]{20,}")),
    (
        "TOKEN",
        0.9,
        ("eyJ",),
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),  # JWT
    ("TOKEN", 0.85, ("earer",), re.compile(r"[Bb]earer\s+[A-Za-z0-9._~+/-]{16,}=*")),
    (
        "PRIVATE_KEY",
        0.99,
        ("-----BEGIN",),
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ),
    (
        "PASSWORD_IN_URL",
        0.95,
        ("://",),
        re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]+:[^\s@/]+@[^\s/]+"),
    ),
)
# Phrases, matched on the lower-cased text: "password: hunter2", "api_key = '...'". Each starts with a literal
# word so that the scan jumps between its occurrences.
_VALUE = r"[\"']?\s*[:=]\s*[\"']?[a-z0-9_\-./+=]{16,}"
_PASSWORD_VALUE = (
    r"\b[\"']?\s*(?:is|:|=|was)\s*[\"']?(?!\s)"
    r"(?!(?:the|a|an|your|my|not|required|incorrect|wrong|empty|hidden|reset)\b)[^\s\"']{4,}"
)
_PHRASES: tuple[tuple[str, float, str, re.Pattern[str]], ...] = (
    ("PASSWORD", 0.7, "passw", re.compile(r"passw(?:or)?d" + _PASSWORD_VALUE)),
    ("PASSWORD", 0.7, "passphrase", re.compile(r"passphrase" + _PASSWORD_VALUE)),
    ("PASSWORD", 0.7, "passcode", re.compile(r"passcode" + _PASSWORD_VALUE)),
    ("PASSWORD", 0.7, "pwd", re.compile(r"pwd" + _PASSWORD_VALUE)),
    ("PASSWORD", 0.7, "pin", re.compile(r"pin(?: code)?" + _PASSWORD_VALUE)),
    ("API_KEY", 0.7, "api", re.compile(r"api[_-]?key" + _VALUE)),
    ("CLOUD_KEY", 0.85, "aws", re.compile(r"aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?[a-z0-9/+=]{30,}")),
    ("API_KEY", 0.7, "secret", re.compile(r"secret(?:[_-]?(?:access[_-]?)?key)?" + _VALUE)),
    ("API_KEY", 0.7, "token", re.compile(r"token" + _VALUE)),
)


_TEXT_NEEDLES = tuple(sorted({n for _, _, needles, _ in _PATTERNS for n in needles}))
#: For :mod:`producer.prefilter`: each pattern itself, so that "pin" in "opinion" or "token" in prose without a
#: value runs nothing (phrases case-blind, as they run on ``lowered``).
_PATTERN_NAMES = tuple(f"secret{i}" for i in range(len(_PATTERNS)))
_PHRASE_NAMES = tuple(f"phrase{i}" for i in range(len(_PHRASES)))
_TRIGGER_NAMES = frozenset(_PATTERN_NAMES + _PHRASE_NAMES)
TRIGGERS = [(name, p.pattern, False) for name, (_, _, _, p) in zip(_PATTERN_NAMES, _PATTERNS, strict=True)] + [
    (name, p.pattern, True) for name, (_, _, _, p) in zip(_PHRASE_NAMES, _PHRASES, strict=True)
]


def find_secrets(text: str, lowered: str, fired: set[str] | None = None) -> list[Hit]:
    """``fired``: the prefilter's triggers for this text (only those patterns run), or None."""
    if fired is not None:
        if fired.isdisjoint(_TRIGGER_NAMES):
            return []
        patterns = [p for name, p in zip(_PATTERN_NAMES, _PATTERNS, strict=True) if name in fired]
        phrases = [p for name, p in zip(_PHRASE_NAMES, _PHRASES, strict=True) if name in fired]
    else:
        # Every pattern needs one of a few substrings, and plain prose (nearly every prompt) has none.
        present = {n for n in _TEXT_NEEDLES if n in text}
        patterns = [p for p in _PATTERNS if not present.isdisjoint(p[2])]
        phrases = [p for p in _PHRASES if p[2] in lowered]
    if not patterns and not phrases:
        return []
    hits: list[Hit] = []
    for kind, confidence, _, pattern in patterns:
        for m in pattern.finditer(text):
            s = m.start()
            if s == 0 or not (text[s - 1].isalnum() or text[s - 1] in "_-"):
                hits.append((kind, s, m.end(), confidence))
    for kind, confidence, _, pattern in phrases:
        for m in pattern.finditer(lowered):
            s = m.start()
            if s == 0 or not lowered[s - 1].isalpha():  # "pin: 1234", not "spin: ..."
                hits.append((kind, s, m.end(), confidence))
    return hits
