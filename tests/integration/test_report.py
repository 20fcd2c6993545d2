"""`switchyard report` on a real PostgreSQL ledger: totals to the cent, percentiles, SLO, filters, outputs."""

from __future__ import annotations

import argparse
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, func, select

from schemas.tables import Batch, Job, LedgerEntry, Result
from switchyard.catalog import Catalog, load_catalog
from switchyard.cli import main
from switchyard.costing import SECONDS_PER_MONTH, job_cost
from switchyard.db import get_engine
from switchyard.report import Report, build_report, json_schema, latency_sample
from switchyard.report_cli import cmd_report
from switchyard.report_render import PANELS, render_figure, render_text, write_png

REPO = Path(__file__).resolve().parents[2]
CENT = Decimal("0.01")
DAY1 = datetime(2024, 5, 1, tzinfo=UTC)
DAY2 = datetime(2024, 5, 2, tzinfo=UTC)


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(None)


# --- factory -------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One job as it ends up in the database; costs come from switchyard.costing, as workers compute them."""

    model: str
    rule: str
    tenant: str | None
    at: datetime
    queue_ms: int
    inference_ms: int
    input_tokens: int = 400
    output_tokens: int = 200
    simulated: bool = False
    state: str = "succeeded"

    @property
    def latency_ms(self) -> int:
        return self.queue_ms + self.inference_ms + 3  # + the result's writes


def seed(engine: Engine, catalog: Catalog, name: str, rows: list[Row]) -> uuid.UUID:
    batch_id = uuid.uuid4()
    jobs, results, ledger = [], [], []
    for i, r in enumerate(rows):
        job_id = uuid.uuid4()
        jobs.append(dict(id=job_id, batch_id=batch_id, custom_id=f"{name}-{i}", seq=i, state=r.state,
                         model=r.model, requested_model="auto", route_rule=r.rule, route_reason=r.rule,
                         contains_pii=r.rule == "pii", pii_types=[], complexity=0.5,
                         expected_output_tokens=200, prompt_tokens_estimate=r.input_tokens, priority=0,
                         tenant=r.tenant, request={"messages": [{"role": "user", "content": "x"}]},
                         attempts=1, finished_at=r.at))
        ok = r.state == "succeeded"
        results.append(dict(job_id=job_id, model=r.model, backend="simulated" if r.simulated else "openai",
                            status_code=200 if ok else 500, request_id="r",
                            body={"choices": []} if ok else None, error_code=None if ok else "provider_error",
                            simulated=r.simulated, attempt=1))
        if not ok:
            continue
        spec, cost = catalog.model(r.model), job_cost(catalog, r.model, r.input_tokens, r.output_tokens)
        ledger.append(dict(job_id=job_id, batch_id=batch_id, tenant=r.tenant, model=r.model,
                           provider=spec.provider, self_hosted=spec.self_hosted, simulated=r.simulated,
                           route_rule=r.rule, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                           input_usd_per_mtok=cost.input_usd_per_mtok,
                           output_usd_per_mtok=cost.output_usd_per_mtok, gpu_seconds=cost.gpu_seconds,
                           cost_usd=cost.cost_usd, baseline_usd=cost.baseline_usd,
                           queue_wait_ms=r.queue_ms, inference_ms=r.inference_ms, latency_ms=r.latency_ms,
                           created_at=r.at))
    with engine.begin() as conn:
        conn.execute(Batch.__table__.insert().values(id=batch_id, name=name, total_jobs=len(rows)))
        conn.execute(Job.__table__.insert(), jobs)
        conn.execute(Result.__table__.insert(), results)
        if ledger:
            conn.execute(LedgerEntry.__table__.insert(), ledger)
    return batch_id


