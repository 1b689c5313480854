"""The read side a studio needs (core/stores.py): gallery, lineage, filters, threads, for every engine."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date

import pytest

from core.models import Artifact
from core.stores import GalleryPage, GalleryQuery, ImageRow
from tests.storage.conftest import Stores

DAY = "2026-12-05"


def _art(n: int, *, prompt: str | None = None, provider: str = "openai", model: str = "gpt-image-1",
         parent: str | None = None, at: str | None = None, job_id: str | None = None,
         size: tuple[int, int] = (1024, 768)) -> Artifact:
    artifact_id = f"img_{n:012x}"
    return Artifact(id=artifact_id, path=f"/media/{artifact_id}.png", mime="image/png",
                    prompt=f"picture {n}" if prompt is None else prompt, model=model, provider=provider,
                    source_images=(), created_at=at or f"{DAY}T10:{n // 60:02d}:{n % 60:02d}.000+00:00",
                    parent_id=parent, job_id=job_id, width=size[0], height=size[1])


def _id(n: int) -> str:
    return f"img_{n:012x}"


def _ids(rows: Sequence[ImageRow]) -> list[str]:
    return [row.artifact_id for row in rows]


async def _record(stores: Stores, chat_key: str, *artifacts: Artifact) -> None:
    await stores.state.record_artifacts(chat_key, list(artifacts))


# -- gallery ---------------------------------------------------------------------------------
async def test_the_gallery_lists_every_chat_newest_first_with_the_details(stores: Stores) -> None:
    await _record(stores, "telegram:1", _art(1, job_id="job_a"), _art(2, parent=_id(1), provider="gemini",
                                                                      model="imagen", size=(640, 480)))
    await _record(stores, "web:abc", _art(3))
    page = await stores.state.gallery(GalleryQuery())
    assert _ids(page.images) == [_id(3), _id(2), _id(1)] and page.next_cursor is None
    newest, edit, first = page.images
    assert newest.seq > edit.seq > first.seq
    assert (newest.chat_key, newest.platform) == ("web:abc", "web")
    assert (edit.provider, edit.model, edit.width, edit.height, edit.parent_id) == (
        "gemini", "imagen", 640, 480, _id(1))
    assert (first.prompt, first.job_id, first.parent_id, first.created_at) == (
        "picture 1", "job_a", None, f"{DAY}T10:00:01.000+00:00")
    assert await stores.state.image(_id(2)) == edit
    assert await stores.state.image("img_ffffffffffff") is None
    await _record(stores, "telegram:1", _art(2, prompt="again", provider="fake"))  # recorded again: updated
    assert (await stores.state.image(_id(2))) == ImageRow(
        _id(2), "telegram:1", "again", "fake", "gpt-image-1", 1024, 768, None, None, edit.created_at, edit.seq)
    assert (await stores.state.gallery(GalleryQuery())).images[1].prompt == "again"


async def _filter_fixture(stores: Stores) -> None:
    await _record(stores, "telegram:1", _art(1, prompt="A red fox", at="2026-12-04T23:59:59.999+00:00"))
    await _record(stores, "telegram:2", _art(2, prompt="blue whale", provider="gemini",
                                             at="2026-12-05T00:00:00.000+00:00"))
    await _record(stores, "tele:3", _art(3, prompt="red tulips", provider="gemini",
                                         at="2026-12-05T12:00:00.000+00:00"))
    await _record(stores, "discord:9", _art(4, prompt="Red Panda", at="2026-12-06T23:59:59.999+00:00"))
    await _record(stores, "web:abc", _art(5, prompt="a red car", provider="gemini",
                                          at="2026-12-07T00:00:00.000+00:00"))
    await _record(stores, "webhook:1", _art(6, prompt="red alert", at="2026-12-07T08:00:00.000+00:00"))
    await _record(stores, "my_bot:1", _art(7, prompt="green", at="2026-12-07T09:00:00.000+00:00"))
    await _record(stores, "myxbot:1", _art(8, prompt="greener", at="2026-12-07T10:00:00.000+00:00"))


@pytest.mark.parametrize(("query", "expected"), [
    (GalleryQuery(), [8, 7, 6, 5, 4, 3, 2, 1]),
    # a platform is the chat key before ':': "tele" is not "telegram", "web" not "webhook", '_' no wildcard
    (GalleryQuery(platform="telegram"), [2, 1]),
    (GalleryQuery(platform="tele"), [3]),
    (GalleryQuery(platform="web"), [5]),
    (GalleryQuery(platform="my_bot"), [7]),
    (GalleryQuery(platform="slack"), []),
    (GalleryQuery(chat_key="telegram:2"), [2]),
    (GalleryQuery(chat_key="telegram"), []),
    (GalleryQuery(provider="gemini"), [5, 3, 2]),
    (GalleryQuery(provider="gem"), []),
    # whole UTC days, both ends inclusive
    (GalleryQuery(since=date(2026, 12, 5)), [8, 7, 6, 5, 4, 3, 2]),
    (GalleryQuery(until=date(2026, 12, 6)), [4, 3, 2, 1]),
    (GalleryQuery(since=date(2026, 12, 5), until=date(2026, 12, 5)), [3, 2]),
    (GalleryQuery(since=date(2026, 12, 6), until=date(2026, 12, 5)), []),
    (GalleryQuery(search="red"), [6, 5, 4, 3, 1]),
    (GalleryQuery(search="RED P"), [4]),
    (GalleryQuery(search="green"), [8, 7]),
    # combined: every filter given must match
    (GalleryQuery(platform="telegram", search="red"), [1]),
    (GalleryQuery(provider="gemini", search="red"), [5, 3]),
    (GalleryQuery(provider="gemini", since=date(2026, 12, 6)), [5]),
    (GalleryQuery(platform="telegram", provider="gemini", until=date(2026, 12, 5)), [2]),
    (GalleryQuery(chat_key="discord:9", provider="openai", search="panda", since=date(2026, 12, 6),
                  until=date(2026, 12, 6)), [4]),
    (GalleryQuery(chat_key="discord:9", platform="telegram"), []),
])
async def test_each_filter_alone_and_combined(stores: Stores, query: GalleryQuery, expected: list[int]) -> None:
    await _filter_fixture(stores)
    page = await stores.state.gallery(query)
    assert _ids(page.images) == [_id(n) for n in expected] and page.next_cursor is None


async def test_search_is_case_insensitive_and_takes_wildcards_literally(stores: Stores) -> None:
    prompts = ["100% cotton", "100 percent", "snake_case", "snakeXcase", "back\\slash", "backslash", "MiXeD"]
    await _record(stores, "web:1", *(_art(n, prompt=p) for n, p in enumerate(prompts, 1)))

    async def found(search: str) -> list[str]:
        rows = (await stores.state.gallery(GalleryQuery(search=search))).images
        return sorted(row.prompt for row in rows)

    assert await found("%") == ["100% cotton"]
    assert await found("0%") == ["100% cotton"]
    assert await found("_") == ["snake_case"]
    assert await found("E_C") == ["snake_case"]
    assert await found("\\") == ["back\\slash"]
    assert await found("k\\s") == ["back\\slash"]
    assert await found("mixed") == ["MiXeD"]
    assert await found("100") == ["100 percent", "100% cotton"]
    assert await found("nothing like it") == []


async def test_pages_follow_the_cursor_with_no_duplicates_or_gaps(stores: Stores) -> None:
    await _record(stores, "web:1", *(_art(n) for n in range(1, 11)))
    await _record(stores, "telegram:1", *(_art(n) for n in range(11, 14)))
    seen: list[str] = []
    cursors: list[int | None] = []
    query = GalleryQuery(platform="web", limit=4)
    while True:
        page = await stores.state.gallery(query)
        seen += _ids(page.images)
        cursors.append(page.next_cursor)
        if page.next_cursor is None:
            break
        assert page.next_cursor == page.images[-1].seq
        if len(cursors) == 1:  # images arriving meanwhile never shift the pages after
            await _record(stores, "web:1", _art(20), _art(21))
        query = GalleryQuery(platform="web", limit=4, before=page.next_cursor)
    assert seen == [_id(n) for n in range(10, 0, -1)] and len(cursors) == 3


async def test_a_last_page_that_is_exactly_full_has_no_next_cursor(stores: Stores) -> None:
    await _record(stores, "web:1", *(_art(n) for n in range(1, 9)))
    first = await stores.state.gallery(GalleryQuery(limit=4))
    assert _ids(first.images) == [_id(n) for n in (8, 7, 6, 5)] and first.next_cursor is not None
    second = await stores.state.gallery(GalleryQuery(limit=4, before=first.next_cursor))
    assert _ids(second.images) == [_id(n) for n in (4, 3, 2, 1)] and second.next_cursor is None
    assert await stores.state.gallery(GalleryQuery(before=second.images[-1].seq)) == GalleryPage([], None)


async def test_a_query_asks_for_a_sensible_page_size() -> None:
    for bad in (0, -1, 501, True):
        with pytest.raises(ValueError):
            GalleryQuery(limit=bad)
    assert GalleryQuery().limit == 48


async def test_filters_list_the_recorded_platforms_and_providers(stores: Stores) -> None:
    empty = await stores.state.gallery_filters()
    assert (empty.platforms, empty.providers) == ([], [])
    await _filter_fixture(stores)
    await _record(stores, "web:zzz", _art(30, provider=""))  # recorded before providers were: left out
    filters = await stores.state.gallery_filters()
    assert filters.platforms == ["discord", "my_bot", "myxbot", "tele", "telegram", "web", "webhook"]
    assert filters.providers == ["gemini", "openai"]


# -- lineage ---------------------------------------------------------------------------------
UPLOAD = "img_0000000000ff"


async def _family(stores: Stores) -> None:
    """An upload (stored, never recorded) edited into 1; 1 edited into 2 and 3; 2 into 4; 4 into 5."""
    await _record(stores, "web:1", _art(1, parent=UPLOAD), _art(9))
    await _record(stores, "telegram:1", _art(2, parent=_id(1)))
    await _record(stores, "web:1", _art(3, parent=_id(1)))
    await _record(stores, "web:2", _art(4, parent=_id(2)), _art(5, parent=_id(4)))


async def test_lineage_walks_up_to_a_missing_upload_and_down_through_edits_of_edits(stores: Stores) -> None:
    await _family(stores)
    middle = await stores.state.lineage(_id(2))
    assert middle.image is not None and middle.image.artifact_id == _id(2)
    assert _ids(middle.ancestors) == [_id(1)] and middle.missing_parent == UPLOAD
    assert _ids(middle.descendants) == [_id(4), _id(5)]

    root = await stores.state.lineage(_id(1))
    assert root.ancestors == [] and root.missing_parent == UPLOAD
    assert _ids(root.descendants) == [_id(2), _id(3), _id(4), _id(5)]  # by generation, parents first
    placed = {_id(1)}
    for row in root.descendants:  # a tree can be built from parent_id in this order
        assert row.parent_id in placed
        placed.add(row.artifact_id)

    leaf = await stores.state.lineage(_id(5))
    assert _ids(leaf.ancestors) == [_id(4), _id(2), _id(1)] and leaf.missing_parent == UPLOAD
    assert leaf.descendants == []

    upload = await stores.state.lineage(UPLOAD)  # no row of its own: its edits still show
    assert upload.image is None and upload.ancestors == [] and upload.missing_parent is None
    assert _ids(upload.descendants) == [_id(1), _id(2), _id(3), _id(4), _id(5)]

    alone = await stores.state.lineage(_id(9))
    assert (alone.image is not None, alone.ancestors, alone.descendants, alone.missing_parent) == (
        True, [], [], None)
    unknown = await stores.state.lineage("img_eeeeeeeeeeee")
    assert (unknown.image, unknown.ancestors, unknown.descendants, unknown.missing_parent) == (None, [], [], None)


async def test_descendants_come_by_generation_even_when_recorded_out_of_order(stores: Stores) -> None:
    """An edit recorded before the image it edits (a job settled late, after a restart) still comes after it."""
    await _record(stores, "web:1", _art(1), _art(2, parent=_id(1)), _art(4, parent=_id(3)), _art(5, parent=_id(2)))
    await _record(stores, "web:1", _art(3, parent=_id(1)))
    descendants = (await stores.state.lineage(_id(1))).descendants
    assert _ids(descendants) == [_id(2), _id(3), _id(4), _id(5)]
    assert _ids((await stores.state.lineage(_id(1), limit=2)).descendants) == [_id(2), _id(3)]


async def test_lineage_stops_at_its_limit(stores: Stores) -> None:
    await _family(stores)
    root = await stores.state.lineage(_id(1), limit=3)
    assert _ids(root.descendants) == [_id(2), _id(3), _id(4)]
    leaf = await stores.state.lineage(_id(5), limit=2)
    assert _ids(leaf.ancestors) == [_id(4), _id(2)]
    assert leaf.missing_parent is None  # not reached: the walk stopped before it


async def test_a_parent_cycle_in_bad_data_ends_the_walk(stores: Stores) -> None:
    await _record(stores, "web:1", _art(1, parent=_id(2)), _art(2, parent=_id(1)), _art(3, parent=_id(2)))
    lineage = await asyncio.wait_for(stores.state.lineage(_id(1)), 10)
    assert _ids(lineage.ancestors) == [_id(2)] and lineage.missing_parent is None
    assert _ids(lineage.descendants) == [_id(2), _id(3)]


async def test_forgotten_images_leave_the_gallery_and_lineage(stores: Stores) -> None:
    await _family(stores)
    await stores.state.forget_artifacts([_id(2)])
    assert _id(2) not in _ids((await stores.state.gallery(GalleryQuery())).images)
    leaf = await stores.state.lineage(_id(5))
    assert _ids(leaf.ancestors) == [_id(4)] and leaf.missing_parent == _id(2)
    assert _ids((await stores.state.lineage(_id(1))).descendants) == [_id(3)]


# -- details of images recorded before the database kept them --------------------------------
async def test_rows_without_details_are_listed_and_filled_once(stores: Stores) -> None:
    await _record(stores, "web:1", _art(1, provider="", model="", size=(0, 0)), _art(2),
                  _art(3, provider="", model="", size=(0, 0)), _art(4, provider="", model="", size=(0, 0)))
    missing = await stores.state.missing_details()
    assert _ids(missing) == [_id(1), _id(3), _id(4)]  # oldest first
    assert _ids(await stores.state.missing_details(after=missing[0].seq, limit=1)) == [_id(3)]
    filled = [_art(1, provider="gemini", model="imagen", parent=UPLOAD, size=(512, 256)),
              _art(2, provider="other"), _art(3, provider="")]  # 2 has its details; 3's sidecar knows none
    assert await stores.state.fill_details(filled) == 1
    row = await stores.state.image(_id(1))
    assert row is not None and (row.provider, row.model, row.width, row.height, row.parent_id) == (
        "gemini", "imagen", 512, 256, UPLOAD)
    assert (await stores.state.image(_id(2))).provider == "openai"  # type: ignore[union-attr]
    assert _ids(await stores.state.missing_details()) == [_id(3), _id(4)]
    assert await stores.state.fill_details([]) == 0


# -- threads ---------------------------------------------------------------------------------
async def _job_in(stores: Stores, chat_key: str, prompt: str) -> str:
    await asyncio.sleep(0.003)  # timestamps have millisecond resolution: keep them apart
    job = await stores.jobs.create(chat_key=chat_key, user_key=None, prompt=prompt, requested=1,
                                   request={"prompt": prompt}, started=True)
    return job.id


async def test_chats_are_listed_most_recently_active_first(stores: Stores) -> None:
    assert await stores.jobs.chats("web") == []
    first = await _job_in(stores, "web:a", "a lighthouse")
    await _job_in(stores, "web:a", "at night")
    await _job_in(stores, "web:b", "a cat")
    await _job_in(stores, "webhook:1", "not the web")
    await _job_in(stores, "telegram:1", "elsewhere")
    chats = await stores.jobs.chats("web")
    assert [(c.chat_key, c.title, c.jobs, c.platform) for c in chats] == [
        ("web:b", "a cat", 1, "web"), ("web:a", "a lighthouse", 2, "web")]
    await asyncio.sleep(0.003)
    failed = await stores.jobs.fail(first, "internal")  # activity on an older job counts
    chats = await stores.jobs.chats("web")
    assert [c.chat_key for c in chats] == ["web:a", "web:b"] and chats[0].updated_at == failed.updated_at
    assert [c.chat_key for c in await stores.jobs.chats("web", limit=1)] == ["web:a"]
    assert await stores.jobs.chats("web", limit=0) == []
    assert [c.chat_key for c in await stores.jobs.chats("telegram")] == ["telegram:1"]


async def test_a_chats_jobs_are_its_latest_oldest_first(stores: Stores) -> None:
    ids = [await _job_in(stores, "web:a", f"step {n}") for n in range(5)]
    await _job_in(stores, "web:b", "another thread")
    assert [j.id for j in await stores.jobs.for_chat("web:a")] == ids
    latest = await stores.jobs.for_chat("web:a", limit=3)
    assert [j.id for j in latest] == ids[2:] and [j.prompt for j in latest] == ["step 2", "step 3", "step 4"]
    assert latest[0] == await stores.jobs.get(ids[2])
    assert await stores.jobs.for_chat("web:a", limit=0) == []
    assert await stores.jobs.for_chat("web:none") == []
