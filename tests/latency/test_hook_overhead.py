"""The hook-overhead benchmark runs end to end through `xr0lab hook-overhead` (no timing claims)."""

from __future__ import annotations


def test_hook_overhead_command_reports_every_arm(capsys):
    from xr0lab.cli import main

    assert main(["hook-overhead", "--reps", "2"]) == 0
    out = capsys.readouterr().out
    for arm in ("bare", "plain", "noop", "cache-none", "cache-1-pattern"):
        assert f"\n{arm} " in out
    assert "ratios side by side" in out
    assert "memory, caching dit.layers.0.attn.hook_pattern: cache holds 1 entry" in out
