"""Issue 14: a utility has no ground truth. No production asset may depend on the simulator's
``truth`` group, directly or through another asset; only benchmarks and tests read truth_*."""

from __future__ import annotations

from dagster import AssetKey


def _truth_reachers(graph) -> dict[str, list[str]]:
    """Every non-truth asset with a truth asset upstream -> the truth assets it reaches."""
    truth = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "truth"}
    out = {}
    for key in graph.get_all_asset_keys():
        if key in truth:
            continue
        seen, stack, hits = set(), [key], set()
        while stack:
            for p in graph.get(stack.pop()).parent_keys:
                if p in truth:
                    hits.add(p.to_user_string())
                elif p not in seen and p in graph.get_all_asset_keys():
                    seen.add(p)
                    stack.append(p)
        if hits:
            out[key.to_user_string()] = sorted(hits)
    return out


def test_no_production_asset_depends_on_the_truth_group():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    truth = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "truth"}
    assert AssetKey("truth_events") in truth and AssetKey("truth_customers") in truth  # the check sees them
    assert _truth_reachers(graph) == {}


def test_the_check_would_catch_a_dependency_on_truth():
    """The same walk on a graph where a model still reads truth_events flags it and its consumers."""
    from dagster import Definitions, asset

    @asset(group_name="truth")
    def truth_events():
        return 1

    @asset(deps=["truth_events"])
    def model():
        return 1

    @asset(deps=["model"])
    def scores():
        return 1

    @asset
    def clean():
        return 1

    graph = Definitions(assets=[truth_events, model, scores, clean]).resolve_asset_graph()
    assert _truth_reachers(graph) == {"model": ["truth_events"], "scores": ["truth_events"]}
