"""core.images: bounded validation, Telegram photo fitting, Discord byte fitting, thumbnails."""

from __future__ import annotations

import io
import threading
import warnings

import pytest
from PIL import Image

from bots.telegram.photos import TELEGRAM_PHOTO, telegram_preview, telegram_preview_async
from core.errors import BadImage
from core.images import (
    ImageInfo,
    fit_under_bytes,
    fit_under_bytes_async,
    inspect_image,
    sniff_mime,
    thumbnail_jpeg,
    thumbnail_jpeg_async,
    validate_image,
)
from tests.crafted_images import animated_gif, exif_rotated_jpeg, flip_idat_byte, header_only_png, image_bytes
from tests.images import jpeg_bytes, noise_png, png_bytes

DAMAGED = "That image is damaged or incomplete."
BMP = image_bytes(Image.new("RGB", (4, 4)), "BMP")


def _rgb(im: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    pixel = im.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def _grey(im: Image.Image, xy: tuple[int, int]) -> int:
    pixel = im.convert("L").getpixel(xy)
    assert isinstance(pixel, int)
    return pixel


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


class TestValidateImage:
    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            (png_bytes(40, 30), ImageInfo("image/png", 40, 30)),
            (jpeg_bytes(33, 17), ImageInfo("image/jpeg", 33, 17)),
            (image_bytes(Image.new("RGB", (9, 7)), "GIF"), ImageInfo("image/gif", 9, 7)),
            (image_bytes(Image.new("RGBA", (12, 5)), "WEBP"), ImageInfo("image/webp", 12, 5)),
            (animated_gif((24, 16)), ImageInfo("image/gif", 24, 16)),
        ],
        ids=["png", "jpeg", "gif", "webp", "animated-gif"],
    )
    def test_sound_images_report_mime_and_size(self, data: bytes, expected: ImageInfo) -> None:
        assert validate_image(data) == expected

    def test_animated_webp_is_accepted(self) -> None:
        frames = [Image.new("RGB", (20, 10), (i * 60, 0, 0)) for i in range(3)]
        data = image_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=40)
        assert validate_image(data) == ImageInfo("image/webp", 20, 10)

    @pytest.mark.parametrize(
        "data",
        [b"", b"hello", b'<svg xmlns="http://www.w3.org/2000/svg"/>', BMP],
        ids=["empty", "text", "svg", "bmp"],
    )
    def test_non_images_are_refused_by_magic_bytes(self, data: bytes) -> None:
        with pytest.raises(BadImage) as caught:
            validate_image(data)
        assert str(caught.value) == BadImage.default_message

    def test_truncated_png_is_damaged(self) -> None:
        data = noise_png(64, 64)
        with pytest.raises(BadImage, match=DAMAGED) as caught:
            validate_image(data[: len(data) * 2 // 3])
        assert caught.value.detail  # Pillow's own words stay in detail, for the log

    def test_flipped_idat_byte_fails_the_checksum(self) -> None:
        with pytest.raises(BadImage, match=DAMAGED) as caught:
            validate_image(flip_idat_byte(png_bytes()))
        assert "IDAT" in (caught.value.detail or "")

    def test_truncated_jpeg_is_found_by_the_full_decode(self) -> None:
        data = image_bytes(Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48), "JPEG")
        with pytest.raises(BadImage, match=DAMAGED):
            validate_image(data[: len(data) // 2])

    def test_png_signature_with_garbage_is_damaged(self) -> None:
        with pytest.raises(BadImage, match=DAMAGED):
            validate_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)

    def test_decompression_bomb_header_is_refused_before_decoding(self) -> None:
        with pytest.raises(BadImage) as caught:
            validate_image(header_only_png(20000, 20000))
        assert str(caught.value) == "That image is too large: 20000x20000 pixels; the limit is 40 megapixels."

    def test_pillow_bomb_warning_is_an_error_even_with_a_generous_budget(self) -> None:
        with pytest.raises(BadImage, match="10000x10000 pixels") as caught:
            validate_image(header_only_png(10000, 10000), max_pixels=10**9)
        assert "DecompressionBombWarning" in (caught.value.detail or "")

    def test_own_pixel_budget_is_checked_from_the_header(self) -> None:
        # 8000x8000 passes Pillow's limit; no pixel data exists, so only the header was read.
        with pytest.raises(BadImage) as caught:
            validate_image(header_only_png(8000, 8000))
        assert str(caught.value) == "That image is too large: 8000x8000 pixels; the limit is 40 megapixels."

    def test_custom_pixel_budget(self) -> None:
        with pytest.raises(BadImage, match="64x64 pixels; the limit is 4000 pixels"):
            validate_image(png_bytes(64, 64), max_pixels=4000)
        assert validate_image(png_bytes(64, 64), max_pixels=4096).width == 64

    def test_byte_cap_comes_before_decoding(self) -> None:
        data = png_bytes(8, 8) + b"\x00" * (3 * 1024 * 1024)
        with pytest.raises(BadImage) as caught:
            validate_image(data, max_bytes=2 * 1024 * 1024)
        assert str(caught.value) == "That image is too large: 3 MB; the limit is 2 MB."

    def test_concurrent_bomb_checks_leave_warning_filters_alone(self) -> None:
        before = list(warnings.filters)
        outcomes: list[str] = []

        def check() -> None:
            try:
                validate_image(header_only_png(10000, 10000), max_pixels=10**9)
            except BadImage as exc:
                outcomes.append(str(exc))

        threads = [threading.Thread(target=check) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(outcomes) == 8 and all("10000x10000" in o for o in outcomes)
        assert warnings.filters == before

    async def test_inspect_image_runs_in_a_thread(self) -> None:
        assert await inspect_image(png_bytes(5, 6)) == ImageInfo("image/png", 5, 6)
        with pytest.raises(BadImage):
            await inspect_image(b"nope")


class TestTelegramPreview:
    def test_small_png_and_jpeg_go_out_unchanged(self) -> None:
        assert telegram_preview(png_bytes(640, 480)) is None
        assert telegram_preview(jpeg_bytes(480, 640)) is None

    @staticmethod
    def _assert_sendable(preview: bytes | None) -> Image.Image:
        assert preview is not None
        assert sniff_mime(preview) == "image/jpeg"
        assert len(preview) <= TELEGRAM_PHOTO.max_bytes
        im = _open(preview)
        w, h = im.size
        assert w + h <= 10000 and max(w, h) <= 20 * min(w, h) and max(w, h) <= 2560
        return im

    def test_sides_summing_over_10000_get_a_preview(self) -> None:
        im = self._assert_sendable(telegram_preview(png_bytes(9000, 1200)))
        assert im.size == (2560, 341)

    def test_over_10_mb_gets_a_smaller_preview(self) -> None:
        data = noise_png(1850, 1850)
        assert len(data) > TELEGRAM_PHOTO.max_bytes
        im = self._assert_sendable(telegram_preview(data))
        assert im.size == (1850, 1850)  # within the side limits already: only re-encoded

    def test_exif_rotated_jpeg_is_transposed_and_exif_dropped(self) -> None:
        im = self._assert_sendable(telegram_preview(exif_rotated_jpeg(200, 100, orientation=6)))
        assert im.size == (100, 200)
        assert dict(im.getexif()) == {}
        r, _, b = _rgb(im, (50, 10))  # orientation 6: the stored left edge ends up on top
        assert r > 200 and b < 60

    def test_alpha_is_flattened_onto_white(self) -> None:
        clear = image_bytes(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), "WEBP", lossless=True)
        im = self._assert_sendable(telegram_preview(clear))
        assert im.mode == "RGB"
        assert min(_rgb(im, (32, 32))) >= 250

    def test_very_wide_image_is_letterboxed_to_ratio_20(self) -> None:
        im = self._assert_sendable(telegram_preview(png_bytes(4200, 100, color=(0, 0, 255))))
        assert im.size == (2560, 128)
        assert min(_rgb(im, (1280, 2))) >= 250  # white padding above
        r, _, b = _rgb(im, (1280, 64))
        assert b > 200 and r < 40  # the picture itself, centred

    def test_16_bit_grey_is_scaled_not_clipped(self) -> None:
        data = image_bytes(Image.new("I;16", (30, 700), 32768), "PNG")  # ratio > 20 forces a preview
        im = self._assert_sendable(telegram_preview(data))
        assert 120 <= _grey(im, (im.width // 2, im.height // 2)) <= 136

    def test_gif_and_webp_are_converted_to_jpeg(self) -> None:
        self._assert_sendable(telegram_preview(animated_gif()))
        self._assert_sendable(telegram_preview(image_bytes(Image.new("RGB", (50, 40)), "WEBP")))

    def test_broken_input_is_bad_image(self) -> None:
        with pytest.raises(BadImage):
            telegram_preview(b"not an image")
        with pytest.raises(BadImage, match="too large"):
            telegram_preview(header_only_png(20000, 20000))


class TestFitUnderBytes:
    def test_original_is_kept_when_it_fits(self) -> None:
        data = png_bytes(100, 100)
        assert fit_under_bytes(data, len(data)) == (data, "image/png", False)

    def test_noise_png_over_the_limit_is_reencoded_to_fit(self) -> None:
        data = noise_png(400, 400)
        out, mime, changed = fit_under_bytes(data, 100_000)
        assert changed and len(out) <= 100_000 < len(data)
        assert sniff_mime(out) == mime and mime in ("image/webp", "image/jpeg")
        assert validate_image(out).mime == mime

    def test_fitting_at_full_size_keeps_the_dimensions(self) -> None:
        data = image_bytes(Image.new("RGB", (300, 200), (10, 200, 90)), "PNG", compress_level=0)
        out, mime, changed = fit_under_bytes(data, len(data) // 4)
        assert changed and mime == "image/webp"
        assert _open(out).size == (300, 200)

    def test_impossible_limit_is_bad_image(self) -> None:
        with pytest.raises(BadImage, match="upload limit"):
            fit_under_bytes(noise_png(64, 64), 100)

    def test_non_image_is_bad_image(self) -> None:
        with pytest.raises(BadImage):
            fit_under_bytes(b"plain text", 10)


class TestThumbnail:
    def test_thumbnail_is_a_small_upright_jpeg(self) -> None:
        out = thumbnail_jpeg(png_bytes(300, 100), 64)
        assert sniff_mime(out) == "image/jpeg"
        assert _open(out).size == (64, 21)
        rotated = _open(thumbnail_jpeg(exif_rotated_jpeg(400, 200, orientation=6), 100))
        assert rotated.size == (50, 100)

    def test_bad_side_is_refused(self) -> None:
        with pytest.raises(ValueError):
            thumbnail_jpeg(png_bytes(), 0)


async def test_async_wrappers_match_the_sync_functions() -> None:
    data = noise_png(200, 200)
    assert await telegram_preview_async(png_bytes()) is None
    out, _, changed = await fit_under_bytes_async(data, 40_000)
    assert changed and len(out) <= 40_000
    assert _open(await thumbnail_jpeg_async(data, 32)).size == (32, 32)
