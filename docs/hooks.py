"""MkDocs hooks: the references that are generated from the code, so they cannot drift.

A page holding ``<!-- gastrorad:cli -->`` gets every ``gastrorad`` command with its usage, arguments
and options, read from the typer app (:data:`gastrorad.cli.app`). A page holding
``<!-- gastrorad:study-file -->`` gets every study-file key with its type, default, allowed values
and description, read from the pydantic models (:class:`gastrorad.config.study.StudyConfig`).
``tests/test_docs.py`` builds the site in strict mode and checks both pages against the code.
"""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path

CLI_MARK = "<!-- gastrorad:cli -->"
STUDY_MARK = "<!-- gastrorad:study-file -->"


# ---------------------------------------------------------------- study file
def _is_model(tp) -> bool:
    from pydantic import BaseModel
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip(tp):
    """The type without ``Annotated`` metadata."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def type_name(tp) -> str:
    """A reader's name of a field's type: ``int``, ``list[str]``, ``'last' | 'all'``, ``section``."""
    tp = _strip(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" if isinstance(a, str) else f"`{a!r}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple, set):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"list of {inner}" if inner else "list"
    if origin is dict:
        return f"map of {type_name(args[0])} to {type_name(args[1])}" if args else "map"
    if _is_model(tp):
        return "section"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(f"`{m.value}`" for m in tp)
    if tp is typing.Any:
        return "any"
    if isinstance(tp, type):
        return {"Path": "path", "str": "text", "bool": "true/false"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def _default(field) -> str:
    from pydantic_core import PydanticUndefined
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "computed"
        if _is_model(type(value)):
            return "(section defaults)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    return f"`{_yaml(value)}`"


def _yaml(value) -> str:
    import json
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if _is_model(type(value)):
        return "{...}"
    try:
        return json.dumps(value, default=str)
    except TypeError:
        return str(value)


def _models_in(tp) -> list[tuple[str, type]]:
    """Sub-models a field's type holds, each with a label ('' or the discriminating value)."""
    tp = _strip(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_model(tp):
        return [("", tp)]
    if origin in (typing.Union, types.UnionType):
        found = [m for a in args for m in _models_in(a)]
        labelled = []
        for _, m in found:
            mode = m.model_fields.get("mode")
            tag = typing.get_args(_strip(mode.annotation))[0] if mode is not None and typing.get_origin(
                _strip(mode.annotation)) is typing.Literal else ""
            labelled.append((str(tag), m))
        return labelled if len(labelled) > 1 else [("", m) for _, m in found]
    if origin in (list, tuple, set, dict):
        return [m for a in args for m in _models_in(a)]
    return []


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    return text.split(". ")[0].rstrip(".") + "." if text else ""


def study_rows(model, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every field of ``model`` and its sub-sections."""
    rows = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        subs = _models_in(field.annotation)
        desc = field.description or (_first_sentence(subs[0][1].__doc__) if subs else "")
        rows.append((key, type_name(field.annotation), _default(field), desc))
        for label, sub in subs:
            sub_prefix = f"{key}." if not label else f"{key}.[mode: {label}]."
            rows += study_rows(sub, sub_prefix)
    return rows


def study_file_markdown() -> str:
    """The study-file reference: one section per top-level key, one table row per key below it."""
    from gastrorad.config.study import StudyConfig
    out = []
    top = [(n, f) for n, f in StudyConfig.model_fields.items() if not f.exclude]
    simple = [(n, f) for n, f in top if not _models_in(f.annotation)]
    out.append("## Top-level keys\n")
    out.append("| key | type | default | description |\n|---|---|---|---|")
    for n, f in simple:
        out.append(f"| `{n}` | {_cell(type_name(f.annotation))} | {_cell(_default(f))} | {_cell(f.description or '')} |")
    for n, f in top:
        subs = _models_in(f.annotation)
        if not subs:
            continue
        out.append(f"\n## `{n}`\n")
        doc = (subs[0][1].__doc__ or "").strip()
        if f.description:
            out.append(_cell(f.description) + "\n")
        elif doc:
            out.append(" ".join(doc.split()) + "\n")
        out.append(f"Default: {_cell(_default(f))}.\n")
        out.append("| key | type | default | description |\n|---|---|---|---|")
        for label, sub in subs:
            for key, tp, default, desc in study_rows(sub, f"{n}." + (f"[mode: {label}]." if label else "")):
                out.append(f"| `{key}` | {_cell(tp)} | {_cell(default)} | {_cell(desc)} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- command line
def cli_markdown() -> str:
    """Every command of the typer app: help, usage, arguments and options (from click's objects)."""
    import typer.main
    from gastrorad.cli import app
    group = typer.main.get_command(app)
    out = []

    def emit(cmd, path: list[str], level: int):
        ctx = cmd.context_class(cmd, info_name=" ".join(path))
        name = " ".join(path)
        out.append(f"\n{'#' * level} `{name}`\n")
        if cmd.help:
            out.append(" ".join(cmd.help.replace("\b", "").split("\n\n")[0].split()) + "\n")
            rest = cmd.help.replace("\b", "").split("\n\n")[1:]
            for para in rest:
                out.append(" ".join(para.split()) + "\n")
        out.append("```text\n" + cmd.get_usage(ctx) + "\n```\n")
        params = [p for p in cmd.params if p.name != "help"]
        if params:
            out.append("| argument or option | type | default | description |\n|---|---|---|---|")
            for p in params:
                option = p.param_type_name == "option"
                names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts]) if option else f"`{p.name.upper()}`"
                kind = p.display_type(ctx) if callable(getattr(p, "display_type", None)) else ""
                kind = kind.strip("<>")
                if option and p.secondary_opts:
                    kind = "flag"
                default = "required" if p.required else ("" if p.default is None or callable(p.default)
                                                         else f"`{_yaml(p.default)}`")
                helptext = getattr(p, "help", None) or ""
                out.append(f"| {names} | {_cell(kind)} | {_cell(default)} | {_cell(helptext)} |")
        if hasattr(cmd, "list_commands"):
            for sub in cmd.list_commands(ctx):
                emit(cmd.get_command(ctx, sub), [*path, sub], level + 1)

    ctx = group.context_class(group, info_name="gastrorad")
    out.append(" ".join((group.help or "").split()) + "\n")
    out.append("Every command prints its own help with `--help`. Commands:\n")
    for sub in group.list_commands(ctx):
        short = group.get_command(ctx, sub).get_short_help_str(limit=120)
        out.append(f"- [`gastrorad {sub}`](#gastrorad-{sub}): {short}")
    for sub in group.list_commands(ctx):
        emit(group.get_command(ctx, sub), ["gastrorad", sub], 2)
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_markdown())
    if STUDY_MARK in markdown:
        markdown = markdown.replace(STUDY_MARK, study_file_markdown())
    return markdown
