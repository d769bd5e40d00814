"""The report's "Data, oracles and governance" section, read from the run manifest: what the replay read (each
series and feed with its file, time zone, interval and how blocks were priced, the intrabar bridge's method),
whether the gas path was replayed or modelled, and every scheduled governance action with what it changed."""

from __future__ import annotations

import html
from typing import Any


def _table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="manifest"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


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


def provenance_html(manifest: dict[str, Any]) -> str:
    """The section as HTML ('' for a run without replayed data, modelled gas and no governance)."""
    replay, gas, gov = manifest.get("replay"), manifest.get("gas") or {}, manifest.get("governance") or []
    parts = []
    if replay:
        held = replay.get("held_from") or {}
        parts.append(
            f"<p>Replay from {html.escape(replay['start'])} to {html.escape(replay['end'])}; blocks inside a candle: "
            f"<b>{html.escape(replay['fill'])}</b>; after the data end: {html.escape(replay['after_end'])}"
            + (f" (held flat from {html.escape(', '.join(f'{k} {v}' for k, v in held.items()))})" if held else "")
            + ".</p>"
        )
        parts.append(
            _table(["key", "asset/feed", "unit", "file", "interval", "time zone", "rows", "fill"], series_rows(replay))
        )
        bridge = next((x["bridge"] for x in replay.get("series", []) if x.get("bridge")), None)
        if bridge:
            parts.append(
                "<p>Intrabar bridge: " + html.escape("; ".join(f"{k}: {v}" for k, v in bridge.items())) + ".</p>"
            )
    if gas:
        if gas.get("path") == "replayed":
            parts.append(
                f"<p>Gas: replayed from {html.escape(gas['file'])} ({html.escape(gas['column'])}, "
                f"{gas['interval_s']:g} s buckets from {html.escape(gas['start'])}, x{gas['scale']:g}).</p>"
            )
        else:
            parts.append(f"<p>Gas: modelled ({html.escape(gas.get('model', ''))}); no gas series replayed.</p>")
    if gov:
        parts.append("<h3>Governance and operations</h3>")
        parts.append(_table(["block", "time", "action", "target", "change", "source"], governance_rows(gov)))
    return "<h2>Data, oracles and governance</h2>\n" + "\n".join(parts) + "\n" if parts else ""
