"""Request validation and mapping onto capabilities."""

from __future__ import annotations

import pytest

from core.capabilities import Wanted, plan_for, ratio_of, validate_count, validate_prompt, validate_ratio, validate_size
from core.errors import InvalidRequest, Unsupported
from core.provider import Capabilities


def test_prompt_bounds() -> None:
    assert validate_prompt("  a fox \x00\x07 ", 4000) == "a fox"
    assert validate_prompt("x" * 4000, 4000) == "x" * 4000
    with pytest.raises(InvalidRequest, match="4001 characters; the limit is 4000"):
        validate_prompt("x" * 4001, 4000)
    for empty in ("", "   ", "\x00\x01"):
        with pytest.raises(InvalidRequest, match="prompt is empty"):
            validate_prompt(empty, 4000)
    assert validate_prompt("مرحبا بالعالم\n", 20) == "مرحبا بالعالم"


def test_count_bounds() -> None:
    assert validate_count(4, 4) == 4
    for bad in (0, 5, 99, -1):
        with pytest.raises(InvalidRequest, match="1 to 4 images"):
            validate_count(bad, 4)


@pytest.mark.parametrize("value", ["0:1", "1:0", "wide", "16/9", "-1:2", "100:1", ""])
def test_bad_ratios(value: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_ratio(value)


def test_ratio_normalised() -> None:
    assert validate_ratio(" 16 : 9 ") == "16:9"


@pytest.mark.parametrize(("value", "expected"), [("1k", "1K"), ("4K", "4K"), ("1024X1536", "1024x1536"),
                                                 ("auto", "auto"), ("512", "512")])
def test_good_sizes(value: str, expected: str) -> None:
    assert validate_size(value) == expected


@pytest.mark.parametrize("value", ["99999x1", "10x10", "9K", "huge", "1024x"])
def test_bad_sizes(value: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_size(value)


MINIMAX_LIKE = Capabilities(ratios=frozenset({"1:1", "16:9"}), sizes=frozenset(), max_references=2,
                            ratio_fallback="1:1")


def test_explicit_unsupported_settings_are_reported() -> None:
    plan = plan_for("minimax", "image-01", MINIMAX_LIKE,
                    Wanted("5:4", "4K", 2, 0, ratio_explicit=True, size_explicit=True))
    assert plan.aspect_ratio == "1:1" and plan.size is None
    assert plan.report.ignored == {
        "aspect_ratio": "aspect ratio 5:4 is not supported by image-01; used 1:1, the nearest it makes",
        "size": "size 4K is not supported by image-01; used the model's default",
    }
    assert plan.report.applied == {"count": 2, "aspect_ratio": "1:1"}
    wide = plan_for("minimax", "image-01", MINIMAX_LIKE, Wanted("21:9", None, 1, 0, ratio_explicit=True))
    assert wide.aspect_ratio == "16:9"  # the nearest shape, not the square default
    assert wide.report.ignored["aspect_ratio"].endswith("used 16:9, the nearest it makes")


def test_defaults_a_model_cannot_use_are_dropped_quietly() -> None:
    plan = plan_for("minimax", "image-01", MINIMAX_LIKE, Wanted("5:4", "1K", 1, 0))
    assert plan.report.ignored == {}
    assert plan.size is None


def test_references_beyond_the_limit_are_reported_and_none_allowed_is_unsupported() -> None:
    plan = plan_for("minimax", "image-01", MINIMAX_LIKE, Wanted("1:1", None, 1, 3))
    assert plan.references == 2
    assert "at most 2 reference images" in plan.report.ignored["references"]
    with pytest.raises(Unsupported, match="cannot edit images"):
        plan_for("zhipu", "glm-image", Capabilities(), Wanted("1:1", None, 1, 1))


def test_explicit_ratio_beats_a_default_size_that_would_override_it() -> None:
    custom = Capabilities(ratios=frozenset({"1:1", "16:9"}), size_overrides_ratio=True, max_references=4)
    plan = plan_for("custom", "m", custom, Wanted("16:9", "1K", 1, 0, ratio_explicit=True))
    assert (plan.aspect_ratio, plan.size) == ("16:9", None)
    plan = plan_for("custom", "m", custom, Wanted("1:1", "1K", 1, 0))
    assert (plan.aspect_ratio, plan.size) == ("1:1", "1K")



def test_an_explicit_size_with_an_explicit_ratio_becomes_dimensions_of_that_ratio() -> None:
    """``--ar 16:9 --size 2K`` used to send "2K" alone (a square) and report both as applied."""
    custom = Capabilities(ratios=frozenset({"1:1", "16:9", "9:16"}), size_overrides_ratio=True, max_references=4)
    wide = plan_for("custom", "m", custom, Wanted("16:9", "2K", 1, 0, ratio_explicit=True, size_explicit=True))
    assert (wide.aspect_ratio, wide.size) == ("16:9", "2048x1152")
    assert wide.report.applied == {"count": 1, "aspect_ratio": "16:9", "size": "2048x1152"}
    assert "size 2K at 16:9 sent as 2048x1152" in wide.report.notes
    tall = plan_for("custom", "m", custom, Wanted("9:16", "1K", 1, 0, ratio_explicit=True, size_explicit=True))
    assert tall.size == "576x1024"
    fixed = Capabilities(ratios=frozenset({"1:1", "16:9"}), sizes=frozenset({"1024x1024", "1536x1024"}),
                         size_overrides_ratio=True)
    kept_ratio = plan_for("openai", "gpt-image-1", fixed,
                          Wanted("16:9", "2K", 1, 0, ratio_explicit=True, size_explicit=True))
    assert (kept_ratio.aspect_ratio, kept_ratio.size) == ("16:9", None)
    assert kept_ratio.report.ignored["size"] == ("size 2K cannot be made at aspect ratio 16:9 by gpt-image-1; "
                                                 "used the size for 16:9")
    assert "size" not in kept_ratio.report.applied


def test_an_edit_keeps_the_source_shape_or_the_nearest_the_model_makes() -> None:
    assert [ratio_of(*wh) for wh in ((1536, 1024), (800, 600), (1920, 1080), (1001, 667), (4200, 100))] == [
        "3:2", "4:3", "16:9", "3:2", "21:9"]
    gpt = Capabilities(ratios=frozenset({"1:1", "16:9", "4:3", "9:16", "3:4"}), size_overrides_ratio=True,
                       max_references=4)
    plan = plan_for("custom", "m", gpt, Wanted("3:2", "1K", 1, 1, ratio_explicit=True, ratio_from_source=True))
    assert (plan.aspect_ratio, plan.size) == ("4:3", None) and plan.report.ignored == {}
    assert "4:3 for its 3:2" in " ".join(plan.report.notes)
    exact = plan_for("custom", "m", gpt, Wanted("4:3", None, 1, 1, ratio_explicit=True, ratio_from_source=True))
    assert exact.aspect_ratio == "4:3" and exact.report.notes == ()


def test_pixel_sizes_only_passes_any_wxh_and_reports_other_hints() -> None:
    zhipu = Capabilities(ratios=frozenset({"1:1"}), sizes=None, pixel_sizes_only=True,
                         size_fallback="the aspect ratio's size")
    wide = plan_for("zhipu", "glm-image", zhipu, Wanted("1:1", "1000x2000", 1, 0, size_explicit=True))
    assert wide.size == "1000x2000"
    plan = plan_for("zhipu", "glm-image", zhipu, Wanted("1:1", "2K", 1, 0, size_explicit=True))
    assert plan.size is None
    assert plan.report.ignored == {"size": "size 2K is not supported by glm-image; used the aspect ratio's size"}
    assert plan_for("zhipu", "glm-image", zhipu, Wanted("1:1", "1K", 1, 0)).report.ignored == {}
