"""The ``pixbot`` command line: run, generate, serve, doctor, history.

Exit status: 0 when everything asked for was done; 1 when any image failed (stored ones are still
listed); 2 for a usage or configuration error, with one ``error: ...`` line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from core.artifacts import is_artifact_id
from core.config import ApiConfig, AppConfig
from core.config_file import load_config
from core.errors import (
    BadImage,
    ConfigError,
    InternalError,
    InvalidRequest,
    NothingToEdit,
    PixbotError,
    Unsupported,
)
from core.models import ChatRef, ImageRequest, JobResult, Mode, Reference

__all__ = ["main"]


class _UsageError(Exception):
    """A usage or configuration problem: exit 2 with one line on stderr."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixbot", description="Generate and edit images from chat.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", metavar="PATH",
                         help="config file (default $PIXBOT_CONFIG or ~/.pixbot/config.json)")
        return sub

    command("run", "start every enabled front-end; Ctrl-C stops cleanly")

    gen = command("generate", "generate (or edit) images and store them")
    gen.add_argument("prompt", help="what to draw, or how to change the reference images")
    gen.add_argument("-n", "--count", type=int, default=None, help="number of images (1 to maxImagesPerTurn)")
    gen.add_argument("--aspect-ratio", "--ar", dest="aspect_ratio", help="e.g. 1:1, 16:9, 9:16")
    gen.add_argument("--size", help="size hint, e.g. 1K, 2K, 4K or 1024x1024")
    gen.add_argument("--ref", action="append", default=[], metavar="PATH_OR_ID",
                     help="reference image: a file path or an artifact id (repeatable)")
    gen.add_argument("--provider", help="override tools.imageGeneration.provider")
    gen.add_argument("--model", help="override the model")
    gen.add_argument("--chat", default="cli:default", metavar="KEY", help="chat key for history and --edit-last")
    gen.add_argument("--edit-last", action="store_true", help="edit this chat's last image")
    gen.add_argument("--json", action="store_true", help="print one JSON object")

    serve = command("serve", "run the OpenAI Images-compatible HTTP API alone")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    doctor = command("doctor", "validate the config and list providers, models and capabilities")
    doctor.add_argument("--ping", action="store_true",
                        help="also generate one small image with each provider in use (billed by the provider)")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")

    command("migrate", "apply the state database's migrations now and print its engine and schema version")

    prune = command("prune", "delete stored images older than N days (default storage.retentionDays)")
    prune.add_argument("--days", type=int, default=None, help="keep images from the last N days")

    history = command("history", "list recent images")
    history.add_argument("--chat", metavar="KEY", help="only this chat (e.g. telegram:123)")
    history.add_argument("-n", type=int, default=10, help="how many (default 10)")
    history.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if args.command in ("run", "serve"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        handler = {"run": _run, "generate": _generate, "serve": _serve, "doctor": _doctor,
                   "history": _history, "prune": _prune, "migrate": _migrate}[args.command]
        return asyncio.run(handler(config, args))
    except (_UsageError, PixbotError) as exc:  # also start-up failures, e.g. a database from a newer pixbot
        # The operator runs the CLI: an internal failure's detail (already redacted) is theirs to see.
        detail = exc.detail if isinstance(exc, InternalError) and exc.detail else None
        print(f"error: {exc}" + (f" ({detail})" if detail else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run(config: AppConfig, args: argparse.Namespace) -> int:
    from bots.app import enabled_front_ends, run_front_ends

    front_ends = enabled_front_ends(config)
    if not front_ends:
        raise _UsageError(
            "nothing to run: set bots.telegram.token (or TELEGRAM_BOT_TOKEN), bots.discord.token "
            "(or DISCORD_BOT_TOKEN), bots.web.enabled (the studio) or bots.api.enabled in the config file")
    await run_front_ends(config, front_ends)
    return 0


async def _serve(config: AppConfig, args: argparse.Namespace) -> int:
    from bots.app import run_front_ends
    from bots.http_api import run_api

    # ``is not None``: ``--port 0`` (any free port) is an override too.
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        api = ApiConfig.model_validate({**config.bots.api.model_dump(), **overrides})
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise _UsageError(f"bots.api: {message}") from None
    config = config.model_copy(update={"bots": config.bots.model_copy(update={"api": api})})
    await run_front_ends(config, {"api": run_api})
    return 0


async def _generate(config: AppConfig, args: argparse.Namespace) -> int:
    from bots.app import open_service

    refs = tuple(
        # Only the exact id form is an id, so a file such as ``img_ab12cd34ef56.png`` stays a path.
        Reference(artifact_id=value) if is_artifact_id(value) else Reference(path=value, trusted=True)
        for value in args.ref)
    mode: Mode = "edit" if args.edit_last else "auto"
    chat = ChatRef.from_key(args.chat, user_id="operator")
    async with open_service(config) as service:
        # --edit-last (with or without --ref): the chat's last image first, any given ones after it.
        request = ImageRequest(prompt=args.prompt, chat=chat, references=refs, aspect_ratio=args.aspect_ratio,
                               size=args.size, count=args.count, provider=args.provider, model=args.model,
                               mode=mode, include_last=args.edit_last)
        try:
            result = await service.submit(request, enforce_limits=False)
        except NothingToEdit:
            raise _UsageError(f"there is no image in chat {chat.key} to edit yet (--edit-last): generate one "
                              "first, or pass --ref PATH") from None
        except (InvalidRequest, Unsupported, BadImage, ConfigError) as exc:
            # Raised before any provider call (submit's pre-flight): bad input or configuration, so a usage
            # error; the operator also sees the detail (e.g. which key to set).
            raise _UsageError(f"{exc} ({exc.detail})" if isinstance(exc, InvalidRequest) and exc.detail
                              else str(exc)) from None
        except PixbotError as exc:
            _print_failure(exc, args.json)
            return 1
        _print_result(result, args.json)
        await service.mark_delivered(result.job_id, request.chat.key, [])
    return 0 if result.ok else 1


def _print_failure(exc: PixbotError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"artifacts": [], "report": {}, "errors": [exc.to_dict()]}, ensure_ascii=False))
    print(f"error: {exc.category}: {exc}", file=sys.stderr)


def _print_result(result: JobResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"artifacts": [a.to_sidecar() for a in result.artifacts],
                          "report": result.report.to_dict(),
                          "errors": [{"category": e.category, "message": e.message} for e in result.errors],
                          "job_id": result.job_id, "edited": list(result.edited)}, ensure_ascii=False))
    else:
        for artifact in result.artifacts:
            print(f"{artifact.id}  {artifact.width}x{artifact.height}  {artifact.path}")
        if result.edited:
            print(f"note: edited {', '.join(result.edited)}", file=sys.stderr)
        for note in (*result.report.ignored.values(), *result.report.notes):  # e.g. "fell back to …"
            print(f"note: {note}", file=sys.stderr)
    for error in result.errors:
        print(f"error: image {error.slot + 1}: {error.category}: {error.message}", file=sys.stderr)


