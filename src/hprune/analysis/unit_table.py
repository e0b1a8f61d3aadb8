"""The unit table of a model: what can be removed and what it weighs."""

from __future__ import annotations

from hprune.model import get_adapter


def unit_table(model) -> list[dict]:
    adapter = get_adapter(model)
    total = adapter.total_params(model)
    return [
        {"unit": info.unit.key, "kind": info.unit.kind, "index": info.unit.index, "sub": info.unit.sub,
         "params": info.params, "share": info.params / total}
        for info in adapter.units(model)
    ]


def format_table(rows: list[dict], total: int) -> str:
    lines = [f"{'index':>5}  {'kind':<6}  {'subcomponent':<12}  {'params':>14}  {'share':>7}"]
    for r in rows:
        lines.append(f"{r['index']:>5}  {r['kind']:<6}  {r['sub']:<12}  {r['params']:>14,}  {100 * r['share']:6.2f}%")
    lines.append(f"total transformer parameters: {total:,}")
    return "\n".join(lines)