#: (model, rule, jobs, queue ms range, inference ms range, output tokens range) of a realistic mixed batch.
MIX = [
    ("llama-3-70b", "pii", 40, (5, 80), (250, 600), (100, 600)),
    ("llama-3-70b", "default", 80, (5, 80), (250, 650), (100, 800)),
    ("mistral-7b", "complexity_low", 150, (2, 30), (60, 150), (50, 300)),
    ("gpt-4-turbo", "complexity_high", 40, (10, 200), (400, 1400), (200, 900)),
    ("claude-3-opus", "long_output", 20, (10, 200), (2500, 6000), (2100, 3500)),
]


def mixed(start: datetime, hours: float, *, simulated: bool = False, seed_: int = 7,
          scale: int = 1) -> list[Row]:
    """MIX (1/scale of it), spread evenly: first job at ``start``, last at ``start + hours``."""
    rnd = random.Random(seed_)
    rows = []
    for model, rule, n, q, inf, out in MIX:
        for _ in range(n // scale):
            rows.append(Row(model, rule, rnd.choice(["legal", "support", None]), start, rnd.randint(*q),
                            rnd.randint(*inf), rnd.randint(50, 3000), rnd.randint(*out), simulated))
    rnd.shuffle(rows)
    for i, r in enumerate(rows):
        r.at = start + timedelta(hours=hours) * i / (len(rows) - 1)
    return rows


def ledger_sum(engine: Engine, *where: Any) -> Decimal:
    with engine.connect() as conn:
        total = select(func.coalesce(func.sum(LedgerEntry.cost_usd), 0)).where(*where)
        return conn.execute(total).scalar_one()


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


# --- money ---------------------------------------------------------------------------------------------


def test_totals_equal_ledger_and_results_to_the_cent(db: str, catalog: Catalog) -> None:
    engine = get_engine(db)
    real_rows = mixed(DAY1, 6) + [Row("gpt-4-turbo", "complexity_high", "legal", DAY1, 5, 5, state="failed"),
                                  Row("claude-3-opus", "long_output", None, DAY1, 5, 5, state="dead")]
    sim_rows = mixed(DAY2, 1, simulated=True, seed_=8, scale=5)
    seed(engine, catalog, "contracts", real_rows)
    seed(engine, catalog, "demo", sim_rows)
    report = build_report(engine, catalog)

    everything = ledger_sum(engine)
    assert report.real.cost_usd + report.simulated.cost_usd == everything  # exact, not only to the cent
    assert report.real.cost_usd == ledger_sum(engine, LedgerEntry.simulated.is_(False))
    # Each result's cost, as the workers compute it, adds up to the report too.
    for rows, figures in ((real_rows, report.real), (sim_rows, report.simulated)):
        results = sum(job_cost(catalog, r.model, r.input_tokens, r.output_tokens).cost_usd
                      for r in rows if r.state == "succeeded")
        assert cents(results) == cents(figures.cost_usd) and figures.cost_usd > 0
    # Per model, per tenant and total agree with each other and with the ledger.
    for m in report.models:
        for simulated, f in ((False, m.real), (True, m.simulated)):
            expect = ledger_sum(engine, LedgerEntry.model == m.model, LedgerEntry.simulated.is_(simulated))
            assert (f.cost_usd if f else 0) == expect
    assert sum(m.real.cost_usd for m in report.models if m.real) == report.real.cost_usd
    assert sum(t.real.cost_usd for t in report.tenants if t.real) == report.real.cost_usd
    assert sum(m.real.jobs for m in report.models if m.real) == report.real.jobs == 330
    assert (report.failed_jobs, report.dead_jobs) == (1, 1)
    gpt = next(m for m in report.models if m.model == "gpt-4-turbo")
    assert gpt.failed_jobs == 1 and gpt.real and gpt.real.jobs == 40


def test_baseline_and_savings(db: str, catalog: Catalog) -> None:
    engine = get_engine(db)
    rows = mixed(DAY1, 6)
    seed(engine, catalog, "contracts", rows)
    report = build_report(engine, catalog)

    # The baseline is every job on GPT-4 Turbo at its real token counts: $10 / $30 per million.
    baseline = sum(Decimal(10) * r.input_tokens / 10**6 + Decimal(30) * r.output_tokens / 10**6 for r in rows)
    assert cents(report.real.baseline_usd) == cents(baseline)
    assert report.real.savings_usd == report.real.baseline_usd - report.real.cost_usd
    cost = sum(job_cost(catalog, r.model, r.input_tokens, r.output_tokens).cost_usd for r in rows)
    assert report.real.savings_pct == pytest.approx(float((baseline - cost) / baseline * 100), abs=0.01)
    gpt = next(m for m in report.models if m.model == "gpt-4-turbo").real
    assert gpt and gpt.savings_usd == 0 and gpt.cost_usd == gpt.baseline_usd  # the baseline saves nothing
    claude = next(m for m in report.models if m.model == "claude-3-opus").real
    assert claude and claude.savings_usd < 0  # Opus output costs more than GPT-4 Turbo's: a negative saving
    for name in ("llama-3-70b", "mistral-7b"):
        own = next(m for m in report.models if m.model == name).real
        assert own and own.savings_pct and own.savings_pct > 90  # self-hosted at the marginal cost


def test_fully_loaded_cost_prorates_the_pools_over_the_period(db: str, catalog: Catalog) -> None:
    engine = get_engine(db)
    batch_a = seed(engine, catalog, "a", mixed(DAY1, 6))
    # Another batch on Llama in the same six hours shares that pool's idle capacity.
    other = [Row("llama-3-70b", "default", "ops", DAY1 + timedelta(hours=h), 20, 300, 1000, 1000)
             for h in (1, 2)]
    seed(engine, catalog, "b", other)

    whole = build_report(engine, catalog)
    period_share = Decimal(6 * 3600) / SECONDS_PER_MONTH
    assert whole.period.seconds == 6 * 3600
    for name, monthly in (("llama-3-70b", 75000), ("mistral-7b", 25000)):
        model = next(m for m in whole.models if m.model == name).real
        pool = next(p for p in whole.pools if p.model == name)
        assert model and cents(model.loaded_cost_usd) == cents(monthly * period_share)  # $625 and $208.33
        assert pool.utilisation == pytest.approx(float(model.cost_usd / model.loaded_cost_usd), rel=1e-3)
    gpt = next(m for m in whole.models if m.model == "gpt-4-turbo").real
    assert gpt and gpt.loaded_cost_usd == gpt.cost_usd  # the API bill has no idle capacity

    # One batch carries the pool's period cost in proportion to its share of the pool's work.
    only_a = build_report(engine, catalog, batch="a")
    llama_a = next(m for m in only_a.models if m.model == "llama-3-70b").real
    llama_all = ledger_sum(engine, LedgerEntry.model == "llama-3-70b")
    llama_of_a = ledger_sum(engine, LedgerEntry.model == "llama-3-70b", LedgerEntry.batch_id == batch_a)
    assert llama_a and cents(llama_a.loaded_cost_usd) == cents(75000 * period_share * llama_of_a / llama_all)
    assert only_a.real.loaded_savings_usd == only_a.real.baseline_usd - only_a.real.loaded_cost_usd


# --- latency and SLO -----------------------------------------------------------------------------------


def test_percentiles_match_numpy(db: str, catalog: Catalog) -> None:
    engine = get_engine(db)
    rows = mixed(DAY1, 6)
    seed(engine, catalog, "contracts", rows)
    report = build_report(engine, catalog)

    everything = [r.latency_ms for r in rows]
    total = report.real.latency.total
    expected = np.percentile(everything, [50, 95, 99])
    assert (total.p50_ms, total.p95_ms, total.p99_ms) == pytest.approx(expected)
    claude = next(m for m in report.models if m.model == "claude-3-opus").real
    assert claude
    assert claude.latency.queue_wait.p95_ms == pytest.approx(
        np.percentile([r.queue_ms for r in rows if r.model == "claude-3-opus"], 95))
    assert claude.latency.inference.p99_ms == pytest.approx(
        np.percentile([r.inference_ms for r in rows if r.model == "claude-3-opus"], 99))
    assert claude.slo_met is False  # long-form writing takes seconds
    mistral = next(m for m in report.models if m.model == "mistral-7b").real
    assert mistral and mistral.slo_met is True


def test_slo_verdict_flips_when_p95_exceeds_800_ms(db: str, catalog: Catalog) -> None:
    engine = get_engine(db)
    fast = [Row("llama-3-70b", "default", "t", DAY1 + timedelta(seconds=i), 50, 650) for i in range(100)]
    seed(engine, catalog, "fast", fast)
    before = build_report(engine, catalog)
    assert before.real.latency.total.p95_ms == 703 and before.real.slo_met is True
    slow = [Row("llama-3-70b", "default", "t", DAY1 + timedelta(minutes=5), 400, 900) for _ in range(10)]
    seed(engine, catalog, "slow", slow)
    after = build_report(engine, catalog)
    assert after.real.latency.total.p95_ms == 1303 and after.real.slo_met is False
    assert next(m for m in after.models if m.model == "llama-3-70b").real.slo_met is False  # type: ignore[union-attr]
    assert build_report(engine, catalog, batch="fast").real.slo_met is True


# --- simulated, filters --------------------------------------------------------------------------------


def test_simulated_jobs_are_never_added_to_real_figures(db: str, catalog: Catalog) -> None:
    engine = get_engine(db)
    real = mixed(DAY1, 6)
    seed(engine, catalog, "contracts", real)
    seed(engine, catalog, "demo", mixed(DAY2, 1, simulated=True, seed_=8, scale=5))
    report = build_report(engine, catalog)

    assert report.includes_simulated and report.simulated.jobs == 66 and report.real.jobs == len(real)
    assert report.simulated.cost_usd == ledger_sum(engine, LedgerEntry.simulated.is_(True)) > 0
    assert report.real.latency.total.p95_ms == pytest.approx(np.percentile([r.latency_ms for r in real], 95))
    llama = next(m for m in report.models if m.model == "llama-3-70b")
    assert llama.real and llama.simulated and llama.simulated.jobs == 24
    pii = next(r for r in report.routes if r.rule == "pii")
    assert (pii.real_jobs, pii.simulated_jobs) == (40, 8)
    assert pii.real_share_pct == pytest.approx(40 / 330 * 100, abs=0.01)
    assert pii.label.startswith("personal data / secrets")
    assert sum(r.real_share_pct for r in report.routes) == pytest.approx(100, abs=0.05)

    text = _text(report)
    assert "SIMULATED" in text and "not part of the real bill" in text
    real_only = build_report(engine, catalog, batch="contracts")
    assert not real_only.includes_simulated and "SIMULATED" not in _text(real_only)


def test_batch_and_since_filters(db: str, catalog: Catalog) -> None:
    engine = get_engine(db)
    first = seed(engine, catalog, "first", mixed(DAY1, 6))
    seed(engine, catalog, "second", mixed(DAY2, 2, seed_=9, scale=2))

    by_name = build_report(engine, catalog, batch="first")
    by_id = build_report(engine, catalog, batch=str(first))
    assert by_name.real.cost_usd == by_id.real.cost_usd == ledger_sum(engine, LedgerEntry.batch_id == first)
    assert by_name.batch_id == first and by_name.real.jobs == 330

    since = build_report(engine, catalog, since=DAY2)
    assert since.real.jobs == 165 and since.period.start == DAY2 and since.period.seconds == 2 * 3600
    assert since.real.cost_usd == ledger_sum(engine, LedgerEntry.created_at >= DAY2)
    assert build_report(engine, catalog, batch="first", since=DAY2).real.jobs == 0


# --- outputs: JSON schema, PNG, the command ------------------------------------------------------------


def _text(report: Report) -> str:
    from rich.console import Console

    console = Console(record=True, width=200, file=open("/dev/null", "w"))  # noqa: SIM115
    render_text(report, console)
    return console.export_text()


def test_committed_schema_is_the_generated_one() -> None:
    committed = json.loads((REPO / "schemas" / "report.schema.json").read_text())
    assert committed == json_schema(), "regenerate: python -m switchyard.report > schemas/report.schema.json"


def test_png_has_the_panels_and_marks_simulated(db: str, catalog: Catalog, tmp_path: Path) -> None:
    engine = get_engine(db)
    seed(engine, catalog, "contracts", mixed(DAY1, 6))
    seed(engine, catalog, "demo", mixed(DAY2, 1, simulated=True, seed_=8, scale=5))
    report = build_report(engine, catalog)
    samples = latency_sample(engine, report, per_group=50)
    assert len(samples[("mistral-7b", False)]) <= 50 and len(samples[("claude-3-opus", False)]) == 20

    titles = [ax.get_title() for ax in render_figure(report, samples).axes]
    assert [t.split(" — ")[0] for t in titles] == list(PANELS)
    assert all("SIMULATED" in t for t in titles)
    path = write_png(report, samples, tmp_path / "report.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1600, 1100)

    real_only = build_report(engine, catalog, batch="contracts")
    titles = [ax.get_title() for ax in render_figure(real_only, latency_sample(engine, real_only)).axes]
    assert not any("SIMULATED" in t for t in titles)


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"batch": None, "since": None, "json": False, "png": None, **kw})