async def _doctor(config: AppConfig, args: argparse.Namespace) -> int:
    from bots.app import open_service
    from bots.doctor import diagnose, render

    async with open_service(config) as service:
        report = await diagnose(config, service, ping=args.ping)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(render(report))
    return 0 if report["ok"] else 1


async def _history(config: AppConfig, args: argparse.Namespace) -> int:
    from bots.app import open_service

    if args.n < 1:
        raise _UsageError("-n must be at least 1")
    async with open_service(config) as service:
        entries = await service.history(args.chat, args.n)
    if args.json:
        rows: list[dict[str, Any]] = [
            {"id": e.artifact_id, "prompt": e.prompt, "created_at": e.created_at, "job_id": e.job_id,
             "path": e.path, "chat": e.chat_key} for e in entries]
        print(json.dumps({"history": rows}, ensure_ascii=False))
    elif not entries:
        print("no images yet" + (f" in {args.chat}" if args.chat else ""))
    else:
        for e in entries:  # across chats (no --chat), each row says whose image it is
            chat = "" if args.chat else f"{e.chat_key}  "
            print(f"{e.artifact_id}  {chat}{e.created_at[:19]}  {e.prompt[:60]!r}  {e.path}")
    return 0


async def _migrate(config: AppConfig, args: argparse.Namespace) -> int:
    """Every process also migrates at start (safely, when several start at once); this does it on its own,
    e.g. before a rolling deployment, and says where the state is."""
    from core.engines import open_storage

    async with open_storage(config) as storage:
        print(f"{storage.engine} {storage.location}: schema version {storage.schema_version} (up to date)")
    return 0


async def _prune(config: AppConfig, args: argparse.Namespace) -> int:
    from bots.app import open_service

    days = config.storage.retention_days if args.days is None else args.days
    if days < 1:
        raise _UsageError("say how many days to keep: --days N, or storage.retentionDays in the config")
    async with open_service(config) as service:
        removed = await service.prune(days)
    print(f"removed {removed} image(s) stored more than {days} days ago")
    return 0
