"""The one configuration model of the project, validated before any work starts."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import fsspec
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Format = Literal["jsonl", "csv", "tsv", "parquet", "text", "hf_dataset"]
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet", ".txt": "text",
}
ENV_PREFIX = "env:"
_COMPRESSIONS = {".gz", ".bz2", ".xz", ".zst", ".zstd"}


class ConfigError(ValueError):
    """A configuration or input-path problem, reported before any work starts."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def env_value(value: str, field: str) -> str:
    """`value`, or the environment variable it names when it is 'env:VAR'."""
    if not value.startswith(ENV_PREFIX):
        return value
    name = value.removeprefix(ENV_PREFIX)
    if name not in os.environ:
        raise ConfigError(f"{field} needs ${name}, which is unset")
    return os.environ[name]


class SourceConfig(_Strict):
    """One input: a file, a glob of files, or a saved `datasets` dataset, on any fsspec path."""

    name: str = Field(description="short name stored in every record's `source` column")
    path: str = Field(description="file, glob or directory; any fsspec URL (s3://, gs://, ...)")
    format: Format | None = Field(None, description="inferred from the file suffix when omitted")
    text_column: str = Field("text", description="column (or JSON key) holding the text")
    id_column: str | None = Field(None, description="column with the source's own id; default path:row")
    label_column: str | None = Field(None, description="column with a gold label, if any")
    metadata_columns: list[str] = Field(default_factory=list, description="kept as JSON in `meta`")
    text_mode: Literal["line", "file"] = Field("line", description="plain text: a doc per line or per file")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="passed to fsspec; write secrets as 'env:VAR' so that only the "
        "variable's name is ever stored in configs, run directories or logs")

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, name: str) -> str:
        if not name or "\x1f" in name or "/" in name:
            raise ValueError("source name must be non-empty and contain no '/'")
        return name

    def fs_options(self) -> dict[str, str]:
        """`storage_options` with every 'env:VAR' value read from the environment."""
        return {key: env_value(value, f"source {self.name!r}: storage option {key!r}")
                for key, value in self.storage_options.items()}

    def format_of(self, path: str) -> str:
        if self.format:
            return self.format
        suffixes = [s for s in Path(path).suffixes if s not in _COMPRESSIONS]
        if suffixes and suffixes[-1] in _SUFFIX_FORMATS:
            return _SUFFIX_FORMATS[suffixes[-1]]
        raise ConfigError(f"source {self.name!r}: cannot infer the format of {path!r}; set `format`")


class LidConfig(_Strict):
    model_path: str | None = Field(None, description="a fastText LID model (lid.176.bin, GlotLID); "
                                   "default: the packaged lid.176.ftz")
    top_k: int = Field(3, ge=1, le=10)
    threshold: float = Field(0.5, ge=0, le=1, description="below this top score the language is 'und'")
    thresholds: dict[str, float] = Field(default_factory=dict,
                                         description="per-language overrides, keyed by FLORES code")
    code_mixed_margin: float = Field(0.2, ge=0, le=1,
                                     description="flag code-mixing when top-1 minus top-2 is below this")
    code_mixed_window: int = Field(8, ge=2, description="words per segment when checking segments for "
                                   "confidently different languages (also flags code-mixing)")
    keep_languages: list[str] | None = Field(
        None, description="drop records in other languages ('und' is left to drop_undetermined)")
    drop_undetermined: bool = Field(False, description="drop records whose language is 'und'")
    batch_size: int = Field(4096, ge=1)


class ExactDedupConfig(_Strict):
    enabled: bool = True


class NearDedupConfig(_Strict):
    enabled: bool = True
    word_ngram: int = Field(3, ge=1, description="shingle size in words for spaced scripts")
    char_ngram: int = Field(4, ge=1, description="shingle size in characters for unspaced scripts")
    num_perm: int = Field(128, ge=16, le=1024)
    bands: int = Field(16, ge=1)
    rows: int = Field(8, ge=1)
    threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard needed to call a pair duplicate")
    keep: Literal["first", "longest", "score"] = "first"
    score_column: str | None = Field(None, description="with keep=score: a numeric column in `meta`")
    max_bucket_pairs: int = Field(64, ge=2, description="buckets larger than this are verified as stars")
    batch_size: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> NearDedupConfig:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
        if self.keep == "score" and not self.score_column:
            raise ValueError("keep=score needs score_column")
        return self


