"""The report for people: rich tables for the terminal, and a PNG of the charts an operator wants.

Real and simulated figures are always separate rows, bars and boxes; whenever simulated jobs are included,
every table title and every chart title says SIMULATED, so that a demo's figures cannot pass for a real bill.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from switchyard.report import Figures, LatencyStats, Report, Samples

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANELS = ("Cost per model", "Latency distribution per model", "Route shares",
          "Cost vs all-commercial baseline")
SIM = "SIMULATED"
KINDS = (("real", False), (SIM, True))


def usd(value: Decimal) -> str:
    # Cents for real money; more places for the tiny amounts of a few self-hosted jobs.
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}" if abs(value) >= 10 else f"{sign}${abs(value):,.4f}"


def share(fraction: float | None) -> str:
    # A lightly used pool shows as 0.0037%, not 0.0%.
    if fraction is None:
        return "—"
    return f"{100 * fraction:,.3g}%" if fraction < 0.1 else f"{100 * fraction:,.1f}%"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _trio(stats: LatencyStats) -> str:
    return f"{ms(stats.p50_ms)} / {ms(stats.p95_ms)} / {ms(stats.p99_ms)}"


def _slo(figures: Figures) -> str:
    return {None: "—", True: "[green]met[/green]", False: "[red]MISSED[/red]"}[figures.slo_met]


def _saves(savings_pct: float | None) -> str:
    if savings_pct is None:
        return ""
    return f"saves {savings_pct:.1f}%" if savings_pct >= 0 else f"costs {-savings_pct:,.1f}% more"


def _title(report: Report, text: str) -> str:
    return f"{text} — {SIM} jobs included, shown apart" if report.includes_simulated else text


def _rows(pairs: list[tuple[str, Figures | None, Figures | None]]) -> list[tuple[str, str, Figures]]:
    out = []
    for name, real, simulated in pairs:
        out += [(name, label, f) for (label, _), f in zip(KINDS, (real, simulated), strict=True) if f]
    return out


def render_text(report: Report, console: Console | None = None) -> None:
    console = console or Console()
    scope = f"batch {report.batch}" if report.batch else "all batches"
    since = f" since {report.since.isoformat()}" if report.since else ""
    start = report.period.start.isoformat(timespec="seconds") if report.period.start else "—"
    end = report.period.end.isoformat(timespec="seconds") if report.period.end else "—"
    console.print(f"[b]Switchyard report[/b]: {scope}{since}; period {start} → {end} "
                  f"({report.period.seconds / 3600:,.2f} h); baseline: every job on {report.baseline_model}")
    if report.includes_simulated:
        console.print(f"[b yellow]{report.simulated.jobs} {SIM} job(s) included: their figures are shown "
                      "apart and are not part of the real bill.[/b yellow]")
    model_rows = _rows([(m.model, m.real, m.simulated) for m in report.models])
    failures = {m.model: (m.failed_jobs, m.dead_jobs) for m in report.models}

    t = Table(title=_title(report, "Cost per model"), title_justify="left")
    for col in ("model", "kind", "jobs", "failed", "dead", "input tok", "output tok", "marginal",
                "fully loaded", f"baseline ({report.baseline_model})", "savings (marginal)"):
        t.add_column(col, justify="left" if col in ("model", "kind") else "right")
    for name, kind, f in model_rows:
        failed, dead = failures[name] if kind == "real" else ("", "")
        t.add_row(name, kind, f"{f.jobs:,}", str(failed), str(dead), f"{f.input_tokens:,}",
                  f"{f.output_tokens:,}", usd(f.cost_usd), usd(f.loaded_cost_usd), usd(f.baseline_usd),
                  f"{usd(f.savings_usd)} ({pct(f.savings_pct)})")
    for m in report.models:
        if not m.real and (m.failed_jobs or m.dead_jobs):
            t.add_row(m.model, "real", "0", str(m.failed_jobs), str(m.dead_jobs), *[""] * 6)
    console.print(t)

    t = Table(title=_title(report, "Latency per model, ms: P50 / P95 / P99"), title_justify="left")
    for col in ("model", "kind", "total", "queue wait", "inference", f"P95 ≤ {report.slo_p95_ms} ms"):
        t.add_column(col, justify="left" if col in ("model", "kind") else "right")
    for name, kind, f in model_rows:
        lat = f.latency
        t.add_row(name, kind, _trio(lat.total), _trio(lat.queue_wait), _trio(lat.inference), _slo(f))
    console.print(t)

    t = Table(title=_title(report, "Per tenant"), title_justify="left")
    for col in ("tenant", "kind", "jobs", "input tok", "output tok", "marginal", "fully loaded", "baseline",
                "P95 ms", "SLO"):
        t.add_column(col, justify="left" if col in ("tenant", "kind") else "right")
    for name, kind, f in _rows([(r.tenant, r.real, r.simulated) for r in report.tenants]):
        t.add_row(name, kind, f"{f.jobs:,}", f"{f.input_tokens:,}", f"{f.output_tokens:,}", usd(f.cost_usd),
                  usd(f.loaded_cost_usd), usd(f.baseline_usd), ms(f.latency.total.p95_ms), _slo(f))
    console.print(t)

    t = Table(title=_title(report, "Route shares: where jobs went and why"), title_justify="left")
    sim_cols = (f"{SIM} jobs", "share ") if report.includes_simulated else ()
    for col in ("rule", "why", "real jobs", "share", *sim_cols, "to models"):
        t.add_column(col, justify="left" if col in ("rule", "why", "to models") else "right")
    for r in report.routes:
        sim = (f"{r.simulated_jobs:,}", pct(r.simulated_share_pct)) if sim_cols else ()
        t.add_row(r.rule, r.label, f"{r.real_jobs:,}", pct(r.real_share_pct), *sim,
                  ", ".join(f"{m} {n:,}" for m, n in r.models.items()))
    console.print(t)

    t = Table(title="Self-hosted pools: fully loaded cost = monthly cost prorated over the period",
              title_justify="left")
    for col in ("pool", "monthly", "period cost", "marginal, all jobs", "utilisation", "loaded ÷ marginal",
                "carried by these jobs"):
        t.add_column(col, justify="left" if col == "pool" else "right")
    for p in report.pools:
        t.add_row(p.model, usd(p.monthly_usd), usd(p.period_cost_usd), usd(p.pool_marginal_usd),
                  share(p.utilisation),
                  f"{p.loaded_factor:,.2f}×", usd(p.attributed_usd))
    console.print(t)

    t = Table(title="Totals (real and simulated are never added together)", title_justify="left")
    for col in ("kind", "jobs", "marginal", "fully loaded", "baseline", "savings (marginal)",
                "savings (loaded)", "P95 ms", "SLO"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for (label, _), f in zip(KINDS, (report.real, report.simulated), strict=True):
        if f.jobs or label == "real":
            t.add_row(label, f"{f.jobs:,}", usd(f.cost_usd), usd(f.loaded_cost_usd), usd(f.baseline_usd),
                      f"{usd(f.savings_usd)} ({pct(f.savings_pct)})",
                      f"{usd(f.loaded_savings_usd)} ({pct(f.loaded_savings_pct)})",
                      ms(f.latency.total.p95_ms), _slo(f))
    console.print(t)
    if report.failed_jobs or report.dead_jobs:
        console.print(f"{report.failed_jobs} job(s) failed, {report.dead_jobs} dead-lettered "
                      "(no cost recorded).")
    for (label, _), f in zip(KINDS, (report.real, report.simulated), strict=True):
        if f.jobs:
            console.print(f"P95 latency ({label} jobs): {ms(f.latency.total.p95_ms)} ms against the "
                          f"{report.slo_p95_ms} ms SLO: {_slo(f)}")


def render_figure(report: Report, samples: Samples) -> Figure:
    """The four panels (PANELS), titles marked SIMULATED when simulated jobs are included."""
    from matplotlib.figure import Figure  # Figure without pyplot: no GUI backend, no global state

    fig = Figure(figsize=(16, 11), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    mark = f" — includes {SIM}" if report.includes_simulated else ""
    scope = f"batch {report.batch}" if report.batch else "all batches"
    fig.suptitle(f"Switchyard report: {scope}{mark}", fontsize=14, color="darkred" if mark else "black")
    groups = [(f"{name}{' (SIM)' if kind == SIM else ''}", kind == SIM, f)
              for name, kind, f in _rows([(m.model, m.real, m.simulated) for m in report.models])]

    ax = axes[0]  # cost per model: marginal, fully loaded, baseline
    width = 0.27
    bars_spec = (("marginal", "cost_usd", "#4c72b0"), ("fully loaded", "loaded_cost_usd", "#dd8452"),
                 (f"baseline ({report.baseline_model})", "baseline_usd", "#999999"))
    for i, (label, field, color) in enumerate(bars_spec):
        heights = [float(getattr(f, field)) for _, _, f in groups]
        ax.bar([x + (i - 1) * width for x in range(len(groups))], heights, width, label=label, color=color)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], rotation=20, ha="right")
    ax.set_yscale("symlog", linthresh=0.01)  # models differ by orders of magnitude
    ax.set_ylabel("USD (symlog scale)")
    ax.legend()
    ax.set_title(PANELS[0] + mark)

    ax = axes[1]  # latency distribution per model, with the SLO line
    keyed = [(label, samples.get((label.removesuffix(" (SIM)"), sim), [])) for label, sim, _ in groups]
    keyed = [(label, data) for label, data in keyed if data]
    if keyed:
        ax.boxplot([d for _, d in keyed], tick_labels=[k for k, _ in keyed], whis=(1, 99), showfliers=False)
        p95 = {label: f.latency.total.p95_ms for label, _, f in groups}
        ax.scatter(range(1, len(keyed) + 1), [p95[k] for k, _ in keyed], marker="D", color="black",
                   zorder=3, label="P95 (all jobs)")
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(keyed) + 1), [k for k, _ in keyed], rotation=20, ha="right")
    ax.axhline(report.slo_p95_ms, color="red", linestyle="--", label=f"SLO: P95 ≤ {report.slo_p95_ms} ms")
    ax.set_ylabel("latency, ms (box: P25–P75, whiskers: P1–P99)")
    ax.legend(loc="upper left")
    ax.set_title(PANELS[1] + mark)

    ax = axes[2]  # route shares
    labels = [f"{r.rule}: {r.label}" for r in report.routes]
    y = list(range(len(labels)))
    ax.barh([v - 0.2 for v in y], [r.real_share_pct for r in report.routes], 0.4, label="real",
            color="#4c72b0")
    if report.includes_simulated:
        ax.barh([v + 0.2 for v in y], [r.simulated_share_pct for r in report.routes], 0.4, label=SIM,
                color="#c44e52", hatch="//")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("share of jobs, %")
    ax.legend()
    ax.set_title(PANELS[2] + mark)

    ax = axes[3]  # the headline: what the same jobs would cost on an all-commercial fleet
    totals = zip(KINDS, (report.real, report.simulated), strict=True)
    kinds = [(label, f) for (label, _), f in totals if f.jobs]
    for i, (label, f) in enumerate(kinds):
        xs = [i * 4 + j for j in range(3)]
        bars = ax.bar(xs, [float(f.baseline_usd), float(f.cost_usd), float(f.loaded_cost_usd)],
                      color=["#999999", "#4c72b0", "#dd8452"], hatch="//" if label == SIM else None)
        ax.bar_label(bars, [usd(f.baseline_usd), f"{usd(f.cost_usd)}\n{_saves(f.savings_pct)}",
                            f"{usd(f.loaded_cost_usd)}\n{_saves(f.loaded_savings_pct)}"], fontsize=8)
    names = (f"all on\n{report.baseline_model}", "actual\nmarginal", "actual\nfully loaded")
    ax.set_xticks([i * 4 + j for i in range(len(kinds)) for j in range(3)],
                  [f"{name}\n({lbl})" for lbl, _ in kinds for name in names], fontsize=8)
    ax.set_ylabel("USD")
    ax.set_title(PANELS[3] + mark)
    return fig


def write_png(report: Report, samples: Samples, path: str | Path) -> Path:
    path = Path(path)
    render_figure(report, samples).savefig(path, format="png", dpi=100)
    return path
