"""``pixbot generate`` through every provider adapter against its loopback fake: one image stored, and
``--ref`` edits wherever the adapter says the model can edit (refused, exit 2, where it cannot), with each
default model and, where that draws from text only, a model of the same provider that edits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config import PROVIDER_NAMES
from providers.registry import PROVIDERS
from tests.e2e.cli_support import Cli, adapter_capabilities, carries_reference
from tests.fakes.fake_provider import FakeProvider, Recorded
from tests.images import png_bytes

KEY = "sk-e2e-providers"


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    # require_key: every adapter must send the configured key (Bearer, or x-goog-api-key for Gemini).
    async with FakeProvider(require_key=KEY) as server:
        yield server


# Providers whose default model draws from text only, with one of their models that takes references.
EDIT_MODELS = {"stepfun": "step-1x-medium", "modelscope": "Qwen/Qwen-Image-Edit-2509"}
CASES = [(name, PROVIDERS[name].default_model) for name in PROVIDER_NAMES] + list(EDIT_MODELS.items())


def test_the_parametrisation_covers_the_registry() -> None:
    assert set(PROVIDER_NAMES) == set(PROVIDERS) and len(PROVIDER_NAMES) == 10


@pytest.mark.parametrize(("name", "model"), EDIT_MODELS.items())
async def test_the_edit_models_can_edit(name: str, model: str) -> None:
    assert (await adapter_capabilities(name, model)).edits


def _api_calls(fake: FakeProvider) -> list[Recorded]:
    return [r for r in fake.requests if "/files/" not in r.path]


@pytest.mark.parametrize(("name", "model"), CASES)
async def test_generate_and_ref_edit_through_each_provider(
    name: str, model: str, tmp_path: Path, fake: FakeProvider
) -> None:
    cli = Cli(tmp_path, fake)
    edits = (await adapter_capabilities(name, model)).edits
    config = cli.write_config(cli.provider_config(name, model, api_key=KEY))
    reference = tmp_path / "reference.png"
    reference.write_bytes(png_bytes(48, 32, (10, 120, 200)))

    # Independent runs, so at once (ModelScope's polling then costs its ~2.5 s only once).
    generated, edited = await asyncio.gather(
        cli.run("generate", "a lighthouse at dusk", "--json", config=config),
        cli.run("generate", "make it snowy", "--ref", str(reference), "--json", config=config),
    )

    assert generated.code == 0, generated
    (artifact,) = generated.json()["artifacts"]
    assert artifact["provider"] == name and artifact["model"] == model and artifact["source_images"] == []
    path = Path(artifact["path"])
    assert path.is_file() and path.parent.parent == (tmp_path / "media" / "generated").resolve()
    assert json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["id"] == artifact["id"]
    calls = _api_calls(fake)
    assert calls and all(r.path.startswith(f"/{name}/") for r in calls), [r.path for r in calls]
    ref_bytes = reference.read_bytes()

    if edits:
        assert edited.code == 0, edited
        (edit,) = edited.json()["artifacts"]
        assert edit["provider"] == name and edit["source_images"] == [str(reference.resolve())]
        assert Path(edit["path"]).is_file()
        assert any(carries_reference(r, ref_bytes) for r in calls), f"{name}: the reference never arrived"
    else:
        # References are never silently dropped: the request is refused before any provider call.
        assert edited.code == 2, edited
        assert edited.err.startswith("error: ") and "reference" in edited.err, edited
        assert edited.out == ""
        assert not any(carries_reference(r, ref_bytes) for r in calls)
