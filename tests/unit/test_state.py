"""ChatState and Database: settings, last image, message map, history, quotas, durability, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bots.app import open_service
from core import db as db_module
from core import gallery_sql as gallery_module
from core.artifacts import ArtifactStore
from core.config_file import load_config
from core.coordination import Coordination
from core.errors import InternalError, InvalidRequest
from core.jobs import JobLedger
from core.models import Artifact
from core.state import SCHEMA_VERSION, ChatSettings, ChatState, Database, HistoryEntry, open_database
from core.stores import ChatBusy, GalleryQuery
from tests.images import png_bytes

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2025, 3, 1)


def artifact(artifact_id: str, *, prompt: str = "a fox", job_id: str | None = "job_1") -> Artifact:
    return Artifact(
        id=artifact_id,
        path=f"/media/{artifact_id}.png",
        mime="image/png",
        prompt=prompt,
        model="m",
        provider="p",
        source_images=(),
        created_at=f"2025-03-01T12:00:00.{len(artifact_id):03d}+00:00",
        job_id=job_id,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "pixbot.db"  # "data" does not exist yet: open() creates it


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with open_database(db_path) as database:
        yield database


@pytest.fixture
def state(db: Database) -> ChatState:
    return ChatState(db)


class TestDatabase:
    async def test_file_is_in_wal_mode_with_a_schema_version(self, db: Database, db_path: Path) -> None:
        assert await asyncio.to_thread(db_path.exists)
        mode = await db.run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        version = await db.run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0])
        assert (mode, version) == ("wal", SCHEMA_VERSION)

    async def test_a_version_1_file_is_migrated_in_place_with_its_jobs(self, db_path: Path) -> None:
        """A database written before jobs had owners: the columns are added, the rows kept."""
        def write_v1() -> None:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(db_path)
            for statement in db_module._SCHEMA_V1:
                conn.execute(statement)
            conn.execute("INSERT INTO jobs (id, chat_key, user_key, status, prompt, requested, request, origin, "
                         "artifact_ids, error, created_at, updated_at) VALUES ('job_old', 'telegram:1', NULL, "
                         "'generating', 'a fox', 1, '{}', '{}', '[\"img_aaaaaaaaaaaa\"]', NULL, 't', 't')")
            conn.execute("PRAGMA user_version = 1")
            conn.commit()
            conn.close()

        await asyncio.to_thread(write_v1)
        async with open_database(db_path) as database:
            version = await database.run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0])
            (job,) = await JobLedger(database).unsettled()
        assert version == SCHEMA_VERSION and job.id == "job_old" and job.artifact_ids == ("img_aaaaaaaaaaaa",)
        assert job.owner is None and job.lease_until is None  # an orphan: the next start settles it

    async def test_a_version_2_file_is_migrated_in_place_with_its_images(self, db_path: Path) -> None:
        """A database written before the gallery columns: they are added with defaults, rows kept."""
        def write_v2() -> None:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(db_path)
            for statement in (*db_module._SCHEMA_V1, *db_module._OWNERS_V2):
                conn.execute(statement)
            conn.execute("INSERT INTO artifacts (artifact_id, chat_key, job_id, prompt, path, created_at) VALUES ("
                         "'img_aaaaaaaaaaaa', 'telegram:1', 'job_1', 'a fox', '/m/a.png', '2025-03-01T12:00:00+00:00')")
            conn.execute("PRAGMA user_version = 2")
            conn.commit()
            conn.close()

        await asyncio.to_thread(write_v2)
        async with open_database(db_path) as database:
            version = await database.run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0])
            indexes = await database.run(lambda conn: {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index'")})
            state = ChatState(database)
            old = await state.image("img_aaaaaaaaaaaa")
            await state.record_artifacts("web:1", [dataclasses.replace(
                artifact("img_bbbbbbbbbbbb"), width=640, height=480, parent_id="img_aaaaaaaaaaaa")])
            page = await state.gallery(GalleryQuery())
            missing = await state.missing_details()
        assert version == SCHEMA_VERSION and {"artifacts_by_parent", "artifacts_by_provider", "jobs_by_chat"} <= indexes
        assert old is not None and (old.prompt, old.job_id, old.seq) == ("a fox", "job_1", 1)
        assert (old.provider, old.model, old.width, old.height, old.parent_id) == ("", "", 0, 0, None)
        new = page.images[0]
        assert [r.artifact_id for r in page.images] == ["img_bbbbbbbbbbbb", "img_aaaaaaaaaaaa"]
        assert (new.provider, new.model, new.width, new.height, new.parent_id) == ("p", "m", 640, 480,
                                                                                   "img_aaaaaaaaaaaa")
        assert [r.artifact_id for r in missing] == ["img_aaaaaaaaaaaa"]

    async def test_a_version_4_file_gains_shared_slots_and_keeps_its_running_jobs(self, db_path: Path) -> None:
        """Version 5 adds ``slots`` (``limits.globalConcurrency``); a job running under version 4 still counts
        against the per-chat limit."""
        def write_v4() -> None:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(db_path)
            for step in db_module._MIGRATIONS[:4]:
                for statement in step:
                    conn.execute(statement)
            conn.execute("INSERT INTO jobs (id, chat_key, user_key, status, prompt, requested, request, origin, "
                         "artifact_ids, error, created_at, updated_at, owner, lease_until) VALUES ('job_old', "
                         "'telegram:1', NULL, 'generating', 'a fox', 1, '{}', '{}', '[]', NULL, 't', 't', 'other', "
                         "'2999-01-01T00:00:00.000+00:00')")
            conn.execute("PRAGMA user_version = 4")
            conn.commit()
            conn.close()

        await asyncio.to_thread(write_v4)
        async with open_database(db_path) as database:
            version = await database.run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0])
            coordination = Coordination(database)
            first = await coordination.acquire_slot("provider:openai", 1, "me", 30, lambda owner: False)
            second = await coordination.acquire_slot("provider:openai", 1, "you", 30, lambda owner: False)
            with pytest.raises(ChatBusy):
                await JobLedger(database).create(chat_key="telegram:1", user_key=None, prompt="p", requested=1,
                                                 request={}, started=True, owner="me", lease_s=30,
                                                 max_running_per_chat=1)
        assert (version, first, second) == (SCHEMA_VERSION, 0, None)

    async def test_the_gallery_queries_use_their_indexes(self, db: Database) -> None:
        async def plan(sql: str, params: tuple[object, ...]) -> str:
            rows = await db.run(lambda conn: conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
            return str([tuple(row) for row in rows])

        def gallery_sql(query: GalleryQuery) -> tuple[str, tuple[object, ...]]:
            where, params = gallery_module._gallery_where(query)
            return f"SELECT seq FROM artifacts WHERE {where} ORDER BY seq DESC LIMIT 49", tuple(params)

        assert "artifacts_by_chat (chat_key>? AND chat_key<?)" in await plan(*gallery_sql(GalleryQuery(platform="web")))
        assert "artifacts_by_chat (chat_key=? AND seq<?)" in await plan(*gallery_sql(GalleryQuery(chat_key="w:1",
                                                                                                  before=9)))
        assert "artifacts_by_provider (provider=?" in await plan(*gallery_sql(GalleryQuery(provider="fake")))
        down = ("SELECT a.artifact_id FROM artifacts a JOIN artifacts p ON a.parent_id = p.artifact_id "
                "WHERE p.artifact_id = ?")
        assert "artifacts_by_parent (parent_id=?)" in await plan(down, ("img_aaaaaaaaaaaa",))

    async def test_statements_run_on_one_thread_other_than_the_loop(self, db: Database) -> None:
        idents = {await db.run(lambda conn: threading.get_ident()) for _ in range(3)}
        assert len(idents) == 1
        assert threading.get_ident() not in idents

    async def test_loop_keeps_running_while_a_statement_waits(self, db: Database) -> None:
        release = threading.Event()

        async def set_from_loop() -> None:
            release.set()

        # If run() blocked the loop, set_from_loop could only run after wait() timed out (False).
        waited, _ = await asyncio.gather(db.run(lambda conn: release.wait(timeout=5)), set_from_loop())
        assert waited is True

    async def test_exception_in_fn_rolls_back_and_propagates(self, db: Database) -> None:
        def insert_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO usage (user_key, day, used) VALUES ('u', 'd', 1)")
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await db.run(insert_then_fail)
        assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM usage").fetchone()[0]) == 0

    async def test_a_returned_cursor_is_closed_on_the_database_thread(self, db: Database) -> None:
        cursor = await db.run(lambda conn: conn.execute("SELECT 1"))
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            cursor.fetchone()

    async def test_sqlite_errors_become_internal_errors(self, db: Database) -> None:
        with pytest.raises(InternalError) as caught:
            await db.run(lambda conn: conn.execute("SELECT * FROM no_such_table"))
        assert "no_such_table" in (caught.value.detail or "")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)

    async def test_closed_database_refuses_work_and_close_twice_is_fine(self, db_path: Path) -> None:
        database = await Database.open(db_path)
        await database.close()
        await database.close()
        with pytest.raises(InternalError):
            await database.run(lambda conn: 1)

    async def test_usable_as_async_context_manager(self, db_path: Path) -> None:
        async with await Database.open(db_path) as database:
            assert await database.run(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
        with pytest.raises(InternalError):
            await database.run(lambda conn: 1)

    async def test_memory_database_works(self) -> None:
        async with open_database(":memory:") as database:
            state = ChatState(database)
            await state.set_last_artifact("cli:x", "a1")
            assert await state.last_artifact("cli:x") == "a1"

    async def test_file_from_a_newer_pixbot_is_refused(self, db_path: Path) -> None:
        async with open_database(db_path) as database:
            await database.run(lambda conn: conn.execute("PRAGMA user_version = 99"))
        with pytest.raises(InternalError) as caught:
            await Database.open(db_path)
        assert "99" in (caught.value.detail or "")


class TestSettings:
    async def test_unknown_chat_has_empty_settings(self, state: ChatState) -> None:
        assert await state.settings("telegram:1") == ChatSettings()

    async def test_roundtrip_and_partial_update(self, state: ChatState) -> None:
        full = await state.update_settings("telegram:1", aspect_ratio="16:9", count=2, delivery="both")
        assert full == ChatSettings("16:9", 2, "both")
        assert await state.settings("telegram:1") == full
        partial = await state.update_settings("telegram:1", count=4)
        assert partial == ChatSettings("16:9", 4, "both")
        cleared = await state.update_settings("telegram:1", aspect_ratio=None)
        assert cleared == ChatSettings(None, 4, "both")
        assert await state.settings("telegram:2") == ChatSettings()

    async def test_settings_do_not_touch_last_artifact(self, state: ChatState) -> None:
        await state.set_last_artifact("telegram:1", "a1")
        await state.update_settings("telegram:1", delivery="document")
        await state.set_last_artifact("telegram:1", "a2")
        assert await state.last_artifact("telegram:1") == "a2"
        assert (await state.settings("telegram:1")).delivery == "document"

    @pytest.mark.parametrize(
        "changes",
        [{"aspect_ratio": "wide"}, {"aspect_ratio": "0:1"}, {"aspect_ratio": "1:100"}, {"count": 0}, {"count": "2"},
         {"count": True}, {"delivery": "fax"}],
    )
    async def test_bad_values_are_invalid_requests(
        self, state: ChatState, changes: dict[str, object]
    ) -> None:
        with pytest.raises(InvalidRequest):
            await state.update_settings("telegram:1", **changes)
        assert await state.settings("telegram:1") == ChatSettings()

    async def test_unknown_setting_is_a_type_error(self, state: ChatState) -> None:
        with pytest.raises(TypeError, match="colour"):
            await state.update_settings("telegram:1", colour="red")


class TestArtifactsAndMessages:
    async def test_last_artifact(self, state: ChatState) -> None:
        assert await state.last_artifact("discord:9") is None
        await state.set_last_artifact("discord:9", "a1")
        await state.set_last_artifact("discord:9", "a2")
        assert await state.last_artifact("discord:9") == "a2"
        assert await state.last_artifact("discord:8") is None

    async def test_record_artifacts_sets_last_to_the_last_given(self, state: ChatState) -> None:
        await state.record_artifacts("telegram:1", [artifact("a1"), artifact("a2")])
        assert await state.last_artifact("telegram:1") == "a2"
        await state.record_artifacts("telegram:1", [])
        assert await state.last_artifact("telegram:1") == "a2"

    async def test_history_is_newest_first_limited_and_per_chat(self, state: ChatState) -> None:
        await state.record_artifacts("telegram:1", [artifact("a1", prompt="one"), artifact("a2")])
        await state.record_artifacts("discord:5", [artifact("b1", job_id=None)])
        await state.record_artifacts("telegram:1", [artifact("a3", prompt="three")])

        tg = await state.history("telegram:1")
        assert [e.artifact_id for e in tg] == ["a3", "a2", "a1"]
        assert tg[0] == HistoryEntry("a3", "three", artifact("a3").created_at, "job_1", "/media/a3.png", "telegram:1")
        assert tg[2].prompt == "one"
        assert [e.artifact_id for e in await state.history("telegram:1", limit=2)] == ["a3", "a2"]
        assert [e.artifact_id for e in await state.history(None)] == ["a3", "b1", "a2", "a1"]
        assert (await state.history("discord:5"))[0].job_id is None
        assert await state.history("telegram:1", limit=0) == []
        assert await state.history("nobody:0") == []

    async def test_search_folds_case_beyond_ascii(self, state: ChatState) -> None:
        prompts = {"u1": "Straße bei Nacht", "u2": "ÉCLAIR au chocolat", "u3": "Кот на крыше", "u4": "plain"}
        await state.record_artifacts("web:1", [artifact(i, prompt=p) for i, p in prompts.items()])

        async def found(search: str) -> list[str]:
            return [row.artifact_id for row in (await state.gallery(GalleryQuery(search=search))).images]

        assert await found("STRASSE") == ["u1"]
        assert await found("éclair") == ["u2"]
        assert await found("кот") == ["u3"]
        assert await found("PLAIN") == ["u4"]

    async def test_message_map(self, state: ChatState) -> None:
        await state.map_message("telegram:1", "100", "a1")
        await state.map_messages("telegram:1", [("101", "a2"), ("102", "a3")])
        assert await state.artifact_for_message("telegram:1", "100") == "a1"
        assert await state.artifact_for_message("telegram:1", "102") == "a3"
        assert await state.artifact_for_message("telegram:2", "100") is None
        assert await state.artifact_for_message("telegram:1", "999") is None
        await state.map_message("telegram:1", "100", "a9")  # a later mapping wins
        assert await state.artifact_for_message("telegram:1", "100") == "a9"


class TestQuota:
    async def test_consume_up_to_the_limit_then_refuse(self, state: ChatState) -> None:
        assert await state.usage_today("telegram:u", today=DAY) == 0
        assert await state.try_consume("telegram:u", 2, 5, today=DAY) == 2
        assert await state.try_consume("telegram:u", 3, 5, today=DAY) == 5
        assert await state.try_consume("telegram:u", 1, 5, today=DAY) is None
        assert await state.usage_today("telegram:u", today=DAY) == 5
        assert await state.usage_today("telegram:other", today=DAY) == 0

    async def test_request_larger_than_what_is_left_changes_nothing(self, state: ChatState) -> None:
        await state.try_consume("u", 3, 4, today=DAY)
        assert await state.try_consume("u", 2, 4, today=DAY) is None
        assert await state.usage_today("u", today=DAY) == 3

    async def test_limit_zero_is_unlimited(self, state: ChatState) -> None:
        for _ in range(3):
            await state.try_consume("u", 100, 0, today=DAY)
        assert await state.usage_today("u", today=DAY) == 300

    async def test_a_new_utc_day_starts_from_zero(self, state: ChatState) -> None:
        assert await state.try_consume("u", 5, 5, today=DAY) == 5
        assert await state.try_consume("u", 1, 5, today=DAY) is None
        assert await state.try_consume("u", 1, 5, today=date(2025, 3, 2)) == 1
        assert await state.usage_today("u", today=DAY) == 5

    async def test_default_day_is_today_in_utc(self, state: ChatState) -> None:
        await state.try_consume("u", 2, 0)
        assert await state.usage_today("u", today=datetime.now(UTC).date()) == 2

    async def test_refund_never_goes_below_zero(self, state: ChatState) -> None:
        await state.try_consume("u", 3, 10, today=DAY)
        await state.refund("u", 2, today=DAY)
        assert await state.usage_today("u", today=DAY) == 1
        await state.refund("u", 5, today=DAY)
        assert await state.usage_today("u", today=DAY) == 0
        await state.refund("nobody", 1, today=DAY)
        assert await state.usage_today("nobody", today=DAY) == 0

    async def test_bad_amounts_are_rejected(self, state: ChatState) -> None:
        with pytest.raises(ValueError):
            await state.try_consume("u", 0, 5, today=DAY)
        with pytest.raises(ValueError):
            await state.try_consume("u", 1, -1, today=DAY)
        with pytest.raises(ValueError):
            await state.refund("u", -1, today=DAY)

    async def test_fifty_concurrent_consumers_never_exceed_the_limit(self, state: ChatState) -> None:
        results = await asyncio.gather(*(state.try_consume("u", 1, 20, today=DAY) for _ in range(50)))
        granted = sorted(r for r in results if r is not None)
        assert granted == list(range(1, 21))
        assert await state.usage_today("u", today=DAY) == 20

    def test_quota_resets_at_next_utc_midnight(self) -> None:
        now = datetime(2025, 3, 1, 23, 59, tzinfo=UTC)
        assert ChatState.quota_resets_at(now) == datetime(2025, 3, 2, tzinfo=UTC)


class TestDurabilityAndConcurrency:
    async def test_everything_survives_a_reopen(self, db_path: Path) -> None:
        async with open_database(db_path) as first:
            state = ChatState(first)
            await state.update_settings("telegram:1", aspect_ratio="9:16", count=3)
            await state.record_artifacts("telegram:1", [artifact("a1"), artifact("a2")])
            await state.map_message("telegram:1", "55", "a1")
            await state.try_consume("telegram:u", 4, 10, today=DAY)

        async with open_database(db_path) as second:
            state = ChatState(second)
            assert await state.settings("telegram:1") == ChatSettings("9:16", 3, None)
            assert await state.last_artifact("telegram:1") == "a2"
            assert [e.artifact_id for e in await state.history("telegram:1")] == ["a2", "a1"]
            assert await state.artifact_for_message("telegram:1", "55") == "a1"
            assert await state.usage_today("telegram:u", today=DAY) == 4

    async def test_two_instances_on_one_file_write_concurrently(self, db_path: Path) -> None:
        async with open_database(db_path) as one, open_database(db_path) as two:
            states = (ChatState(one), ChatState(two))
            writes = []
            for i in range(40):
                s = states[i % 2]
                writes.append(s.try_consume("u", 1, 30, today=DAY))
                writes.append(s.map_message("telegram:1", str(i), f"a{i}"))
            results = await asyncio.gather(*writes)  # "database is locked" would raise InternalError
            assert sum(1 for r in results[::2] if r is not None) == 30
            assert await states[0].usage_today("u", today=DAY) == 30
            assert await states[1].artifact_for_message("telegram:1", "39") == "a39"

    async def test_two_processes_share_the_quota(self, db_path: Path) -> None:
        child_code = (
            "import asyncio, sys\n"
            "from datetime import date\n"
            "from core.state import ChatState, open_database\n"
            "async def main():\n"
            "    async with open_database(sys.argv[1]) as db:\n"
            "        state = ChatState(db)\n"
            "        print('ready', flush=True)\n"
            "        sys.stdin.readline()\n"
            "        got = await asyncio.gather(*(state.try_consume('u', 1, 50, today=date(2025, 3, 1))\n"
            "                                     for _ in range(40)))\n"
            "        print(sum(1 for g in got if g is not None), flush=True)\n"
            "asyncio.run(main())\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        async with open_database(db_path) as db:
            state = ChatState(db)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", child_code, str(db_path),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=env, cwd=ROOT,
            )
            assert child.stdout is not None and child.stdin is not None
            try:
                assert await asyncio.wait_for(child.stdout.readline(), 20) == b"ready\n"
                child.stdin.write(b"go\n")
                await child.stdin.drain()
                mine = await asyncio.gather(*(state.try_consume("u", 1, 50, today=DAY) for _ in range(40)))
                out, err = await asyncio.wait_for(child.communicate(), 20)
            finally:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
            assert child.returncode == 0, err.decode()
            assert int(out) + sum(1 for r in mine if r is not None) == 50
            assert await state.usage_today("u", today=DAY) == 50


async def test_the_service_fills_migrated_rows_from_their_sidecars(tmp_path: Path) -> None:
    """Images recorded by a version 2 database get provider, model, size and parent at the next start."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"storage": {}}))
    config = load_config(config_path, env_file=None)
    store = ArtifactStore(config.media_dir, config.image.save_dir)
    first = await store.save(png_bytes(40, 30), prompt="a fox", model="imagen", provider="gemini", chat="web:1")
    edit = await store.save(png_bytes(20, 10), prompt="in snow", model="gpt-image-1", provider="openai",
                            parent_id=first.id, chat="web:1")
    gone = "img_0000000000aa"

    def write_v2() -> None:
        conn = sqlite3.connect(config.state_path)
        for statement in (*db_module._SCHEMA_V1, *db_module._OWNERS_V2):
            conn.execute(statement)
        conn.executemany("INSERT INTO artifacts (artifact_id, chat_key, job_id, prompt, path, created_at) "
                         "VALUES (?, 'web:1', NULL, ?, ?, ?)",
                         [(a.id, a.prompt, a.path, a.created_at) for a in (first, edit)]
                         + [(gone, "lost", "/nowhere.png", "2025-01-01T00:00:00+00:00")])
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
        conn.close()

    await asyncio.to_thread(write_v2)
    async with open_service(config) as service:  # start-up: recover, then backfill
        rows = {row.artifact_id: row for row in (await service.gallery(GalleryQuery())).images}
        lineage = await service.lineage(first.id)
        assert await service.backfill() == 0  # done once; the row whose files are gone stays as it was
        filters = await service.gallery_filters()
    assert (rows[first.id].provider, rows[first.id].model, rows[first.id].width, rows[first.id].height) == (
        "gemini", "imagen", 40, 30)
    assert (rows[edit.id].provider, rows[edit.id].parent_id, rows[edit.id].width) == ("openai", first.id, 20)
    assert (rows[gone].provider, rows[gone].width) == ("", 0)
    assert [row.artifact_id for row in lineage.descendants] == [edit.id]
    assert filters.providers == ["gemini", "openai"] and filters.platforms == ["web"]