class EmbedConfig(_Strict):
    enabled: bool = False
    model: str = Field("e5-small", description="'e5-small' (embedded multilingual-e5-small) or any "
                       "sentence-transformers model path or hub id")
    prompt_name: str | None = Field("passage", description="the model's prompt for documents (E5: 'passage')")
    batch_size: int = Field(32, ge=1)
    dtype: Literal["float16", "float32"] = Field("float16", description="how vectors are stored")
    device: str | None = Field(None, description="'cuda', 'cpu'...; default: cuda when present")


class CoverageConfig(_Strict):
    enabled: bool = False
    clusters: int | None = Field(None, ge=1, description="k-means clusters; default about sqrt(rows)")
    neighbours: int = Field(10, ge=1, description="k for the density score")
    probe: int = Field(4, ge=1, description="nearest centroids whose records are a record's neighbour candidates")
    partitions: int = Field(8, ge=1, description="groups of clusters worked on in parallel (one task each)")
    radius: float = Field(0.85, gt=0, le=1, description="cosine to a labeled record that counts as covered")
    min_language_rows: int = Field(10, ge=1, description="smaller languages are reported, not ranked worst")


class SemDedupConfig(_Strict):
    enabled: bool = False
    epsilon: float = Field(0.05, gt=0, lt=1, description="same-language records at cosine ≥ 1-ε are duplicates")
    clusters: int | None = Field(None, ge=1, description="k-means clusters; default about sqrt(rows)")
    keep: Literal["first", "longest"] = "first"
    flag_translations: bool = Field(True, description="mark near-translations (never dropped)")
    translation_min_cosine: float = Field(0.8, gt=0, le=1, description="a cross-language pair is a near-"
                                          "translation at this cosine when each is the other's best match")
    neighbours: int = Field(10, ge=1, description="k of the k-NN search for near-translations")
    probe: int = Field(8, ge=1, description="nearest centroids whose records are a record's translation "
                                            "candidates")
    partitions: int = Field(8, ge=1, description="groups of clusters worked on in parallel (one task each)")


class StudentConfig(_Strict):
    """The multilingual student. Mode `head`: a classifier head on cached embeddings (what the
    active-learning loop uses on CPU). Mode `finetune`: the encoder itself is trained, its lower
    `freeze_layers` frozen, with layer-wise learning-rate decay. Mode `lora`: LoRA adapters on a frozen
    encoder, one shared adapter and optionally one more per language (best on a GPU)."""

    mode: Literal["head", "finetune", "lora"] = "head"
    hidden: int = Field(256, ge=0, description="hidden units of the head (0: linear)")
    dropout: float = Field(0.2, ge=0, lt=1, description="also drives MC-dropout (BALD)")
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    max_epochs: int = Field(200, ge=1, description="full-batch epochs (the cap when validating)")
    patience: int = Field(30, ge=1, description="epochs without a better per-language macro-F1")
    max_language_drop: float = Field(0.05, ge=0, le=1, description="a new best may not cost any language "
                                     "more than this much macro-F1 (rollback for low-resource languages)")
    calibrate: bool = Field(True, description="temperature scaling on held-out labels")
    seed: int = 0
    encoder: str = Field("e5-small", description="finetune, lora: the encoder to train (as `embed.model`)")
    freeze_layers: int = Field(8, ge=0, description="finetune: embeddings and this many lower layers frozen")
    encoder_lr: float = Field(3e-5, gt=0, description="finetune: learning rate of the top encoder layer")
    layer_lr_decay: float = Field(0.8, gt=0, le=1, description="finetune: lr of a layer = this × the one above")
    batch_size: int = Field(16, ge=1, description="finetune, lora: examples per forward pass")
    grad_accumulation: int = Field(1, ge=1, description="finetune, lora: forward passes per optimiser step")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="finetune, lora: auto = bf16 on a GPU with it, else fp16 with loss scaling; fp32 on CPU")
    lora_rank: int = Field(8, ge=1, description="lora: rank of each adapter")
    lora_alpha: int = Field(16, ge=1, description="lora: scaling numerator (update × alpha / rank)")
    lora_targets: list[str] = Field(["query", "value"], min_length=1, description="lora: modules adapted")
    adapter_lr: float = Field(5e-4, gt=0, description="lora: learning rate of the adapters")
    adapter_per: Literal["shared", "language"] = Field(
        "shared", description="lora: one adapter for all, or the shared one plus one per language stacked on it")
    adapter_min_rows: int = Field(32, ge=1, description="lora: labels a language needs for its own adapter")
    finetune_epochs: int = Field(3, ge=1, description="finetune, lora: passes over the labels")
    max_steps: int | None = Field(None, ge=1, description="finetune, lora: compute cap in optimiser steps")
    max_seconds: float | None = Field(None, gt=0, description="finetune, lora: compute cap in wall-clock seconds")


