"""The `mix-and-export` flow: leak-free splits, the train mixture, Parquet shards and the data card.

Rerunnable: every file is written atomically and a rerun rewrites the same export (splits are
drawn by hashing ids, the mixture under its seed).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from curation.config import CurateConfig, load_config
from curation.export import export, export_dir, push_to_hub
from flows.locks import run_dir_lock
from flows.secrets import read_secret


@task(retries=1)
def export_step(config_json: str) -> dict:
    config = CurateConfig.model_validate_json(config_json)
    return export(config)


@task(retries=2, retry_delay_seconds=30)
def hub_step(config_json: str) -> str:
    config = CurateConfig.model_validate_json(config_json)
    settings = config.export
    return push_to_hub(export_dir(config), settings.hub_repo, read_secret(settings.hub_token, "export.hub_token"),
                       settings.hub_private)


@flow(name="mix-and-export", log_prints=True)
def mix_and_export(config_path: str) -> dict:
    """Export the labeled rows of CONFIG's run as train/validation/test Parquet shards with a data card."""
    config = load_config(config_path)
    with run_dir_lock(config):
        summary = export_step(config.model_dump_json())
    if config.export.hub_repo:
        summary["hub_commit"] = hub_step(config.model_dump_json())
    create_table_artifact(summary.get("mixture", {}).get("report") or [{"lang": "-"}], key="export-mixture",
                          description="train mixture: target vs achieved share and epochs per language")
    create_markdown_artifact("\n".join([f"Exported {summary['rows']} labeled rows to `{export_dir(config)}`:"] + [
        f"- {name}: {s['rows']} rows in {len(s['files'])} file(s), {len(s['languages'])} languages"
        for name, s in summary["splits"].items()] + [f"\nData card: `{summary['card']}`"]
        + ([f"Pushed to the Hub: {summary['hub_commit']}"] if "hub_commit" in summary else [])), key="export")
    get_run_logger().info("export: %s", {name: s["rows"] for name, s in summary["splits"].items()})
    return summary
