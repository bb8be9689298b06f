"""A study file as YAML text with a comment above each setting ``gastrorad init`` chose."""

from __future__ import annotations

import textwrap

import yaml

WIDTH = 110


def flow(value) -> str:
    """``value`` as one line of YAML (flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False, allow_unicode=True)
    lines = [ln for ln in text.splitlines() if ln.strip() != "..."]
    return " ".join(lines).strip()


def dump(data: dict, comments: dict[tuple, str], header: list[str] = ()) -> str:
    """Block-style YAML of ``data``; ``comments`` maps a key path (``("preprocess", "window")``) to
    the reason written above that key. Sections are blocks; shorter mappings without comments stay on
    one line."""
    lines = [f"# {ln}" if ln else "#" for ln in header]
    lines += _emit(data, comments, (), 0)
    return "\n".join(lines) + "\n"


def _emit(data: dict, comments: dict[tuple, str], path: tuple, depth: int) -> list[str]:
    out: list[str] = []
    pad = "  " * depth
    for key, value in data.items():
        here = path + (key,)
        if here in comments:
            out += [f"{pad}# {ln}" for ln in textwrap.wrap(comments[here], WIDTH - len(pad) - 2)]
        inner = any(p[:len(here)] == here and len(p) > len(here) for p in comments)
        long = len(pad) + len(str(key)) + len(flow(value)) > WIDTH - 2 if isinstance(value, dict) else False
        if isinstance(value, dict) and value and (inner or depth == 0 or long):
            out.append(f"{pad}{flow(key)}:")
            out += _emit(value, comments, here, depth + 1)
        else:
            out.append(f"{pad}{flow(key)}: {flow(value)}")
    return out
