"""The buttons under every result. Their custom ids name the artifact and the action, so any later process
handles a click (a DynamicItem, registered once): no per-message state, nothing lost on a restart."""

from __future__ import annotations

import re
from typing import Any

import discord

from bots.discord.context import Click, context_of

__all__ = ["RATIOS", "RerunButton", "ResultButton", "custom_id", "rerun_view", "result_view"]

#: The ratio buttons offered under results.
RATIOS = ("1:1", "16:9", "9:16")
_ARTIFACT = r"img_[0-9a-f]{12}"
_TEMPLATE = rf"pixbot:(?P<action>again|edit|orig|r(?P<w>[1-9]\d?)x(?P<h>[1-9]\d?)):(?P<artifact>{_ARTIFACT})"
_ACTIONS = {"again": "again", "edit": "edit", "orig": "original"}
_Button = discord.ui.Button[discord.ui.View]


def custom_id(click: Click) -> str:
    """`pixbot:<action>:<artifact id>`, at most 35 characters (Discord allows 100)."""
    if click.action == "ratio":
        width, _, height = (click.ratio or "1:1").partition(":")
        return f"pixbot:r{width}x{height}:{click.artifact_id}"
    short = {"again": "again", "edit": "edit", "original": "orig"}[click.action]
    return f"pixbot:{short}:{click.artifact_id}"


class ResultButton(discord.ui.DynamicItem[_Button], template=_TEMPLATE):
    """One result button; the click is admitted by the gate, then run by the context's click handler."""

    def __init__(self, click: Click, *, label: str | None = None, row: int | None = None) -> None:
        emoji = {"again": "🔁", "ratio": "📐", "edit": "✏️", "original": "📎"}[click.action]
        text = label or {"again": "Again", "ratio": click.ratio or "", "edit": "Edit", "original": "Original"}[
            click.action]
        super().__init__(discord.ui.Button(label=text, emoji=emoji, style=discord.ButtonStyle.secondary,
                                           custom_id=custom_id(click)), row=row)
        self.click = click

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ResultButton:
        action = _ACTIONS.get(match["action"], "ratio")
        ratio = f"{match['w']}:{match['h']}" if action == "ratio" else None
        label = item.label if isinstance(item, discord.ui.Button) else None
        return cls(Click(action, match["artifact"], ratio), label=label)

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await context_of(interaction.client).gate.admit(interaction)

    async def callback(self, interaction: discord.Interaction) -> None:
        await context_of(interaction.client).on_click(interaction, self.click)


class RerunButton(discord.ui.DynamicItem[_Button], template=r"pixbot:rerun:(?P<job>job_[0-9a-f]{12})"):
    """🔁 Again under "the bot restarted before this was finished": repeats that job's request."""

    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Again", emoji="🔁", style=discord.ButtonStyle.secondary,
                                           custom_id=f"pixbot:rerun:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RerunButton:
        return cls(match["job"])

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await context_of(interaction.client).gate.admit(interaction)

    async def callback(self, interaction: discord.Interaction) -> None:
        await context_of(interaction.client).on_click(interaction, Click("rerun", self.job_id))


def rerun_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RerunButton(job_id))
    return view


def result_view(artifact_ids: list[str]) -> discord.ui.View:
    """Row 1: Again and the ratios (for the whole request); then Edit and Original for each image, two
    images to a row (at most 10 images: 5 rows of at most 5 buttons)."""
    view = discord.ui.View(timeout=None)
    first = artifact_ids[0]
    view.add_item(ResultButton(Click("again", first), row=0))
    for ratio in RATIOS:
        view.add_item(ResultButton(Click("ratio", first, ratio), row=0))
    per_row = 4 if len(artifact_ids) <= 8 else 5
    for index, artifact_id in enumerate(artifact_ids):
        suffix = f" {index + 1}" if len(artifact_ids) > 1 else ""
        for offset, (action, label) in enumerate((("edit", "Edit"), ("original", "Original"))):
            row = 1 + (2 * index + offset) // per_row
            view.add_item(ResultButton(Click(action, artifact_id), label=label + suffix, row=row))
    return view
