"""The report's "Data, oracles and governance" section, read from the run manifest: what the replay read (each
series and feed with its file, time zone, interval and how blocks were priced, the intrabar bridge's method),
whether the gas path was replayed or modelled, and every scheduled governance action with what it changed."""

from __future__ import annotations

from typing import Any

from defistress.sim.report.tables import Cell, Section, Table


def series_rows(replay: dict[str, Any]) -> list[list[str]]:
    """One row per replayed series and feed: key, file, interval (declared or inferred), zone, rows, fill."""
    rows = []
    for s in replay.get("series", []) + replay.get("feeds", []):
        interval = f"{s['interval_s']:g} s" + ("" if s.get("interval_declared") else " (inferred)")
        fill = s.get("fill", "as published" if s.get("format") == "chainlink_rounds" else "feed")
        name = s.get("asset") or s.get("id", "")
        unit = s.get("quote", "USD")
        rows.append(
            [s["key"], name, unit, s["file"], interval, s["timezone"], f"{s['first_row']} .. {s['last_row']}", fill]
        )
    return rows


def governance_rows(actions: list[dict[str, Any]]) -> list[list[str]]:
    """One row per scheduled action: block, time, action, target, change, source."""
    rows = []
    for a in actions:
        target = a.get("protocol") or a.get("agent") or ""
        if a.get("asset"):
            target += f" ({a['asset']})"
        what = a.get("key") or a.get("state") or ("join" if a["action"] == "add_agent" else "")
        if a.get("applied") and "old" in a:
            what += f": {a['old']} -> {a['new']}"
        elif a["action"] in ("mint", "burn"):
            what += f" {a.get('amount')}"
        rows.append([str(a["block"]), f"{a['at_s'] / 3600:.2f} h", a["action"], target, what, a.get("source", "")])
    return rows


def provenance_section(manifest: dict[str, Any]) -> Section | None:
    """The section (None for a run without replayed data, modelled gas and no governance)."""
    replay, gas, gov = manifest.get("replay"), manifest.get("gas") or {}, manifest.get("governance") or []
    sec = Section("data-oracles-governance", "Data, oracles and governance")
    if replay:
        held = replay.get("held_from") or {}
        sec.paragraphs.append(
            f"Replay from {replay['start']} to {replay['end']}; blocks inside a candle: {replay['fill']}; after the "
            f"data end: {replay['after_end']}"
            + (f" (held flat from {', '.join(f'{k} {v}' for k, v in held.items())})" if held else "")
            + "."
        )
        header = ["key", "asset/feed", "unit", "file", "interval", "time zone", "rows", "fill"]
        sec.tables.append(Table(header, [[Cell(c) for c in row] for row in series_rows(replay)], cls="mono"))
        bridge = next((x["bridge"] for x in replay.get("series", []) if x.get("bridge")), None)
        if bridge:
            sec.paragraphs.append("Intrabar bridge: " + "; ".join(f"{k}: {v}" for k, v in bridge.items()) + ".")
    if gas:
        if gas.get("path") == "replayed":
            sec.paragraphs.append(
                f"Gas: replayed from {gas['file']} ({gas['column']}, {gas['interval_s']:g} s buckets from "
                f"{gas['start']}, x{gas['scale']:g})."
            )
        else:
            sec.paragraphs.append(f"Gas: modelled ({gas.get('model', '')}); no gas series replayed.")
    if gov:
        header = ["block", "time", "action", "target", "change", "source"]
        rows = [[Cell(c) for c in row] for row in governance_rows(gov)]
        sec.tables.append(Table(header, rows, caption="Governance and operations", cls="mono"))
    return sec if (sec.paragraphs or sec.tables) else None