@pytest.fixture
def cli_env(db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SWITCHYARD_DATABASE_URL", db)
    # The report reads PostgreSQL only: a broker URL nobody listens on must not matter.
    monkeypatch.setenv("SWITCHYARD_BROKER_URL", "redis://127.0.0.1:9/0")
    monkeypatch.delenv("SWITCHYARD_CONFIG", raising=False)
    return db


def test_command_json_validates_and_png_is_written(cli_env: str, catalog: Catalog, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    engine = get_engine(cli_env)
    seed(engine, catalog, "contracts", mixed(DAY1, 6))
    seed(engine, catalog, "demo", mixed(DAY2, 1, simulated=True, seed_=8, scale=5))
    png = tmp_path / "charts.png"

    assert cmd_report(_args(json=True, png=str(png))) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    jsonschema.validate(data, json.loads((REPO / "schemas" / "report.schema.json").read_text()))
    assert Decimal(data["real"]["cost_usd"]) == ledger_sum(engine, LedgerEntry.simulated.is_(False))
    assert f"wrote charts to {png}" in err and png.stat().st_size > 10_000

    assert main(["report", "--batch", "contracts", "--since", "2024-05-01"]) == 0  # the real command line
    out, _ = capsys.readouterr()
    assert "Cost per model" in out and "llama-3-70b" in out and "SIMULATED" not in out


def test_command_refuses_bad_input_with_exit_2(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_report(_args(since="yesterday-ish")) == 2
    assert "--since 'yesterday-ish'" in capsys.readouterr().err
    assert cmd_report(_args(batch="no-such-batch")) == 2
    assert "no batch named or with id 'no-such-batch'" in capsys.readouterr().err


def test_empty_ledger_reports_zero_and_still_draws(cli_env: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_report(_args(json=True, png=str(tmp_path / "empty.png"))) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, json.loads((REPO / "schemas" / "report.schema.json").read_text()))
    assert data["real"]["jobs"] == 0 and data["real"]["cost_usd"] == "0.0000000000"
    assert data["real"]["slo_met"] is None and data["models"] == []
    assert (tmp_path / "empty.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cmd_report(_args()) == 0
    assert "Totals" in capsys.readouterr().out
