import numpy as np
import pytest
import tifffile
from PIL import Image

from cytofm.data.sources.image_io import ImageReadError, read_rgb


def test_rgb_is_untouched(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    out, conv = read_rgb(tmp_path / "a.png")
    assert conv == "" and np.array_equal(out, a)


def test_grayscale_replicated(tmp_path):
    g = np.arange(200, dtype=np.uint8).reshape(10, 20)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out, conv = read_rgb(tmp_path / "g.png")
    assert out.shape == (10, 20, 3) and np.array_equal(out[..., 1], g) and "gray->RGB" in conv


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 100  # red channel 100, others 0
    a[..., 3] = 128  # half transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out, conv = read_rgb(tmp_path / "a.png")
    alpha = 128 / 255
    assert out[0, 0].tolist() == [round(100 * alpha + 255 * (1 - alpha)), round(255 * (1 - alpha)),
                                  round(255 * (1 - alpha))]
    assert "alpha on white" in conv


def test_palette(tmp_path):
    im = Image.fromarray(np.full((8, 8, 3), (10, 200, 30), np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE)
    im.save(tmp_path / "p.png")
    out, conv = read_rgb(tmp_path / "p.png")
    assert out[0, 0].tolist() == [10, 200, 30] and "palette" in conv


def test_16bit_uses_bits_in_use(tmp_path):
    g = np.array([[0, 4095], [2048, 1024]], np.uint16)  # a 12-bit camera
    Image.fromarray(g).save(tmp_path / "g16.png")
    out, conv = read_rgb(tmp_path / "g16.png")
    assert out[0, 1, 0] == 255 and out[1, 0, 0] == round(2048 * 255 / 4095)
    assert "12-bit -> 8-bit" in conv


def test_48bit_rgb_tiff_via_tifffile(tmp_path):
    a = np.zeros((6, 5, 3), np.uint16)
    a[..., 2] = 65535
    tifffile.imwrite(tmp_path / "rgb16.tif", a)
    out, conv = read_rgb(tmp_path / "rgb16.tif")
    assert out.dtype == np.uint8 and out[0, 0].tolist() == [0, 0, 255]


def test_float_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.full((4, 4), 0.5, np.float32))
    out, _ = read_rgb(tmp_path / "f.tif")
    assert out[0, 0].tolist() == [128, 128, 128]


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"this is not an image at all", "not a recognised image format"),
])
def test_bad_files_raise_one_line(tmp_path, content, reason):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as e:
        read_rgb(p)
    assert "\n" not in str(e.value)


def test_truncated_jpeg(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="truncated"):
        read_rgb(tmp_path / "cut.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_rgb(tmp_path / "nope.png")