class SelectionConfig(_Strict):
    strategy: Literal["random", "least_confidence", "margin", "entropy", "bald", "kcenter", "hybrid"] = "hybrid"
    batch_size: int = Field(100, ge=1)
    language_budget: Literal["global", "proportional", "equal", "weighted", "gain"] = Field(
        "global", description="how a batch is split over languages: 'global' lets coverage decide (labels "
        "transfer across languages in a multilingual encoder); 'gain' follows each language's measured "
        "marginal gain from labels")
    uncertainty_weight: float = Field(0.5, ge=0, le=1, description="hybrid: k-center distance × (1-w + w·uncertainty "
                                      "rank); 0 is pure k-center")
    duplicate_cosine: float = Field(0.95, gt=0, le=1, description="never two same-language records this similar")
    translation_cosine: float = Field(0.85, gt=0, le=1, description="never a record and its translation")
    mc_samples: int = Field(10, ge=2, description="BALD: MC-dropout passes")


class ActiveLearningConfig(_Strict):
    """The `al-round` flow: train on all labels so far, score the pool, select a batch."""

    pool_stage: str = Field("semdedup", description="the stage whose shards are the pool (embed must have run)")
    student: StudentConfig = Field(default_factory=StudentConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)

    @model_validator(mode="after")
    def _bald_needs_dropout_head(self) -> ActiveLearningConfig:
        if self.selection.strategy == "bald" and self.student.mode != "head":
            raise ValueError("strategy 'bald' samples the head student's dropout: use student.mode 'head'")
        return self


SECRET_PREFIXES = (ENV_PREFIX, "prefect-secret:")


def secret_reference(value: str) -> str:
    """Secrets are named in configs, never written: 'env:VAR' or 'prefect-secret:BLOCK'."""
    if not value.startswith(SECRET_PREFIXES):
        raise ValueError("a secret must be 'env:VAR' or 'prefect-secret:BLOCK', never the secret itself")
    return value


SecretReference = Annotated[str, AfterValidator(secret_reference)]


def env_secret(reference: str, field: str) -> str:
    """The value of an 'env:VAR' reference (the Prefect flows also read 'prefect-secret:' ones)."""
    if not reference.startswith(ENV_PREFIX):
        raise ConfigError(f"{field} {reference!r} is read by the Prefect flows; run with Prefect")
    if not (secret := env_value(reference, field)):
        raise ConfigError(f"{field} needs ${reference.removeprefix(ENV_PREFIX)}, which is unset")
    return secret


class AnnotationConfig(_Strict):
    """Human verification in Argilla: where batches go and how answers become labels."""

    api_url: str = Field("env:ARGILLA_API_URL", description="the Argilla server, or 'env:VAR' naming it")
    api_key: SecretReference = Field("env:ARGILLA_API_KEY", description="'env:VAR' or 'prefect-secret:BLOCK': "
                                     "the key itself is never written in a config")
    workspace: str = "curation"
    dataset: str = Field("curation", description="the dataset batches go to; disputed records go to <dataset>-review")
    labels: list[str] = Field(default_factory=list, description="the label set (default: the labels in the pool)")
    guidelines: str = Field("Read the text and choose the label that fits it best. The suggestion comes from "
                            "the model: check it, do not trust it. Discard texts that cannot be labeled.")
    min_submitted: int = Field(1, ge=1, description="answers a record needs before it counts as done")
    review_min_submitted: int = Field(3, ge=2, description="answers a disputed record needs in the review dataset")
    min_agreement: float = Field(0.6, gt=0.5, le=1, description="majority share below which answers conflict")
    push_chunk: int = Field(200, ge=1, le=500, description="records per request when pushing")
    poll_seconds: float = Field(30, gt=0, description="al-round wait: how often to harvest")
    wait_fraction: float = Field(1.0, gt=0, le=1, description="al-round wait: share of the batch that must be done")


    def url(self) -> str:
        """`api_url`, read from the environment when it is 'env:VAR'."""
        return env_value(self.api_url, "annotation.api_url")


