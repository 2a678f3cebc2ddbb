"""`apprentice stats` and `apprentice export` read sealed segments written by the real proxy."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from apprentice.cli import app
from logbook.schema import RequestRow
from tests.conftest import CLIENT_KEY, RunningProxy, proxy_config
from tests.fakes.teacher import Failure, FakeTeacher
from tests.logbook.rows import Row
from tests.logbook.stores import BUCKET, bucket_store, open_logbook
from tests.proxy.test_chat import client
from tests.services.s3 import ACCESS_KEY, SECRET_KEY, STORE_ENV, S3Server


def write_toml(path: Path, data_dir: Path) -> Path:
    path.write_text(f'data_dir = "{data_dir}"\n[[routes]]\nname = "triage"\nteacher = "openai/x"\n')
    return path


def test_stats_and_export_after_traffic(tmp_path: Path, teacher: FakeTeacher) -> None:
    data_dir = tmp_path / "data"
    with RunningProxy(proxy_config(data_dir, teacher)) as proxy:
        c = client(proxy)
        for i in range(3):
            c.chat.completions.create(
                model="triage", messages=[{"role": "user", "content": f"q{i}"}]
            )
        teacher.fail_next(*[Failure(500)] * 3)
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="triage", messages=[{"role": "user", "content": "x"}])
    toml = write_toml(tmp_path / "a.toml", data_dir)
    runner = CliRunner()
    result = runner.invoke(app, ["stats", "--config", str(toml), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["total"]["rows"] == 4 and stats["total"]["errors"] == 1
    assert stats["by_route"][0]["route"] == "triage"
    assert stats["total"]["cost_usd"] > 0
    table = runner.invoke(app, ["stats", "--config", str(toml)])
    assert table.exit_code == 0 and "triage" in table.stdout
    out = tmp_path / "ft.jsonl"
    exported = runner.invoke(
        app, ["export", "--route", "triage", "--config", str(toml), "-o", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3  # the failed call is not a training pair
    assert lines[0]["messages"] == [
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": "echo: q0"},
    ]
    assert CLIENT_KEY not in out.read_text()


def test_bad_config_and_unknown_route_exit_nonzero_with_one_sentence(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["stats", "--config", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    toml = write_toml(tmp_path / "a.toml", tmp_path / "d")
    unknown = runner.invoke(app, ["export", "--route", "nope", "--config", str(toml)])
    assert unknown.exit_code == 2 and "Unknown route 'nope'" in unknown.output
    empty = runner.invoke(app, ["stats", "--config", str(toml), "--json"])
    assert empty.exit_code == 0 and json.loads(empty.stdout)["total"]["rows"] == 0


def test_export_a_curated_dataset_version(tmp_path: Path) -> None:
    from tests.retrain.triage_task import make_rows, write_dataset

    data_dir = tmp_path / "data"
    rows = make_rows(12, seed=1)
    write_dataset(data_dir, "triage", 1, rows[:10], rows[10:])
    toml = write_toml(tmp_path / "a.toml", data_dir)
    out = tmp_path / "v1.jsonl"
    result = CliRunner().invoke(
        app,
        ["export", "--route", "triage", "--dataset", "1", "--config", str(toml), "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 10  # the train split
    assert lines[0]["messages"][-1]["role"] == "assistant"
    assert lines[0]["messages"][-1]["content"] == json.loads(rows[0]["answer"])["content"]
    missing = CliRunner().invoke(
        app, ["export", "--route", "triage", "--dataset", "7", "--config", str(toml)]
    )
    assert missing.exit_code == 1 and "has no dataset v7" in missing.output
    as_printed = tmp_path / "as-printed.jsonl"  # `curate` prints the version as v1
    result = CliRunner().invoke(app, ["export", "--route", "triage", "--dataset", "v1",
                                      "--config", str(toml), "-o", str(as_printed)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert as_printed.read_text() == out.read_text()
    bad = CliRunner().invoke(
        app, ["export", "--route", "triage", "--dataset", "latest", "--config", str(toml)]
    )
    assert bad.exit_code == 2 and "takes a version such as v3 or 3" in bad.output


def test_export_reads_every_surface_in_chat_form_as_curation_does(
    tmp_path: Path, teacher: FakeTeacher
) -> None:
    import anthropic

    data_dir = tmp_path / "data"
    with RunningProxy(proxy_config(data_dir, teacher)) as proxy:
        c = client(proxy)
        c.chat.completions.create(model="triage", messages=[{"role": "user", "content": "chat"}])
        c.responses.create(model="triage", input="responses", instructions="Be brief.")
        with c.responses.stream(model="triage", input="streamed responses") as stream:
            stream.get_final_response()
        ant = anthropic.Anthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0)
        ant.messages.create(model="triage", max_tokens=32, system="Be brief.",
                            messages=[{"role": "user", "content": "messages"}])  # fmt: skip
        c.completions.create(model="triage", prompt="legacy")
        c.embeddings.create(model="triage", input="not a pair")
    toml = write_toml(tmp_path / "a.toml", data_dir)
    out = tmp_path / "all.jsonl"
    exported = CliRunner().invoke(
        app, ["export", "--route", "triage", "--config", str(toml), "-o", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["messages"] for line in lines] == [
        [{"role": "user", "content": "chat"}, {"role": "assistant", "content": "echo: chat"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "responses"},
         {"role": "assistant", "content": "echo: responses"}],
        [{"role": "user", "content": "streamed responses"},
         {"role": "assistant", "content": "echo: streamed responses"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "messages"},
         {"role": "assistant", "content": "echo: messages"}],
        [{"role": "user", "content": "legacy"}, {"role": "assistant", "content": "echo: legacy"}],
    ]  # fmt: skip


def answered(request_id: str) -> RequestRow:
    return Row(
        request_id, route="triage",
        request=json.dumps({"messages": [{"role": "user", "content": request_id}]}),
        response=json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"}}]}),
    )  # fmt: skip


async def test_stats_and_export_read_every_replica_through_the_bucket(
    s3: S3Server, tmp_path: Path
) -> None:
    s3.create_bucket(BUCKET)
    for replica in ("a", "b"):
        logbook = await open_logbook(tmp_path / replica, bucket_store(s3, tmp_path / replica))
        for i in range(6):
            logbook.submit(answered(f"{replica}-{i}"))
        await logbook.close()  # flushes and seals
    toml = tmp_path / "a.toml"
    store = s3.store_config(BUCKET, "prod")
    toml.write_text(
        f'data_dir = "{tmp_path / "cli"}"\n[store]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in store.items())
        + '[[routes]]\nname = "triage"\nteacher = "openai/x"\n'
    )
    runner = CliRunner()
    result = runner.invoke(app, ["stats", "--config", str(toml), "--json"], env=STORE_ENV)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["total"]["rows"] == 12 and stats["store"].startswith(f"s3://{BUCKET}/prod at")
    out = tmp_path / "ft.jsonl"
    exported = runner.invoke(
        app, ["export", "--route", "triage", "--config", str(toml), "-o", str(out)], env=STORE_ENV
    )
    assert exported.exit_code == 0, exported.output
    assert len(out.read_text().splitlines()) == 12
    unset = runner.invoke(app, ["stats", "--config", str(toml)], env={"TEST_S3_KEY": ""})
    assert unset.exit_code == 2 and "store.access_key_id reads" in unset.output
    s3.stop()
    down = runner.invoke(app, ["stats", "--config", str(toml)], env=STORE_ENV)
    assert down.exit_code == 1 and f"The store s3://{BUCKET}/prod" in down.output
    assert ACCESS_KEY not in down.output and SECRET_KEY not in down.output