class MixtureConfig(_Strict):
    """How the training mixture samples languages (curation/mixture.py)."""

    method: Literal["temperature", "unimax"] = Field("temperature", description="temperature: p_l ∝ n_l^(1/T); "
                                                     "unimax: a uniform budget, no language beyond max_epochs")
    temperature: float = Field(3.0, ge=1, description="1 keeps natural shares; larger flattens towards uniform")
    total_rows: int | None = Field(None, ge=1, description="rows in the mixture (default: the rows available)")
    max_epochs: float = Field(4.0, ge=1, description="no language is repeated more than this many times")
    floors: dict[str, float] = Field(default_factory=dict, description="language -> minimum share")
    caps: dict[str, float] = Field(default_factory=dict, description="language -> maximum share")
    balance_labels: bool = Field(False, description="within a language, sample labels equally")
    seed: int = 0


class AugmentConfig(_Strict):
    """Back-translation of labeled rows, every synthetic row passing the guards (curation/augment.py)."""

    enabled: bool = False
    backend: Literal["apertium", "transformers"] = "apertium"
    pivots: dict[str, str] = Field(default_factory=lambda: {"eng_Latn": "spa_Latn", "spa_Latn": "eng_Latn"},
                                   description="language -> pivot language of its round trip")
    model: str | None = Field(None, description="transformers: a seq2seq model path or hub id")
    min_length_ratio: float = Field(0.5, gt=0, description="synthetic / source length (characters)")
    max_length_ratio: float = Field(2.0, gt=0)
    min_similarity: float = Field(0.85, ge=0, le=1, description="cosine of source and round trip (the encoder)")
    max_similarity: float = Field(0.995, ge=0, le=1, description="above: a copy, not a paraphrase")
    max_synthetic_share: float = Field(0.3, ge=0, lt=1, description="per language, of its rows after augmenting")
    check_label: bool = Field(True, description="drop rows the student labels differently, when one exists")
    check_pivot_language: bool = Field(True, description="drop rows whose pivot text is not in the pivot language")
    check_language: bool = Field(True, description="drop round trips the LID stage puts in another language")
    check_duplicates: bool = Field(True, description="drop exact and near duplicates (the near_dedup settings) of "
                                   "originals and of other synthetic rows")


class ExportConfig(_Strict):
    """Curated shards and their data card for training teams (curation/export.py)."""

    output_dir: str | None = Field(None, description="default: <run_dir>/export")
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    shard_rows: int = Field(100_000, ge=1, description="rows per exported Parquet file")
    only_labeled: bool = Field(True, description="export labeled rows only (source, human or synthetic)")
    license: str = Field("other", description="licence for the card's YAML header")
    task: str = Field("text-classification", description="task category for the card")
    card_dir: str | None = Field(None, description="a copy of the card goes to <card_dir>/<run name>/ (e.g. the "
                                 "repository's data_cards/); relative paths are relative to the config file")
    hub_repo: str | None = Field(None, description="push the export to this Hugging Face dataset repo (owner/name)")
    hub_token: SecretReference = Field("env:HF_TOKEN", description="'env:VAR' or 'prefect-secret:BLOCK' holding "
                                       "a Hub write token")
    hub_private: bool = Field(True, description="create the Hub repo private")


class ScheduleConfig(_Strict):
    """Deployments that `curate serve` creates: a cron line per flow (None: on demand only)."""

    curate: str | None = Field("0 2 * * *", description="curate: nightly by default")
    al_round: str | None = Field(None, description="al-round: e.g. after the day's answers are in")
    harvest: str | None = Field("*/30 * * * *", description="harvest: pull answers every half hour")
    mix_and_export: str | None = Field(None, description="mix-and-export: e.g. weekly")
    timezone: str = Field("UTC", description="time zone of the cron lines")
    name: str | None = Field(None, description="deployment name (default: the run directory's name)")
    drift_threshold: float = Field(0.1, gt=0, le=1, description="warn when the language distribution moved "
                                   "more than this (total variation) since the deployment's previous run")

    @field_validator("curate", "al_round", "harvest", "mix_and_export")
    @classmethod
    def _five_cron_fields(cls, cron: str | None) -> str | None:
        if cron is not None and not re.fullmatch(r"\s*[\w*/,?-]+(\s+[\w*/,?-]+){4}\s*", cron):
            raise ValueError(f"not a cron line (minute hour day month weekday): {cron!r}")
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {name!r}") from err
        return name


class RunnerConfig(_Strict):
    """Where the curate flow's shard tasks run; tasks pass shard names, never tables."""

    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = Field(None, description="an existing Dask scheduler (tcp://host:8786); unset with "
                                     "'dask': a local cluster of `workers` processes")
    workers: int | None = Field(None, ge=1, description="threads, or local Dask worker processes (default: CPUs)")


class CurateConfig(_Strict):
    run_dir: str = Field(description="where every stage writes its shards, manifests and stats; '{date}' becomes "
                         "the UTC date the config is loaded (a nightly run's own directory)")
    sources: list[SourceConfig] = Field(min_length=1)
    shard_rows: int = Field(50_000, ge=1, description="rows per shard written by ingest")
    row_group_rows: int = Field(10_000, ge=1, description="Parquet row-group size")
    max_text_chars: int = Field(100_000, ge=1, description="longer texts are quarantined")
    lid: LidConfig = Field(default_factory=LidConfig)
    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    coverage: CoverageConfig = Field(default_factory=CoverageConfig)
    semdedup: SemDedupConfig = Field(default_factory=SemDedupConfig)
    active_learning: ActiveLearningConfig = Field(default_factory=ActiveLearningConfig)
    annotation: AnnotationConfig = Field(default_factory=AnnotationConfig)
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    @model_validator(mode="after")
    def _embeddings_for_embedding_stages(self) -> CurateConfig:
        if (self.coverage.enabled or self.semdedup.enabled) and not self.embed.enabled:
            raise ValueError("coverage and semdedup need embed.enabled: true")
        return self

    @model_validator(mode="after")
    def _unique_source_names(self) -> CurateConfig:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique: {names}")
        return self


def load_config(path: str | Path) -> CurateConfig:
    """Read and validate a YAML config; relative paths are taken from the config file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    try:
        config = CurateConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: invalid config:\n{err}") from err
    return _resolve_relative(config, path.parent.resolve())


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _resolve_relative(config: CurateConfig, base: Path) -> CurateConfig:
    def resolve(p: str) -> str:
        return str(base / p) if is_local(p) and not Path(p).is_absolute() else p

    today = datetime.now(UTC).date().isoformat()
    update = {"run_dir": resolve(config.run_dir.replace("{date}", today)),
              "sources": [s.model_copy(update={"path": resolve(s.path)}) for s in config.sources]}
    if config.lid.model_path:
        update["lid"] = config.lid.model_copy(update={"model_path": resolve(config.lid.model_path)})
    update["export"] = config.export.model_copy(update={
        key: resolve(value) for key in ("output_dir", "card_dir") if (value := getattr(config.export, key))})
    return config.model_copy(update=update)


def expand_source(source: SourceConfig) -> list[str]:
    """The files of a source, sorted (a saved HF dataset is one directory)."""
    fs, root = fsspec.core.url_to_fs(source.path, **source.fs_options())
    if source.format == "hf_dataset":
        return [source.path] if fs.isdir(root) else []
    if fs.isdir(root):
        found = [p for p in fs.find(root) if not Path(p).name.startswith(".")]
    else:
        found = fs.glob(root) if any(c in root for c in "*?[") else ([root] if fs.isfile(root) else [])
    protocol = source.path.split("://")[0] + "://" if not is_local(source.path) else ""
    return sorted(protocol + p if protocol and not p.startswith(protocol) else p for p in found)
